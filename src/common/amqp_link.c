/* amqp_link.c — one AMQP 0-9-1 connection (rabbitmq-c 0.11) on a libevent loop.
 *
 * Why this shape: rabbitmq-c has no asynchronous API and one connection must stay on one thread.
 * Rather than an I/O thread and a queue into the loop, the socket is driven from the loop itself:
 * - Reads: EV_READ on amqp_get_sockfd(); on each wake-up the frames are drained with
 *   amqp_simple_wait_frame_noblock() and a zero timeval until AMQP_STATUS_TIMEOUT, which also
 *   empties what rabbitmq-c had already buffered (buffered data raises no new read event). A
 *   deliver or return method is followed by its header and body, which the broker writes back to
 *   back; amqp_read_message() reads them (bounded by the RPC timeout).
 * - Writes: amqp_basic_publish() and amqp_basic_ack() are plain socket writes of small frames.
 * - Connecting blocks (TCP connect, login, channel.open, confirm.select, and for a consumer
 *   queue.declare, basic.qos, basic.consume are RPCs), and a broker host that drops packets would
 *   hold the loop for the whole timeout. So each attempt runs on a short-lived thread of its own,
 *   which builds a complete connection (every step bounded by opts.timeout_ms) and hands it to the
 *   loop through a pipe; only then does the loop touch it. One connection, one thread at a time.
 * - Declares after that (amqp_link_declare) are sent without waiting: the broker handles a
 *   channel's methods in order, so a publish sent after a declare finds the queue, and the
 *   declare-ok (which carries the ready count) comes back through the read loop.
 * - Heartbeats: rabbitmq-c services them only inside its calls, so a timer drains every
 *   heartbeat/2 seconds; an idle link stays alive and a dead broker is noticed.
 * Any error (socket, heartbeat timeout, a channel or connection close from the broker, a consumer
 * cancel) tears the whole connection down and reconnects with backoff: one channel per connection
 * keeps recovery a single path (reconnect, redeclare, confirm.select, qos, consume).
 */
#include "amqp_link.h"

#include "backoff.h"
#include "log.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define LINK_CHANNEL 1

enum link_state {
    LINK_DOWN,
    LINK_CONNECTING, /* the connect thread owns the attempt; the loop does not touch conn */
    LINK_UP,
    LINK_FAILED      /* broken; teardown and on_down pending */
};

struct amqp_link {
    struct event_base *base;
    struct amqp_link_opts o;
    char *url, *tag, *queue;
    struct amqp_link_handlers h;
    void *arg;
    amqp_connection_state_t conn;
    enum link_state state;
    struct event *rd, *hb, *retry;
    int failures;
    uint64_t next_tag;          /* confirm tag of the next publish on this connection */
    unsigned long long connects;
    bool was_up;                /* on_down is owed for the current loss */
    char last_error[256];
    /* The connect thread's attempt: it writes conn_made/open_error, then one byte to wake[1]. */
    pthread_t opener;
    bool opening;
    int wake[2];
    struct event *wake_ev;
    amqp_connection_state_t conn_made;
    char open_error[256];
};

static void link_drain(struct amqp_link *l);

static void ms_to_tv(int ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

static void link_retry_in(struct amqp_link *l, long long ms)
{
    struct timeval tv = { .tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000) };
    evtimer_add(l->retry, &tv);
}

/* link_fail: the connection is unusable. Nothing is freed here (we may be deep inside a callback
 * of ours); the retry timer tears down, reports on_down and reconnects. */
static void link_fail(struct amqp_link *l, const char *what, const char *detail)
{
    if (l->state == LINK_FAILED)
        return;
    snprintf(l->last_error, sizeof l->last_error, "%s%s", what, detail);
    if (l->state == LINK_UP)
        log_warn(l->tag, "broker link lost: %s", l->last_error);
    l->state = LINK_FAILED;
    if (l->rd)
        event_del(l->rd);
    if (l->hb)
        event_del(l->hb);
    link_retry_in(l, 0);
}

