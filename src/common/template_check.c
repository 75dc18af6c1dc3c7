/* template_check.c — the local check of a task template: the refusals of
 * tasker.register_task_template (sql/0210_tasker_templates.sql), in its order and its words, so a
 * file can be checked without a daemon (taskerctl template validate) and says what the daemon
 * would. Keep the two in step: tests/unit/check_template_file.c and tests/db/74_template_dir.sh
 * compare them on the same bad templates (tests/templates/bad/). */
#include "template_file.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ck {
    char *msg;
    size_t msglen;
};

static bool fail(struct ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool fail(struct ck *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, c->msglen, fmt, ap);
    va_end(ap);
    return false;
}

/* ---- how PostgreSQL shows things ---- */

/* next_cp: the code point at *s (UTF-8), advancing *s; invalid bytes come out as themselves. */
static uint32_t next_cp(const char **s)
{
    const unsigned char *p = (const unsigned char *)*s;
    uint32_t c = p[0];
    int n = c < 0x80 ? 0 : (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 0;
    if (n)
        c &= 0x3F >> n;
    int i = 1;
    for (; i <= n && (p[i] & 0xC0) == 0x80; i++)
        c = (c << 6) | (p[i] & 0x3F);
    if (i <= n) { /* truncated sequence: one byte */
        c = p[0];
        i = 1;
    }
    *s += i;
    return c;
}

/* chars: length() of PostgreSQL, in characters. */
static size_t chars(const char *s)
{
    size_t n = 0;
    while (*s) {
        next_cp(&s);
        n++;
    }
    return n;
}

/* The characters tasker.has_control_chars refuses, and those tasker.quoted_name escapes beyond
 * what to_json does. */
static bool is_direction(uint32_t c)
{
    return c == 0x200E || c == 0x200F || (c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069);
}

static bool has_control_chars(const char *s)
{
    while (*s) {
        uint32_t c = next_cp(&s);
        if ((c >= 0x01 && c <= 0x1F) || (c >= 0x7F && c <= 0x9F) || is_direction(c))
            return true;
    }
    return false;
}

/* quoted_name: tasker.quoted_name — s as a JSON string (to_json's escapes), with DEL, C1 controls
 * and direction marks as \uXXXX as well. */
static const char *quoted_name(const char *s, char *buf, size_t len)
{
    size_t o = 0;
#define PUT(...) do { if (o < len) o += (size_t)snprintf(buf + o, len - o, __VA_ARGS__); } while (0)
    PUT("\"");
    while (*s) {
        const char *start = s;
        uint32_t c = next_cp(&s);
        switch (c) {
        case '"': PUT("\\\""); break;
        case '\\': PUT("\\\\"); break;
        case '\b': PUT("\\b"); break;
        case '\f': PUT("\\f"); break;
        case '\n': PUT("\\n"); break;
        case '\r': PUT("\\r"); break;
        case '\t': PUT("\\t"); break;
        default:
            if (c < 0x20 || (c >= 0x7F && c <= 0x9F) || is_direction(c))
                PUT("\\u%04x", (unsigned)c);
            else
                PUT("%.*s", (int)(s - start), start);
        }
    }
    PUT("\"");
#undef PUT
    if (o >= len && len > 0)
        buf[len - 1] = '\0';
    return buf;
}

/* shown: a JSON value as PostgreSQL prints a jsonb in a message ("%" of a jsonb). */
static const char *shown(const json_t *v, char *buf, size_t len)
{
    char *s = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
    snprintf(buf, len, "%s", s ? s : "");
    free(s);
    return buf;
}

/* text_of: ->> of a member — a string's value, NULL for null or absent, else the JSON text
 * (in buf). */
static const char *text_of(const json_t *v, char *buf, size_t len)
{
    if (!v || json_is_null(v))
        return NULL;
    if (json_is_string(v))
        return json_string_value(v);
    return shown(v, buf, len);
}

static const json_t *member(const json_t *obj, const char *key)
{
    return json_is_object(obj) ? json_object_get(obj, key) : NULL;
}

/* tasker.json_text: absent or null is fine; anything but a string is refused. */
static bool json_text_ok(struct ck *c, const json_t *obj, const char *key, const char *where)
{
    const json_t *v = member(obj, key);
    char b[256];
    if (!v || json_is_null(v) || json_is_string(v))
        return true;
    return fail(c, "%s: %s must be a string (got %s)", where, key, shown(v, b, sizeof b));
}

/* tasker.json_int: absent or null is fine; else an integer of at most 9 digits within bounds. */
static bool json_int_ok(struct ck *c, const json_t *obj, const char *key, long min, long max, const char *where)
{
    const json_t *v = member(obj, key);
    char b[256];
    if (!v || json_is_null(v))
        return true;
    if (json_is_integer(v)) {
        json_int_t n = json_integer_value(v);
        if (n >= -999999999 && n <= 999999999 && n >= min && n <= max)
            return true;
    }
    return fail(c, "%s: %s must be an integer between %ld and %ld (got %s)", where, key, min, max,
                shown(v, b, sizeof b));
}

/* template_error: the prefix tasker.template_error writes. */
static const char *tpl_label(const char *name, char *buf, size_t len)
{
    if (!name)
        return "(unnamed)";
    if (has_control_chars(name))
        return quoted_name(name, buf, len);
    return name;
}

static bool matches_namespace(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 29 || s[0] < 'a' || s[0] > 'z')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

static bool matches_version(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return false;
    static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if (!strchr(alnum, s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!strchr(alnum, s[i]) && !strchr(".+_-", s[i]))
            return false;
    return true;
}

/* tasker.step_type_of */
static const char *step_type_of(const json_t *step)
{
    char b1[64], b2[64];
    const char *t = text_of(member(step, "type"), b1, sizeof b1);
    if (!t)
        t = text_of(member(step, "step_type"), b2, sizeof b2);
    if (!t || !strcmp(t, "standard"))
        return "standard";
    if (!strcmp(t, "decision") || !strcmp(t, "decision_point"))
        return "decision";
    if (!strcmp(t, "deferred_convergence") || !strcmp(t, "deferred"))
        return "deferred_convergence";
    if (!strcmp(t, "batchable"))
        return "batchable";
    if (!strcmp(t, "batch_worker"))
        return "batch_worker";
    return NULL;
}

/* ---- the steps ---- */

struct step {
    const char *name;
    const char *type;
    const json_t *src;
    char **deps; /* as written, in order (an element that is not a string: its JSON text) */
    size_t n_deps;
};

struct by_name {
    const char *name;
    size_t pos;
};

struct edge {
    size_t from, to;
};

struct graph {
    struct step *steps;
    size_t n;
    struct by_name *index; /* sorted by name */
    struct edge *edges;    /* distinct, sorted by (from, to) */
    size_t n_edges;
    size_t *first;         /* first[i]..first[i+1]-1: edges from step i */
};

static int cmp_by_name(const void *a, const void *b)
{
    const struct by_name *x = a, *y = b;
    int r = strcmp(x->name, y->name);
    return r ? r : (x->pos > y->pos) - (x->pos < y->pos);
}

static int cmp_edge(const void *a, const void *b)
{
    const struct edge *x = a, *y = b;
    if (x->from != y->from)
        return (x->from > y->from) - (x->from < y->from);
    return (x->to > y->to) - (x->to < y->to);
}

/* find: the position of the step named name (the first, if duplicated), or SIZE_MAX. */
static size_t find(const struct graph *g, const char *name)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(g->index[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g->n && !strcmp(g->index[lo].name, name) ? g->index[lo].pos : SIZE_MAX;
}

static void graph_free(struct graph *g)
{
    for (size_t i = 0; i < g->n; i++) {
        for (size_t j = 0; j < g->steps[i].n_deps; j++)
            free(g->steps[i].deps[j]);
        free(g->steps[i].deps);
    }
    free(g->steps);
    free(g->index);
    free(g->edges);
    free(g->first);
}

/* check_step: one step's shape, defaults and bounds, as the SQL's loop over steps. */
static bool check_step(struct ck *c, const char *tname, size_t i, const json_t *step, struct step *out)
{
    char where[600], b[256], b2[256];
    snprintf(where, sizeof where, "template %s: step #%zu", tname, i + 1);
    if (!json_is_object(step))
        return fail(c, "%s: must be an object", where);
    const json_t *name = member(step, "name");
    if (!json_is_string(name) || chars(json_string_value(name)) < 1 || chars(json_string_value(name)) > 128)
        return fail(c, "%s: name is required (a string of 1 to 128 characters)", where);
    if (has_control_chars(json_string_value(name)))
        return fail(c, "%s: name %s contains control or direction characters", where,
                    quoted_name(json_string_value(name), b, sizeof b));
    out->name = json_string_value(name);
    out->src = step;
    snprintf(where, sizeof where, "template %s: step %s", tname, out->name);
    const json_t *handler = member(step, "handler");
    const json_t *callable = member(handler, "callable");
    if (!json_is_object(handler) || !json_is_string(callable) || chars(json_string_value(callable)) < 1 ||
        chars(json_string_value(callable)) > 1024)
        return fail(c, "%s: handler.callable is required (a non-empty string)", where);
    const json_t *init = member(handler, "initialization");
    if (init && !json_is_null(init) && !json_is_object(init))
        return fail(c, "%s: handler.initialization must be an object", where);
    out->type = step_type_of(step);
    if (!out->type) {
        const json_t *t = member(step, "type") ? member(step, "type") : member(step, "step_type");
        return fail(c, "%s: unknown step type %s (standard, decision, deferred_convergence, batchable or batch_worker)",
                    where, shown(t, b, sizeof b));
    }
    /* coalesce(dependencies, depends_on): a "dependencies" key, even null, hides depends_on. */
    const json_t *deps = member(step, "dependencies") ? member(step, "dependencies") : member(step, "depends_on");
    if (deps && !json_is_null(deps)) {
        if (!json_is_array(deps))
            return fail(c, "%s: dependencies must be an array of step names", where);
        out->deps = calloc(json_array_size(deps) + 1, sizeof *out->deps);
        if (!out->deps)
            return fail(c, "out of memory");
        size_t k;
        const json_t *d;
        json_array_foreach(deps, k, d) {
            const char *dn = text_of(d, b, sizeof b);
            if (!dn)
                return fail(c, "%s: dependencies must be step names", where);
            if (!strcmp(dn, out->name))
                return fail(c, "%s: depends on itself", where);
            if (!(out->deps[out->n_deps] = strdup(dn)))
                return fail(c, "out of memory");
            out->n_deps++;
        }
    }
    const json_t *retry = member(step, "retry");
    if (retry && !json_is_null(retry) && !json_is_object(retry))
        return fail(c, "%s: retry must be an object", where);
    const json_t *retryable = member(retry, "retryable");
    if (retryable && !json_is_boolean(retryable) && !json_is_null(retryable))
        return fail(c, "%s: retry.retryable must be true or false", where);
    const char *backoff = text_of(member(retry, "backoff"), b, sizeof b);
    if (backoff && strcmp(backoff, "none") && strcmp(backoff, "linear") && strcmp(backoff, "exponential") &&
        strcmp(backoff, "fibonacci"))
        return fail(c, "%s: retry.backoff must be none, linear, exponential or fibonacci (got %s)", where,
                    shown(member(retry, "backoff"), b2, sizeof b2));
    char sub[700];
    snprintf(sub, sizeof sub, "%s: retry", where);
    if (!json_int_ok(c, retry, "max_attempts", 0, 100, sub))
        return false;
    const json_t *batch = member(step, "batch_config");
    if (!strcmp(out->type, "batch_worker")) {
        if (batch && !json_is_null(batch) && !json_is_object(batch))
            return fail(c, "%s: batch_config must be an object", where);
        const char *fs = text_of(member(batch, "failure_strategy"), b, sizeof b);
        if (fs && strcmp(fs, "continue_on_failure") && strcmp(fs, "fail_fast") && strcmp(fs, "isolate"))
            return fail(c, "%s: batch_config.failure_strategy must be continue_on_failure, fail_fast or isolate (got %s)",
                        where, shown(member(batch, "failure_strategy"), b2, sizeof b2));
        snprintf(sub, sizeof sub, "%s: batch_config", where);
        if (!json_int_ok(c, batch, "batch_size", 1, 100000, sub) || !json_int_ok(c, batch, "parallelism", 1, 1000, sub) ||
            !json_text_ok(c, batch, "cursor_field", sub) ||
            !json_int_ok(c, batch, "checkpoint_interval", 0, 100000000, sub))
            return false;
    } else if (batch && !json_is_null(batch)) {
        return fail(c, "%s: batch_config belongs on a batch_worker step (this one is %s)", where, out->type);
    }
    snprintf(sub, sizeof sub, "%s: handler", where);
    if (!json_text_ok(c, handler, "method", sub) || !json_text_ok(c, handler, "resolver", sub))
        return false;
    snprintf(sub, sizeof sub, "%s: retry", where);
    if (!json_int_ok(c, retry, "backoff_base_ms", 0, 3600000, sub) ||
        !json_int_ok(c, retry, "max_backoff_ms", 0, 3600000, sub))
        return false;
    return json_int_ok(c, step, "timeout_seconds", 1, 86400 * 7, where);
}

/* check_graph: names unique, dependencies known, no cycle, dynamic types wired as they must be. */
static bool check_graph(struct ck *c, const char *label, struct graph *g)
{
    size_t n = g->n;
    g->index = malloc(n * sizeof *g->index);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += g->steps[i].n_deps;
    g->edges = malloc((total + 1) * sizeof *g->edges);
    g->first = calloc(n + 1, sizeof *g->first);
    size_t *indeg = calloc(n, sizeof *indeg);
    size_t *queue = malloc(n * sizeof *queue);
    size_t *batchable_parents = calloc(n, sizeof *batchable_parents);
    size_t *worker_children = calloc(n, sizeof *worker_children);
    size_t *cycle = malloc((n + 1) * sizeof *cycle);
    bool ok = false;
    if (!g->index || !g->edges || !g->first || !indeg || !queue || !batchable_parents || !worker_children || !cycle) {
        fail(c, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        g->index[i] = (struct by_name){g->steps[i].name, i};
    qsort(g->index, n, sizeof *g->index, cmp_by_name);
    for (size_t i = 0; i + 1 < n; i++)
        if (!strcmp(g->index[i].name, g->index[i + 1].name)) {
            fail(c, "template %s: step %s: duplicate step name", label, g->index[i].name);
            goto out;
        }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < g->steps[i].n_deps; j++) {
            size_t p = find(g, g->steps[i].deps[j]);
            if (p == SIZE_MAX) {
                fail(c, "template %s: step %s depends on unknown step %s", label, g->steps[i].name, g->steps[i].deps[j]);
                goto out;
            }
            g->edges[g->n_edges++] = (struct edge){p, i};
        }
    qsort(g->edges, g->n_edges, sizeof *g->edges, cmp_edge);
    size_t m = 0;
    for (size_t e = 0; e < g->n_edges; e++)
        if (!m || cmp_edge(&g->edges[m - 1], &g->edges[e]))
            g->edges[m++] = g->edges[e];
    g->n_edges = m;
    for (size_t e = 0; e < m; e++) {
        g->first[g->edges[e].from + 1]++;
        indeg[g->edges[e].to]++;
        if (!strcmp(g->steps[g->edges[e].from].type, "batchable"))
            batchable_parents[g->edges[e].to]++;
        if (!strcmp(g->steps[g->edges[e].to].type, "batch_worker"))
            worker_children[g->edges[e].from]++;
    }
    for (size_t i = 1; i <= n; i++)
        g->first[i] += g->first[i - 1];

    /* Kahn's algorithm; what is left over lies on or behind a cycle. */
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < n; i++)
        if (!indeg[i])
            queue[tail++] = i;
    while (head < tail) {
        size_t i = queue[head++];
        for (size_t e = g->first[i]; e < g->first[i + 1]; e++)
            if (--indeg[g->edges[e].to] == 0)
                queue[tail++] = g->edges[e].to;
    }
    if (tail < n) {
        /* Name one cycle as the SQL does: from the first left-over step, follow the left-over
         * parent with the smallest name until a step repeats. */
        size_t i = 0, len = 0;
        while (!indeg[i])
            i++;
        cycle[len++] = i;
        for (;;) {
            size_t best = SIZE_MAX;
            for (size_t d = 0; d < g->steps[i].n_deps; d++) {
                size_t p = find(g, g->steps[i].deps[d]);
                if (indeg[p] && (best == SIZE_MAX || strcmp(g->steps[p].name, g->steps[best].name) < 0))
                    best = p;
            }
            i = best;
            size_t seen = 0;
            while (seen < len && cycle[seen] != i)
                seen++;
            if (seen < len) {
                char text[2048];
                size_t o = 0;
                for (size_t k = seen; k <= len; k++) {
                    const char *nm = g->steps[k < len ? cycle[k] : i].name;
                    o += (size_t)snprintf(text + o, o < sizeof text ? sizeof text - o : 0, "%s%s", k > seen ? " -> " : "", nm);
                    if (o >= sizeof text)
                        break;
                }
                fail(c, "template %s: dependency cycle: %s (each step depends on the next)", label, text);
                goto out;
            }
            cycle[len++] = i;
        }
    }

    for (size_t i = 0; i < n; i++) {
        const struct step *s = &g->steps[i];
        if (!strcmp(s->type, "batch_worker") && batchable_parents[i] != 1) {
            fail(c, "template %s: step %s: a batch_worker needs exactly one batchable step among its dependencies (it has %zu)",
                 label, s->name, batchable_parents[i]);
            goto out;
        }
        if (!strcmp(s->type, "batchable") && !worker_children[i]) {
            fail(c, "template %s: step %s: a batchable step needs a batch_worker step that depends on it", label, s->name);
            goto out;
        }
        const json_t *init = member(member(s->src, "handler"), "initialization");
        const json_t *wtn = member(init, "worker_template_name");
        if (!strcmp(s->type, "batchable") && wtn) {
            char b[256];
            const char *want = text_of(wtn, b, sizeof b);
            size_t w = want ? find(g, want) : SIZE_MAX;
            bool found = false;
            /* Any step of that name (the names are unique by now) that is a batch_worker child. */
            if (w != SIZE_MAX && !strcmp(g->steps[w].type, "batch_worker"))
                for (size_t d = 0; d < g->steps[w].n_deps && !found; d++)
                    found = !strcmp(g->steps[w].deps[d], s->name);
            if (!found) {
                char b2[256];
                fail(c, "template %s: step %s: worker_template_name %s is not a batch_worker step that depends on it",
                     label, s->name, shown(wtn, b2, sizeof b2));
                goto out;
            }
        }
        if (!strcmp(s->type, "decision") && g->first[i + 1] == g->first[i]) {
            fail(c, "template %s: step %s: a decision step needs at least one step that depends on it (its branches)",
                 label, s->name);
            goto out;
        }
        if (!strcmp(s->type, "deferred_convergence") && !s->n_deps) {
            fail(c, "template %s: step %s: a deferred_convergence step needs dependencies (the steps it may converge)",
                 label, s->name);
            goto out;
        }
    }
    ok = true;
out:
    free(indeg);
    free(queue);
    free(batchable_parents);
    free(worker_children);
    free(cycle);
    return ok;
}

bool template_check(const json_t *tpl, int max_steps, char *msg, size_t msglen)
{
    struct ck c = {msg, msglen};
    char lb[600], b[256];
    if (msglen)
        msg[0] = '\0';
    if (!json_is_object(tpl))
        return fail(&c, "a template must be a JSON object");
    if (!json_text_ok(&c, tpl, "name", "template"))
        return false;
    const char *name = json_string_value(member(tpl, "name"));
    if (!name || chars(name) < 1 || chars(name) > 255)
        return fail(&c, "template %s: name is required (1 to 255 characters)", tpl_label(name, lb, sizeof lb));
    if (has_control_chars(name))
        return fail(&c, "template %s: name contains control or direction characters", quoted_name(name, lb, sizeof lb));
    char where[600];
    snprintf(where, sizeof where, "template %s", name);
    if (!json_text_ok(&c, tpl, "namespace_name", where))
        return false;
    const char *ns = json_string_value(member(tpl, "namespace_name"));
    if (!ns)
        return fail(&c, "template %s: namespace_name is required", name);
    if (!matches_namespace(ns))
        return fail(&c, "template %s: namespace_name %s must match ^[a-z][a-z0-9_]{0,28}$", name,
                    quoted_name(ns, b, sizeof b));
    if (!json_text_ok(&c, tpl, "version", where))
        return false;
    const char *version = json_string_value(member(tpl, "version"));
    if (version && !matches_version(version))
        return fail(&c, "template %s: version %s is not a valid version string", name, quoted_name(version, b, sizeof b));
    if (!json_text_ok(&c, tpl, "identity_strategy", where))
        return false;
    const char *strategy = json_string_value(member(tpl, "identity_strategy"));
    if (strategy && strcmp(strategy, "strict") && strcmp(strategy, "caller_provided") && strcmp(strategy, "always_unique"))
        return fail(&c, "template %s: identity_strategy must be strict, caller_provided or always_unique (got %s)", name,
                    strategy);
    const json_t *lifecycle = member(tpl, "lifecycle");
    if (lifecycle && !json_is_object(lifecycle) && !json_is_null(lifecycle))
        return fail(&c, "template %s: lifecycle must be an object", name);
    const json_t *steps = member(tpl, "steps");
    if (!json_is_array(steps) || json_array_size(steps) == 0)
        return fail(&c, "template %s: steps must be a non-empty array", name);
    if (json_array_size(steps) > (size_t)max_steps)
        return fail(&c, "template %s: %zu steps: a template may have at most %d (templates.max_steps)", name,
                    json_array_size(steps), max_steps);

    struct graph g = {0};
    g.steps = calloc(json_array_size(steps), sizeof *g.steps);
    if (!g.steps)
        return fail(&c, "out of memory");
    bool ok = true;
    size_t i;
    const json_t *step;
    json_array_foreach(steps, i, step) {
        g.n = i + 1; /* so graph_free frees what this step allocated */
        if (!(ok = check_step(&c, name, i, step, &g.steps[i])))
            break;
    }
    if (ok)
        ok = check_graph(&c, name, &g);
    graph_free(&g);
    return ok;
}
