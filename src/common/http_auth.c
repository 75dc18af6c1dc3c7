/* http_auth.c — API keys of the HTTP API: the key list format, permissions with wildcards, and
 * lookup of a presented key. Errors name an entry by number and name, never by its key. */
#include "http_auth.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const perm_names[AUTH_PERM_COUNT] = {
#define AUTH_NAME(name, text) [AUTH_##name] = text,
    AUTH_PERMS(AUTH_NAME)
#undef AUTH_NAME
};

const char *auth_perm_name(enum auth_perm p)
{
    return (unsigned)p < AUTH_PERM_COUNT ? perm_names[p] : "?";
}

bool auth_grant_parse(const char *grant, size_t len, unsigned *bits)
{
    if (len == 1 && grant[0] == '*') {
        *bits = (1u << AUTH_PERM_COUNT) - 1;
        return true;
    }
    unsigned b = 0;
    bool wildcard = len >= 3 && grant[len - 2] == ':' && grant[len - 1] == '*';
    for (int i = 0; i < AUTH_PERM_COUNT; i++) {
        const char *name = perm_names[i];
        if (wildcard) {
            /* "tasks:*" matches every name that starts with "tasks:" */
            if (strncmp(name, grant, len - 1) == 0)
                b |= 1u << i;
        } else if (strlen(name) == len && strncmp(name, grant, len) == 0) {
            b |= 1u << i;
        }
    }
    if (!b)
        return false;
    *bits = b;
    return true;
}

bool auth_allows(unsigned grants, enum auth_perm p)
{
    return (unsigned)p < AUTH_PERM_COUNT && (grants & (1u << p)) != 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
}

static bool is_secret_char(char c)
{
    return is_name_char(c) || c == '~' || c == '+' || c == '/';
}

/* parse_entry: one `[NAME@]KEY:GRANTS` token of length len; index counts from 1. */
static bool parse_entry(const char *tok, size_t len, int index, struct auth_key *k, char *err, size_t errlen)
{
    memset(k, 0, sizeof *k);
    const char *end = tok + len;
    const char *at = memchr(tok, '@', len);
    const char *key = tok;
    if (at) {
        size_t nlen = (size_t)(at - tok);
        if (nlen == 0 || nlen >= AUTH_NAME_MAX) {
            snprintf(err, errlen, "entry %d: the name before '@' must be 1 to %d characters", index, AUTH_NAME_MAX - 1);
            return false;
        }
        for (const char *p = tok; p < at; p++) {
            if (!is_name_char(*p)) {
                snprintf(err, errlen, "entry %d: the name may contain only letters, digits, '_', '.' and '-'", index);
                return false;
            }
        }
        memcpy(k->name, tok, nlen);
        key = at + 1;
    } else {
        snprintf(k->name, sizeof k->name, "key%d", index);
    }
    const char *colon = memchr(key, ':', (size_t)(end - key));
    if (!colon) {
        snprintf(err, errlen, "entry %d (%s): expected [NAME@]KEY:PERMISSION[,PERMISSION…]", index, k->name);
        return false;
    }
    size_t klen = (size_t)(colon - key);
    if (klen < AUTH_SECRET_MIN || klen >= AUTH_SECRET_MAX) {
        snprintf(err, errlen, "entry %d (%s): the key must be %d to %d characters", index, k->name, AUTH_SECRET_MIN,
                 AUTH_SECRET_MAX - 1);
        return false;
    }
    for (const char *p = key; p < colon; p++) {
        if (!is_secret_char(*p)) {
            snprintf(err, errlen, "entry %d (%s): the key may contain only letters, digits and _ . ~ + / -", index,
                     k->name);
            return false;
        }
    }
    memcpy(k->secret, key, klen);
    const char *g = colon + 1;
    if (g >= end) {
        snprintf(err, errlen, "entry %d (%s): no permission after ':'", index, k->name);
        return false;
    }
    while (g < end) {
        const char *comma = memchr(g, ',', (size_t)(end - g));
        const char *gend = comma ? comma : end;
        unsigned bits;
        if (!auth_grant_parse(g, (size_t)(gend - g), &bits)) {
            snprintf(err, errlen, "entry %d (%s): unknown permission \"%.*s\" (use e.g. tasks:create, tasks:*, *)",
                     index, k->name, (int)(gend - g > 40 ? 40 : gend - g), g);
            return false;
        }
        k->grants |= bits;
        g = comma ? comma + 1 : end;
        if (comma && g >= end) {
            snprintf(err, errlen, "entry %d (%s): empty permission after ','", index, k->name);
            return false;
        }
    }
    return true;
}

/* next_entry: the next whitespace-separated entry of a key list at *p (its length in *len), or
 * NULL at the end; advances *p past it. */
