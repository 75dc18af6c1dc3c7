/* check_states.c — the C state enums (include/states.h) agree with the SQL state tables
 * (sql/0201_tasker_states.sql, read from the copy embedded in the binary). */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "embedded_sql.h"
#include "states.h"
#include "suites.h"

static const struct embedded_sql *states_sql(void)
{
    for (size_t i = 0; i < embedded_sql_count; i++)
        if (strcmp(embedded_sql_files[i].name, "0201_tasker_states.sql") == 0)
            return &embedded_sql_files[i];
    return NULL;
}

/* Collect the rows ('name', is_terminal, …) of the INSERT INTO <table> … ON CONFLICT block. */
static int sql_states(const char *table, char names[][48], int terminal[], int max)
{
    const struct embedded_sql *f = states_sql();
    ck_assert_ptr_nonnull(f);
    char marker[128];
    snprintf(marker, sizeof marker, "INSERT INTO %s (", table);
    const char *p = strstr(f->text, marker);
    ck_assert_msg(p != NULL, "no INSERT INTO %s in 0201_tasker_states.sql", table);
    const char *end = strstr(p, "ON CONFLICT");
    ck_assert_ptr_nonnull(end);
    int n = 0;
    while ((p = strstr(p, "\n  ('")) != NULL && p < end && n < max) {
        p += 5;
        const char *q = strchr(p, '\'');
        ck_assert_ptr_nonnull(q);
        snprintf(names[n], 48, "%.*s", (int)(q - p), p);
        const char *v = q + 2; /* past "'," */
        while (*v == ' ')
            v++;
        terminal[n] = strncmp(v, "true", 4) == 0 ? 1 : strncmp(v, "false", 5) == 0 ? 0 : -1;
        ck_assert_msg(terminal[n] >= 0, "cannot read is_terminal of %s", names[n]);
        n++;
    }
    return n;
}

START_TEST(task_states_match_sql)
{
    char names[32][48];
    int terminal[32];
    int n = sql_states("tasker.task_states", names, terminal, 32);
    ck_assert_int_eq(n, TASK_STATE_COUNT);
    for (int i = 0; i < n; i++) {
        enum task_state s;
        ck_assert_msg(task_state_parse(names[i], &s), "SQL task state %s missing from states.h", names[i]);
        ck_assert_msg(task_state_is_terminal(s) == (terminal[i] == 1), "terminal flag of %s differs", names[i]);
    }
}
END_TEST

START_TEST(step_states_match_sql)
{
    char names[32][48];
    int terminal[32];
    int n = sql_states("tasker.step_states", names, terminal, 32);
    ck_assert_int_eq(n, STEP_STATE_COUNT);
    for (int i = 0; i < n; i++) {
        enum step_state s;
        ck_assert_msg(step_state_parse(names[i], &s), "SQL step state %s missing from states.h", names[i]);
        ck_assert_msg(step_state_is_terminal(s) == (terminal[i] == 1), "terminal flag of %s differs", names[i]);
    }
}
END_TEST

START_TEST(parse_rejects_unknown)
{
    enum task_state t;
    enum step_state s;
    ck_assert(!task_state_parse("in_progress", &t)); /* a step state, not a task state */
    ck_assert(!step_state_parse("steps_in_process", &s));
    ck_assert(!task_state_parse("", &t));
    ck_assert(task_state_parse("blocked_by_failures", &t) && t == TASK_BLOCKED_BY_FAILURES);
}
END_TEST

Suite *make_states_suite(void)
{
    Suite *s = suite_create("states");
    TCase *tc = tcase_create("agree with SQL");
    tcase_add_test(tc, task_states_match_sql);
    tcase_add_test(tc, step_states_match_sql);
    tcase_add_test(tc, parse_rejects_unknown);
    suite_add_tcase(s, tc);
    return s;
}
