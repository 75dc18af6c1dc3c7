/* template_file.c — read task templates from YAML (libyaml, YAML 1.2 core schema) or JSON
 * (jansson) into one JSON object, and list the template files of a directory. */
#include "template_file.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* ---- errors ---- */

static void set_error(struct template_error *err, const char *name, int line, int column, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void set_error(struct template_error *err, const char *name, int line, int column, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    err->line = line;
    err->column = column;
    if (name && line > 0)
        snprintf(err->text, sizeof err->text, "%s:%d:%d: %s", name, line, column, err->message);
    else if (name)
        snprintf(err->text, sizeof err->text, "%s: %s", name, err->message);
    else if (line > 0)
        snprintf(err->text, sizeof err->text, "line %d, column %d: %s", line, column, err->message);
    else
        snprintf(err->text, sizeof err->text, "%s", err->message);
}

/* ---- formats ---- */

static bool ends_with_ci(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcasecmp(s + n - m, suffix) == 0;
}

enum template_format template_format_for_path(const char *path)
{
    if (ends_with_ci(path, ".yaml") || ends_with_ci(path, ".yml"))
        return TEMPLATE_FORMAT_YAML;
    if (ends_with_ci(path, ".json"))
        return TEMPLATE_FORMAT_JSON;
    return TEMPLATE_FORMAT_AUTO;
}

enum template_format template_format_for_content_type(const char *ct)
{
    static const char *const yaml_types[] = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"};
    if (!ct)
        return TEMPLATE_FORMAT_JSON;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, "; \t");
    for (size_t i = 0; i < sizeof yaml_types / sizeof yaml_types[0]; i++)
        if (strlen(yaml_types[i]) == n && strncasecmp(ct, yaml_types[i], n) == 0)
            return TEMPLATE_FORMAT_YAML;
    return TEMPLATE_FORMAT_JSON;
}

/* ---- YAML ---- */

#define TAG_PREFIX "tag:yaml.org,2002:"

struct anchor {
    char *name;
    json_t *value;
    size_t nodes;  /* values in it, aliases expanded */
    int height;    /* levels of mappings/sequences in it (0 for a scalar) */
};

struct yp {
    yaml_parser_t parser;
    const char *text; /* the input, for the position of a reader error (a byte offset) */
    size_t len;
    const char *name;
    struct template_error *err;
    bool failed;
    struct anchor *anchors;
    size_t n_anchors, cap_anchors;
    size_t nodes;
};

/* What a parsed node reports to its parent. */
struct sub {
    int height;
};

