/* worker_exec.h — child processes for the exec handler: argv (no shell), stdin/stdout/stderr over
 * non-blocking pipes, a timeout (SIGTERM, then SIGKILL), reaping on SIGCHLD. Never blocks the loop. */
#ifndef TASKER_WORKER_EXEC_H
#define TASKER_WORKER_EXEC_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct worker_exec;

/* worker_exec_result: how a child ended, as passed to the done callback. The buffers are borrowed
 * for the duration of the callback. */
struct worker_exec_result {
    bool exited;            /* exited normally: exit_code is valid */
    int exit_code;
    int term_signal;        /* killed by this signal (when !exited) */
    bool timed_out;         /* we killed it: the timeout passed */
    int timeout_secs;
    bool overflow;          /* we killed it: stdout passed cap_bytes */
    size_t cap_bytes;
    const char *out;        /* stdout (NUL-terminated; out_len bytes, may hold NULs) */
    size_t out_len;
    const char *err;        /* the tail of stderr (NUL-terminated) */
    size_t err_len;
    bool err_truncated;     /* stderr was longer than what we kept */
};

/* worker_exec_done_fn: exactly one call per started child, unless worker_exec_cancel came first.
 * The worker_exec is freed right after the callback returns. */
typedef void (*worker_exec_done_fn)(void *arg, const struct worker_exec_result *r);

/* worker_exec_init: register the SIGCHLD handler on base. Once per process, before any start. */
bool worker_exec_init(struct event_base *base) __attribute__((warn_unused_result));

/* worker_exec_start: spawn argv[0] (PATH lookup) with argv and envp in a process group of its own,
 * write input to its stdin (then close it), collect stdout (up to cap_bytes) and the tail of
 * stderr, kill the group after timeout_secs. NULL with err filled if it could not start (logged
 * by the caller). */
struct worker_exec *worker_exec_start(char *const argv[], char *const envp[], const char *input, size_t input_len,
                                      int timeout_secs, size_t cap_bytes, worker_exec_done_fn cb, void *arg,
                                      char *err, size_t errlen) __attribute__((warn_unused_result));

/* worker_exec_cancel: the owner no longer wants the result: SIGTERM the group, SIGKILL after the
 * grace period; the child is reaped and the worker_exec freed later, without a callback. */
void worker_exec_cancel(struct worker_exec *e);

/* worker_exec_pid: the child's pid (for logs). */
int worker_exec_pid(const struct worker_exec *e);

/* worker_exec_live: children started and not yet reaped (including cancelled ones). */
int worker_exec_live(void);

/* worker_exec_shutdown: SIGKILL every remaining child's group, reap them (they die at once) and
 * free everything, without callbacks. Called once, at exit. */
void worker_exec_shutdown(void);

#endif