/* rpc_ok: the reply to the last RPC on conn was normal; else why, in err (connect thread). */
static bool rpc_ok(amqp_connection_state_t conn, const char *what, char *err, size_t errlen)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
    if (r.reply_type == AMQP_RESPONSE_NORMAL)
        return true;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        snprintf(err, errlen, "%s: %s", what, amqp_error_string2(r.library_error));
    else if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD || r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_connection_close_t *c = r.reply.decoded;
        snprintf(err, errlen, "%s: broker closed: %d %.*s", what, c ? c->reply_code : 0,
                 c ? (int)c->reply_text.len : 0, c ? (const char *)c->reply_text.bytes : "");
    } else
        snprintf(err, errlen, "%s: unexpected broker reply", what);
    return false;
}

static void link_teardown(struct amqp_link *l, bool polite)
{
    if (l->rd) {
        event_free(l->rd);
        l->rd = NULL;
    }
    if (l->conn) {
        if (polite) {
            (void)amqp_channel_close(l->conn, LINK_CHANNEL, AMQP_REPLY_SUCCESS);
            (void)amqp_connection_close(l->conn, AMQP_REPLY_SUCCESS);
        }
        amqp_destroy_connection(l->conn);
        l->conn = NULL;
    }
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    link_drain(arg);
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    link_drain(arg);
}

bool amqp_link_declare(struct amqp_link *l, const char *queue)
{
    if (l->state != LINK_UP)
        return false;
    amqp_queue_declare_t req = { .queue = amqp_cstring_bytes(queue), .durable = 1, .arguments = amqp_empty_table };
    int rc = amqp_send_method(l->conn, LINK_CHANNEL, AMQP_QUEUE_DECLARE_METHOD, &req);
    if (rc != AMQP_STATUS_OK) {
        link_fail(l, "queue.declare: ", amqp_error_string2(rc));
        return false;
    }
    return true;
}

/* link_open: one complete connection, on the connect thread; every step bounded by timeout_ms.
 * It reads only what does not change after amqp_link_new (o, url, queue) and writes only
 * conn_made and open_error, which the loop reads after the wake-up byte. */
static amqp_connection_state_t link_open(struct amqp_link *l, char *err, size_t errlen)
{
    struct amqp_connection_info ci;
    char *url = strdup(l->url);
    if (!url || amqp_parse_url(url, &ci) != AMQP_STATUS_OK) {
        free(url);
        snprintf(err, errlen, "messaging.rabbitmq.url is not an AMQP URL");
        return NULL;
    }
    struct timeval tv;
    ms_to_tv(l->o.timeout_ms, &tv);
    bool ok = false;
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *s = conn ? amqp_tcp_socket_new(conn) : NULL;
    if (!s) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    (void)amqp_set_handshake_timeout(conn, &tv);
    (void)amqp_set_rpc_timeout(conn, &tv);
    int rc = amqp_socket_open_noblock(s, ci.host, ci.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        snprintf(err, errlen, "cannot connect to %s:%d: %s", ci.host, ci.port, amqp_error_string2(rc));
        goto out;
    }
    amqp_rpc_reply_t r = amqp_login(conn, ci.vhost, 0, 131072, l->o.heartbeat_secs, AMQP_SASL_METHOD_PLAIN,
                                    ci.user, ci.password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        snprintf(err, errlen, "login to %s:%d failed: %s", ci.host, ci.port,
                 r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ? amqp_error_string2(r.library_error)
                                                                 : "refused by the broker");
        goto out;
    }
    amqp_channel_open(conn, LINK_CHANNEL);
    if (!rpc_ok(conn, "channel.open", err, errlen))
        goto out;
    if (l->o.confirms) {
        amqp_confirm_select(conn, LINK_CHANNEL);
        if (!rpc_ok(conn, "confirm.select", err, errlen))
            goto out;
    }
    if (l->queue) {
        amqp_queue_declare(conn, LINK_CHANNEL, amqp_cstring_bytes(l->queue), 0, 1, 0, 0, amqp_empty_table);
        if (!rpc_ok(conn, "queue.declare", err, errlen))
            goto out;
        amqp_basic_qos(conn, LINK_CHANNEL, 0, (uint16_t)l->o.prefetch, 0);
        if (!rpc_ok(conn, "basic.qos", err, errlen))
            goto out;
        amqp_basic_consume(conn, LINK_CHANNEL, amqp_cstring_bytes(l->queue), amqp_empty_bytes, 0, 0, 0,
                           amqp_empty_table);
        if (!rpc_ok(conn, "basic.consume", err, errlen))
            goto out;
    }
    ok = true;
out:
    free(url);
    if (!ok && conn) {
        amqp_destroy_connection(conn);
        conn = NULL;
    }
    return conn;
}

