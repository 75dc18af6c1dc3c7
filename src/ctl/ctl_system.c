/* ctl_system.c — `taskerctl system health|info`: the daemon's public health endpoints. */
#include "ctl.h"

#include "version.h"

#include <stdio.h>
#include <string.h>

/* health_get: GET a health endpoint; 200 and 503 both carry the daemon's JSON (503 = not ready),
 * so both are shown; *ok says which. Any other answer is an error. */
static int health_get(struct ctl *c, const char *path, json_t **doc, bool *ok)
{
    struct ctl_buf resp = {0};
    long status = 0;
    int rc = ctl_http(c, "GET", path, NULL, &status, &resp);
    *doc = NULL;
    if (rc == CTL_OK && status != 200 && status != 503)
        rc = ctl_api_error(c, status, resp.s);
    if (rc == CTL_OK && !(*doc = json_loadb(resp.s, resp.len, 0, NULL)))
        rc = ctl_api_error(c, status, resp.s);
    *ok = status == 200;
    ctl_buf_free(&resp);
    return rc;
}

static void health_table(json_t *doc)
{
    static const char *const keys[] = {"status", "checks.database", "checks.listener", "checks.stopping",
                                       "loop_lag_seconds", "uptime_seconds", NULL};
    ctl_print_fields(doc, keys);
}

static int system_health(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    bool live = false;
    const struct ctl_opt opts[] = {{.name = "live", .flag = &live}, {0}};
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 0, 0);
    if (rc != CTL_OK)
        return rc;
    json_t *doc;
    bool ok;
    if ((rc = health_get(c, live ? "/health/live" : "/health/ready", &doc, &ok)) != CTL_OK)
        return rc;
    ctl_emit(c, doc, health_table);
    return ok ? CTL_OK : CTL_EFAIL;
}

static void info_table(json_t *doc)
{
    static const char *const keys[] = {"status", "version", "processor_id", "uptime_seconds", "stopping",
                                       "checks.database.status", "checks.listener.status", "checks.http.port",
                                       "pool.total", "pool.busy", "pool.max", "pool.breaker_open", "pool.cannot_grow",
                                       "namespaces", NULL};
    ctl_print_fields(doc, keys);
    printf("%-23s %s\n", "taskerctl", TASKER_VERSION);
}

static int system_info(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, NULL, pos, &npos, 0, 0);
    if (rc != CTL_OK)
        return rc;
    json_t *doc;
    bool ok;
    if ((rc = health_get(c, "/health", &doc, &ok)) != CTL_OK)
        return rc;
    ctl_emit(c, doc, info_table);
    return ok ? CTL_OK : CTL_EFAIL;
}

const struct ctl_cmd ctl_system_cmds[] = {
    {"system", "health", "[--live]",
     "Is the daemon ready (database, LISTEN, not stopping)? Exit 0 ready, 1 not (GET /health/ready).",
     "      --live                  only whether its event loop runs (GET /health/live)\n", system_health},
    {"system", "info", "", "The daemon's version, processor id, uptime, pool and namespaces (GET /health).", NULL,
     system_info},
    {0},
};