static void yp_fail(struct yp *p, yaml_mark_t mark, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void yp_fail(struct yp *p, yaml_mark_t mark, const char *fmt, ...)
{
    if (p->failed)
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    p->failed = true;
    set_error(p->err, p->name, (int)mark.line + 1, (int)mark.column + 1, "%s", msg);
}

/* next_event: the parser's next event, or false with the syntax error set. */
static bool next_event(struct yp *p, yaml_event_t *ev)
{
    if (yaml_parser_parse(&p->parser, ev))
        return true;
    yaml_mark_t mark = p->parser.problem ? p->parser.problem_mark : p->parser.context_mark;
    if (p->parser.error == YAML_READER_ERROR) {
        /* Encoding errors come with a byte offset only. */
        mark.line = mark.column = 0;
        for (size_t i = 0; i < p->parser.problem_offset && i < p->len; i++) {
            if (p->text[i] == '\n') {
                mark.line++;
                mark.column = 0;
            } else if (((unsigned char)p->text[i] & 0xC0) != 0x80) {
                mark.column++;
            }
        }
    }
    const char *problem = p->parser.problem ? p->parser.problem : "invalid YAML";
    if (p->parser.context)
        yp_fail(p, mark, "%s %s", p->parser.context, problem);
    else
        yp_fail(p, mark, "%s", problem);
    return false;
}

static bool count_nodes(struct yp *p, size_t n, yaml_mark_t mark)
{
    p->nodes += n;
    if (p->nodes > TEMPLATE_MAX_NODES) {
        yp_fail(p, mark, "more than %d values (aliases counted as expanded)", TEMPLATE_MAX_NODES);
        return false;
    }
    return true;
}

static bool add_anchor(struct yp *p, const yaml_char_t *name, json_t *value, size_t nodes, int height)
{
    if (!name)
        return true;
    if (p->n_anchors == p->cap_anchors) {
        size_t cap = p->cap_anchors ? p->cap_anchors * 2 : 16;
        struct anchor *a = realloc(p->anchors, cap * sizeof *a);
        if (!a)
            return false;
        p->anchors = a;
        p->cap_anchors = cap;
    }
    struct anchor *a = &p->anchors[p->n_anchors];
    a->name = strdup((const char *)name);
    if (!a->name)
        return false;
    a->value = json_incref(value);
    a->nodes = nodes;
    a->height = height;
    p->n_anchors++;
    return true;
}

/* find_anchor: the latest definition of name (YAML lets a later anchor reuse a name). */
static const struct anchor *find_anchor(const struct yp *p, const char *name)
{
    for (size_t i = p->n_anchors; i-- > 0;)
        if (strcmp(p->anchors[i].name, name) == 0)
            return &p->anchors[i];
    return NULL;
}

static bool all_digits(const char *s, const char *set)
{
    if (!*s)
        return false;
    return strspn(s, set) == strlen(s);
}

/* The YAML 1.2 core schema's patterns. */
static bool is_core_null(const char *s)
{
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int core_bool(const char *s)
{
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return 1;
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return 0;
    return -1;
}

static bool is_core_int(const char *s)
{
    if (!strncmp(s, "0o", 2))
        return all_digits(s + 2, "01234567");
    if (!strncmp(s, "0x", 2))
        return all_digits(s + 2, "0123456789abcdefABCDEF");
    if (*s == '-' || *s == '+')
        s++;
    return all_digits(s, "0123456789");
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static bool is_core_decimal(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    size_t lead = strspn(s, "0123456789");
    s += lead;
    if (*s == '.') {
        s++;
        size_t frac = strspn(s, "0123456789");
        if (!lead && !frac)
            return false;
        s += frac;
    } else if (!lead) {
        return false;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '-' || *s == '+')
            s++;
        size_t exp = strspn(s, "0123456789");
        if (!exp)
            return false;
        s += exp;
    }
    return !*s;
}

static bool is_core_special_float(const char *s)
{
    if (*s == '-' || *s == '+')
        s++;
    return !strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF") || !strcmp(s, ".nan") ||
           !strcmp(s, ".NaN") || !strcmp(s, ".NAN");
}

static json_t *make_int(struct yp *p, const char *s, yaml_mark_t mark)
{
    errno = 0;
    char *end;
    long long v;
    if (!strncmp(s, "0o", 2))
        v = strtoll(s + 2, &end, 8);
    else if (!strncmp(s, "0x", 2))
        v = strtoll(s + 2, &end, 16);
    else
        v = strtoll(s, &end, 10);
    if (errno == ERANGE) {
        yp_fail(p, mark, "integer %s is out of range (64 bits)", s);
        return NULL;
    }
    return json_integer(v);
}

static json_t *make_float(struct yp *p, const char *s, yaml_mark_t mark)
{
    if (is_core_special_float(s)) {
        yp_fail(p, mark, "%s cannot be written as a JSON number", s);
        return NULL;
    }
    errno = 0;
    double d = strtod(s, NULL);
    if (!isfinite(d)) {
        yp_fail(p, mark, "number %s is out of range", s);
        return NULL;
    }
    return json_real(d);
}

static json_t *make_string(struct yp *p, const yaml_event_t *ev)
{
    json_t *v = json_stringn((const char *)ev->data.scalar.value, ev->data.scalar.length);
    if (!v)
        yp_fail(p, ev->start_mark, "a string is not valid UTF-8");
    return v;
}

/* scalar: a scalar event as a JSON value by its tag, its style and the core schema. */
static json_t *scalar(struct yp *p, const yaml_event_t *ev)
{
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *s = (const char *)ev->data.scalar.value;
    yaml_mark_t mark = ev->start_mark;
    bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (strlen(s) != ev->data.scalar.length && !(tag && !strcmp(tag, TAG_PREFIX "str")) &&
        !(tag && !strcmp(tag, "!")) && plain) {
        yp_fail(p, mark, "a NUL character in a plain scalar");
        return NULL;
    }
    if (tag && strcmp(tag, "!") != 0) {
        if (strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) != 0) {
            yp_fail(p, mark, "unsupported tag %s", tag);
            return NULL;
        }
        const char *t = tag + strlen(TAG_PREFIX);
        if (!strcmp(t, "str"))
            return make_string(p, ev);
        if (!strcmp(t, "null")) {
            if (is_core_null(s))
                return json_null();
            yp_fail(p, mark, "\"%s\" is not a !!null", s);
            return NULL;
        }
        if (!strcmp(t, "bool")) {
            int b = core_bool(s);
            if (b >= 0)
                return json_boolean(b);
            yp_fail(p, mark, "\"%s\" is not a !!bool (true or false)", s);
            return NULL;
        }
        if (!strcmp(t, "int")) {
            if (is_core_int(s))
                return make_int(p, s, mark);
            yp_fail(p, mark, "\"%s\" is not a !!int", s);
            return NULL;
        }
        if (!strcmp(t, "float")) {
            if (is_core_decimal(s) || is_core_special_float(s))
                return make_float(p, s, mark);
            yp_fail(p, mark, "\"%s\" is not a !!float", s);
            return NULL;
        }
        yp_fail(p, mark, "unsupported tag !!%s on a scalar", t);
        return NULL;
    }
    if (tag || !plain)
        return make_string(p, ev);
    if (is_core_null(s))
        return json_null();
    int b = core_bool(s);
    if (b >= 0)
        return json_boolean(b);
    if (is_core_int(s))
        return make_int(p, s, mark);
    if (is_core_decimal(s) || is_core_special_float(s))
        return make_float(p, s, mark);
    return make_string(p, ev);
}

/* collection_tag_ok: a mapping or sequence may carry its own standard tag or "!". */
static bool collection_tag_ok(struct yp *p, const yaml_char_t *tag, const char *want, yaml_mark_t mark)
{
    if (!tag || !strcmp((const char *)tag, "!") || !strcmp((const char *)tag, want))
        return true;
    yp_fail(p, mark, "unsupported tag %s", (const char *)tag);
    return false;
}

static json_t *parse_node(struct yp *p, yaml_event_t *ev, int depth, struct sub *info);

/* merge_into: the keys of src (a mapping, or a sequence of mappings, earlier ones first) that
 * obj does not have yet; the YAML merge key. */
static bool merge_into(struct yp *p, json_t *obj, json_t *src, yaml_mark_t mark)
{
    if (json_is_object(src)) {
        const char *k;
        json_t *v;
        json_object_foreach(src, k, v) {
            if (!json_object_get(obj, k) && json_object_set(obj, k, v) != 0)
                return false;
        }
        return true;
    }
    if (json_is_array(src)) {
        size_t i;
        json_t *v;
        json_array_foreach(src, i, v) {
            if (!json_is_object(v)) {
                yp_fail(p, mark, "a merge key (<<) takes a mapping or a list of mappings");
                return false;
            }
            if (!merge_into(p, obj, v, mark))
                return false;
        }
        return true;
    }
    yp_fail(p, mark, "a merge key (<<) takes a mapping or a list of mappings");
    return false;
}

/* mapping_key: the key event of a mapping entry as a string; *merge set for a plain "<<". */
static char *mapping_key(struct yp *p, yaml_event_t *ev, bool *merge)
{
    *merge = false;
    if (ev->type == YAML_SCALAR_EVENT) {
        if (ev->data.scalar.anchor) {
            /* An anchored key could be aliased as a value; keep it simple and refuse. */
            yp_fail(p, ev->start_mark, "anchors on keys are not supported");
            return NULL;
        }
        json_t *k = scalar(p, ev);
        if (!k)
            return NULL;
        if (!json_is_string(k)) {
            yp_fail(p, ev->start_mark, "key %s is not a string (quote it)", (const char *)ev->data.scalar.value);
            json_decref(k);
            return NULL;
        }
        if (strlen(json_string_value(k)) != json_string_length(k)) {
            yp_fail(p, ev->start_mark, "a key holds a NUL character");
            json_decref(k);
            return NULL;
        }
        *merge = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev->data.scalar.tag &&
                 !strcmp(json_string_value(k), "<<");
        char *s = strdup(json_string_value(k));
        json_decref(k);
        return s;
    }
    if (ev->type == YAML_ALIAS_EVENT) {
        const struct anchor *a = find_anchor(p, (const char *)ev->data.alias.anchor);
        if (a && json_is_string(a->value) && strlen(json_string_value(a->value)) == json_string_length(a->value))
            return strdup(json_string_value(a->value));
        yp_fail(p, ev->start_mark, a ? "key *%s is not a string" : "unknown anchor *%s", (const char *)ev->data.alias.anchor);
        return NULL;
    }
    yp_fail(p, ev->start_mark, "a key is a %s, not a string", ev->type == YAML_MAPPING_START_EVENT ? "mapping" : "sequence");
    return NULL;
}

static json_t *parse_mapping(struct yp *p, yaml_event_t *start, int depth, struct sub *info)
{
    json_t *obj = json_object();
    json_t *merges = NULL;
    yaml_mark_t merge_mark = start->start_mark;
    if (!obj)
        return NULL;
    for (;;) {
        yaml_event_t kev, vev;
        if (!next_event(p, &kev))
            goto fail;
        if (kev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&kev);
            break;
        }
        bool merge;
        char *key = mapping_key(p, &kev, &merge);
        yaml_mark_t kmark = kev.start_mark;
        if (key && (merge ? merges != NULL : json_object_get(obj, key) != NULL))
            yp_fail(p, kmark, "duplicate key \"%s\"", key);
        if (p->failed || !key) {
            free(key);
            yaml_event_delete(&kev);
            goto fail;
        }
        /* A key that is a mapping or sequence was refused above, so kev needs no consuming. */
        yaml_event_delete(&kev);
        if (!next_event(p, &vev)) {
            free(key);
            goto fail;
        }
        struct sub child = {0};
        json_t *v = parse_node(p, &vev, depth + 1, &child);
        if (!v) {
            free(key);
            goto fail;
        }
        if (child.height > info->height)
            info->height = child.height;
        int rc;
        if (merge) {
            merges = v;
            merge_mark = kmark;
            rc = 0;
        } else {
            rc = json_object_set_new(obj, key, v);
        }
        free(key);
        if (rc != 0)
            goto fail;
    }
    /* Merged keys after the mapping's own: its own win, and are not duplicates of merged ones. */
    if (merges) {
        bool ok = merge_into(p, obj, merges, merge_mark);
        json_decref(merges);
        merges = NULL;
        if (!ok)
            goto fail;
    }
    return obj;
fail:
    json_decref(merges);
    json_decref(obj);
    return NULL;
}

