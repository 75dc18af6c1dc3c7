/* check_backoff.c — reconnect backoff arithmetic: doubling, cap, jitter bounds, no overflow. */
#include <check.h>

#include "backoff.h"
#include "suites.h"

START_TEST(doubles_then_caps)
{
    ck_assert_int_eq(backoff_ms(100, 10000, 1, 0, 0), 100);
    ck_assert_int_eq(backoff_ms(100, 10000, 2, 0, 0), 200);
    ck_assert_int_eq(backoff_ms(100, 10000, 5, 0, 0), 1600);
    ck_assert_int_eq(backoff_ms(100, 10000, 8, 0, 0), 10000);  /* 12800 capped */
    ck_assert_int_eq(backoff_ms(100, 10000, 1000000, 0, 0), 10000); /* no overflow */
    ck_assert_int_eq(backoff_ms(100, 10000, 0, 0, 0), 100);    /* < 1 counts as the first */
}
END_TEST

START_TEST(jitter_stays_within_bounds)
{
    for (unsigned r = 0; r < 2000; r += 7) {
        long long d = backoff_ms(1000, 10000, 1, 25, r);
        ck_assert(d >= 750 && d <= 1250);
        d = backoff_ms(1000, 10000, 20, 25, r);
        ck_assert(d >= 7500 && d <= 12500);
    }
    /* Both ends are reachable. */
    ck_assert_int_eq(backoff_ms(1000, 10000, 1, 25, 0), 750);
    ck_assert_int_eq(backoff_ms(1000, 10000, 1, 25, 500), 1250);
}
END_TEST

START_TEST(degenerate_inputs)
{
    ck_assert_int_eq(backoff_ms(0, 0, 3, 25, 12345), 0);
    ck_assert_int_eq(backoff_ms(500, 100, 3, 0, 0), 500); /* max below initial: initial wins */
    ck_assert_int_eq(backoff_ms(-5, 100, 1, 0, 0), 0);
}
END_TEST

Suite *make_backoff_suite(void)
{
    Suite *s = suite_create("backoff");
    TCase *tc = tcase_create("arithmetic");
    tcase_add_test(tc, doubles_then_caps);
    tcase_add_test(tc, jitter_stays_within_bounds);
    tcase_add_test(tc, degenerate_inputs);
    suite_add_tcase(s, tc);
    return s;
}
