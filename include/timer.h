/* timer.h — arm a libevent one-shot timer in milliseconds, and read the monotonic clock (shared by the
 * periodic components). */
#ifndef TASKER_TIMER_H
#define TASKER_TIMER_H

#include <event2/event.h>
#include <time.h>

/* timer_in_ms: (re)arm ev to fire once after ms milliseconds (0 = on the next loop iteration);
 * a pending timeout is replaced. */
static inline void timer_in_ms(struct event *ev, long long ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000) };
    evtimer_add(ev, &tv);
}

/* mono_ms: milliseconds on the monotonic clock (intervals and ages; immune to clock steps). */
static inline long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

#endif
