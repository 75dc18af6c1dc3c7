/* check_migrate.c — unit tests of the migration runner's pure logic (no database). */
#include <string.h>

#include <check.h>

#include "embedded_sql.h"
#include "migrate.h"
#include "suites.h"

/* An embedded_sql entry from a string literal. */
#define FILE_ENTRY(kind, name, text) { (kind), (name), (text), sizeof(text) - 1 }

/* Parse a NUL-terminated text; the expression comes back NUL-terminated in expr (or "" if none). */
static bool parse(const char *text, char *expr, size_t exprlen, size_t *line, char *err, size_t errlen)
{
    struct migrate_directives d;
    err[0] = '\0';
    bool ok = migrate_parse_directives(text, strlen(text), &d, err, errlen);
    snprintf(expr, exprlen, "%.*s", d.only_if ? (int)d.only_if_len : 0, d.only_if ? d.only_if : "");
    *line = d.only_if_line;
    return ok;
}

/* ---- directives ---------------------------------------------------------------------------- */

START_TEST(directive_none)
{
    char expr[128], err[256];
    size_t line;
    ck_assert(parse("CREATE TABLE t (a int);\n", expr, sizeof expr, &line, err, sizeof err));
    ck_assert_str_eq(expr, "");
    ck_assert(parse("", expr, sizeof expr, &line, err, sizeof err));
    ck_assert_str_eq(expr, "");
    ck_assert(parse("-- just a header\n--\n", expr, sizeof expr, &line, err, sizeof err));
    ck_assert_str_eq(expr, "");
}
END_TEST

START_TEST(directive_first_line)
{
    char expr[128], err[256];
    size_t line;
    ck_assert(parse("-- tasker:only-if true\nSELECT 1;\n", expr, sizeof expr, &line, err, sizeof err));
    ck_assert_str_eq(expr, "true");
    ck_assert_uint_eq(line, 1);
}
END_TEST

START_TEST(directive_among_header_lines)
{
    char expr[128], err[256];
    size_t line;
    /* Blank lines, CRLF, indentation, no space after "--" and trailing blanks are all tolerated. */
    const char *text = "-- 0002_x.sql — header\r\n\r\n  --tasker:only-if   NOT EXISTS (SELECT 1)  \r\n-- more\nSELECT 1;\n";
    ck_assert(parse(text, expr, sizeof expr, &line, err, sizeof err));
    ck_assert_str_eq(expr, "NOT EXISTS (SELECT 1)");
    ck_assert_uint_eq(line, 3);
}
END_TEST

START_TEST(directive_without_final_newline)
{
    char expr[128], err[256];
    size_t line;
    ck_assert(parse("-- tasker:only-if x > 1", expr, sizeof expr, &line, err, sizeof err));
    ck_assert_str_eq(expr, "x > 1");
}
END_TEST

START_TEST(directive_respects_length)
{
    struct migrate_directives d;
    char err[128];
    const char *text = "-- tasker:only-if abcdef";
    /* Only the first 20 bytes belong to the file. */
    ck_assert(migrate_parse_directives(text, 20, &d, err, sizeof err));
    ck_assert_ptr_nonnull(d.only_if);
    ck_assert_uint_eq(d.only_if_len, 2);
    ck_assert_int_eq(memcmp(d.only_if, "ab", 2), 0);
}
END_TEST

START_TEST(directive_below_sql_is_ignored)
{
    char expr[128], err[256];
    size_t line;
    ck_assert(parse("SELECT 1;\n-- tasker:only-if false\n", expr, sizeof expr, &line, err, sizeof err));
    ck_assert_str_eq(expr, "");
}
END_TEST

START_TEST(directive_prose_is_not_a_directive)
{
    char expr[128], err[256];
    size_t line;
    ck_assert(parse("-- tasker: the core schema\n-- carry `-- tasker:only-if x` lines\nSELECT 1;\n", expr,
                    sizeof expr, &line, err, sizeof err));
    ck_assert_str_eq(expr, "");
}
END_TEST

START_TEST(directive_empty_expression)
{
    char expr[128], err[256];
    size_t line;
    ck_assert(!parse("-- header\n-- tasker:only-if   \nSELECT 1;\n", expr, sizeof expr, &line, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "line 2"));
    ck_assert_ptr_nonnull(strstr(err, "needs a SQL boolean expression"));
}
END_TEST

