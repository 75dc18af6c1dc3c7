/* suites.h — the list of Check suites that tests/unit/check_main.c runs; add yours here. */
#ifndef TASKER_TEST_SUITES_H
#define TASKER_TEST_SUITES_H

#include <check.h>

/* One X(name) line per component: tests/unit/check_<name>.c defines `Suite *make_<name>_suite(void)`
 * and includes this header (which declares it, as -Wmissing-prototypes wants). check_main.c runs the
 * suites in this order. */
#define UNIT_SUITES(X) \
    X(migrate) \
    X(conf) \
    X(states) \
    X(backoff) \
    X(poller) \
    X(worker) \
    X(http) \
    X(jwt) \
    X(log) \
    X(pool) \
    X(ctl) \
    X(template_file)

#define UNIT_SUITE_DECLARE(name) Suite *make_##name##_suite(void);
UNIT_SUITES(UNIT_SUITE_DECLARE)
#undef UNIT_SUITE_DECLARE

#endif
