/* check_poller.c — the poller's plan after a pass: full batches at once, idle backoff, and due
 * retries waking it exactly whatever the backoff says. */
#include <check.h>

#include "poller.h"
#include "suites.h"

#define BATCH 100
#define BASE 1000
#define CEIL 5000

static long long plan(struct idle_backoff *b, long long enqueued, long long touched, long long retry_in_ms)
{
    struct poller_pass r = { .ok = true, .enqueued = enqueued, .touched = touched,
                             .retry_pending = retry_in_ms >= 0, .retry_in_ms = retry_in_ms };
    return poller_plan(b, &r, BATCH, BASE, CEIL);
}

START_TEST(idle_polls_back_off_to_the_ceiling)
{
    struct idle_backoff b = { 0 };
    ck_assert_int_eq(plan(&b, 0, 0, -1), 1000);
    ck_assert_int_eq(plan(&b, 0, 0, -1), 2000);
    ck_assert_int_eq(plan(&b, 0, 0, -1), 4000);
    ck_assert_int_eq(plan(&b, 0, 0, -1), 5000);
    ck_assert_int_eq(plan(&b, 0, 0, -1), 5000);
}
END_TEST

START_TEST(work_returns_to_the_base_interval)
{
    struct idle_backoff b = { 0 };
    for (int i = 0; i < 6; i++)
        (void)plan(&b, 0, 0, -1);
    ck_assert_int_eq(plan(&b, 3, 2, -1), BASE); /* dispatched something */
    ck_assert_int_eq(plan(&b, 0, 0, -1), 2000);
    /* A full batch that dispatched: at once. */
    ck_assert_int_eq(plan(&b, 120, BATCH, -1), 0);
    ck_assert_int_eq(plan(&b, 0, 0, -1), BASE);
    /* A full batch that dispatched nothing (tasks held back) is no reason to hurry. */
    ck_assert_int_eq(plan(&b, 0, BATCH, -1), 2000);
}
END_TEST

START_TEST(due_retries_wake_it_exactly)
{
    struct idle_backoff b = { 0 };
    for (int i = 0; i < 6; i++)
        (void)plan(&b, 0, 0, -1);
    /* At the ceiling, a retry due in 100 ms: wake just after it, not in 5 s. */
    ck_assert_int_eq(plan(&b, 0, 0, 100), 101);
    /* A retry due after the next idle poll does not delay that poll. */
    ck_assert_int_eq(plan(&b, 0, 0, 60000), CEIL);
    /* A retry already due (the clock moved on during the call): at once. */
    ck_assert_int_eq(plan(&b, 0, 0, 0), 1);
    struct poller_pass late = { .ok = true, .retry_pending = true, .retry_in_ms = -7 };
    ck_assert_int_eq(poller_plan(&b, &late, BATCH, BASE, CEIL), 0);
}
END_TEST

START_TEST(failures_poll_at_the_base_interval)
{
    struct idle_backoff b = { 0 };
    for (int i = 0; i < 6; i++)
        (void)plan(&b, 0, 0, -1);
    struct poller_pass failed = { .ok = false };
    ck_assert_int_eq(poller_plan(&b, &failed, BATCH, BASE, CEIL), BASE);
    ck_assert_int_eq(plan(&b, 0, 0, -1), BASE); /* and back off from there again */
    ck_assert_int_eq(plan(&b, 0, 0, -1), 2000);
}
END_TEST

Suite *make_poller_suite(void)
{
    Suite *s = suite_create("poller");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, idle_polls_back_off_to_the_ceiling);
    tcase_add_test(tc, work_returns_to_the_base_interval);
    tcase_add_test(tc, due_retries_wake_it_exactly);
    tcase_add_test(tc, failures_poll_at_the_base_interval);
    suite_add_tcase(s, tc);
    return s;
}
