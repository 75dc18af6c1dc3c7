/* worker_dynamic.c — the pure logic of the handlers for dynamic workflows: decision (rules on the
 * task context), batch_plan (cursor ranges), batch_work (a range as a state machine with
 * checkpoints) and batch_aggregate (convergence). No I/O: tests/unit/check_worker.c drives it, and
 * worker_handlers.c adds the timers and the database. Outcome shapes are tasker-core's (docs/worker.md). */
#include "worker.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void wd_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void wd_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- paths ---------------------------------------------------------------------------------- */

const json_t *worker_json_path(const json_t *root, const char *path)
{
    if (!root || !path || !*path)
        return NULL;
    const json_t *cur = root;
    const char *p = path;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len == 0)
            return NULL;
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, p, len);
        } else if (json_is_array(cur)) {
            size_t idx = 0;
            for (size_t i = 0; i < len; i++) {
                if (p[i] < '0' || p[i] > '9' || idx > (SIZE_MAX - 9) / 10)
                    return NULL;
                idx = idx * 10 + (size_t)(p[i] - '0');
            }
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
        if (!cur)
            return NULL;
        if (!dot)
            return cur;
        p = dot + 1;
    }
}

/* ---- decision ------------------------------------------------------------------------------- */

static const char *const wd_ops[] = { "lt", "lte", "gt", "gte", "eq", "ne" };
#define WD_NOPS (sizeof wd_ops / sizeof wd_ops[0])

/* wd_order: compare two numbers (exactly for two integers) or two strings (bytewise); false when
 * they are not comparable (other types, or a number with a string). */
static bool wd_order(const json_t *a, const json_t *b, int *cmp)
{
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        *cmp = (x > y) - (x < y);
        return true;
    }
    if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        *cmp = (x > y) - (x < y);
        return true;
    }
    if (json_is_string(a) && json_is_string(b)) {
        int c = strcmp(json_string_value(a), json_string_value(b));
        *cmp = (c > 0) - (c < 0);
        return true;
    }
    return false;
}

/* wd_equal: numbers by value (1 equals 1.0), anything else as JSON. */
static bool wd_equal(const json_t *a, const json_t *b)
{
    int cmp;
    if (json_is_number(a) && json_is_number(b))
        return wd_order(a, b, &cmp) && cmp == 0;
    return json_equal(a, b);
}

/* wd_op_holds: does "value OP operand" hold? A value that cannot be ordered against the operand
 * (a string against a number, a boolean) satisfies no ordering operator. */
static bool wd_op_holds(size_t op, const json_t *value, const json_t *operand)
{
    int cmp;
    switch (op) {
    case 4:
        return wd_equal(value, operand);
    case 5:
        return !wd_equal(value, operand);
    default:
        if (!wd_order(value, operand, &cmp))
            return false;
        return op == 0 ? cmp < 0 : op == 1 ? cmp <= 0 : op == 2 ? cmp > 0 : cmp >= 0;
    }
}

/* wd_names_valid: an array of non-empty strings. */
static bool wd_names_valid(const json_t *a)
{
    if (!json_is_array(a))
        return false;
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0)
            return false;
    }
    return true;
}

/* wd_rule_check: a rule is {"path": "...", <one or more operators>, "choose": [names]}. */
static bool wd_rule_check(const json_t *rule, size_t idx, char *err, size_t errlen)
{
    if (!json_is_object(rule)) {
        wd_err(err, errlen, "rules[%zu] must be an object", idx);
        return false;
    }
    const char *path = json_string_value(json_object_get(rule, "path"));
    if (!path || !*path) {
        wd_err(err, errlen, "rules[%zu].path must be a non-empty string (a dotted path into the task context)", idx);
        return false;
    }
    if (!wd_names_valid(json_object_get(rule, "choose"))) {
        wd_err(err, errlen, "rules[%zu].choose must be an array of step names ([] = no branches)", idx);
        return false;
    }
    int nops = 0;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)rule, key, v) {
        if (strcmp(key, "path") == 0 || strcmp(key, "choose") == 0)
            continue;
        size_t op = 0;
        while (op < WD_NOPS && strcmp(key, wd_ops[op]) != 0)
            op++;
        if (op == WD_NOPS) {
            wd_err(err, errlen, "rules[%zu] has an unknown key \"%s\" (operators: lt, lte, gt, gte, eq, ne)", idx, key);
            return false;
        }
        if (op < 4 && !json_is_number(v) && !json_is_string(v)) {
            wd_err(err, errlen, "rules[%zu].%s must be a number or a string", idx, key);
            return false;
        }
        nops++;
    }
    if (nops == 0) {
        wd_err(err, errlen, "rules[%zu] has no operator (lt, lte, gt, gte, eq, ne)", idx);
        return false;
    }
    return true;
}

