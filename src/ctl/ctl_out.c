/* ctl_out.c — taskerctl's output: the daemon's JSON as it came, or tables and fields for people. */
#include "ctl.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CELL_MAX 512

void ctl_print_json(json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

json_t *ctl_get(json_t *v, const char *path)
{
    char key[128];
    while (v && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof key)
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        v = json_object_get(v, key);
        path += n + (dot ? 1 : 0);
    }
    return v;
}

const char *ctl_str(json_t *v, const char *path)
{
    const char *s = json_string_value(ctl_get(v, path));
    return s ? s : "";
}

void ctl_cell(json_t *v, char *out, size_t outlen)
{
    char raw[CELL_MAX];
    if (!v || json_is_null(v)) {
        snprintf(out, outlen, "-");
        return;
    }
    if (json_is_string(v)) {
        /* The server's text reaches a terminal: escape what could move the cursor or forge a line. */
        log_escape(json_string_value(v), false, out, outlen);
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    snprintf(raw, sizeof raw, "%s", s ? s : "?");
    free(s);
    log_escape(raw, false, out, outlen);
}

/* width: the display width of a UTF-8 cell (code points; good enough for names and states). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

void ctl_print_table(json_t *rows, const struct ctl_col *cols, size_t ncols)
{
    size_t n = json_array_size(rows);
    if (n == 0) {
        puts("(none)");
        return;
    }
    char(*cells)[CELL_MAX] = calloc(n * ncols, CELL_MAX);
    size_t *w = calloc(ncols, sizeof *w);
    if (!cells || !w) {
        free(cells);
        free(w);
        return;
    }
    for (size_t j = 0; j < ncols; j++)
        w[j] = width(cols[j].header);
    for (size_t i = 0; i < n; i++) {
        json_t *row = json_array_get(rows, i);
        for (size_t j = 0; j < ncols; j++) {
            char *cell = cells[i * ncols + j];
            if (cols[j].fmt)
                cols[j].fmt(row, cell, CELL_MAX);
            else
                ctl_cell(ctl_get(row, cols[j].path), cell, CELL_MAX);
            if (width(cell) > w[j])
                w[j] = width(cell);
        }
    }
    for (size_t j = 0; j < ncols; j++)
        printf("%s%-*s", j ? "  " : "", j + 1 < ncols ? (int)w[j] : 0, cols[j].header);
    putchar('\n');
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < ncols; j++) {
            const char *cell = cells[i * ncols + j];
            /* %-*s pads by bytes; pad by characters so names with accents line up. */
            printf("%s%s", j ? "  " : "", cell);
            if (j + 1 < ncols)
                for (size_t k = width(cell); k < w[j]; k++)
                    putchar(' ');
        }
        putchar('\n');
    }
    free(cells);
    free(w);
}

void ctl_print_fields(json_t *obj, const char *const *keys)
{
    char cell[CELL_MAX];
    if (keys) {
        size_t kw = 0;
        for (const char *const *k = keys; *k; k++)
            if (strlen(*k) > kw)
                kw = strlen(*k);
        for (const char *const *k = keys; *k; k++) {
            json_t *v = ctl_get(obj, *k);
            if (!v)
                continue;
            ctl_cell(v, cell, sizeof cell);
            printf("%-*s  %s\n", (int)kw + 1, *k, cell);
        }
        return;
    }
    const char *k;
    json_t *v;
    size_t kw = 0;
    json_object_foreach(obj, k, v) if (!json_is_object(v) && !json_is_array(v) && strlen(k) > kw) kw = strlen(k);
    json_object_foreach(obj, k, v) {
        if (json_is_object(v) || json_is_array(v))
            continue;
        ctl_cell(v, cell, sizeof cell);
        printf("%-*s  %s\n", (int)kw + 1, k, cell);
    }
}

void ctl_print_pagination(json_t *doc)
{
    json_t *p = json_object_get(doc, "pagination");
    if (!p)
        return;
    printf("page %lld of %lld (%lld in all)\n", json_integer_value(json_object_get(p, "page")),
           json_integer_value(json_object_get(p, "total_pages")),
           json_integer_value(json_object_get(p, "total_count")));
}

void ctl_emit(struct ctl *c, json_t *doc, void (*table)(json_t *doc))
{
    if (c->output == CTL_OUT_JSON || !table)
        ctl_print_json(doc);
    else
        table(doc);
    json_decref(doc);
}

json_t *ctl_json_arg(const char *name, const char *arg)
{
    json_error_t e;
    json_t *v;
    const char *src = arg;
    if (strcmp(arg, "-") == 0) {
        v = json_loadf(stdin, 0, &e);
        src = "stdin";
    } else if (arg[0] == '@') {
        v = json_load_file(arg + 1, 0, &e);
        src = arg + 1;
    } else {
        v = json_loads(arg, 0, &e);
        src = name;
    }
    if (!v) {
        /* jansson's line/column point at the problem in a file; for inline text the column is enough. */
        fprintf(stderr, "taskerctl: %s: %s:%d:%d: %s\n", name, src, e.line, e.column, e.text);
        return NULL;
    }
    return v;
}
