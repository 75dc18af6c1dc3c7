/* check_pool.c — unit tests of the pool's pure helpers: the connection error /health may show. */
#include "db_pool.h"

#include <check.h>
#include <string.h>

#include "suites.h"

static const struct {
    const char *in;
    const char *want;
} reasons[] = {
    /* slots exhausted, as PostgreSQL says it for a role, a database, the whole server */
    {"connection to server at \"10.0.0.5\", port 5432 failed: FATAL:  too many connections for role \"tasker\"\n",
     "too many connections for role \"...\""},
    {"connection to server on socket \"/run/postgresql/.s.PGSQL.5432\" failed: FATAL:  sorry, too many clients already",
     "sorry, too many clients already"},
    /* several hosts tried: the last line */
    {"connection to server at \"a\", port 1 failed: Connection refused\n\tIs the server running on that host?\n"
     "connection to server at \"b\" (10.1.1.1), port 5432 failed: FATAL:  the database system is starting up\n",
     "the database system is starting up"},
    {"could not translate host name \"db.internal\" to address: Name or service not known",
     "could not translate host name \"...\" to address: Name or service not known"},
    {"timed out connecting", "timed out connecting"},
    {"an \"unclosed quote", "an \"unclosed quote"},
    {"", "unknown error"},
    {"\n\n", "unknown error"},
};

START_TEST(public_reason_hides_hosts_and_names)
{
    char out[256];
    db_pool_public_reason(reasons[_i].in, out, sizeof out);
    ck_assert_str_eq(out, reasons[_i].want);
}
END_TEST

START_TEST(public_reason_fits_small_buffers)
{
    char out[8];
    memset(out, 'x', sizeof out);
    db_pool_public_reason("connection to server at \"h\", port 1 failed: FATAL:  too many connections", out, sizeof out);
    ck_assert_str_eq(out, "too man");
    char one[1] = {'x'};
    db_pool_public_reason("anything", one, sizeof one);
    ck_assert_int_eq(one[0], '\0');
    db_pool_public_reason(NULL, out, sizeof out);
    ck_assert_str_eq(out, "unknown");
}
END_TEST

Suite *make_pool_suite(void)
{
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("public_reason");
    tcase_add_loop_test(tc, public_reason_hides_hosts_and_names, 0, (int)(sizeof reasons / sizeof reasons[0]));
    tcase_add_test(tc, public_reason_fits_small_buffers);
    suite_add_tcase(s, tc);
    return s;
}
