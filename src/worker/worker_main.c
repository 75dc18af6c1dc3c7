/* worker_main.c — entry point of tasker-worker: options, the event_base, the worker's lifecycle. */
#include "worker.h"

#include "log.h"
#include "version.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/event.h>

/* wm_std_fds: make sure fds 0-2 are open (on /dev/null), so pipes we create for exec children
 * never take those numbers. */
static void wm_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) == -1) {
            int n = open("/dev/null", O_RDWR);
            if (n >= 0 && n != fd)
                close(n);
        }
    }
}

int main(int argc, char **argv)
{
    struct worker_opts o;
    char err[512];
    switch (worker_opts_parse(argc, argv, &o, err, sizeof err)) {
    case WORKER_PARSE_OK:
        break;
    case WORKER_PARSE_HELP:
        worker_usage(stdout);
        return 0;
    case WORKER_PARSE_VERSION:
        printf("tasker-worker %s\n", TASKER_VERSION);
        return 0;
    case WORKER_PARSE_ERROR:
        fprintf(stderr, "tasker-worker: %s\nTry 'tasker-worker --help'.\n", err);
        return 2;
    }
    wm_std_fds();
    log_init(o.verbose ? LOG_LVL_DEBUG : LOG_LVL_INFO, false);
    /* Writes to a closed pipe (an exec child that exits early) come back as EPIPE. */
    signal(SIGPIPE, SIG_IGN);

    struct event_base *base = event_base_new();
    if (!base) {
        log_error("worker", "cannot create the event loop");
        return 1;
    }
    /* Order: init (no I/O) → start (signals, timers, connections) → loop → free (kills what is
     * left, closes connections) → the base last, since every event lives on it. */
    int rc = 1;
    struct worker *w = worker_init(base, &o);
    if (w && worker_start(w)) {
        event_base_dispatch(base);
        rc = worker_exit_code(w);
    }
    worker_free(w);
    event_base_free(base);
    libevent_global_shutdown();
    return rc;
}
