/* check_template_file.c — the template loader (include/template_file.h): YAML by the 1.2 core
 * schema with anchors and merge keys, JSON, each refusal with its line:column, directory listing,
 * and template_check's verdicts on the shared bad templates of tests/templates/bad (which
 * tests/db/74_template_dir.sh posts to the daemon and compares with the database's). */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "suites.h"
#include "template_file.h"

/* The unit tests run from the top of the repository (make check-unit). */
#define TEMPLATES_DIR "tests/templates"

static json_t *yaml(const char *text, struct template_error *err)
{
    return template_parse(text, strlen(text), TEMPLATE_FORMAT_YAML, "t.yaml", err);
}

/* refused: text must fail to parse with exactly this "t.yaml:LINE:COLUMN: message" prefix. */
static void refused(const char *text, enum template_format fmt, const char *want)
{
    struct template_error err;
    json_t *v = template_parse(text, strlen(text), fmt, "t.yaml", &err);
    ck_assert_msg(v == NULL, "accepted: %s", text);
    ck_assert_msg(strncmp(err.text, want, strlen(want)) == 0, "got \"%s\", want \"%s…\"", err.text, want);
}

START_TEST(core_schema_types)
{
    struct template_error err;
    json_t *v = yaml("name: t\n"
                     "version: 1.0.0\n"        /* not a number: a string */
                     "short: 1.0\n"            /* a float */
                     "count: 42\n"
                     "neg: -7\n"
                     "octal: 0o17\n"
                     "hex: 0x1F\n"
                     "exp: 1e3\n"
                     "yes_word: yes\n"         /* YAML 1.1's boolean; a string in 1.2 */
                     "on: off\n"
                     "t: True\n"
                     "f: false\n"
                     "n1: ~\n"
                     "n2:\n"
                     "n3: null\n"
                     "quoted_true: \"true\"\n"
                     "quoted_num: '42'\n"
                     "tagged: !!str 12\n"
                     "bang: ! 12\n"
                     "block: |\n  two\n  lines\n",
                     &err);
    ck_assert_msg(v != NULL, "%s", err.text);
    ck_assert_str_eq(json_string_value(json_object_get(v, "version")), "1.0.0");
    ck_assert(json_is_real(json_object_get(v, "short")));
    ck_assert_int_eq(json_integer_value(json_object_get(v, "count")), 42);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "neg")), -7);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "octal")), 15);
    ck_assert_int_eq(json_integer_value(json_object_get(v, "hex")), 31);
    ck_assert(json_real_value(json_object_get(v, "exp")) == 1000.0);
    ck_assert_str_eq(json_string_value(json_object_get(v, "yes_word")), "yes");
    ck_assert_str_eq(json_string_value(json_object_get(v, "on")), "off");
    ck_assert(json_is_true(json_object_get(v, "t")));
    ck_assert(json_is_false(json_object_get(v, "f")));
    ck_assert(json_is_null(json_object_get(v, "n1")));
    ck_assert(json_is_null(json_object_get(v, "n2")));
    ck_assert(json_is_null(json_object_get(v, "n3")));
    ck_assert_str_eq(json_string_value(json_object_get(v, "quoted_true")), "true");
    ck_assert_str_eq(json_string_value(json_object_get(v, "quoted_num")), "42");
    ck_assert_str_eq(json_string_value(json_object_get(v, "tagged")), "12");
    ck_assert_str_eq(json_string_value(json_object_get(v, "bang")), "12");
    ck_assert_str_eq(json_string_value(json_object_get(v, "block")), "two\nlines\n");
    json_decref(v);
}
END_TEST

START_TEST(anchors_aliases_merge)
{
    struct template_error err;
    json_t *v = yaml("base: &b {handler: {callable: noop}, retry: &r {max_attempts: 4}}\n"
                     "steps:\n"
                     "  - <<: *b\n"
                     "    name: one\n"
                     "    retry: {max_attempts: 9}\n" /* the mapping's own key wins over the merged one */
                     "  - {<<: [*b], name: two}\n"
                     "  - {name: three, retry: *r}\n",
                     &err);
    ck_assert_msg(v != NULL, "%s", err.text);
    json_t *steps = json_object_get(v, "steps");
    ck_assert_int_eq(json_array_size(steps), 3);
    json_t *one = json_array_get(steps, 0), *two = json_array_get(steps, 1), *three = json_array_get(steps, 2);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(one, "handler"), "callable")), "noop");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(one, "retry"), "max_attempts")), 9);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(two, "retry"), "max_attempts")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(three, "retry"), "max_attempts")), 4);
    ck_assert_ptr_null(json_object_get(one, "<<"));
    json_decref(v);
}
END_TEST