START_TEST(directive_repeated)
{
    char expr[128], err[256];
    size_t line;
    ck_assert(!parse("-- tasker:only-if a\n-- tasker:only-if b\n", expr, sizeof expr, &line, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "repeated"));
    ck_assert_ptr_nonnull(strstr(err, "line 2"));
}
END_TEST

START_TEST(directive_unknown)
{
    char expr[128], err[256];
    size_t line;
    ck_assert(!parse("-- tasker:onlyif true\n", expr, sizeof expr, &line, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "tasker:onlyif"));
}
END_TEST

/* ---- error position -> line ------------------------------------------------------------------ */

START_TEST(position_ascii)
{
    const char *t = "ab\ncd\ne";
    size_t n = strlen(t);
    ck_assert_uint_eq(migrate_line_of_position(t, n, 1, true), 1);
    ck_assert_uint_eq(migrate_line_of_position(t, n, 3, true), 1); /* the newline ends line 1 */
    ck_assert_uint_eq(migrate_line_of_position(t, n, 4, true), 2);
    ck_assert_uint_eq(migrate_line_of_position(t, n, 7, true), 3);
}
END_TEST

START_TEST(position_out_of_range)
{
    const char *t = "ab\ncd\n";
    size_t n = strlen(t);
    ck_assert_uint_eq(migrate_line_of_position(t, n, 0, true), 1);
    /* Past the end: the line of the last character, not the empty line after the final newline. */
    ck_assert_uint_eq(migrate_line_of_position(t, n, 7, true), 2);
    ck_assert_uint_eq(migrate_line_of_position(t, n, 1000, true), 2);
    ck_assert_uint_eq(migrate_line_of_position("", 0, 5, true), 1);
}
END_TEST

START_TEST(position_counts_characters)
{
    /* "é" is two bytes but one character for PostgreSQL in a UTF-8 database. */
    const char *t = "\xc3\xa9\nx";
    size_t n = strlen(t);
    ck_assert_uint_eq(migrate_line_of_position(t, n, 2, true), 1);
    ck_assert_uint_eq(migrate_line_of_position(t, n, 3, true), 2);
    /* SQL_ASCII counts bytes. */
    ck_assert_uint_eq(migrate_line_of_position(t, n, 3, false), 1);
    ck_assert_uint_eq(migrate_line_of_position(t, n, 4, false), 2);
}
END_TEST

START_TEST(position_realistic)
{
    /* PostgreSQL would point at "nope": 1-based character 28 ("-- ü — ü\n" is 9 characters, 13 bytes). */
    const char *t = "-- \xc3\xbc \xe2\x80\x94 \xc3\xbc\n\nSELECT 1;\nSELECT nope;\n";
    size_t n = strlen(t);
    const char *nope = strstr(t, "nope");
    size_t chars = 0;
    for (const char *p = t; p <= nope; p++)
        if (((unsigned char)*p & 0xC0) != 0x80)
            chars++;
    ck_assert_uint_eq(chars, 28);
    ck_assert_uint_eq(migrate_line_of_position(t, n, chars, true), 4);
}
END_TEST

/* ---- validation of the embedded table ---------------------------------------------------------- */

START_TEST(validate_built_in_table)
{
    char err[512] = "";
    bool ok = migrate_validate_files(embedded_sql_files, embedded_sql_count, err, sizeof err);
    ck_assert_msg(ok, "embedded SQL files: %s", err);
}
END_TEST

START_TEST(validate_good)
{
    static const struct embedded_sql files[] = {
        FILE_ENTRY(EMBED_MIGRATION, "0001_a.sql", "-- tasker:only-if true\nSELECT 1;"),
        FILE_ENTRY(EMBED_MIGRATION, "0002_b.sql", ""),
        FILE_ENTRY(EMBED_FUNCTIONS, "0100_c.sql", "SELECT 1;"),
        FILE_ENTRY(EMBED_FUNCTIONS, "0200_d.sql", "SELECT 1;"),
    };
    char err[256] = "";
    ck_assert_msg(migrate_validate_files(files, 4, err, sizeof err), "%s", err);
    ck_assert(migrate_validate_files(files, 0, err, sizeof err));
}
END_TEST

