/* worker_exec.c — child processes for the exec handler, driven by the event loop.
 *
 * posix_spawnp (no shell) into a new process group, so a timeout or a lost lease kills the command
 * and anything it started. stdin/stdout/stderr are non-blocking pipes watched by libevent; SIGCHLD
 * (an evsignal) reaps with waitpid(pid, WNOHANG) per child. A child is finished once it is reaped
 * and both output pipes reached EOF (or WORKER_EXEC_LINGER_MS passed after the exit, for commands
 * that leave a background process holding the pipes). Nothing here blocks, except the final
 * worker_exec_shutdown, which reaps children it has just SIGKILLed.
 */
#include "worker_exec.h"

#include "log.h"
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

/* worker_exec: one child. Owned by this module (the list below); the owner holds a handle until the
 * done callback or worker_exec_cancel. */
struct worker_exec {
    pid_t pid;
    bool reaped;            /* waitpid returned it: status is valid */
    int status;
    bool cancelled;         /* the owner is gone: no callback; free once reaped */
    bool timed_out;         /* killed for the timeout */
    bool overflow;          /* killed for too much stdout */
    bool term_sent;         /* SIGTERM went to the group; the kill timer now means SIGKILL */
    int timeout_secs;
    size_t cap;             /* stdout cap in bytes */
    int in_fd, out_fd, err_fd; /* our pipe ends, -1 once closed */
    struct event *in_ev, *out_ev, *err_ev;
    struct event *kill_ev;  /* the timeout, then the SIGKILL grace */
    struct event *linger_ev;/* after the exit: stop waiting for EOF */
    struct event *check_ev; /* activated when reaped */
    char *in_buf;
    size_t in_len, in_off;
    char *out;
    size_t out_len, out_alloc;
    char *err;              /* the last WORKER_EXEC_STDERR_KEEP_BYTES of stderr */
    size_t err_len;
    bool err_truncated;
    worker_exec_done_fn cb;
    void *arg;
    struct worker_exec *prev, *next;
};

static struct event_base *we_base;
static struct event *we_sigchld;
static struct worker_exec *we_list;
static int we_live;

static void we_maybe_done(struct worker_exec *e);

static void we_close(int *fd, struct event **ev)
{
    if (*ev) {
        event_free(*ev);
        *ev = NULL;
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void we_destroy(struct worker_exec *e)
{
    we_close(&e->in_fd, &e->in_ev);
    we_close(&e->out_fd, &e->out_ev);
    we_close(&e->err_fd, &e->err_ev);
    if (e->kill_ev)
        event_free(e->kill_ev);
    if (e->linger_ev)
        event_free(e->linger_ev);
    if (e->check_ev)
        event_free(e->check_ev);
    if (!e->reaped)
        we_live--;
    if (e->prev)
        e->prev->next = e->next;
    else
        we_list = e->next;
    if (e->next)
        e->next->prev = e->prev;
    free(e->in_buf);
    free(e->out);
    free(e->err);
    free(e);
}

/* we_signal_group: signal the child's process group while a member may be alive (the child itself,
 * or something still holding its pipes). Once the child is reaped and the pipes are closed, its pid
 * may be reused, so we leave it alone. */
static void we_signal_group(struct worker_exec *e, int sig)
{
    if (e->reaped && e->out_fd < 0 && e->err_fd < 0)
        return;
    if (kill(-e->pid, sig) != 0 && errno != ESRCH)
        log_warn("worker", "exec pid %ld: cannot send signal %d to its process group: %s", (long)e->pid, sig,
                 strerror(errno));
}

/* we_terminate: SIGTERM the group now, SIGKILL it after the grace period (kill_ev). */
static void we_terminate(struct worker_exec *e)
{
    if (e->term_sent)
        return;
    e->term_sent = true;
    we_signal_group(e, SIGTERM);
    struct timeval tv = { WORKER_EXEC_KILL_GRACE_MS / 1000, (WORKER_EXEC_KILL_GRACE_MS % 1000) * 1000 };
    event_add(e->kill_ev, &tv);
}

static void we_on_kill_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker_exec *e = arg;
    if (!e->term_sent) {
        /* The timeout. */
        log_debug("worker", "exec pid %ld: timed out after %d s, terminating", (long)e->pid, e->timeout_secs);
        if (!e->overflow && !e->cancelled)
            e->timed_out = true;
        we_terminate(e);
    } else {
        log_debug("worker", "exec pid %ld: still there after SIGTERM, killing", (long)e->pid);
        we_signal_group(e, SIGKILL);
    }
}

static void we_on_linger(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker_exec *e = arg;
    log_debug("worker", "exec pid %ld: exited but its output pipes stay open; not waiting longer", (long)e->pid);
    we_close(&e->out_fd, &e->out_ev);
    we_close(&e->err_fd, &e->err_ev);
    we_maybe_done(e);
}

static void we_on_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    we_maybe_done(arg);
}

