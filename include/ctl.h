/* ctl.h — taskerctl's shared pieces: the client context, argument parsing, HTTP calls, output. */
#ifndef TASKER_CTL_H
#define TASKER_CTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Exit codes (docs/cli.md, taskerctl(1)); scripts key on them, so never renumber. */
enum ctl_exit {
    CTL_OK = 0,             /* done */
    CTL_EFAIL = 1,          /* the daemon refused (an API error) or a local check failed */
    CTL_EUSAGE = 2,         /* bad command line: nothing was sent */
    CTL_ECONNECT = 3,       /* the daemon could not be reached, or what answered is not one */
    CTL_EAUTH = 4,          /* 401 or 403: no key, an unknown key, or a key without the permission */
    CTL_ETASK_ERROR = 5,    /* task wait: the task ended in error */
    CTL_ETASK_CANCELLED = 6,/* task wait: the task was cancelled */
    CTL_ETASK_RESOLVED = 7, /* task wait: the task was resolved manually */
    CTL_ETASK_BLOCKED = 8,  /* task wait: the task is blocked_by_failures (needs an operator) */
    CTL_ETIMEOUT = 9,       /* task wait: --timeout passed first */
    CTL_HELP = -1           /* internal: --help was printed; exit 0 */
};

enum ctl_output { CTL_OUT_TABLE, CTL_OUT_JSON };

struct ctl {
    char url[1024];          /* base URL, no trailing '/' */
    const char *api_key;     /* NULL = none */
    enum ctl_output output;
    const char *argv0_dir;   /* the directory taskerctl runs from (to find tasker-orchestratord) */
    void *curl;              /* one CURL handle, so polls reuse the connection */
    const char *err_prefix;  /* put before an API error line (the file being registered), or NULL */
    char last_error[1024];   /* the last API error line, without prefix (for JSON results) */
};

struct ctl_cmd;
typedef int (*ctl_run_fn)(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv);

/* One command: `taskerctl GROUP NAME ARGS…`. */
struct ctl_cmd {
    const char *group;
    const char *name;
    const char *synopsis; /* the arguments, e.g. "UUID [--reason TEXT]" */
    const char *summary;  /* one line */
    const char *options;  /* its own options, one per line ("  --x V   what"), or NULL */
    ctl_run_fn run;
};

/* ---- arguments (ctl_args.c) ---------------------------------------------------------------------- */

/* One option of a command. Exactly one of value / flag is set. Repeated options: the last wins,
 * unless list is set (then every value is appended, up to list_max). */
struct ctl_opt {
    const char *name;     /* long name without "--" */
    char short_name;      /* 0 = none */
    const char **value;   /* takes a value */
    bool *flag;           /* takes none */
    const char **list;    /* repeatable value */
    int *list_n;
    int list_max;
};

#define CTL_POS_MAX 8

/* ctl_parse: parse argv (argv[0] is the command name) against opts (terminated by {0}) and the
 * options every command takes (--url, --api-key, --output, --help). Positionals go to pos (their
 * count to *npos), between min_pos and max_pos of them. Returns CTL_OK, CTL_HELP after printing
 * the command's help on stdout, or CTL_EUSAGE after printing the problem and the usage on stderr. */
int ctl_parse(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv, const struct ctl_opt *opts,
              const char **pos, int *npos, int min_pos, int max_pos);

