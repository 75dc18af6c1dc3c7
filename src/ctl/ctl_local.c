/* ctl_local.c — `taskerctl config validate|dump` (the daemon's own loader, src/common/conf.c) and
 * `taskerctl db migrate|status` (run by the tasker-orchestratord binary, which embeds the SQL). */
#include "ctl.h"

#include "conf.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* load: parse -c / -e and load the configuration exactly as the daemon would. */
static int load(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv, struct conf *conf,
                struct conf_source *src, char *err, size_t errlen, bool *loaded)
{
    const char *path = NULL, *env = NULL;
    const struct ctl_opt opts[] = {
        {.name = "config", .short_name = 'c', .value = &path},
        {.name = "env", .short_name = 'e', .value = &env},
        {0},
    };
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 0, 0);
    if (rc != CTL_OK)
        return rc;
    log_init(LOG_LVL_WARN, false);
    *loaded = conf_load(conf, src, path, env, err, errlen);
    return CTL_OK;
}

static int config_validate(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    struct conf conf;
    struct conf_source src;
    char err[2048] = "";
    bool loaded;
    int rc = load(c, cmd, argc, argv, &conf, &src, err, sizeof err, &loaded);
    if (rc != CTL_OK)
        return rc;
    if (c->output == CTL_OUT_JSON) {
        json_t *doc = loaded ? json_pack("{s:b, s:s, s:s?, s:s}", "valid", 1, "config",
                                         src.base_path[0] ? src.base_path : "(built-in defaults)", "overlay",
                                         src.overlay_path[0] ? src.overlay_path : NULL, "environment",
                                         conf_env_name(conf.environment))
                             : json_pack("{s:b, s:s}", "valid", 0, "error", err);
        ctl_print_json(doc);
        json_decref(doc);
    }
    if (!loaded) {
        fprintf(stderr, "%s\n", err);
        return CTL_EFAIL;
    }
    if (c->output == CTL_OUT_TABLE)
        printf("configuration OK: %s%s%s, environment %s\n", src.base_path[0] ? src.base_path : "built-in defaults",
               src.overlay_path[0] ? " + " : "", src.overlay_path, conf_env_name(conf.environment));
    return CTL_OK;
}

static int config_dump(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    struct conf conf;
    struct conf_source src;
    char err[2048] = "";
    bool loaded;
    int rc = load(c, cmd, argc, argv, &conf, &src, err, sizeof err, &loaded);
    if (rc != CTL_OK)
        return rc;
    if (!loaded) {
        fprintf(stderr, "%s\n", err);
        return CTL_EFAIL;
    }
    conf_dump(&conf, stdout);
    return CTL_OK;
}

#define CONFIG_OPTS                                                                         \
    "  -c, --config FILE           the configuration file (default $TASKER_CONFIG_PATH)\n"  \
    "  -e, --env ENV               the overlay environments/ENV.conf (default $TASKER_ENV)\n"

const struct ctl_cmd ctl_config_cmds[] = {
    {"config", "validate", "[-c FILE] [-e ENV]",
     "Check a daemon configuration with the daemon's own loader; errors as file:line: message.", CONFIG_OPTS,
     config_validate},
    {"config", "dump", "[-c FILE] [-e ENV]",
     "Print the effective configuration (every key; the database password masked).", CONFIG_OPTS, config_dump},
    {0},
};

/* daemon_path: tasker-orchestratord next to taskerctl (bin/ of a build), in ../sbin (an install),
 * or NULL to search PATH. */
static const char *daemon_path(const struct ctl *c, char *buf, size_t len)
{
    static const char *const rel[] = {"/tasker-orchestratord", "/../sbin/tasker-orchestratord"};
    for (size_t i = 0; c->argv0_dir && i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(buf, len, "%s%s", c->argv0_dir, rel[i]);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return NULL;
}

static int db_run(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv, bool status)
{
    const char *url = NULL;
    bool verbose = false;
    const struct ctl_opt opts[] = {
        {.name = "database-url", .short_name = 'd', .value = &url},
        {.name = "verbose", .short_name = 'v', .flag = &verbose},
        {0},
    };
    const char *pos[1];
    int npos;
    int rc = ctl_parse(c, cmd, argc, argv, opts, pos, &npos, 0, 0);
    if (rc != CTL_OK)
        return rc;
    if (!url && !getenv("DATABASE_URL"))
        return ctl_usage_error(cmd, "no database: set DATABASE_URL or pass --database-url URL");
    char buf[4200];
    const char *bin = daemon_path(c, buf, sizeof buf);
    char *args[8];
    int n = 0;
    args[n++] = (char *)"tasker-orchestratord";
    args[n++] = (char *)"migrate";
    if (status)
        args[n++] = (char *)"--status";
    if (verbose)
        args[n++] = (char *)"--verbose";
    if (url) {
        args[n++] = (char *)"--database-url";
        args[n++] = (char *)url;
    }
    args[n] = NULL;
    fflush(stdout);
    if (bin)
        execv(bin, args);
    else
        execvp("tasker-orchestratord", args);
    fprintf(stderr, "taskerctl: cannot run tasker-orchestratord (not next to taskerctl, nor in ../sbin, nor on PATH)\n");
    return CTL_EFAIL;
}

static int db_migrate(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    return db_run(c, cmd, argc, argv, false);
}

static int db_status(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv)
{
    return db_run(c, cmd, argc, argv, true);
}

#define DB_OPTS                                                                            \
    "  -d, --database-url URL      the database (default $DATABASE_URL)\n"                 \
    "  -v, --verbose               also PostgreSQL's NOTICEs and debug detail\n"

const struct ctl_cmd ctl_db_cmds[] = {
    {"db", "migrate", "[--database-url URL] [-v]",
     "Apply the migrations and SQL functions built into tasker-orchestratord (safe to run concurrently).",
     DB_OPTS, db_migrate},
    {"db", "status", "[--database-url URL]",
     "List each schema file as applied, pending, changed! or skipped; changes nothing.", DB_OPTS, db_status},
    {0},
};