/* we_maybe_done: finish e if it is reaped and its output is complete (frees e). */
static void we_maybe_done(struct worker_exec *e)
{
    if (!e->reaped)
        return;
    if (e->cancelled) {
        we_destroy(e);
        return;
    }
    if (e->out_fd >= 0 || e->err_fd >= 0) {
        if (!event_pending(e->linger_ev, EV_TIMEOUT, NULL)) {
            struct timeval tv = { WORKER_EXEC_LINGER_MS / 1000, (WORKER_EXEC_LINGER_MS % 1000) * 1000 };
            event_add(e->linger_ev, &tv);
        }
        return;
    }
    struct worker_exec_result r = {
        .exited = WIFEXITED(e->status),
        .exit_code = WIFEXITED(e->status) ? WEXITSTATUS(e->status) : -1,
        .term_signal = WIFSIGNALED(e->status) ? WTERMSIG(e->status) : 0,
        .timed_out = e->timed_out,
        .timeout_secs = e->timeout_secs,
        .overflow = e->overflow,
        .cap_bytes = e->cap,
        .out = e->out ? e->out : "",
        .out_len = e->out_len,
        .err = e->err ? e->err : "",
        .err_len = e->err_len,
        .err_truncated = e->err_truncated,
    };
    worker_exec_done_fn cb = e->cb;
    void *arg = e->arg;
    e->cb = NULL;
    cb(arg, &r);
    we_destroy(e);
}

