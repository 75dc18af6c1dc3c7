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

/* utf8_len: the length of the valid UTF-8 sequence s starts with (shortest form, no surrogates,
 * at most U+10FFFF), or 0. *cp gets the code point. */
static size_t utf8_len(const unsigned char *s, unsigned *cp)
{
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        *cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        *cp = c & 0x0f;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        *cp = c & 0x07;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b & 0xc0) != 0x80)
            return 0; /* also stops at the NUL of a truncated sequence */
        *cp = (*cp << 6) | (b & 0x3f);
    }
    return n;
}

static bool cp_unsafe(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

const char *log_first_unsafe(const char *s)
{
    while (*s) {
        unsigned cp;
        size_t n = utf8_len((const unsigned char *)s, &cp);
        if (n == 0 || cp_unsafe(cp))
            return s;
        s += n;
    }
    return NULL;
}

size_t log_escape(const char *s, bool json, char *out, size_t outlen)
{
    size_t j = 0;
    if (outlen == 0)
        return 0;
    while (*s) {
        const unsigned char *p = (const unsigned char *)s;
        char e[16];
        const char *piece = e;
        size_t len;
        unsigned cp;
        size_t n = utf8_len(p, &cp);
        if (n == 0) {
            snprintf(e, sizeof e, json ? "\\\\x%02x" : "\\x%02x", p[0]); /* not UTF-8: show the byte */
            n = 1;
        } else if (cp == '\n') {
            piece = "\\n";
        } else if (cp == '\r') {
            piece = "\\r";
        } else if (cp == '\t') {
            piece = "\\t";
        } else if (json && (cp == '"' || cp == '\\')) {
            snprintf(e, sizeof e, "\\%c", (char)cp);
        } else if (cp_unsafe(cp)) {
            snprintf(e, sizeof e, !json && cp < 0x80 ? "\\x%02x" : "\\u%04x", cp);
        } else {
            piece = s; /* the character itself */
        }
        len = piece == s ? n : strlen(piece);
        if (j + len >= outlen)
            break; /* whole characters and escapes only */
        memcpy(out + j, piece, len);
        j += len;
        s += n;
    }
    out[j] = '\0';
    return j;
}

void log_write(enum log_level level, const char *component, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    /* An escape is at most 7 bytes for 1 (\\xNN in JSON) or 6 for 3 (\u202e): 7x the message. */
    char emsg[sizeof msg * 7], ecomp[128];
    log_escape(msg, log_json, emsg, sizeof emsg);
    log_escape(component, log_json, ecomp, sizeof ecomp);

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
        /* Under journald the priority prefix still comes first, so `journalctl -p` filters JSON too. */
        char prio[8] = "";
        if (log_journal)
            snprintf(prio, sizeof prio, "<%d>", (int)level);
        fprintf(stderr, "%s{\"ts\":\"%s\",\"level\":\"%s\",\"component\":\"%s\",\"msg\":\"%s\"}\n", prio, stamp,
                log_level_names[level], ecomp, emsg);
    } else if (log_journal) {
        fprintf(stderr, "<%d>%s: %s\n", (int)level, ecomp, emsg);
    } else {
        fprintf(stderr, "%s %-5s %s: %s\n", stamp, log_level_names[level], ecomp, emsg);
    }
}