static json_t *parse_sequence(struct yp *p, int depth, struct sub *info)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    for (;;) {
        yaml_event_t ev;
        if (!next_event(p, &ev))
            goto fail;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return arr;
        }
        struct sub child = {0};
        json_t *v = parse_node(p, &ev, depth + 1, &child);
        if (!v || json_array_append_new(arr, v) != 0)
            goto fail;
        if (child.height > info->height)
            info->height = child.height;
    }
fail:
    json_decref(arr);
    return NULL;
}

/* parse_node: the value ev starts (ev is consumed); depth is the level a mapping or sequence
 * starting here would have. */
static json_t *parse_node(struct yp *p, yaml_event_t *ev, int depth, struct sub *info)
{
    json_t *v = NULL;
    yaml_mark_t mark = ev->start_mark;
    size_t nodes_before = p->nodes;
    info->height = 0;
    switch (ev->type) {
    case YAML_ALIAS_EVENT: {
        const struct anchor *a = find_anchor(p, (const char *)ev->data.alias.anchor);
        if (!a)
            yp_fail(p, mark, "unknown anchor *%s", (const char *)ev->data.alias.anchor);
        else if (depth - 1 + a->height > TEMPLATE_MAX_DEPTH)
            yp_fail(p, mark, "nesting deeper than %d levels (through alias *%s)", TEMPLATE_MAX_DEPTH,
                    (const char *)ev->data.alias.anchor);
        else if (count_nodes(p, a->nodes, mark)) {
            v = json_incref(a->value);
            info->height = a->height;
        }
        yaml_event_delete(ev);
        return v;
    }
    case YAML_SCALAR_EVENT:
        if (count_nodes(p, 1, mark))
            v = scalar(p, ev);
        if (v && !add_anchor(p, ev->data.scalar.anchor, v, 1, 0)) {
            json_decref(v);
            v = NULL;
        }
        yaml_event_delete(ev);
        return v;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        bool map = ev->type == YAML_MAPPING_START_EVENT;
        yaml_char_t *anchor = map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
        yaml_char_t *tag = map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
        char *anchor_copy = anchor ? strdup((const char *)anchor) : NULL;
        bool ok = (!anchor || anchor_copy) &&
                  collection_tag_ok(p, tag, map ? TAG_PREFIX "map" : TAG_PREFIX "seq", mark);
        if (ok && depth > TEMPLATE_MAX_DEPTH) {
            yp_fail(p, mark, "nesting deeper than %d levels", TEMPLATE_MAX_DEPTH);
            ok = false;
        }
        ok = ok && count_nodes(p, 1, mark);
        if (ok)
            v = map ? parse_mapping(p, ev, depth, info) : parse_sequence(p, depth, info);
        if (v && !add_anchor(p, (const yaml_char_t *)anchor_copy, v, p->nodes - nodes_before, info->height + 1)) {
            json_decref(v);
            v = NULL;
        }
        free(anchor_copy);
        yaml_event_delete(ev);
        if (v)
            info->height += 1;
        return v;
    }
    default:
        yp_fail(p, mark, "unexpected YAML event");
        yaml_event_delete(ev);
        return NULL;
    }
}