/* ctl_usage_error: "taskerctl: <message>" + the command's usage on stderr; returns CTL_EUSAGE. */
int ctl_usage_error(const struct ctl_cmd *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ctl_cmd_usage: "usage: taskerctl GROUP NAME SYNOPSIS" (and the options when full) to fp. */
void ctl_cmd_usage(const struct ctl_cmd *cmd, bool full, FILE *fp);

/* ctl_set_url / ctl_set_output: validate and store a global option; false after printing why. */
bool ctl_set_url(struct ctl *c, const char *url);
bool ctl_set_output(struct ctl *c, const char *name);

/* ctl_parse_int: a whole decimal number in [lo, hi]; false otherwise. */
bool ctl_parse_int(const char *s, long lo, long hi, long *out);

/* ---- HTTP (ctl_http.c) --------------------------------------------------------------------------- */

/* A growing byte buffer, always NUL-terminated. */
struct ctl_buf {
    char *s;
    size_t len, cap;
};
void ctl_buf_add(struct ctl_buf *b, const char *data, size_t n);
void ctl_buf_printf(struct ctl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ctl_buf_free(struct ctl_buf *b);

/* ctl_buf_seg: append s percent-encoded as one path segment or query value. */
void ctl_buf_seg(struct ctl_buf *b, const char *s);
/* ctl_buf_query: append "?key=value" or "&key=value" (value encoded); nothing when value is NULL or "". */
void ctl_buf_query(struct ctl_buf *b, const char *key, const char *value);

/* ctl_http: one request to c->url + path with body (NULL: none). On a transport failure prints
 * one line and returns CTL_ECONNECT; otherwise CTL_OK with *status and the response in *resp. */
int ctl_http(struct ctl *c, const char *method, const char *path, const char *body, long *status,
             struct ctl_buf *resp);

/* ctl_call: ctl_http that wants a JSON document back. A 2xx JSON answer → CTL_OK with *out (owned
 * by the caller). An API error is printed as one line ("error: <code>: <message>") and returns
 * CTL_EFAIL (CTL_EAUTH for 401/403); an answer that is not the daemon's JSON returns CTL_ECONNECT. */
int ctl_call(struct ctl *c, const char *method, const char *path, json_t *body, json_t **out);

/* ctl_get_emit: GET path (freed here) and show the document through ctl_emit: the body of most
 * read commands. */
int ctl_get_emit(struct ctl *c, struct ctl_buf *path, void (*table)(json_t *doc));

/* ctl_api_error: print the line for a non-2xx answer (body: its text); returns the exit code. */
int ctl_api_error(struct ctl *c, long status, const char *body);

/* ctl_free: release the HTTP handle. */
void ctl_free(struct ctl *c);

/* ---- output (ctl_out.c) -------------------------------------------------------------------------- */

/* A table column: header and a dotted path into each row ("execution_context.total_steps"), or
 * fmt, which writes the cell itself. */
struct ctl_col {
    const char *header;
    const char *path;
    void (*fmt)(json_t *row, char *out, size_t outlen);
};

/* ctl_print_json: v, indented, keys in the order the daemon sent them, then a newline. */
void ctl_print_json(json_t *v);
/* ctl_print_table: one line per element of rows under a header line; "(none)" when empty. */
void ctl_print_table(json_t *rows, const struct ctl_col *cols, size_t ncols);
/* ctl_print_fields: "key: value" lines for the listed keys of obj (all scalar keys when NULL). */
void ctl_print_fields(json_t *obj, const char *const *keys);
/* ctl_cell: the text of v for a table (strings raw but with control characters escaped, null "-",
 * objects and arrays compact JSON). */
void ctl_cell(json_t *v, char *out, size_t outlen);
/* ctl_get: the value at a dotted path in v, or NULL. */
json_t *ctl_get(json_t *v, const char *path);
/* ctl_str: the string at a dotted path, or "" (never NULL). */
const char *ctl_str(json_t *v, const char *path);
/* ctl_print_pagination: "page P of N (T in all)" under a list, in table mode. */
void ctl_print_pagination(json_t *doc);

/* ctl_emit: the document as JSON (json mode) or through table (table mode); frees doc. */
void ctl_emit(struct ctl *c, json_t *doc, void (*table)(json_t *doc));

/* ctl_json_arg: parse a JSON argument given inline, as @FILE or as "-" (stdin); name is the option
 * for messages. NULL after printing a usage-style error. */
json_t *ctl_json_arg(const char *name, const char *arg);

/* ---- rendering (ctl_render.c) -------------------------------------------------------------------- */

/* ctl_render_dot: lay out the DOT text with Graphviz and render it in format ("svg", "png", or
 * "dot": the text as given) into *out (malloc'd, *outlen bytes). False with err on a DOT syntax
 * error, an unknown format or a layout failure. */
bool ctl_render_dot(const char *dot, size_t dotlen, const char *format, char **out, size_t *outlen, char *err,
                    size_t errlen);

/* ---- commands (one file per group) ---------------------------------------------------------------- */

extern const struct ctl_cmd ctl_task_cmds[];
extern const struct ctl_cmd ctl_step_cmds[];
extern const struct ctl_cmd ctl_template_cmds[];
extern const struct ctl_cmd ctl_dlq_cmds[];
extern const struct ctl_cmd ctl_system_cmds[];
extern const struct ctl_cmd ctl_config_cmds[];
extern const struct ctl_cmd ctl_db_cmds[];

/* ctl_visualize: GET path (a /graph endpoint), render it as --format into -o FILE or stdout. */
int ctl_visualize(struct ctl *c, const char *path, const char *format, const char *outfile);

/* ctl_step_uuid: STEP as a step uuid of TASK: a uuid is taken as it is, a name is looked up among
 * the task's steps (a batch worker's name too). CTL_OK, or the error (printed). */
int ctl_step_uuid(struct ctl *c, const char *task, const char *step, char *out, size_t outlen);

/* ctl_is_uuid: 36 characters 8-4-4-4-12 of hex digits. */
bool ctl_is_uuid(const char *s);

#endif