START_TEST(yaml_errors_have_positions)
{
    refused("name: a\nsteps: []\nname: b\n", TEMPLATE_FORMAT_YAML, "t.yaml:3:1: duplicate key \"name\"");
    refused("a: 1\nb:\n  x: 1\n  x: 2\n", TEMPLATE_FORMAT_YAML, "t.yaml:4:3: duplicate key \"x\"");
    refused("a: 1\n12: x\n", TEMPLATE_FORMAT_YAML, "t.yaml:2:1: key 12 is not a string");
    refused("a:\n  true: x\n", TEMPLATE_FORMAT_YAML, "t.yaml:2:3: key true is not a string");
    refused("a: 1\n~: x\n", TEMPLATE_FORMAT_YAML, "t.yaml:2:1: key ~ is not a string");
    refused("a: 1\n? [x, y]\n: z\n", TEMPLATE_FORMAT_YAML, "t.yaml:2:3: a key is a sequence, not a string");
    refused("a: 1\n? {x: y}\n: z\n", TEMPLATE_FORMAT_YAML, "t.yaml:2:3: a key is a mapping, not a string");
    refused("name: a\n---\nname: b\n", TEMPLATE_FORMAT_YAML, "t.yaml:2:1: more than one document");
    refused("name: !custom a\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:7: unsupported tag !custom");
    refused("name: !!binary aGk=\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:7: unsupported tag !!binary");
    refused("a: !!set {x}\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:4: unsupported tag tag:yaml.org,2002:set");
    refused("a: !!int twelve\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:4: \"twelve\" is not a !!int");
    refused("a: *nowhere\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:4: unknown anchor *nowhere");
    refused("a: .inf\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:4: .inf cannot be written as a JSON number");
    refused("a: 99999999999999999999\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:4: integer 99999999999999999999 is out of range");
    refused("a: [1, 2\nb: 3\n", TEMPLATE_FORMAT_YAML, "t.yaml:2:2: while parsing a flow sequence did not find expected ',' or ']'");
    refused("a: 1\n b: 2\n", TEMPLATE_FORMAT_YAML, "t.yaml:2:3: mapping values are not allowed in this context");
    refused("- a\n- b\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:1: a template must be a mapping");
    refused("# only a comment\n", TEMPLATE_FORMAT_YAML, "t.yaml:2:1: no document");
    refused("", TEMPLATE_FORMAT_YAML, "t.yaml:1:1: no document");
    refused("a: {<<: 5}\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:5: a merge key (<<) takes a mapping");
    refused("a: b\xff\n", TEMPLATE_FORMAT_YAML, "t.yaml:1:5: invalid leading UTF-8 octet");
}
END_TEST

/* nest: n levels of flow sequences around a scalar, as "a: [[…[1]…]]" (the mapping is level 1). */
static char *nest(int n)
{
    char *s = malloc((size_t)n * 2 + 16);
    strcpy(s, "a: ");
    for (int i = 0; i < n; i++)
        strcat(s, "[");
    strcat(s, "1");
    for (int i = 0; i < n; i++)
        strcat(s, "]");
    strcat(s, "\n");
    return s;
}

START_TEST(depth_and_size_bounds)
{
    struct template_error err;
    char *ok = nest(TEMPLATE_MAX_DEPTH - 1);
    json_t *v = yaml(ok, &err);
    ck_assert_msg(v != NULL, "%s", err.text);
    json_decref(v);
    free(ok);
    char *deep = nest(TEMPLATE_MAX_DEPTH);
    refused(deep, TEMPLATE_FORMAT_YAML, "t.yaml:1:67: nesting deeper than 64 levels");
    free(deep);
    /* An alias counts the levels of what it stands for. */
    char *base = nest(40);
    char text[4096];
    snprintf(text, sizeof text, "x: &deep %s" "y: [[[[[[[[[[[[[[[[[[[[[[[[[[*deep]]]]]]]]]]]]]]]]]]]]]]]]]]\n", base + 3);
    free(base);
    refused(text, TEMPLATE_FORMAT_YAML, "t.yaml:2:30: nesting deeper than 64 levels (through alias *deep)");
    /* "Billion laughs": each line ten times the last; expanded it would be 10^9 values. */
    const char *laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                         "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                         "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                         "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    v = yaml(laughs, &err);
    ck_assert_ptr_null(v);
    ck_assert_msg(strstr(err.text, "more than 1000000 values") != NULL, "%s", err.text);
    ck_assert_int_eq(err.line, 6); /* f: 1 + 10 × 111111 values */
}
END_TEST

