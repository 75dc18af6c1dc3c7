/* template_file.h — task templates from YAML or JSON text and files, template directories, and
 * the local check of a template; one loader shared by the daemon and taskerctl. */
#ifndef TASKER_TEMPLATE_FILE_H
#define TASKER_TEMPLATE_FILE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Limits of the loader. Nesting counts mappings and sequences (the root is level 1), through
 * aliases too. Nodes counts every value as if aliases were expanded: a few lines of anchors must
 * not grow into a gigabyte when the template is written out as JSON ("billion laughs"). */
#define TEMPLATE_MAX_DEPTH 64
#define TEMPLATE_MAX_NODES 1000000
/* The default bound on one template file (the daemon and taskerctl read whole files). */
#define TEMPLATE_FILE_MAX_BYTES (4 * 1024 * 1024)
/* template_paths: how deep below the given directory it looks, and how many files it returns. */
#define TEMPLATE_DIR_MAX_DEPTH 16
#define TEMPLATE_DIR_MAX_FILES 10000

enum template_format {
    TEMPLATE_FORMAT_AUTO, /* JSON when the first character that is not blank is '{' or '[', else YAML */
    TEMPLATE_FORMAT_YAML,
    TEMPLATE_FORMAT_JSON
};

/* What went wrong, and where. line and column are 1-based; 0 when the error has no position (a
 * file that cannot be read, a directory that cannot be listed). text is the whole message as it
 * is shown: "NAME:LINE:COLUMN: MESSAGE", "NAME: MESSAGE" without a position, or "line L, column
 * C: MESSAGE" when no NAME was given (a request body). */
struct template_error {
    int line;
    int column;
    char message[400];
    char text[700];
};

/* template_format_for_path: by extension — .yaml and .yml are YAML, .json is JSON (ASCII case
 * ignored); anything else AUTO. */
enum template_format template_format_for_path(const char *path);

/* template_format_for_content_type: application/yaml, application/x-yaml, text/yaml and
 * text/x-yaml (parameters such as "; charset=utf-8" ignored, case ignored) are YAML; everything
 * else, and NULL, is JSON (a body without a YAML type is JSON, as it always was). */
enum template_format template_format_for_content_type(const char *content_type);

/* template_parse: text (len bytes, need not be NUL-terminated) as a template: a new reference to
 * a JSON object, or NULL with *err filled. name is used in err->text (a file name, or NULL).
 *
 * YAML (libyaml) is read by the YAML 1.2 core schema: plain null, ~ and the empty value are null;
 * true/false (also True, TRUE, …) booleans; decimal, 0o octal and 0x hex integers; decimals,
 * exponents, .inf and .nan floats (the last two are refused: JSON has no such numbers); every
 * other plain scalar, and every quoted or block scalar, a string. Tags: !!str, !!int, !!float,
 * !!bool, !!null, !!map, !!seq and the non-specific "!" (a string); any other tag is an error.
 * Anchors and aliases work; the merge key "<<: *anchor" (or a list of them) copies the keys the
 * mapping does not set itself. An alias shares its value with its anchor: callers that modify
 * the result must deep-copy it first. Errors, each with line and column: YAML syntax, duplicate
 * keys, keys that are not strings (numbers, booleans, null, mappings, sequences), more than one
 * document, an empty document, unknown anchors, unsupported tags, integers outside 64 bits,
 * nesting deeper than TEMPLATE_MAX_DEPTH, more than TEMPLATE_MAX_NODES values, text that is not
 * UTF-8, and a top level that is not a mapping.
 *
 * JSON (jansson) errors have line and column too: syntax, duplicate keys, nesting deeper than
 * TEMPLATE_MAX_DEPTH, and a top level that is not an object. A leading UTF-8 BOM is skipped. */
json_t *template_parse(const char *text, size_t len, enum template_format fmt, const char *name,
                       struct template_error *err);

/* template_load_file: read path (at most max_bytes; 0 means TEMPLATE_FILE_MAX_BYTES) and parse it
 * in the format its extension names (AUTO otherwise). "-" reads standard input (format AUTO). The
 * error names the file. */
json_t *template_load_file(const char *path, size_t max_bytes, struct template_error *err);

/* template_paths: the template files path stands for. A directory gives every regular file named
 * *.yaml, *.yml or *.json below it (recursively, at most TEMPLATE_DIR_MAX_DEPTH levels, following
 * symbolic links, skipping names that start with '.'), sorted by path (strcmp); anything else
 * gives path itself. On success *out is a malloc'd array of *count malloc'd strings (free with
 * template_paths_free) and the result is 0; -1 with *err filled when path or a directory below it
 * cannot be read, or there are more than TEMPLATE_DIR_MAX_FILES files. */
int template_paths(const char *path, char ***out, size_t *count, struct template_error *err);
void template_paths_free(char **paths, size_t count);

/* template_check: the checks tasker.register_task_template (sql/0210_tasker_templates.sql) makes
 * before it stores anything, in the same order and with the same wording, so the first refusal
 * found here is the one the daemon would answer: the template's name, namespace_name, version,
 * identity_strategy, lifecycle and steps; each step's name, handler, type, dependencies, retry,
 * batch_config and timeout; duplicate step names, unknown dependencies, cycles (one named, as
 * "dependency cycle: a -> b -> a"), and the wiring of decision, deferred_convergence, batchable
 * and batch_worker steps. max_steps is the daemon's templates.max_steps. true when the template
 * passes; false with the message in msg (msglen bytes, NUL-terminated) otherwise. What only the
 * database knows (a version already used by tasks) is not checked here. */
bool template_check(const json_t *tpl, int max_steps, char *msg, size_t msglen);

#endif
