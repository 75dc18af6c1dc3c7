/* log.h — leveled, component-tagged logging to stderr (sd-daemon priority prefixes under systemd). */
#ifndef TASKER_LOG_H
#define TASKER_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_LVL_ERROR = 3, /* something failed; the numbers are syslog priorities (sd-daemon.h) */
    LOG_LVL_WARN = 4,  /* unexpected but handled */
    LOG_LVL_INFO = 6,  /* lifecycle and notable events */
    LOG_LVL_DEBUG = 7  /* per-batch detail */
};

/* log_init: set the threshold and the output style. Under systemd (JOURNAL_STREAM set) lines get
 * "<N>" priority prefixes and no timestamp, since journald adds its own. json=true writes one JSON
 * object per line instead. Safe to call again (reload). */
void log_init(enum log_level threshold, bool json);

/* log_level_parse: "error" | "warn" | "info" | "debug" -> level; false if unknown. */
bool log_level_parse(const char *name, enum log_level *out);

/* log_enabled: cheap check used by the macros so disabled levels skip argument evaluation. */
bool log_enabled(enum log_level level);

void log_write(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* component is a short tag such as "migrate", "pool", "poller". */
#define log_error(comp, ...) do { if (log_enabled(LOG_LVL_ERROR)) log_write(LOG_LVL_ERROR, comp, __VA_ARGS__); } while (0)
#define log_warn(comp, ...)  do { if (log_enabled(LOG_LVL_WARN))  log_write(LOG_LVL_WARN,  comp, __VA_ARGS__); } while (0)
#define log_info(comp, ...)  do { if (log_enabled(LOG_LVL_INFO))  log_write(LOG_LVL_INFO,  comp, __VA_ARGS__); } while (0)
#define log_debug(comp, ...) do { if (log_enabled(LOG_LVL_DEBUG)) log_write(LOG_LVL_DEBUG, comp, __VA_ARGS__); } while (0)

#endif
