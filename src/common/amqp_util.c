/* amqp_util.c — pure helpers of the AMQP link: URL check and masking, confirm-tag bookkeeping. */
#include "amqp_link.h"

#include <amqp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool amqp_url_check(const char *url, char *why, size_t whylen)
{
    if (!*url) {
        snprintf(why, whylen, "is empty");
        return false;
    }
    char *copy = strdup(url); /* amqp_parse_url writes into its argument */
    if (!copy) {
        snprintf(why, whylen, "out of memory");
        return false;
    }
    struct amqp_connection_info ci;
    int rc = amqp_parse_url(copy, &ci);
    bool ok = rc == AMQP_STATUS_OK;
    if (!ok)
        snprintf(why, whylen, "is not an AMQP URL (amqp://user:password@host:port/vhost): %s", amqp_error_string2(rc));
    else if (!*ci.host) {
        snprintf(why, whylen, "names no host");
        ok = false;
    }
    free(copy);
    return ok;
}

void amqp_url_mask(const char *url, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    snprintf(out, outlen, "%s", url);
    const char *scheme = strstr(url, "://");
    if (!scheme)
        return;
    const char *auth = scheme + 3;
    size_t hostpart = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *q = auth; q < auth + hostpart; q++)
        if (*q == '@')
            at = q; /* the last @ ends the userinfo */
    if (!at)
        return;
    const char *colon = memchr(auth, ':', (size_t)(at - auth));
    if (!colon)
        return;
    snprintf(out, outlen, "%.*s***%s", (int)(colon + 1 - url), url, at);
}

void amqp_confirms_reset(struct amqp_confirms *c)
{
    c->first = 0;
    c->n = 0;
    c->settled = 0;
}

bool amqp_confirms_add(struct amqp_confirms *c, uint64_t tag)
{
    if (c->n == 0)
        c->first = tag;
    else if (tag != c->first + c->n)
        return false;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        unsigned char *st = realloc(c->st, cap);
        if (!st)
            return false;
        c->st = st;
        c->cap = cap;
    }
    c->st[c->n++] = AMQP_CONFIRM_PENDING;
    return true;
}

/* settle_one: entry i gets the broker's answer, unless it already has one. */
static size_t settle_one(struct amqp_confirms *c, size_t i, bool ack)
{
    if (c->st[i] == AMQP_CONFIRM_PENDING) {
        c->st[i] = ack ? AMQP_CONFIRM_ACKED : AMQP_CONFIRM_NACKED;
        c->settled++;
        return 1;
    }
    if (c->st[i] == AMQP_CONFIRM_RETURNED && !ack)
        c->st[i] = AMQP_CONFIRM_NACKED;
    return 0;
}

size_t amqp_confirms_settle(struct amqp_confirms *c, uint64_t tag, bool multiple, bool ack)
{
    if (c->n == 0 || (tag < c->first && !multiple))
        return 0;
    if (tag < c->first)
        return 0;
    size_t last = (size_t)(tag - c->first);
    if (last >= c->n) {
        if (!multiple)
            return 0;
        last = c->n - 1; /* a multiple ack beyond the burst covers all of it */
    }
    size_t done = 0;
    if (!multiple)
        return settle_one(c, last, ack);
    for (size_t i = 0; i <= last; i++)
        done += settle_one(c, i, ack);
    return done;
}

void amqp_confirms_returned(struct amqp_confirms *c, size_t i)
{
    if (i >= c->n)
        return;
    if (c->st[i] == AMQP_CONFIRM_PENDING)
        c->settled++; /* its ack still comes, but the outcome is known now */
    if (c->st[i] != AMQP_CONFIRM_NACKED)
        c->st[i] = AMQP_CONFIRM_RETURNED;
}

bool amqp_confirms_done(const struct amqp_confirms *c)
{
    return c->settled >= c->n;
}

void amqp_confirms_free(struct amqp_confirms *c)
{
    free(c->st);
    c->st = NULL;
    c->n = c->cap = c->settled = 0;
}