/* validate one bad table and check the reason names the problem */
static void expect_invalid(const struct embedded_sql *files, size_t n, const char *needle)
{
    char err[256] = "";
    ck_assert(!migrate_validate_files(files, n, err, sizeof err));
    ck_assert_msg(strstr(err, needle) != NULL, "error '%s' lacks '%s'", err, needle);
}

START_TEST(validate_name_shared_across_kinds)
{
    static const struct embedded_sql files[] = {
        FILE_ENTRY(EMBED_MIGRATION, "0001_a.sql", "SELECT 1;"),
        FILE_ENTRY(EMBED_FUNCTIONS, "0001_a.sql", "SELECT 1;"),
    };
    expect_invalid(files, 2, "share a name");
}
END_TEST

START_TEST(validate_order)
{
    static const struct embedded_sql unsorted[] = {
        FILE_ENTRY(EMBED_MIGRATION, "0002_b.sql", "SELECT 1;"),
        FILE_ENTRY(EMBED_MIGRATION, "0001_a.sql", "SELECT 1;"),
    };
    static const struct embedded_sql dup[] = {
        FILE_ENTRY(EMBED_FUNCTIONS, "0100_a.sql", "SELECT 1;"),
        FILE_ENTRY(EMBED_FUNCTIONS, "0100_a.sql", "SELECT 2;"),
    };
    static const struct embedded_sql kinds[] = {
        FILE_ENTRY(EMBED_FUNCTIONS, "0100_a.sql", "SELECT 1;"),
        FILE_ENTRY(EMBED_MIGRATION, "0200_b.sql", "SELECT 1;"),
    };
    expect_invalid(unsorted, 2, "migrations/0001_a.sql is not in name order");
    expect_invalid(dup, 2, "not in name order");
    expect_invalid(kinds, 2, "migrations must come first");
}
END_TEST

START_TEST(validate_names)
{
    static const struct embedded_sql ext[] = {FILE_ENTRY(EMBED_MIGRATION, "0001_a.txt", "SELECT 1;")};
    static const struct embedded_sql dir[] = {FILE_ENTRY(EMBED_MIGRATION, "x/0001_a.sql", "SELECT 1;")};
    static const struct embedded_sql bare[] = {FILE_ENTRY(EMBED_MIGRATION, ".sql", "SELECT 1;")};
    static const struct embedded_sql empty[] = {FILE_ENTRY(EMBED_MIGRATION, "", "SELECT 1;")};
    expect_invalid(ext, 1, "ending in .sql");
    expect_invalid(dir, 1, "plain file name");
    expect_invalid(bare, 1, "ending in .sql");
    expect_invalid(empty, 1, "no name");
}
END_TEST

START_TEST(validate_content)
{
    static const struct embedded_sql nul[] = {FILE_ENTRY(EMBED_MIGRATION, "0001_a.sql", "SELECT 1;\0DROP")};
    static const struct embedded_sql directive[] = {
        FILE_ENTRY(EMBED_MIGRATION, "0001_a.sql", "SELECT 1;"),
        FILE_ENTRY(EMBED_FUNCTIONS, "0100_b.sql", "-- tasker:only_if true\nSELECT 1;"),
    };
    expect_invalid(nul, 1, "NUL byte");
    expect_invalid(directive, 2, "sql/0100_b.sql: line 1: unknown directive 'tasker:only_if'");
}
END_TEST

/* ---- classification ---------------------------------------------------------------------------- */