static void *opener_main(void *arg)
{
    struct amqp_link *l = arg;
    l->conn_made = link_open(l, l->open_error, sizeof l->open_error);
    char b = 1;
    while (write(l->wake[1], &b, 1) < 0 && errno == EINTR)
        ;
    return NULL;
}

/* link_attach: the connect thread is done and joined; on the loop again. */
static bool link_attach(struct amqp_link *l)
{
    l->conn = l->conn_made;
    l->conn_made = NULL;
    if (!l->conn) {
        snprintf(l->last_error, sizeof l->last_error, "%s", l->open_error);
        return false;
    }
    l->next_tag = 1;
    l->rd = event_new(l->base, amqp_get_sockfd(l->conn), EV_READ | EV_PERSIST, on_read, l);
    if (!l->rd || event_add(l->rd, NULL) != 0) {
        snprintf(l->last_error, sizeof l->last_error, "out of memory");
        link_teardown(l, false);
        return false;
    }
    if (l->o.heartbeat_secs > 0) {
        struct timeval hb = { .tv_sec = l->o.heartbeat_secs / 2, .tv_usec = (l->o.heartbeat_secs % 2) * 500000 };
        event_add(l->hb, &hb);
    }
    l->state = LINK_UP;
    return true;
}

static void link_join_opener(struct amqp_link *l)
{
    if (!l->opening)
        return;
    pthread_join(l->opener, NULL);
    l->opening = false;
    char buf[8];
    while (read(l->wake[0], buf, sizeof buf) > 0)
        ;
}

static void on_opened(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp_link *l = arg;
    if (!l->opening)
        return;
    link_join_opener(l);
    l->state = LINK_DOWN;
    if (link_attach(l)) {
        l->failures = 0;
        l->connects++;
        l->was_up = true;
        log_info(l->tag, "broker link up%s%s", l->queue ? ", consuming " : "", l->queue ? l->queue : "");
        if (l->h.on_up)
            l->h.on_up(l->arg);
        if (l->state == LINK_UP)
            link_drain(l); /* anything that arrived with the replies */
        return;
    }
    l->failures++;
    if (l->failures == 1 || l->failures % 10 == 0)
        log_warn(l->tag, "broker link down: %s (attempt %d; retrying)", l->last_error, l->failures);
    link_retry_in(l, backoff_ms(l->o.reconnect_initial_ms, l->o.reconnect_max_ms, l->failures, 25, (unsigned)rand()));
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct amqp_link *l = arg;
    if (l->state == LINK_FAILED) {
        link_teardown(l, false);
        l->state = LINK_DOWN;
        if (l->was_up) {
            l->was_up = false;
            if (l->h.on_down)
                l->h.on_down(l->arg, l->last_error);
        }
        l->failures = 0;
        link_retry_in(l, backoff_ms(l->o.reconnect_initial_ms, l->o.reconnect_max_ms, 1, 25, (unsigned)rand()));
        return;
    }
    if (l->opening)
        return;
    l->conn_made = NULL;
    l->open_error[0] = '\0';
    if (pthread_create(&l->opener, NULL, opener_main, l) != 0) {
        snprintf(l->last_error, sizeof l->last_error, "cannot start the connect thread");
        link_retry_in(l, backoff_ms(l->o.reconnect_initial_ms, l->o.reconnect_max_ms, ++l->failures, 25,
                                    (unsigned)rand()));
        return;
    }
    l->opening = true;
    l->state = LINK_CONNECTING;
}

