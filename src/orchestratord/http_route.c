/* http_route.c — the HTTP API's routing table and path matching (segment by segment, after
 * percent-decoding each segment). */
#include "http_route.h"

#include "http_util.h"

#include <stdio.h>
#include <string.h>

struct route_def {
    unsigned method;
    const char *pattern;
    int perm; /* enum auth_perm, or -1 = public */
    const char *label;
};

static const struct route_def routes[ROUTE_COUNT] = {
#define ROUTE_ROW(id, method_, pattern_, perm_, label_) \
    [ROUTE_##id] = {.method = (method_), .pattern = (pattern_), .perm = (perm_), .label = (label_)},
    ROUTES(ROUTE_ROW)
#undef ROUTE_ROW
};

bool route_percent_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (n - i < 3)
                return false;
            int hi = hutil_hex_digit(s[i + 1]);
            int lo = hutil_hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (char)(hi * 16 + lo);
            if (c == '\0')
                return false;
            i += 2;
        }
        if (j + 1 >= outlen)
            return false;
        out[j++] = c;
    }
    if (outlen == 0)
        return false;
    out[j] = '\0';
    return true;
}

/* match_one: does the decoded segment list match pattern? Captures "{}" segments into m. */
static bool match_one(const char *pattern, char segs[][ROUTE_PARAM_MAX], int nsegs, struct route_match *m)
{
    int i = 0;
    int nparams = 0;
    const char *p = pattern;
    while (*p) {
        if (*p != '/')
            return false;
        p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (i >= nsegs)
            return false;
        if (len == 2 && p[0] == '{' && p[1] == '}') {
            if (m && nparams < ROUTE_PARAMS_MAX)
                memcpy(m->params[nparams], segs[i], ROUTE_PARAM_MAX);
            nparams++;
        } else if (strlen(segs[i]) != len || strncmp(segs[i], p, len) != 0) {
            return false;
        }
        i++;
        p += len;
    }
    if (i != nsegs)
        return false;
    if (m)
        m->nparams = nparams;
    return true;
}

#define ROUTE_SEGMENTS_MAX 8

enum route_result route_match(const char *path, unsigned method, struct route_match *m)
{
    memset(m, 0, sizeof *m);
    m->id = ROUTE_NONE;
    char segs[ROUTE_SEGMENTS_MAX][ROUTE_PARAM_MAX];
    int nsegs = 0;
    if (!path || path[0] != '/')
        return ROUTE_NOT_FOUND;
    size_t plen = strlen(path);
    if (plen > 1 && path[plen - 1] == '/')
        plen--; /* one trailing slash */
    const char *p = path + 1;
    const char *end = path + plen;
    if (plen > 1) {
        while (p <= end) {
            const char *slash = memchr(p, '/', (size_t)(end - p));
            const char *segend = slash ? slash : end;
            if (segend == p || nsegs == ROUTE_SEGMENTS_MAX)
                return ROUTE_NOT_FOUND; /* empty segment ("//") or deeper than any route */
            if (!route_percent_decode(p, (size_t)(segend - p), segs[nsegs], ROUTE_PARAM_MAX))
                return ROUTE_BAD_PATH;
            nsegs++;
            if (!slash)
                break;
            p = slash + 1;
        }
    }

    bool path_known = false;
    for (int r = 0; r < ROUTE_COUNT; r++) {
        if (!match_one(routes[r].pattern, segs, nsegs, NULL))
            continue;
        path_known = true;
        m->allow |= routes[r].method;
    }
    if (!path_known)
        return ROUTE_NOT_FOUND;
    for (int r = 0; r < ROUTE_COUNT; r++) {
        if ((routes[r].method & method) && match_one(routes[r].pattern, segs, nsegs, m)) {
            m->id = (enum route_id)r;
            return ROUTE_OK;
        }
    }
    return ROUTE_METHOD_NOT_ALLOWED;
}

const char *route_label(enum route_id id)
{
    return id >= 0 && id < ROUTE_COUNT ? routes[id].label : "none";
}

bool route_permission(enum route_id id, enum auth_perm *perm)
{
    if (id < 0 || id >= ROUTE_COUNT || routes[id].perm < 0)
        return false;
    *perm = (enum auth_perm)routes[id].perm;
    return true;
}

void route_allow_header(unsigned allow, char *out, size_t outlen)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {RM_GET, "GET"},       {RM_HEAD, "HEAD"}, {RM_POST, "POST"},
        {RM_PATCH, "PATCH"},   {RM_DELETE, "DELETE"}, {RM_PUT, "PUT"},
    };
    size_t used = 0;
    if (outlen == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(allow & names[i].bit))
            continue;
        int n = snprintf(out + used, outlen - used, "%s%s", used ? ", " : "", names[i].name);
        if (n < 0 || (size_t)n >= outlen - used) {
            out[used] = '\0'; /* whole names only */
            return;
        }
        used += (size_t)n;
    }
}