START_TEST(json_errors_have_positions)
{
    refused("{\"name\": \"a\",\n \"name\": \"b\"}", TEMPLATE_FORMAT_JSON, "t.yaml:2:");
    struct template_error err;
    ck_assert_ptr_null(template_parse("{\"a\": 1,\n \"a\": 2}", 17, TEMPLATE_FORMAT_JSON, "t.json", &err));
    ck_assert_msg(strstr(err.text, "duplicate object key") != NULL, "%s", err.text);
    ck_assert_int_eq(err.line, 2);
    refused("[1, 2]", TEMPLATE_FORMAT_JSON, "t.yaml:1:1: a template must be a JSON object");
    refused("{\"a\": [1,\n 2,, 3]}", TEMPLATE_FORMAT_JSON, "t.yaml:2:");
    char deep[200] = "{\"a\": ";
    for (int i = 0; i < TEMPLATE_MAX_DEPTH; i++)
        strcat(deep, "[");
    refused(deep, TEMPLATE_FORMAT_JSON, "t.yaml:1:70: nesting deeper than 64 levels");
    /* No name: the position reads as words (a request body). */
    ck_assert_ptr_null(template_parse("a: 1\na: 2\n", 10, TEMPLATE_FORMAT_YAML, NULL, &err));
    ck_assert_str_eq(err.text, "line 2, column 1: duplicate key \"a\"");
}
END_TEST

START_TEST(formats)
{
    ck_assert_int_eq(template_format_for_path("x/a.yaml"), TEMPLATE_FORMAT_YAML);
    ck_assert_int_eq(template_format_for_path("a.YML"), TEMPLATE_FORMAT_YAML);
    ck_assert_int_eq(template_format_for_path("a.json"), TEMPLATE_FORMAT_JSON);
    ck_assert_int_eq(template_format_for_path("a.txt"), TEMPLATE_FORMAT_AUTO);
    ck_assert_int_eq(template_format_for_path(".yaml"), TEMPLATE_FORMAT_AUTO);
    ck_assert_int_eq(template_format_for_content_type("application/yaml"), TEMPLATE_FORMAT_YAML);
    ck_assert_int_eq(template_format_for_content_type("Application/X-YAML; charset=utf-8"), TEMPLATE_FORMAT_YAML);
    ck_assert_int_eq(template_format_for_content_type("text/yaml"), TEMPLATE_FORMAT_YAML);
    ck_assert_int_eq(template_format_for_content_type("application/json"), TEMPLATE_FORMAT_JSON);
    ck_assert_int_eq(template_format_for_content_type("application/yamlx"), TEMPLATE_FORMAT_JSON);
    ck_assert_int_eq(template_format_for_content_type(NULL), TEMPLATE_FORMAT_JSON);
    /* AUTO (standard input): JSON when it starts like JSON. */
    struct template_error err;
    json_t *v = template_parse("  {\"a\": 1}", 10, TEMPLATE_FORMAT_AUTO, NULL, &err);
    ck_assert_ptr_nonnull(v);
    json_decref(v);
    v = template_parse("a: 1", 4, TEMPLATE_FORMAT_AUTO, NULL, &err);
    ck_assert_ptr_nonnull(v);
    json_decref(v);
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(directory_listing_and_files)
{
    char dir[] = "/tmp/tpl-unit-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char p[512];
    const char *files[] = {"b.yaml", "a.json", "sub/z.yml", "sub/deeper/c.YAML", "notes.txt", ".hidden.yaml",
                           ".git/x.yaml"};
    snprintf(p, sizeof p, "%s/sub", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/sub/deeper", dir);
    mkdir(p, 0700);
    snprintf(p, sizeof p, "%s/.git", dir);
    mkdir(p, 0700);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        write_file(p, "name: x\n");
    }
    char **paths;
    size_t n;
    struct template_error err;
    snprintf(p, sizeof p, "%s/", dir);
    ck_assert_int_eq(template_paths(p, &paths, &n, &err), 0);
    ck_assert_int_eq(n, 4);
    const char *want[] = {"a.json", "b.yaml", "sub/deeper/c.YAML", "sub/z.yml"};
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, want[i]);
        ck_assert_str_eq(paths[i], p);
    }
    template_paths_free(paths, n);
    /* A file stands for itself. */
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    ck_assert_int_eq(template_paths(p, &paths, &n, &err), 0);
    ck_assert_int_eq(n, 1);
    template_paths_free(paths, n);
    ck_assert_int_eq(template_paths("/nonexistent/templates", &paths, &n, &err), -1);
    ck_assert_msg(strstr(err.text, "/nonexistent/templates: cannot stat") != NULL, "%s", err.text);
    /* Files: the extension chooses the format; the size is bounded. */
    snprintf(p, sizeof p, "%s/b.yaml", dir);
    write_file(p, "name: x\nname: y\n");
    json_t *v = template_load_file(p, 0, &err);
    ck_assert_ptr_null(v);
    char want_text[600];
    snprintf(want_text, sizeof want_text, "%s:2:1: duplicate key \"name\"", p);
    ck_assert_str_eq(err.text, want_text);
    ck_assert_ptr_null(template_load_file(p, 8, &err));
    ck_assert_msg(strstr(err.text, "larger than 8 bytes") != NULL, "%s", err.text);
    snprintf(p, sizeof p, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(p), 0);
}
END_TEST