static void we_on_stdin(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker_exec *e = arg;
    while (e->in_off < e->in_len) {
        ssize_t n = write(fd, e->in_buf + e->in_off, e->in_len - e->in_off);
        if (n > 0) {
            e->in_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EPIPE: the command does not read its stdin; that is its business. */
        log_debug("worker", "exec pid %ld: stdin closed early (%s)", (long)e->pid, n < 0 ? strerror(errno) : "?");
        break;
    }
    we_close(&e->in_fd, &e->in_ev);
}

static void we_on_stdout(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker_exec *e = arg;
    for (int round = 0; round < 8; round++) {
        /* Room for up to cap + 1 bytes (one past the cap tells us it overflowed) and a NUL. */
        if (e->out_alloc - e->out_len < 2) {
            size_t want = e->out_alloc ? e->out_alloc * 2 : 16384;
            if (want > e->cap + 2)
                want = e->cap + 2;
            char *p = realloc(e->out, want);
            if (!p) {
                log_error("worker", "exec pid %ld: out of memory reading stdout", (long)e->pid);
                e->overflow = true;
                break;
            }
            e->out = p;
            e->out_alloc = want;
        }
        size_t room = e->out_alloc - 1 - e->out_len;
        ssize_t n = read(fd, e->out + e->out_len, room);
        if (n > 0) {
            e->out_len += (size_t)n;
            e->out[e->out_len] = '\0';
            if (e->out_len > e->cap) {
                e->overflow = true;
                break;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EOF or a read error: the output is complete. */
        we_close(&e->out_fd, &e->out_ev);
        we_maybe_done(e);
        return;
    }
    if (e->overflow) {
        log_debug("worker", "exec pid %ld: stdout passed %zu bytes, terminating", (long)e->pid, e->cap);
        we_close(&e->out_fd, &e->out_ev); /* further writes get EPIPE */
        we_terminate(e);
        we_maybe_done(e);
    }
}

static void we_on_stderr(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct worker_exec *e = arg;
    char buf[16384];
    for (int round = 0; round < 8; round++) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            size_t keep = WORKER_EXEC_STDERR_KEEP_BYTES;
            if (!e->err) {
                e->err = malloc(keep + 1);
                if (!e->err)
                    return;
            }
            size_t add = (size_t)n;
            const char *src = buf;
            if (add > keep) {
                src += add - keep;
                add = keep;
                e->err_truncated = true;
            }
            if (e->err_len + add > keep) {
                size_t drop = e->err_len + add - keep;
                memmove(e->err, e->err + drop, e->err_len - drop);
                e->err_len -= drop;
                e->err_truncated = true;
            }
            memcpy(e->err + e->err_len, src, add);
            e->err_len += add;
            e->err[e->err_len] = '\0';
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        we_close(&e->err_fd, &e->err_ev);
        we_maybe_done(e);
        return;
    }
}

/* we_reap: SIGCHLD — collect every child of ours that exited. Each one finishes from its own
 * check event, so callbacks never run while this walks the list. */
static void we_reap(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    for (struct worker_exec *e = we_list; e; e = e->next) {
        if (e->reaped)
            continue;
        int status;
        pid_t r = waitpid(e->pid, &status, WNOHANG);
        if (r == e->pid || (r < 0 && errno == ECHILD)) {
            e->reaped = true;
            e->status = r == e->pid ? status : 0;
            we_live--;
            log_debug("worker", "exec pid %ld: reaped (status 0x%x)", (long)e->pid, e->status);
            if (e->check_ev)
                event_active(e->check_ev, EV_TIMEOUT, 0);
        }
    }
}

bool worker_exec_init(struct event_base *base)
{
    we_base = base;
    we_sigchld = evsignal_new(base, SIGCHLD, we_reap, NULL);
    if (!we_sigchld || event_add(we_sigchld, NULL) != 0) {
        log_error("worker", "cannot watch SIGCHLD");
        return false;
    }
    return true;
}

static bool we_pipe(int fds[2], char *err, size_t errlen)
{
    if (pipe2(fds, O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return false;
    }
    return true;
}

/* we_findable: can argv0 be executed (PATH lookup as posix_spawnp does)? Checked up front because
 * some posix_spawn implementations (valgrind's fork fallback, older libcs) report a failed exec
 * only as exit status 127; this way a missing command gets the same message everywhere. */
static bool we_findable(const char *argv0, char *err, size_t errlen)
{
    if (strchr(argv0, '/')) {
        if (access(argv0, X_OK) == 0)
            return true;
        snprintf(err, errlen, "cannot run %s: %s", argv0, strerror(errno));
        return false;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    int first_err = ENOENT;
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        char file[4096];
        if (snprintf(file, sizeof file, "%.*s%s%s", (int)n, p, n ? "/" : "", argv0) < (int)sizeof file) {
            if (access(file, X_OK) == 0)
                return true;
            if (errno == EACCES)
                first_err = EACCES;
        }
        if (!colon)
            break;
        p = colon + 1;
    }
    snprintf(err, errlen, "cannot run %s: %s", argv0, strerror(first_err));
    return false;
}

static void we_close_pair(int fds[2])
{
    for (int i = 0; i < 2; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

struct worker_exec *worker_exec_start(char *const argv[], char *const envp[], const char *input, size_t input_len,
                                      int timeout_secs, size_t cap_bytes, worker_exec_done_fn cb, void *arg,
                                      char *err, size_t errlen)
{
    int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
    struct worker_exec *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->in_fd = e->out_fd = e->err_fd = -1;
    e->cap = cap_bytes;
    e->timeout_secs = timeout_secs;
    e->cb = cb;
    e->arg = arg;
    if (input_len) {
        e->in_buf = malloc(input_len);
        if (!e->in_buf) {
            snprintf(err, errlen, "out of memory");
            free(e);
            return NULL;
        }
        memcpy(e->in_buf, input, input_len);
        e->in_len = input_len;
    }
    if (!we_findable(argv[0], err, errlen))
        goto fail;
    if (!we_pipe(pin, err, errlen) || !we_pipe(pout, err, errlen) || !we_pipe(perr, err, errlen))
        goto fail;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all); /* SIGPIPE is ignored here; not in the child */
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    int rc = posix_spawnp(&e->pid, argv[0], &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        snprintf(err, errlen, "cannot run %s: %s", argv[0], strerror(rc));
        goto fail;
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    e->in_fd = pin[1];
    e->out_fd = pout[0];
    e->err_fd = perr[0];
    pin[0] = pin[1] = pout[0] = pout[1] = perr[0] = perr[1] = -1;

    /* From here the child runs: it is ours to reap whatever happens, so it joins the list first. */
    e->next = we_list;
    if (we_list)
        we_list->prev = e;
    we_list = e;
    we_live++;

    fcntl(e->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(e->out_fd, F_SETFL, O_NONBLOCK);
    fcntl(e->err_fd, F_SETFL, O_NONBLOCK);
    e->out_ev = event_new(we_base, e->out_fd, EV_READ | EV_PERSIST, we_on_stdout, e);
    e->err_ev = event_new(we_base, e->err_fd, EV_READ | EV_PERSIST, we_on_stderr, e);
    e->in_ev = e->in_len ? event_new(we_base, e->in_fd, EV_WRITE | EV_PERSIST, we_on_stdin, e) : NULL;
    e->kill_ev = evtimer_new(we_base, we_on_kill_timer, e);
    e->linger_ev = evtimer_new(we_base, we_on_linger, e);
    e->check_ev = event_new(we_base, -1, 0, we_on_check, e);
    if (!e->out_ev || !e->err_ev || (e->in_len && !e->in_ev) || !e->kill_ev || !e->linger_ev || !e->check_ev) {
        /* The child exists: kill it and let the reaper free it. */
        snprintf(err, errlen, "out of memory watching the child");
        e->cancelled = true;
        e->cb = NULL;
        if (e->kill_ev)
            we_terminate(e);
        else
            kill(-e->pid, SIGKILL);
        return NULL;
    }
    if (!e->in_len)
        we_close(&e->in_fd, &e->in_ev);
    else
        event_add(e->in_ev, NULL);
    event_add(e->out_ev, NULL);
    event_add(e->err_ev, NULL);
    struct timeval tv = { timeout_secs, 0 };
    event_add(e->kill_ev, &tv);
    return e;

fail:
    we_close_pair(pin);
    we_close_pair(pout);
    we_close_pair(perr);
    free(e->in_buf);
    free(e);
    return NULL;
}

void worker_exec_cancel(struct worker_exec *e)
{
    if (!e)
        return;
    e->cancelled = true;
    e->cb = NULL;
    /* Stop reading: the owner wants nothing more; a writer now gets EPIPE. */
    we_close(&e->in_fd, &e->in_ev);
    we_close(&e->out_fd, &e->out_ev);
    we_close(&e->err_fd, &e->err_ev);
    if (e->reaped) {
        we_destroy(e);
        return;
    }
    if (e->term_sent) {
        /* Already terminating (timeout or overflow): the kill timer will SIGKILL. */
        return;
    }
    /* The group may hold more than the child: signal it while the child is not reaped. */
    if (kill(-e->pid, SIGTERM) != 0 && errno != ESRCH)
        log_warn("worker", "exec pid %ld: cannot terminate: %s", (long)e->pid, strerror(errno));
    e->term_sent = true;
    event_del(e->kill_ev);
    struct timeval tv = { WORKER_EXEC_KILL_GRACE_MS / 1000, (WORKER_EXEC_KILL_GRACE_MS % 1000) * 1000 };
    event_add(e->kill_ev, &tv);
}

int worker_exec_pid(const struct worker_exec *e)
{
    return (int)e->pid;
}

int worker_exec_live(void)
{
    return we_live;
}

void worker_exec_shutdown(void)
{
    while (we_list) {
        struct worker_exec *e = we_list;
        if (!e->reaped) {
            kill(-e->pid, SIGKILL);
            int status;
            while (waitpid(e->pid, &status, 0) < 0 && errno == EINTR)
                ;
            e->reaped = true;
            we_live--;
        }
        e->cancelled = true;
        we_destroy(e);
    }
    if (we_sigchld) {
        event_free(we_sigchld);
        we_sigchld = NULL;
    }
}
