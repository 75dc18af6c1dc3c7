/* fault.c — test-only fault injection (TASKER_FAULT_INJECT; docs/testing.md, "Fault injection"). */
#include "fault.h"

#include "log.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char *const fault_points[] = { FAULT_RELAY_BEFORE_PUBLISH };

bool fault_armed(const char *point)
{
    static bool read;
    static const char *value;
    if (!read) {
        read = true;
        value = getenv("TASKER_FAULT_INJECT");
        if (value && !*value)
            value = NULL;
        if (value) {
            bool known = false;
            for (size_t i = 0; i < sizeof fault_points / sizeof fault_points[0]; i++)
                known = known || strcmp(value, fault_points[i]) == 0;
            if (known)
                log_warn("fault", "TASKER_FAULT_INJECT=%s: this process kills itself (SIGKILL) at that point; "
                         "a test hook, never set it in production", value);
            else
                log_warn("fault", "TASKER_FAULT_INJECT=%.64s names no fault point; ignored", value);
        }
    }
    return value && strcmp(value, point) == 0;
}

void fault_kill(const char *point)
{
    log_warn("fault", "TASKER_FAULT_INJECT: %s reached: raising SIGKILL", point);
    raise(SIGKILL);
    abort(); /* not reached: SIGKILL cannot be caught */
}
