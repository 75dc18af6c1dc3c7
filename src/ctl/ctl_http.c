/* ctl_http.c — taskerctl's HTTP client (libcurl): requests, and every failure said in one line. */
#include "ctl.h"

#include "log.h"

#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Connecting should be quick on a LAN; answering may take up to the daemon's own request timeout
 * (web.request_timeout_ms, 30 s by default), so allow a little more. */
#define CTL_CONNECT_TIMEOUT_S 10L
#define CTL_REQUEST_TIMEOUT_S 60L

void ctl_buf_add(struct ctl_buf *b, const char *data, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            fputs("taskerctl: out of memory\n", stderr);
            exit(CTL_EFAIL);
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, data, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        ctl_buf_add(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big)
        return;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ctl_buf_add(b, big, (size_t)n);
    free(big);
}

void ctl_buf_free(struct ctl_buf *b)
{
    free(b->s);
    *b = (struct ctl_buf){0};
}

void ctl_buf_seg(struct ctl_buf *b, const char *s)
{
    /* RFC 3986 unreserved characters pass; everything else is %XX (so '/' in a name stays one segment). */
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
            ctl_buf_add(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            ctl_buf_add(b, e, 3);
        }
    }
}

void ctl_buf_query(struct ctl_buf *b, const char *key, const char *value)
{
    if (!value || !*value)
        return;
    ctl_buf_add(b, b->s && strchr(b->s, '?') ? "&" : "?", 1);
    ctl_buf_seg(b, key);
    ctl_buf_add(b, "=", 1);
    ctl_buf_seg(b, value);
}

static size_t on_data(char *data, size_t size, size_t n, void *arg)
{
    ctl_buf_add(arg, data, size * n);
    return size * n;
}

/* safe: s as one line a terminal shows as text (the server's words, a URL from the user). */
static const char *safe(const char *s, char *out, size_t outlen)
{
    log_escape(s ? s : "", false, out, outlen);
    return out;
}

int ctl_http(struct ctl *c, const char *method, const char *path, const char *body, long *status,
             struct ctl_buf *resp)
{
    if (!c->curl) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        c->curl = curl_easy_init();
        if (!c->curl) {
            fputs("taskerctl: cannot initialise libcurl\n", stderr);
            return CTL_EFAIL;
        }
    }
    CURL *h = c->curl;
    /* A key is one header value: a line break in it would add headers of its own. */
    for (const char *k = c->api_key; k && *k; k++) {
        if ((unsigned char)*k < 0x20 || *k == 0x7f) {
            fputs("taskerctl: the API key contains a control character\n", stderr);
            return CTL_EUSAGE;
        }
    }
    struct ctl_buf url = {0};
    ctl_buf_printf(&url, "%s%s", c->url, path);
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Accept: application/json");
    if (body)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    struct ctl_buf key = {0};
    if (c->api_key && *c->api_key) {
        /* Bearer carries an API key and, where the daemon accepts them, a JWT alike. */
        ctl_buf_printf(&key, "Authorization: Bearer %s", c->api_key);
        headers = curl_slist_append(headers, key.s);
    }
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.s);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CTL_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, CTL_REQUEST_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "taskerctl");
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    if (key.s) /* the key stays out of freed memory too */
        memset(key.s, 0, key.len);
    ctl_buf_free(&key);
    ctl_buf_free(&url);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
        if (!resp->s)
            ctl_buf_add(resp, "", 0);
        return CTL_OK;
    }
    char u[1100], e[CURL_ERROR_SIZE + 64];
    safe(c->url, u, sizeof u);
    safe(errbuf[0] ? errbuf : curl_easy_strerror(rc), e, sizeof e);
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
        fprintf(stderr, "taskerctl: cannot connect to %s (is tasker-orchestratord running?)\n", u);
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
        fprintf(stderr, "taskerctl: cannot resolve the host of %s\n", u);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        fprintf(stderr, "taskerctl: %s did not answer in time (%s)\n", u, e);
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        fprintf(stderr, "taskerctl: TLS with %s failed: %s\n", u, e);
        break;
    default:
        fprintf(stderr, "taskerctl: request to %s failed: %s\n", u, e);
        break;
    }
    return CTL_ECONNECT;
}

int ctl_api_error(struct ctl *c, long status, const char *body)
{
    json_t *doc = json_loads(body, 0, NULL);
    json_t *err = json_object_get(doc, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    char a[256], b[2048], u[1100];
    struct ctl_buf line = {0};
    int rc = status == 401 || status == 403 ? CTL_EAUTH : CTL_EFAIL;
    if (code && msg) {
        ctl_buf_printf(&line, "error: %s: %s", safe(code, a, sizeof a), safe(msg, b, sizeof b));
        /* Extra fields next to code and message (duplicate_task's task_uuid and state) say what to
         * look at next; show them in the same line. */
        const char *k;
        json_t *v;
        const char *sep = " (";
        json_object_foreach(err, k, v) {
            if (strcmp(k, "code") == 0 || strcmp(k, "message") == 0)
                continue;
            ctl_cell(v, b, sizeof b);
            ctl_buf_printf(&line, "%s%s %s", sep, safe(k, a, sizeof a), b);
            sep = ", ";
        }
        if (*sep == ',')
            ctl_buf_add(&line, ")", 1);
    } else if (status == 413) {
        ctl_buf_printf(&line, "error: HTTP 413: the request is larger than %s accepts (web.max_body_bytes)",
                       safe(c->url, u, sizeof u));
    } else {
        ctl_buf_printf(&line, "error: HTTP %ld from %s, not a tasker-orchestratord answer (wrong --url?)", status,
                       safe(c->url, u, sizeof u));
        rc = CTL_ECONNECT;
    }
    if (c->err_prefix)
        fprintf(stderr, "%s: ", safe(c->err_prefix, u, sizeof u));
    fprintf(stderr, "%s\n", line.s);
    snprintf(c->last_error, sizeof c->last_error, "%s", line.s);
    ctl_buf_free(&line);
    json_decref(doc);
    return rc;
}

int ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **out)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct ctl_buf resp = {0};
    long status = 0;
    int rc = ctl_http(c, method, path, text, &status, &resp);
    free(text);
    *out = NULL;
    if (rc != CTL_OK) {
        ctl_buf_free(&resp);
        return rc;
    }
    if (status < 200 || status > 299) {
        rc = ctl_api_error(c, status, resp.s);
        ctl_buf_free(&resp);
        return rc;
    }
    *out = json_loadb(resp.s, resp.len, 0, NULL);
    ctl_buf_free(&resp);
    if (!*out) {
        char u[1100];
        fprintf(stderr, "error: the answer of %s is not JSON (wrong --url?)\n", safe(c->url, u, sizeof u));
        return CTL_ECONNECT;
    }
    return CTL_OK;
}

void ctl_free(struct ctl *c)
{
    if (c->curl) {
        curl_easy_cleanup(c->curl);
        curl_global_cleanup();
        c->curl = NULL;
    }
}

int ctl_get_emit(struct ctl *c, struct ctl_buf *path, void (*table)(json_t *doc))
{
    json_t *doc;
    int rc = ctl_call(c, "GET", path->s, NULL, &doc);
    ctl_buf_free(path);
    if (rc == CTL_OK)
        ctl_emit(c, doc, table);
    return rc;
}