static json_t *parse_yaml(const char *text, size_t len, const char *name, struct template_error *err)
{
    struct yp p = {.name = name, .err = err, .text = text, .len = len};
    json_t *root = NULL;
    yaml_event_t ev;
    if (!yaml_parser_initialize(&p.parser)) {
        set_error(err, name, 0, 0, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&p.parser, (const unsigned char *)text, len);
    if (!next_event(&p, &ev)) /* STREAM_START */
        goto out;
    yaml_event_delete(&ev);
    if (!next_event(&p, &ev))
        goto out;
    if (ev.type != YAML_DOCUMENT_START_EVENT) {
        yp_fail(&p, ev.start_mark, "no document (the file is empty)");
        yaml_event_delete(&ev);
        goto out;
    }
    yaml_event_delete(&ev);
    if (!next_event(&p, &ev))
        goto out;
    yaml_mark_t root_mark = ev.start_mark;
    bool is_map = ev.type == YAML_MAPPING_START_EVENT;
    bool is_empty = ev.type == YAML_SCALAR_EVENT && ev.data.scalar.length == 0 &&
                    ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    struct sub info = {0};
    root = parse_node(&p, &ev, 1, &info);
    if (!root)
        goto out;
    if (!is_map || !json_is_object(root)) {
        yp_fail(&p, root_mark, is_empty ? "no document (the file is empty)" : "a template must be a mapping (a JSON object)");
        goto out;
    }
    if (!next_event(&p, &ev)) /* DOCUMENT_END */
        goto out;
    yaml_event_delete(&ev);
    if (!next_event(&p, &ev))
        goto out;
    if (ev.type == YAML_DOCUMENT_START_EVENT)
        yp_fail(&p, ev.start_mark, "more than one document (a file holds one template)");
    yaml_event_delete(&ev);
out:
    if (p.failed && root) {
        json_decref(root);
        root = NULL;
    }
    if (!root && !p.failed)
        set_error(err, name, 0, 0, "out of memory");
    for (size_t i = 0; i < p.n_anchors; i++) {
        free(p.anchors[i].name);
        json_decref(p.anchors[i].value);
    }
    free(p.anchors);
    yaml_parser_delete(&p.parser);
    return root;
}

/* ---- JSON ---- */

/* json_too_deep: jansson nests up to 2048 levels; ours is TEMPLATE_MAX_DEPTH, found by scanning
 * the text so the error has a position. Strings are skipped. */
static bool json_too_deep(const char *text, size_t len, int *line, int *column)
{
    int depth = 0, ln = 1, col = 1;
    bool in_string = false, escaped = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > TEMPLATE_MAX_DEPTH) {
                *line = ln;
                *column = col;
                return true;
            }
        } else if (c == '}' || c == ']') {
            depth--;
        }
        if (c == '\n') {
            ln++;
            col = 1;
        } else if (((unsigned char)c & 0xC0) != 0x80) {
            col++;
        }
    }
    return false;
}

