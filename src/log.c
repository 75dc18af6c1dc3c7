/* log.c — leveled, component-tagged logging to stderr (sd-daemon priority prefixes under systemd). */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_threshold = LOG_LVL_INFO;
static bool log_json;
static bool log_journal; /* stderr goes to journald: priority prefix, no timestamp */

static const char *const log_level_names[8] = {
    [LOG_LVL_ERROR] = "error", [LOG_LVL_WARN] = "warn", [LOG_LVL_INFO] = "info", [LOG_LVL_DEBUG] = "debug",
};

void log_init(enum log_level threshold, bool json)
{
    log_threshold = threshold;
    log_json = json;
    log_journal = getenv("JOURNAL_STREAM") != NULL;
}

bool log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i < 8; i++) {
        if (log_level_names[i] && strcmp(log_level_names[i], name) == 0) {
            *out = (enum log_level)i;
            return true;
        }
    }
    return false;
}

bool log_enabled(enum log_level level)
{
    return level <= log_threshold;
}

/* Write s as a JSON string body (without quotes), escaping what JSON requires. */
static void log_json_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

void log_write(enum log_level level, const char *component, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    /* One fprintf per line keeps lines whole when several processes share stderr. */
    char stamp[40] = "";
    if (!log_journal || log_json) {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", ts.tv_nsec / 1000000);
    }

    if (log_json) {
        flockfile(stderr);
        /* Under journald the priority prefix still comes first, so `journalctl -p` filters JSON too. */
        if (log_journal)
            fprintf(stderr, "<%d>", (int)level);
        fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"", stamp, log_level_names[level]);
        log_json_escape(stderr, component);
        fputs("\",\"msg\":\"", stderr);
        log_json_escape(stderr, msg);
        fputs("\"}\n", stderr);
        funlockfile(stderr);
    } else if (log_journal) {
        fprintf(stderr, "<%d>%s: %s\n", (int)level, component, msg);
    } else {
        fprintf(stderr, "%s %-5s %s: %s\n", stamp, log_level_names[level], component, msg);
    }
}
