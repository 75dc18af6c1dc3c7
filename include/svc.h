/* svc.h — systemd integration: READY/STATUS/WATCHDOG/STOPPING/RELOADING via sd_notify. */
#ifndef TASKER_SVC_H
#define TASKER_SVC_H

struct orchd;
struct svc;

/* All of these are no-ops (but harmless) when not started by systemd (no NOTIFY_SOCKET). */
struct svc *svc_new(struct orchd *o) __attribute__((warn_unused_result));
/* svc_start: arm the watchdog (at half of WATCHDOG_USEC, pinging only while the loop makes
 * progress) and the periodic STATUS= update. */
void svc_start(struct svc *s);
void svc_ready(struct svc *s);      /* READY=1 with a STATUS= line (sent again after a reload) */
void svc_reloading(struct svc *s);  /* RELOADING=1 with MONOTONIC_USEC= */
void svc_stopping(struct svc *s);   /* STOPPING=1 */
void svc_status(struct svc *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void svc_free(struct svc *s);

#endif