static json_t *parse_json(const char *text, size_t len, const char *name, struct template_error *err)
{
    int line, column;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) {
        text += 3;
        len -= 3;
    }
    if (json_too_deep(text, len, &line, &column)) {
        set_error(err, name, line, column, "nesting deeper than %d levels", TEMPLATE_MAX_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        set_error(err, name, jerr.line > 0 ? jerr.line : 1, jerr.column > 0 ? jerr.column : 1, "%s", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        size_t skip = strspn(text, " \t\r\n");
        set_error(err, name, 1, (int)skip + 1, "a template must be a JSON object");
        json_decref(root);
        return NULL;
    }
    return root;
}

json_t *template_parse(const char *text, size_t len, enum template_format fmt, const char *name,
                       struct template_error *err)
{
    if (fmt == TEMPLATE_FORMAT_AUTO) {
        size_t i = 0;
        if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
            i = 3;
        while (i < len && isspace((unsigned char)text[i]))
            i++;
        fmt = i < len && (text[i] == '{' || text[i] == '[') ? TEMPLATE_FORMAT_JSON : TEMPLATE_FORMAT_YAML;
    }
    return fmt == TEMPLATE_FORMAT_JSON ? parse_json(text, len, name, err) : parse_yaml(text, len, name, err);
}

/* ---- files ---- */

/* read_all: the whole of fd, at most max bytes; NULL with errno (EFBIG when too large). */
static char *read_all(int fd, size_t max, size_t *len)
{
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    for (;;) {
        if (n == cap) {
            if (cap > max) {
                free(buf);
                errno = EFBIG;
                return NULL;
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            errno = e;
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > max) {
            free(buf);
            errno = EFBIG;
            return NULL;
        }
    }
    *len = n;
    return buf;
}

json_t *template_load_file(const char *path, size_t max_bytes, struct template_error *err)
{
    if (!max_bytes)
        max_bytes = TEMPLATE_FILE_MAX_BYTES;
    bool std_in = strcmp(path, "-") == 0;
    const char *name = std_in ? "<stdin>" : path;
    int fd = std_in ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_error(err, name, 0, 0, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (!std_in && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        set_error(err, name, 0, 0, "not a regular file");
        close(fd);
        return NULL;
    }
    size_t len = 0;
    char *text = read_all(fd, max_bytes, &len);
    int e = errno;
    if (!std_in)
        close(fd);
    if (!text) {
        if (e == EFBIG)
            set_error(err, name, 0, 0, "larger than %zu bytes", max_bytes);
        else
            set_error(err, name, 0, 0, "cannot read: %s", strerror(e));
        return NULL;
    }
    json_t *t = template_parse(text, len, std_in ? TEMPLATE_FORMAT_AUTO : template_format_for_path(path), name, err);
    free(text);
    return t;
}

/* ---- directories ---- */

struct path_list {
    char **v;
    size_t n, cap;
};

static bool list_add(struct path_list *l, const char *path)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return false;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strdup(path)))
        return false;
    l->n++;
    return true;
}