/* read_content: the header and body after a deliver or return method. */
static bool read_content(struct amqp_link *l, amqp_message_t *msg)
{
    amqp_rpc_reply_t r = amqp_read_message(l->conn, LINK_CHANNEL, msg, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        link_fail(l, "reading a message: ",
                  r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ? amqp_error_string2(r.library_error) : "protocol");
        return false;
    }
    return true;
}

static void message_id_of(const amqp_message_t *msg, char *out, size_t len)
{
    out[0] = '\0';
    if (msg->properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
        snprintf(out, len, "%.*s", (int)msg->properties.message_id.len, (const char *)msg->properties.message_id.bytes);
}

static void link_drain(struct amqp_link *l)
{
    while (l->state == LINK_UP) {
        amqp_frame_t f;
        struct timeval zero = { 0, 0 };
        int rc = amqp_simple_wait_frame_noblock(l->conn, &f, &zero);
        if (rc == AMQP_STATUS_TIMEOUT)
            break;
        if (rc != AMQP_STATUS_OK) {
            link_fail(l, "", amqp_error_string2(rc));
            return;
        }
        if (f.frame_type != AMQP_FRAME_METHOD)
            continue;
        switch (f.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            if (l->h.on_confirm)
                l->h.on_confirm(l->arg, a->delivery_tag, a->multiple, true);
            break;
        }
        case AMQP_BASIC_NACK_METHOD: {
            const amqp_basic_nack_t *a = f.payload.method.decoded;
            if (l->h.on_confirm)
                l->h.on_confirm(l->arg, a->delivery_tag, a->multiple, false);
            break;
        }
        case AMQP_BASIC_RETURN_METHOD: {
            amqp_basic_return_t ret = *(amqp_basic_return_t *)f.payload.method.decoded;
            char key[256], id[64];
            snprintf(key, sizeof key, "%.*s", (int)ret.routing_key.len, (const char *)ret.routing_key.bytes);
            amqp_message_t msg;
            if (!read_content(l, &msg))
                return;
            message_id_of(&msg, id, sizeof id);
            amqp_destroy_message(&msg);
            if (l->h.on_return)
                l->h.on_return(l->arg, key, id, ret.reply_code);
            break;
        }
        case AMQP_BASIC_DELIVER_METHOD: {
            amqp_basic_deliver_t d = *(amqp_basic_deliver_t *)f.payload.method.decoded;
            amqp_message_t msg;
            char id[64];
            if (!read_content(l, &msg))
                return;
            message_id_of(&msg, id, sizeof id);
            if (l->h.on_delivery)
                l->h.on_delivery(l->arg, d.delivery_tag, d.redelivered, id, msg.body.bytes, msg.body.len);
            amqp_destroy_message(&msg);
            break;
        }
        case AMQP_CHANNEL_CLOSE_METHOD: {
            const amqp_channel_close_t *c = f.payload.method.decoded;
            char why[200];
            snprintf(why, sizeof why, "channel closed by the broker: %d %.*s", c->reply_code, (int)c->reply_text.len,
                     (const char *)c->reply_text.bytes);
            amqp_channel_close_ok_t ok = { 0 };
            (void)amqp_send_method(l->conn, LINK_CHANNEL, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
            link_fail(l, "", why);
            return;
        }
        case AMQP_CONNECTION_CLOSE_METHOD: {
            const amqp_connection_close_t *c = f.payload.method.decoded;
            char why[200];
            snprintf(why, sizeof why, "connection closed by the broker: %d %.*s", c->reply_code,
                     (int)c->reply_text.len, (const char *)c->reply_text.bytes);
            amqp_connection_close_ok_t ok = { 0 };
            (void)amqp_send_method(l->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
            link_fail(l, "", why);
            return;
        }
        case AMQP_QUEUE_DECLARE_OK_METHOD: {
            const amqp_queue_declare_ok_t *q = f.payload.method.decoded;
            char name[256];
            snprintf(name, sizeof name, "%.*s", (int)q->queue.len, (const char *)q->queue.bytes);
            if (l->h.on_queue_depth)
                l->h.on_queue_depth(l->arg, name, q->message_count, q->consumer_count);
            break;
        }
        case AMQP_BASIC_CANCEL_METHOD:
            link_fail(l, "", "the broker cancelled our consumer (queue deleted?)");
            return;
        default:
            break;
        }
        if (l->state == LINK_UP)
            amqp_maybe_release_buffers(l->conn);
    }
}

struct amqp_link *amqp_link_new(struct event_base *base, const struct amqp_link_opts *opts,
                                const struct amqp_link_handlers *h, void *arg)
{
    struct amqp_link *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->base = base;
    l->o = *opts;
    l->h = *h;
    l->arg = arg;
    l->url = strdup(opts->url);
    l->tag = strdup(opts->tag ? opts->tag : "amqp");
    l->queue = opts->consume_queue ? strdup(opts->consume_queue) : NULL;
    l->wake[0] = l->wake[1] = -1;
    l->hb = event_new(base, -1, EV_PERSIST, on_heartbeat, l);
    l->retry = evtimer_new(base, on_retry, l);
    if (pipe2(l->wake, O_NONBLOCK | O_CLOEXEC) == 0)
        l->wake_ev = event_new(base, l->wake[0], EV_READ | EV_PERSIST, on_opened, l);
    if (!l->url || !l->tag || (opts->consume_queue && !l->queue) || !l->hb || !l->retry || !l->wake_ev ||
        event_add(l->wake_ev, NULL) != 0) {
        amqp_link_free(l);
        return NULL;
    }
    if (l->o.timeout_ms <= 0)
        l->o.timeout_ms = 5000;
    if (l->o.prefetch <= 0)
        l->o.prefetch = 1;
    snprintf(l->last_error, sizeof l->last_error, "not connected yet");
    return l;
}

void amqp_link_start(struct amqp_link *l)
{
    link_retry_in(l, 0);
}

bool amqp_link_is_up(const struct amqp_link *l)
{
    return l && l->state == LINK_UP;
}

bool amqp_link_publish(struct amqp_link *l, const char *queue, const char *message_id, const char *body, size_t len,
                       uint64_t *tag)
{
    if (l->state != LINK_UP)
        return false;
    amqp_basic_properties_t p = { 0 };
    p._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    p.delivery_mode = 2; /* persistent */
    p.content_type = amqp_cstring_bytes("application/json");
    if (message_id) {
        p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        p.message_id = amqp_cstring_bytes(message_id);
    }
    amqp_bytes_t b = { .len = len, .bytes = (void *)body };
    int rc = amqp_basic_publish(l->conn, LINK_CHANNEL, amqp_empty_bytes, amqp_cstring_bytes(queue), 1, 0, &p, b);
    if (rc != AMQP_STATUS_OK) {
        link_fail(l, "publish: ", amqp_error_string2(rc));
        return false;
    }
    if (tag)
        *tag = l->next_tag;
    l->next_tag++;
    return true;
}

bool amqp_link_ack(struct amqp_link *l, uint64_t delivery_tag)
{
    if (l->state != LINK_UP)
        return false;
    int rc = amqp_basic_ack(l->conn, LINK_CHANNEL, delivery_tag, 0);
    if (rc != AMQP_STATUS_OK) {
        link_fail(l, "ack: ", amqp_error_string2(rc));
        return false;
    }
    return true;
}

const char *amqp_link_last_error(const struct amqp_link *l)
{
    return l->last_error;
}

unsigned long long amqp_link_connects(const struct amqp_link *l)
{
    return l->connects;
}

void amqp_link_free(struct amqp_link *l)
{
    if (!l)
        return;
    link_join_opener(l); /* at most timeout_ms: an attempt in progress ends on its own */
    if (l->conn_made)
        amqp_destroy_connection(l->conn_made);
    if (l->wake_ev)
        event_free(l->wake_ev);
    for (int i = 0; i < 2; i++)
        if (l->wake[i] >= 0)
            close(l->wake[i]);
    if (l->hb)
        event_free(l->hb);
    if (l->retry)
        event_free(l->retry);
    link_teardown(l, l->state == LINK_UP);
    free(l->url);
    free(l->tag);
    free(l->queue);
    free(l);
}
