/* notify_sink.c — a stand-in for systemd's notification socket, for the sd_notify tests.
 *
 * usage: notify_sink SOCKET_PATH
 * Binds a unix datagram socket at SOCKET_PATH (removed first if it exists) and writes every
 * datagram received to stdout, one line per newline-separated assignment:
 *     <epoch ms> <sender pid> <assignment>        e.g. "1764172800123 4242 READY=1"
 * The sender pid comes from SCM_CREDENTIALS (as systemd reads it), 0 if absent. stdout is
 * flushed after every datagram. Exits 0 on SIGTERM/SIGINT, removing the socket.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: notify_sink SOCKET_PATH\n");
        return 2;
    }
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(argv[1]) >= sizeof sa.sun_path) {
        fprintf(stderr, "notify_sink: socket path too long: %s\n", argv[1]);
        return 2;
    }
    strcpy(sa.sun_path, argv[1]);

    /* No SA_RESTART: the signal interrupts recvmsg and the loop sees stop. */
    struct sigaction act = { .sa_handler = on_signal };
    sigemptyset(&act.sa_mask);
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        perror("notify_sink: socket");
        return 1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0) {
        perror("notify_sink: SO_PASSCRED");
        return 1;
    }
    unlink(sa.sun_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        perror("notify_sink: bind");
        return 1;
    }

    char buf[4096];
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    while (!stop) {
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf - 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                             .msg_controllen = sizeof ctl.space };
        ssize_t n = recvmsg(fd, &mh, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("notify_sink: recvmsg");
            break;
        }
        buf[n] = '\0';
        long pid = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred cred;
                memcpy(&cred, CMSG_DATA(c), sizeof cred);
                pid = (long)cred.pid;
            }
        }
        long long t = now_ms();
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
            printf("%lld %ld %s\n", t, pid, line);
        fflush(stdout);
    }
    close(fd);
    unlink(sa.sun_path);
    return 0;
}