START_TEST(classify_states)
{
    struct migrate_record rec = {.name = "0001_a.sql", .kind = EMBED_MIGRATION, .checksum = "aaaa"};

    ck_assert_int_eq(migrate_classify(EMBED_MIGRATION, "aaaa", NULL), MIGRATE_PENDING);
    ck_assert_int_eq(migrate_classify(EMBED_MIGRATION, "aaaa", &rec), MIGRATE_APPLIED);
    ck_assert_int_eq(migrate_classify(EMBED_MIGRATION, "bbbb", &rec), MIGRATE_CHANGED);
    rec.skipped = true;
    ck_assert_int_eq(migrate_classify(EMBED_MIGRATION, "aaaa", &rec), MIGRATE_SKIPPED);
    /* A landed migration stays refused when changed, skipped or not. */
    ck_assert_int_eq(migrate_classify(EMBED_MIGRATION, "bbbb", &rec), MIGRATE_CHANGED);

    rec.kind = EMBED_FUNCTIONS;
    rec.skipped = false;
    ck_assert_int_eq(migrate_classify(EMBED_FUNCTIONS, "aaaa", &rec), MIGRATE_APPLIED);
    ck_assert_int_eq(migrate_classify(EMBED_FUNCTIONS, "bbbb", &rec), MIGRATE_REAPPLY);
    /* A skipped sql/ file is looked at again (its only-if re-evaluated) once its text changes. */
    rec.skipped = true;
    ck_assert_int_eq(migrate_classify(EMBED_FUNCTIONS, "aaaa", &rec), MIGRATE_SKIPPED);
    ck_assert_int_eq(migrate_classify(EMBED_FUNCTIONS, "bbbb", &rec), MIGRATE_REAPPLY);
}
END_TEST

START_TEST(classify_kind_moved)
{
    struct migrate_record rec = {.name = "0100_a.sql", .kind = EMBED_FUNCTIONS, .checksum = "aaaa"};
    ck_assert_int_eq(migrate_classify(EMBED_MIGRATION, "aaaa", &rec), MIGRATE_CHANGED);
    rec.kind = EMBED_MIGRATION;
    ck_assert_int_eq(migrate_classify(EMBED_FUNCTIONS, "aaaa", &rec), MIGRATE_CHANGED);
}
END_TEST

START_TEST(names_of_things)
{
    ck_assert_str_eq(migrate_state_str(MIGRATE_CHANGED), "changed");
    ck_assert_str_eq(migrate_state_str(MIGRATE_PENDING), "pending");
    ck_assert_str_eq(migrate_kind_str(EMBED_MIGRATION), "migration");
    ck_assert_str_eq(migrate_kind_str(EMBED_FUNCTIONS), "functions");
    ck_assert_str_eq(migrate_kind_dir(EMBED_MIGRATION), "migrations");
    ck_assert_str_eq(migrate_kind_dir(EMBED_FUNCTIONS), "sql");
}
END_TEST

Suite *make_migrate_suite(void)
{
    Suite *s = suite_create("migrate");
    TCase *tc;

    tc = tcase_create("directives");
    tcase_set_timeout(tc, 5);
    tcase_add_test(tc, directive_none);
    tcase_add_test(tc, directive_first_line);
    tcase_add_test(tc, directive_among_header_lines);
    tcase_add_test(tc, directive_without_final_newline);
    tcase_add_test(tc, directive_respects_length);
    tcase_add_test(tc, directive_below_sql_is_ignored);
    tcase_add_test(tc, directive_prose_is_not_a_directive);
    tcase_add_test(tc, directive_empty_expression);
    tcase_add_test(tc, directive_repeated);
    tcase_add_test(tc, directive_unknown);
    suite_add_tcase(s, tc);

    tc = tcase_create("position");
    tcase_set_timeout(tc, 5);
    tcase_add_test(tc, position_ascii);
    tcase_add_test(tc, position_out_of_range);
    tcase_add_test(tc, position_counts_characters);
    tcase_add_test(tc, position_realistic);
    suite_add_tcase(s, tc);

    tc = tcase_create("validate");
    tcase_set_timeout(tc, 5);
    tcase_add_test(tc, validate_built_in_table);
    tcase_add_test(tc, validate_good);
    tcase_add_test(tc, validate_name_shared_across_kinds);
    tcase_add_test(tc, validate_order);
    tcase_add_test(tc, validate_names);
    tcase_add_test(tc, validate_content);
    suite_add_tcase(s, tc);

    tc = tcase_create("classify");
    tcase_set_timeout(tc, 5);
    tcase_add_test(tc, classify_states);
    tcase_add_test(tc, classify_kind_moved);
    tcase_add_test(tc, names_of_things);
    suite_add_tcase(s, tc);

    return s;
}
