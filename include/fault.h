/* fault.h — test-only fault injection: TASKER_FAULT_INJECT names a point where the process kills itself. */
/* Read from the environment only, and not named in --help: --help lists what an operator runs
 * the daemon with, and this is for the test scripts that kill it at an instant no signal from
 * outside can hit (docs/testing.md, "Fault injection"). A process with it set says so in its log
 * at start, so it cannot be left on unnoticed. */
#ifndef TASKER_FAULT_H
#define TASKER_FAULT_H

#include <stdbool.h>

/* Points (the values TASKER_FAULT_INJECT accepts):
 *   relay-before-publish  the daemon's relay has read a burst from the PGMQ outbox (that statement
 *                         committed: the messages are hidden for their vt) and has not published
 *                         any of it to RabbitMQ. */
#define FAULT_RELAY_BEFORE_PUBLISH "relay-before-publish"

/* fault_armed: whether TASKER_FAULT_INJECT names point. Callers ask once at start and keep the
 * answer, so an unset variable costs one branch at the point. The first call logs a warning when
 * the variable is set (a process that will kill itself must say so), naming an unknown value. */
bool fault_armed(const char *point);

/* fault_kill: log the point and raise SIGKILL — no cleanup, no flush, as kill -9 from outside
 * would, but at a chosen instruction. */
void fault_kill(const char *point) __attribute__((noreturn));

#endif
