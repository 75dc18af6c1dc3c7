/* check_main.c — runs every Check suite listed in suites.h; exit status non-zero if any test failed. */
#include <stdio.h>
#include <stdlib.h>

#include <check.h>

#include "log.h"
#include "suites.h"

int main(void)
{
    /* Unbuffered, so our lines and those of forked test processes come out in order. */
    setvbuf(stdout, NULL, _IONBF, 0);
    /* Code under test logs its failures; only errors keep the test output readable. */
    log_init(LOG_LVL_ERROR, false);

    SRunner *sr = srunner_create(NULL);
#define UNIT_SUITE_ADD(name) srunner_add_suite(sr, make_##name##_suite());
    UNIT_SUITES(UNIT_SUITE_ADD)
#undef UNIT_SUITE_ADD

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
