/* check_backoff.c — backoff arithmetic: reconnects (doubling, cap, jitter bounds, no overflow) and
 * the idle backoff of the periodic polls (doubling to the ceiling, reset by activity). */
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

START_TEST(idle_doubles_to_the_ceiling)
{
    struct idle_backoff b = { 0 };
    /* Fresh: the first empty pass waits the base interval, then it doubles up to the ceiling. */
    ck_assert_int_eq(idle_backoff_next(&b, false, 1000, 5000), 1000);
    ck_assert_int_eq(idle_backoff_next(&b, false, 1000, 5000), 2000);
    ck_assert_int_eq(idle_backoff_next(&b, false, 1000, 5000), 4000);
    ck_assert_int_eq(idle_backoff_next(&b, false, 1000, 5000), 5000);
    for (int i = 0; i < 100000; i++) /* no overflow however long it idles */
        ck_assert_int_eq(idle_backoff_next(&b, false, 1000, 5000), 5000);
    ck_assert_int_lt(b.level, 10);
}
END_TEST

START_TEST(idle_activity_resets)
{
    struct idle_backoff b = { 0 };
    for (int i = 0; i < 10; i++)
        (void)idle_backoff_next(&b, false, 5000, 10000);
    /* A pass that found work waits the base interval; the next empty one starts doubling again. */
    ck_assert_int_eq(idle_backoff_next(&b, true, 5000, 10000), 5000);
    ck_assert_int_eq(idle_backoff_next(&b, false, 5000, 10000), 10000);
    /* Activity outside a pass: the next wait, even after an empty pass, is the base interval. */
    idle_backoff_reset(&b);
    ck_assert_int_eq(idle_backoff_next(&b, false, 5000, 10000), 5000);
    ck_assert_int_eq(idle_backoff_next(&b, false, 5000, 10000), 10000);
}
END_TEST

START_TEST(idle_ceiling_below_base_means_no_backoff)
{
    struct idle_backoff b = { 0 };
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(idle_backoff_next(&b, false, 1000, 500), 1000);
    ck_assert_int_eq(idle_backoff_next(&b, false, 1000, 1000), 1000);
    /* A ceiling that is not a power-of-two multiple is reached exactly. */
    struct idle_backoff c = { 0 };
    ck_assert_int_eq(idle_backoff_next(&c, false, 200, 700), 200);
    ck_assert_int_eq(idle_backoff_next(&c, false, 200, 700), 400);
    ck_assert_int_eq(idle_backoff_next(&c, false, 200, 700), 700);
    ck_assert_int_eq(idle_backoff_next(&c, false, 200, 700), 700);
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
    TCase *idle = tcase_create("idle");
    tcase_add_test(idle, idle_doubles_to_the_ceiling);
    tcase_add_test(idle, idle_activity_resets);
    tcase_add_test(idle, idle_ceiling_below_base_means_no_backoff);
    suite_add_tcase(s, idle);
    return s;
}