static int walk(const char *dir, int depth, struct path_list *l, struct template_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        set_error(err, dir, 0, 0, "cannot read directory: %s", strerror(errno));
        return -1;
    }
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue; /* ., .., and hidden files such as editors' swap files */
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path) {
            set_error(err, dir, 0, 0, "a path below it is too long");
            rc = -1;
            break;
        }
        struct stat st;
        if (stat(path, &st) != 0) {
            set_error(err, path, 0, 0, "cannot stat: %s", strerror(errno));
            rc = -1;
        } else if (S_ISDIR(st.st_mode)) {
            if (depth >= TEMPLATE_DIR_MAX_DEPTH) {
                set_error(err, path, 0, 0, "directories nested deeper than %d levels", TEMPLATE_DIR_MAX_DEPTH);
                rc = -1;
            } else {
                rc = walk(path, depth + 1, l, err);
            }
        } else if (S_ISREG(st.st_mode) && template_format_for_path(path) != TEMPLATE_FORMAT_AUTO) {
            if (l->n >= TEMPLATE_DIR_MAX_FILES) {
                set_error(err, dir, 0, 0, "more than %d template files", TEMPLATE_DIR_MAX_FILES);
                rc = -1;
            } else if (!list_add(l, path)) {
                set_error(err, dir, 0, 0, "out of memory");
                rc = -1;
            }
        }
    }
    closedir(d);
    return rc;
}

static int cmp_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int template_paths(const char *path, char ***out, size_t *count, struct template_error *err)
{
    struct path_list l = {0};
    struct stat st;
    *out = NULL;
    *count = 0;
    if (stat(path, &st) != 0) {
        set_error(err, path, 0, 0, "cannot stat: %s", strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        /* "dir/" and "dir" give the same paths. */
        char root[4096];
        snprintf(root, sizeof root, "%s", path);
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
            root[--n] = '\0';
        if (walk(root, 1, &l, err) != 0) {
            template_paths_free(l.v, l.n);
            return -1;
        }
        if (l.n > 1)
            qsort(l.v, l.n, sizeof *l.v, cmp_paths);
    } else if (!list_add(&l, path)) {
        set_error(err, path, 0, 0, "out of memory");
        return -1;
    }
    *out = l.v;
    *count = l.n;
    return 0;
}

void template_paths_free(char **paths, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(paths[i]);
    free(paths);
}
