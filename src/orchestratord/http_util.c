/* http_util.c — pure helpers of the HTTP API: the error table and error bodies, UUID and integer
 * parsing, the checks of operator names, query strings and request framing. */
#include "http_util.h"

#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    int status;
    const char *code;
} errors[HUTIL_ERR_COUNT] = {
#define HUTIL_ROW(name, status, code) [HUTIL_ERR_##name] = {status, code},
    HUTIL_ERRORS(HUTIL_ROW)
#undef HUTIL_ROW
};

int hutil_error_status(enum hutil_error e)
{
    return (unsigned)e < HUTIL_ERR_COUNT ? errors[e].status : 500;
}

const char *hutil_error_code(enum hutil_error e)
{
    return (unsigned)e < HUTIL_ERR_COUNT ? errors[e].code : "internal_error";
}

/* utf8_clean: a copy of s in which every byte that does not start or continue a valid UTF-8
 * sequence is replaced by '?', so that jansson accepts it (caller frees). */
static char *utf8_clean(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, j = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (p[i + k] & 0xc0) == 0x80;
        if (ok && c == 0)
            ok = false;
        if (ok) {
            memcpy(out + j, p + i, len);
            j += len;
            i += len;
        } else {
            out[j++] = '?';
            i++;
        }
    }
    out[j] = '\0';
    return out;
}

char *hutil_error_body(enum hutil_error e, const char *message, json_t *extra)
{
    char *clean = utf8_clean(message ? message : "");
    if (!clean)
        return NULL;
    json_t *err = json_pack("{s:s, s:s}", "code", hutil_error_code(e), "message", clean);
    free(clean);
    if (!err) /* still not UTF-8 jansson accepts (an overlong form, a surrogate) */
        err = json_pack("{s:s, s:s}", "code", hutil_error_code(e), "message", "(message not representable)");
    if (!err)
        return NULL;
    if (extra && json_is_object(extra)) {
        const char *k;
        json_t *v;
        json_object_foreach(extra, k, v) {
            if (strcmp(k, "code") != 0 && strcmp(k, "message") != 0)
                json_object_set(err, k, v);
        }
    }
    json_t *root = json_pack("{s:o}", "error", err); /* takes err's reference */
    if (!root)
        return NULL;
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

bool hutil_uuid_valid(const char *s)
{
    static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
    if (!s || strlen(s) != sizeof shape - 1)
        return false;
    for (size_t i = 0; shape[i]; i++) {
        char c = s[i];
        if (shape[i] == '-') {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false;
        }
    }
    return true;
}

bool hutil_parse_int(const char *s, long min, long max, long *out)
{
    if (!s || !*s)
        return false;
    const char *p = s[0] == '-' ? s + 1 : s;
    if (!*p || strlen(p) > 18)
        return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9')
            return false;
    errno = 0;
    long v = strtol(s, NULL, 10);
    if (errno != 0 || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool hutil_text_safe(const char *s)
{
    return s && !log_first_unsafe(s);
}

int hutil_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool hutil_query_has_nul(const char *qs)
{
    if (!qs)
        return false;
    for (const char *p = qs; *p; p++) {
        /* evhttp decodes %XX only when both X are hex digits; anything else stays text */
        if (p[0] == '%' && hutil_hex_digit(p[1]) >= 0 && hutil_hex_digit(p[2]) >= 0) {
            if (hutil_hex_digit(p[1]) == 0 && hutil_hex_digit(p[2]) == 0)
                return true;
            p += 2;
        }
    }
    return false;
}

const char *hutil_framing_error(const char *const *lengths, int n, bool transfer_encoding)
{
    if (n > 0 && transfer_encoding)
        return "Content-Length and Transfer-Encoding together make the body's length ambiguous; send one";
    for (int i = 1; i < n; i++)
        if (strcmp(lengths[i], lengths[0]) != 0)
            return "two different Content-Length headers make the body's length ambiguous; send one";
    return NULL;
}
