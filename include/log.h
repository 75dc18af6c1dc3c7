/* log.h — leveled, component-tagged logging to stderr (sd-daemon priority prefixes under systemd). */
#ifndef TASKER_LOG_H
#define TASKER_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
    LOG_LVL_ERROR = 3, /* something failed; the numbers are syslog priorities (sd-daemon.h) */
    LOG_LVL_WARN = 4,  /* unexpected but handled */
    LOG_LVL_INFO = 6,  /* lifecycle and notable events */
    LOG_LVL_DEBUG = 7  /* per-batch detail */
};

/* log_init: set the threshold and the output style. Under systemd (JOURNAL_STREAM set) lines get
 * "<N>" priority prefixes and no timestamp, since journald adds its own. json=true writes one JSON
 * object per line instead. Safe to call again (reload). Every call of log_write writes exactly one
 * line: control characters in the message (a template name, a database error text) are escaped
 * (log_escape), so nothing a client sends can forge a line or a priority. */
void log_init(enum log_level threshold, bool json);

/* log_level_parse: "error" | "warn" | "info" | "debug" -> level; false if unknown. */
bool log_level_parse(const char *name, enum log_level *out);

/* log_enabled: cheap check used by the macros so disabled levels skip argument evaluation. */
bool log_enabled(enum log_level level);

void log_write(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* log_first_unsafe: the first character of s that must not reach a log line or a terminal raw —
 * a C0 control, DEL, a C1 control (U+0080..U+009F), a line or paragraph separator (U+2028,
 * U+2029), a bidi embedding, override or isolate (U+202A..U+202E, U+2066..U+2069), or a byte that
 * does not belong to valid UTF-8 — or NULL when there is none. The HTTP API refuses operator names
 * with the same test. */
const char *log_first_unsafe(const char *s);

/* log_escape: s with every character log_first_unsafe flags escaped — \n \r \t, \xNN for other
 * ASCII controls and for bytes that are not UTF-8, \uNNNN for code points — so one event stays one
 * line. json = true also escapes '"' and '\\' and writes the escapes JSON's way (the result is the
 * body of a JSON string). Writes at most outlen - 1 bytes and a NUL, cutting only between whole
 * characters or escapes; returns the number of bytes written. */
size_t log_escape(const char *s, bool json, char *out, size_t outlen);

/* component is a short tag such as "migrate", "pool", "poller". */
#define log_error(comp, ...) do { if (log_enabled(LOG_LVL_ERROR)) log_write(LOG_LVL_ERROR, comp, __VA_ARGS__); } while (0)
#define log_warn(comp, ...)  do { if (log_enabled(LOG_LVL_WARN))  log_write(LOG_LVL_WARN,  comp, __VA_ARGS__); } while (0)
#define log_info(comp, ...)  do { if (log_enabled(LOG_LVL_INFO))  log_write(LOG_LVL_INFO,  comp, __VA_ARGS__); } while (0)
#define log_debug(comp, ...) do { if (log_enabled(LOG_LVL_DEBUG)) log_write(LOG_LVL_DEBUG, comp, __VA_ARGS__); } while (0)

#endif