static const char *next_entry(const char **p, size_t *len)
{
    while (is_space(**p))
        (*p)++;
    if (!**p)
        return NULL;
    const char *tok = *p;
    while (**p && !is_space(**p))
        (*p)++;
    *len = (size_t)(*p - tok);
    return tok;
}

/* keys_parse: auth_keys_parse into keys (never NULL). */
static bool keys_parse(const char *text, struct auth_keys *keys, char *err, size_t errlen)
{
    memset(keys, 0, sizeof *keys);
    const char *p = text ? text : "";
    int index = 0;
    const char *tok;
    size_t len;
    while ((tok = next_entry(&p, &len)) != NULL) {
        index++;
        if (keys->n == AUTH_KEYS_MAX) {
            snprintf(err, errlen, "more than %d keys", AUTH_KEYS_MAX);
            return false;
        }
        struct auth_key *k = &keys->keys[keys->n];
        if (!parse_entry(tok, len, index, k, err, errlen))
            return false;
        for (int i = 0; i < keys->n; i++) {
            if (strcmp(keys->keys[i].name, k->name) == 0) {
                snprintf(err, errlen, "entry %d: the name %s is used twice", index, k->name);
                return false;
            }
            if (strcmp(keys->keys[i].secret, k->secret) == 0) {
                snprintf(err, errlen, "entry %d (%s): the same key as entry %d (%s)", index, k->name, i + 1,
                         keys->keys[i].name);
                return false;
            }
        }
        keys->n++;
    }
    return true;
}

bool auth_keys_parse(const char *text, struct auth_keys *out, char *err, size_t errlen)
{
    if (out)
        return keys_parse(text, out, err, errlen);
    struct auth_keys scratch; /* validation only */
    bool ok = keys_parse(text, &scratch, err, errlen);
    explicit_bzero(&scratch, sizeof scratch); /* no copy of a secret lingers on the stack */
    return ok;
}

/* append: add n bytes of s to out (size outlen, *used bytes used), truncating; keeps out terminated. */
static void append(char *out, size_t outlen, size_t *used, const char *s, size_t n)
{
    if (outlen == 0 || *used + 1 >= outlen)
        return;
    if (n > outlen - 1 - *used)
        n = outlen - 1 - *used;
    memcpy(out + *used, s, n);
    *used += n;
    out[*used] = '\0';
}

void auth_keys_mask(const char *text, char *out, size_t outlen)
{
    size_t used = 0;
    if (outlen)
        out[0] = '\0';
    const char *p = text ? text : "";
    bool first = true;
    const char *tok;
    size_t len;
    while ((tok = next_entry(&p, &len)) != NULL) {
        if (!first)
            append(out, outlen, &used, " ", 1);
        first = false;
        const char *at = memchr(tok, '@', len);
        const char *key = at ? at + 1 : tok;
        if (at)
            append(out, outlen, &used, tok, (size_t)(key - tok));
        append(out, outlen, &used, "***", 3);
        const char *colon = memchr(key, ':', (size_t)(tok + len - key));
        if (colon)
            append(out, outlen, &used, colon, (size_t)(tok + len - colon));
    }
}

const struct auth_key *auth_lookup(const struct auth_keys *keys, const char *presented)
{
    if (!keys || !presented)
        return NULL;
    size_t plen = strnlen(presented, AUTH_SECRET_MAX);
    const struct auth_key *found = NULL;
    for (int i = 0; i < keys->n; i++) {
        const struct auth_key *k = &keys->keys[i];
        size_t klen = strnlen(k->secret, AUTH_SECRET_MAX);
        unsigned char diff = (unsigned char)(klen != plen);
        for (size_t j = 0; j < AUTH_SECRET_MAX; j++) {
            unsigned char a = j < klen ? (unsigned char)k->secret[j] : 0;
            unsigned char b = j < plen ? (unsigned char)presented[j] : 0;
            diff |= (unsigned char)(a ^ b);
        }
        if (diff == 0 && klen > 0)
            found = k;
    }
    return found;
}

/* copy_trimmed: s[0..n) without surrounding white space into out; false if empty or too long. */
static bool copy_trimmed(const char *s, size_t n, char *out, size_t outlen)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= outlen)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

bool auth_presented(const char *x_api_key, const char *authorization, char *out, size_t outlen)
{
    if (x_api_key && copy_trimmed(x_api_key, strlen(x_api_key), out, outlen))
        return true;
    if (!authorization)
        return false;
    const char *a = authorization;
    while (*a == ' ' || *a == '\t')
        a++;
    if (strncasecmp(a, "Bearer", 6) != 0 || (a[6] != ' ' && a[6] != '\t'))
        return false;
    return copy_trimmed(a + 7, strlen(a + 7), out, outlen);
}
