/* listen.h — the dedicated LISTEN connection on pgmq_message_ready, reconnecting on its own. */
#ifndef TASKER_LISTEN_H
#define TASKER_LISTEN_H

#include <stdbool.h>

struct orchd;
struct listener;

/* on_message: a queue got a message (queue and namespace from the NOTIFY payload; namespace may
 * be "" when the payload did not say). on_connected: LISTEN is (again) in place — anything sent
 * while we were not listening was missed, so the owner should poll everything once. */
typedef void (*listener_message_fn)(void *arg, const char *queue, const char *ns);
typedef void (*listener_connected_fn)(void *arg);

struct listener *listener_new(struct orchd *o, listener_message_fn on_message, listener_connected_fn on_connected,
                              void *arg) __attribute__((warn_unused_result));
void listener_start(struct listener *l);
void listener_stop(struct listener *l);
void listener_free(struct listener *l);
bool listener_connected(const struct listener *l);
/* Notifications received since start (for metrics). */
unsigned long long listener_notifications(const struct listener *l);

#endif