/* wd_rule_matches: every operator of the rule holds for the value at its path (absent: no match). */
static bool wd_rule_matches(const json_t *rule, const json_t *context)
{
    const json_t *value = worker_json_path(context, json_string_value(json_object_get(rule, "path")));
    if (!value)
        return false;
    for (size_t op = 0; op < WD_NOPS; op++) {
        const json_t *operand = json_object_get(rule, wd_ops[op]);
        if (operand && !wd_op_holds(op, value, operand))
            return false;
    }
    return true;
}

bool worker_decision(const json_t *init, const json_t *context, json_t **result, char *err, size_t errlen)
{
    *result = NULL;
    const json_t *rules = json_object_get(init, "rules");
    const json_t *dflt = json_object_get(init, "default");
    if (!json_is_array(rules)) {
        wd_err(err, errlen, "initialization.rules must be an array of rules");
        return false;
    }
    if (dflt && !wd_names_valid(dflt)) {
        wd_err(err, errlen, "initialization.default must be an array of step names ([] = no branches)");
        return false;
    }
    /* Check every rule first, so a broken rule shows on the first run, whatever the context. */
    size_t i;
    const json_t *rule;
    json_array_foreach(rules, i, rule) {
        if (!wd_rule_check(rule, i, err, errlen))
            return false;
    }
    const json_t *chosen = NULL;
    json_t *matched = json_null();
    json_array_foreach(rules, i, rule) {
        if (wd_rule_matches(rule, context)) {
            chosen = json_object_get(rule, "choose");
            json_decref(matched);
            matched = json_integer((json_int_t)i);
            break;
        }
    }
    if (!chosen)
        chosen = dflt; /* NULL: no default, no branches */
    json_t *outcome = chosen && json_array_size(chosen) > 0
                          ? json_pack("{s:s, s:O}", "type", "create_steps", "step_names", chosen)
                          : json_pack("{s:s}", "type", "no_branches");
    *result = json_pack("{s:o, s:o}", "decision_point_outcome", outcome, "matched_rule", matched);
    if (!*result) {
        wd_err(err, errlen, "out of memory");
        return false;
    }
    return true;
}

/* ---- batch_plan ----------------------------------------------------------------------------- */

/* wd_int: an optional integer member within [min, max] (def when absent); false when invalid. */
static bool wd_int(const json_t *obj, const char *key, long long min, long long max, long long def, long long *out,
                   const char *where, char *err, size_t errlen)
{
    const json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return true;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        wd_err(err, errlen, "%s.%s must be an integer from %lld to %lld", where, key, min, max);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

/* wd_total_items: total_items, or the value at total_items_path in the context (an integer, or an
 * array: its length). */
static bool wd_total_items(const json_t *init, const json_t *context, long long *total, char *err, size_t errlen)
{
    const json_t *n = json_object_get(init, "total_items");
    const json_t *path = json_object_get(init, "total_items_path");
    if ((n != NULL) == (path != NULL)) {
        wd_err(err, errlen, "initialization needs exactly one of total_items and total_items_path");
        return false;
    }
    if (n)
        return wd_int(init, "total_items", 0, LLONG_MAX, 0, total, "initialization", err, errlen);
    if (!json_is_string(path)) {
        wd_err(err, errlen, "initialization.total_items_path must be a string (a dotted path into the task context)");
        return false;
    }
    const json_t *v = worker_json_path(context, json_string_value(path));
    if (json_is_array(v)) {
        *total = (long long)json_array_size(v);
    } else if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *total = json_integer_value(v);
    } else {
        wd_err(err, errlen, "the task context's %s must be a non-negative integer or an array (it is %s)",
               json_string_value(path), v ? "another type" : "absent");
        return false;
    }
    return true;
}

