/* poller.h — the ready-step poll: dispatches retries whose backoff passed (enqueue_ready_steps). */
#ifndef TASKER_POLLER_H
#define TASKER_POLLER_H

struct orchd;
struct poller;

struct poller *poller_new(struct orchd *o) __attribute__((warn_unused_result));
void poller_start(struct poller *p);
/* poller_kick: run now (coalesced: if a call is in flight, once more when it returns). NULL-safe. */
void poller_kick(struct poller *p);
void poller_stop(struct poller *p);
void poller_free(struct poller *p);

#endif
