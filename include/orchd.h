/* orchd.h — the daemon's shared context: the one event loop, the configuration, the pool, and the
 * components that hang off them. Holds no logic. */
#ifndef TASKER_ORCHD_H
#define TASKER_ORCHD_H

#include <stdbool.h>

#include "conf.h"
#include "metrics.h"

#include "version.h"

struct event_base;
struct db_pool;
struct listener;
struct completions;
struct poller;
struct sweeper;
struct vacuum;
struct svc;
struct http_api;
struct relay;

/* Owned by main.c for the whole run; components keep a pointer to it and never free it. */
struct orchd {
    struct event_base *base;
    struct conf conf;             /* the live configuration; reloads copy reloadable keys into it */
    struct conf_source conf_src;  /* where it came from (for SIGHUP) */
    char actor[128];              /* processor id written into audit rows */
    struct db_pool *pool;
    struct listener *listener;
    struct completions *completions;
    struct poller *poller;
    struct sweeper *sweeper;
    struct vacuum *vacuum;
    struct svc *svc;
    struct http_api *http;
    struct relay *relay;          /* messaging.backend = rabbitmq only; NULL with pgmq */
    struct metrics metrics;
    bool db_up;                   /* the pool has a working connection (components skip runs otherwise) */
    bool stopping;                /* SIGTERM received: no new work is started */
    bool templates_pending;       /* the first load of templates.path has not finished (not ready yet) */
    int exit_code;                /* what main returns once the loop ends */
};

#endif