bool worker_batch_plan(const json_t *init, const json_t *context, json_t **result, char *err, size_t errlen)
{
    *result = NULL;
    long long total, size, max_workers;
    const char *tmpl = json_string_value(json_object_get(init, "worker_template_name"));
    if (!tmpl || !*tmpl) {
        wd_err(err, errlen, "initialization.worker_template_name must name the batch_worker step");
        return false;
    }
    if (!wd_total_items(init, context, &total, err, errlen) ||
        !wd_int(init, "batch_size", 1, LLONG_MAX, 0, &size, "initialization", err, errlen) ||
        !wd_int(init, "max_workers", 1, WORKER_BATCH_MAX_WORKERS, WORKER_BATCH_DEFAULT_MAX_WORKERS, &max_workers,
                "initialization", err, errlen))
        return false;
    if (!json_object_get(init, "batch_size")) {
        wd_err(err, errlen, "initialization.batch_size is required (items per batch)");
        return false;
    }
    if (total == 0) {
        *result = json_pack("{s:{s:s}}", "batch_processing_outcome", "type", "no_batches");
        goto out;
    }
    long long workers = (total - 1) / size + 1;
    if (workers > max_workers) {
        /* Capped: grow the batches so that max_workers of them still cover every item (the last
         * one shorter), which may need fewer than max_workers. */
        size = (total - 1) / max_workers + 1;
        workers = (total - 1) / size + 1;
    }
    _Static_assert(WORKER_BATCH_MAX_WORKERS < 100000, "batch ids have at most 5 digits");
    /* Ids of one width (sorting by name is sorting by range): 3 digits, more when needed. */
    int width = workers >= 10000 ? 5 : workers >= 1000 ? 4 : 3; /* workers <= WORKER_BATCH_MAX_WORKERS */
    json_t *configs = json_array();
    for (long long i = 0; configs && i < workers; i++) {
        char id[32];
        snprintf(id, sizeof id, "%0*lld", width, i + 1);
        long long start = i * size, end = total - start > size ? start + size : total;
        if (json_array_append_new(configs, json_pack("{s:s, s:I, s:I, s:I}", "batch_id", id, "start_cursor",
                                                     (json_int_t)start, "end_cursor", (json_int_t)end, "batch_size",
                                                     (json_int_t)size)) != 0) {
            json_decref(configs);
            configs = NULL;
        }
    }
    *result = json_pack("{s:{s:s, s:s, s:I, s:o*, s:I}}", "batch_processing_outcome", "type", "create_batches",
                        "worker_template_name", tmpl, "worker_count", (json_int_t)workers, "cursor_configs", configs,
                        "total_items", (json_int_t)total);
out:
    if (!*result) {
        wd_err(err, errlen, "out of memory");
        return false;
    }
    return true;
}

/* ---- batch_work ----------------------------------------------------------------------------- */

/* wd_range_sum: the sum of the integers in [a, b); false when it does not fit in 64 bits. */
static bool wd_range_sum(long long a, long long b, long long *out)
{
    __int128 n = (__int128)b - a, m = (__int128)a + b - 1, lim = (__int128)1 << 63;
    if (n > lim || m > lim || m < -lim)
        return false; /* the product could overflow 128 bits; the sum would not fit anyway */
    __int128 s = m * n / 2; /* one of n and m is even */
    if (s > LLONG_MAX || s < LLONG_MIN)
        return false;
    *out = (long long)s;
    return true;
}