/* expected_refusal: the "# refused: …" line of a YAML fixture, or a JSON fixture's "_refused". */
static bool expected_refusal(const char *path, const json_t *tpl, char *out, size_t len)
{
    if (json_is_string(json_object_get(tpl, "_refused"))) {
        snprintf(out, len, "%s", json_string_value(json_object_get(tpl, "_refused")));
        return true;
    }
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    if (fgets(line, sizeof line, f) && strncmp(line, "# refused: ", 11) == 0) {
        line[strcspn(line, "\n")] = '\0';
        snprintf(out, len, "%s", line + 11);
        found = true;
    }
    fclose(f);
    return found;
}

START_TEST(check_refuses_like_sql)
{
    char **paths;
    size_t n;
    struct template_error err;
    ck_assert_int_eq(template_paths(TEMPLATES_DIR "/bad", &paths, &n, &err), 0);
    ck_assert_int_ge(n, 20);
    for (size_t i = 0; i < n; i++) {
        json_t *t = template_load_file(paths[i], 0, &err);
        ck_assert_msg(t != NULL, "%s", err.text);
        char want[1024], got[1024];
        ck_assert_msg(expected_refusal(paths[i], t, want, sizeof want), "%s: no expected refusal", paths[i]);
        ck_assert_msg(!template_check(t, 1000, got, sizeof got), "%s: accepted", paths[i]);
        ck_assert_msg(strcmp(got, want) == 0, "%s: got \"%s\", want \"%s\"", paths[i], got, want);
        json_decref(t);
    }
    template_paths_free(paths, n);
}
END_TEST

START_TEST(check_accepts_good_and_bounds_steps)
{
    char **paths;
    size_t n;
    struct template_error err;
    char msg[1024];
    ck_assert_int_eq(template_paths(TEMPLATES_DIR "/good", &paths, &n, &err), 0);
    ck_assert_int_ge(n, 3);
    for (size_t i = 0; i < n; i++) {
        json_t *t = template_load_file(paths[i], 0, &err);
        ck_assert_msg(t != NULL, "%s", err.text);
        ck_assert_msg(template_check(t, 1000, msg, sizeof msg), "%s: %s", paths[i], msg);
        if (strstr(paths[i], "approval_routing")) {
            /* Over the daemon's templates.max_steps. */
            ck_assert(!template_check(t, 4, msg, sizeof msg));
            ck_assert_str_eq(msg, "template approval_routing: 5 steps: a template may have at most 4 (templates.max_steps)");
        }
        json_decref(t);
    }
    template_paths_free(paths, n);
    /* Control characters in a name are refused and shown escaped. */
    json_t *t = json_pack("{s:s, s:s, s:[{s:s}]}", "name", "a\nb", "namespace_name", "x", "steps", "name", "s");
    ck_assert(!template_check(t, 1000, msg, sizeof msg));
    ck_assert_str_eq(msg, "template \"a\\nb\": name contains control or direction characters");
    json_decref(t);
}
END_TEST

Suite *make_template_file_suite(void)
{
    Suite *s = suite_create("template_file");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, core_schema_types);
    tcase_add_test(tc, anchors_aliases_merge);
    tcase_add_test(tc, yaml_errors_have_positions);
    tcase_add_test(tc, depth_and_size_bounds);
    tcase_add_test(tc, json_errors_have_positions);
    tcase_add_test(tc, formats);
    tcase_add_test(tc, directory_listing_and_files);
    tcase_add_test(tc, check_refuses_like_sql);
    tcase_add_test(tc, check_accepts_good_and_bounds_steps);
    suite_add_tcase(s, tc);
    return s;
}