static bool wd_member_of(const json_t *list, const char *s)
{
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v) {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

/* wd_next_checkpoint: the first checkpoint cursor after pos: start + k * interval. */
static long long wd_next_checkpoint(const struct worker_batch_run *r)
{
    if (r->interval <= 0)
        return LLONG_MAX;
    long long k = (r->pos - r->start) / r->interval + 1;
    if (k > (LLONG_MAX - r->start) / r->interval)
        return LLONG_MAX;
    return r->start + k * r->interval;
}

bool worker_batch_setup(struct worker_batch_run *r, const json_t *init, const json_t *inputs, const json_t *checkpoint,
                        int attempt, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->fail_at = -1;
    r->attempt = attempt;
    const json_t *cursor = json_object_get(inputs, "cursor");
    const char *id = json_string_value(json_object_get(cursor, "batch_id"));
    snprintf(r->batch_id, sizeof r->batch_id, "%s", id ? id : "000");
    if (json_is_true(json_object_get(inputs, "is_no_op"))) {
        /* The placeholder of a no_batches outcome: nothing to do, succeed at once. */
        r->no_op = true;
        return true;
    }
    const json_t *start = json_object_get(cursor, "start_cursor"), *end = json_object_get(cursor, "end_cursor");
    if (!json_is_object(cursor) || !id || !json_is_integer(start) || !json_is_integer(end) ||
        json_integer_value(start) > json_integer_value(end)) {
        wd_err(err, errlen, "inputs.cursor must be {\"batch_id\": \"…\", \"start_cursor\": N, \"end_cursor\": M} with "
               "integers N <= M (is this step a batch worker?)");
        return false;
    }
    r->start = r->pos = json_integer_value(start);
    r->end = json_integer_value(end);
    /* The interval: batch_metadata (set by orchestration), else initialization, else never. */
    const json_t *meta = json_object_get(inputs, "batch_metadata");
    const json_t *from = json_object_get(meta, "checkpoint_interval") ? meta : init;
    if (!wd_int(from, "checkpoint_interval", 0, LLONG_MAX, 0, &r->interval,
                from == meta ? "inputs.batch_metadata" : "initialization", err, errlen) ||
        !wd_int(init, "item_ms", 0, WORKER_BATCH_MAX_ITEM_MS, 0, &r->item_ms, "initialization", err, errlen))
        return false;

    /* Resume from the last checkpoint when it lies in the range; otherwise start over. */
    if (checkpoint && !json_is_null(checkpoint)) {
        const json_t *c = json_object_get(checkpoint, "cursor");
        if (json_is_integer(c) && json_integer_value(c) >= r->start && json_integer_value(c) <= r->end) {
            r->pos = r->resumed_from = json_integer_value(c);
            r->resumed = true;
        } else {
            r->checkpoint_ignored = true;
        }
    }
    /* The sum so far: the checkpoint's accumulated_results.sum, else recomputed (items are numbers). */
    const json_t *acc = json_object_get(json_object_get(checkpoint, "accumulated_results"), "sum");
    if (r->resumed && json_is_integer(acc))
        r->sum = json_integer_value(acc);
    else if (!wd_range_sum(r->start, r->pos, &r->sum)) {
        wd_err(err, errlen, "the sum of the range overflows 64 bits");
        return false;
    }
    r->next_checkpoint = wd_next_checkpoint(r);

    /* Injected failures: on the batches listed (all when no list) at fail_at_item (at once when
     * not given), until succeed_on_attempt. */
    const json_t *only = json_object_get(init, "fail_on_batch");
    const json_t *at = json_object_get(init, "fail_at_item");
    long long succeed_on;
    if (only && !wd_names_valid(only)) {
        wd_err(err, errlen, "initialization.fail_on_batch must be an array of batch ids");
        return false;
    }
    if (at && !json_is_integer(at)) {
        wd_err(err, errlen, "initialization.fail_at_item must be an integer (an item's cursor)");
        return false;
    }
    if (!wd_int(init, "succeed_on_attempt", 1, INT_MAX, LLONG_MAX, &succeed_on, "initialization", err, errlen))
        return false;
    r->fail_permanently = json_is_true(json_object_get(init, "fail_permanently"));
    bool targeted = only ? wd_member_of(only, r->batch_id) : at != NULL;
    if (targeted && attempt < succeed_on) {
        if (!at)
            r->fail_at = r->pos;
        else if (json_integer_value(at) >= r->pos && json_integer_value(at) < r->end)
            r->fail_at = json_integer_value(at);
    }
    return true;
}

enum worker_batch_action worker_batch_next(const struct worker_batch_run *r, long long *count)
{
    *count = 0;
    if (r->no_op)
        return WORKER_BATCH_DONE;
    /* A checkpoint due at the failing item goes first, so the next attempt resumes right there. */
    if (r->pos == r->next_checkpoint && r->pos < r->end)
        return WORKER_BATCH_CHECKPOINT;
    if (r->pos == r->fail_at)
        return WORKER_BATCH_FAIL;
    if (r->pos >= r->end)
        return WORKER_BATCH_DONE;
    long long stop = r->end;
    if (r->next_checkpoint < stop)
        stop = r->next_checkpoint;
    if (r->fail_at > r->pos && r->fail_at < stop)
        stop = r->fail_at;
    *count = r->item_ms > 0 ? 1 : stop - r->pos;
    return WORKER_BATCH_WORK;
}

bool worker_batch_advance(struct worker_batch_run *r, long long count)
{
    long long part;
    if (!wd_range_sum(r->pos, r->pos + count, &part) || __builtin_add_overflow(r->sum, part, &r->sum))
        return false;
    r->pos += count;
    r->processed_now += count;
    return true;
}

json_t *worker_batch_checkpoint_doc(const struct worker_batch_run *r)
{
    return json_pack("{s:I, s:I, s:{s:I}}", "cursor", (json_int_t)r->pos, "items_processed",
                     (json_int_t)(r->pos - r->start), "accumulated_results", "sum", (json_int_t)r->sum);
}

void worker_batch_checkpointed(struct worker_batch_run *r, bool saved)
{
    if (saved)
        r->checkpoints++;
    r->next_checkpoint = wd_next_checkpoint(r);
}

json_t *worker_batch_result(const struct worker_batch_run *r)
{
    json_t *res = json_pack("{s:s, s:I, s:I, s:I, s:i}", "batch_id", r->batch_id, "items_processed",
                            (json_int_t)(r->pos - r->start), "sum", (json_int_t)r->sum, "processed_this_attempt",
                            (json_int_t)r->processed_now, "checkpoints", r->checkpoints);
    if (!res)
        return NULL;
    json_object_set_new(res, "resumed_from", r->resumed ? json_integer(r->resumed_from) : json_null());
    if (r->no_op)
        json_object_set_new(res, "no_op", json_true());
    if (r->checkpoint_ignored)
        json_object_set_new(res, "checkpoint_ignored", json_true());
    return res;
}

void worker_batch_fail(const struct worker_batch_run *r, struct worker_outcome *out)
{
    worker_outcome_failure(out, !r->fail_permanently, "batch %s failed at item %lld as configured (attempt %d)",
                           r->batch_id, r->pos, r->attempt);
    json_object_set_new(out->error, "batch_id", json_string(r->batch_id));
    json_object_set_new(out->error, "failed_at_item", json_integer(r->pos));
    json_object_set_new(out->error, "items_processed", json_integer(r->pos - r->start));
}

/* ---- batch_aggregate ------------------------------------------------------------------------ */

/* wd_no_batches: some dependency's result holds a no_batches outcome (the batchable step's). */
static bool wd_no_batches(const json_t *dependencies)
{
    const char *name;
    const json_t *res;
    json_object_foreach((json_t *)dependencies, name, res) {
        const char *type = json_string_value(json_object_get(json_object_get(res, "batch_processing_outcome"), "type"));
        if (type && strcmp(type, "no_batches") == 0)
            return true;
    }
    return false;
}

bool worker_batch_aggregate(const json_t *init, const json_t *dependencies, json_t **result, char *err, size_t errlen)
{
    *result = NULL;
    const char *tmpl = json_string_value(json_object_get(init, "worker_template_name"));
    if (!tmpl || !*tmpl) {
        wd_err(err, errlen, "initialization.worker_template_name must name the batch_worker step");
        return false;
    }
    long long batches = 0, items = 0, sum = 0, failed = 0;
    if (!wd_no_batches(dependencies)) {
        size_t tl = strlen(tmpl);
        const char *name;
        const json_t *res;
        json_object_foreach((json_t *)dependencies, name, res) {
            if (strncmp(name, tmpl, tl) != 0 || name[tl] != '_')
                continue;
            batches++;
            if (json_object_get(res, "error")) {
                failed++;
                continue;
            }
            const json_t *s = json_object_get(res, "sum"), *n = json_object_get(res, "items_processed");
            if ((json_is_integer(s) && __builtin_add_overflow(sum, json_integer_value(s), &sum)) ||
                (json_is_integer(n) && __builtin_add_overflow(items, json_integer_value(n), &items))) {
                wd_err(err, errlen, "the totals overflow 64 bits");
                return false;
            }
        }
        if (batches == 0) {
            wd_err(err, errlen, "no dependency result is named %s_* and none holds a no_batches outcome (is "
                   "worker_template_name right, and does this step depend on the batch workers?)", tmpl);
            return false;
        }
    }
    *result = json_pack("{s:I, s:I, s:I, s:I}", "batches", (json_int_t)batches, "items_processed", (json_int_t)items,
                        "sum", (json_int_t)sum, "failed_batches", (json_int_t)failed);
    if (!*result) {
        wd_err(err, errlen, "out of memory");
        return false;
    }
    return true;
}
