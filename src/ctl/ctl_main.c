/* ctl_main.c — taskerctl's entry point: global options, the command table, dispatch, exit codes. */
#include "ctl.h"

#include "version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct group {
    const char *name;
    const char *summary;
    const struct ctl_cmd *cmds; /* terminated by a row without name */
};

static const struct group groups[] = {
    {"task", "create, list and follow tasks", ctl_task_cmds},
    {"step", "operator actions on one step", ctl_step_cmds},
    {"template", "task templates", ctl_template_cmds},
    {"dlq", "the dead-letter queue", ctl_dlq_cmds},
    {"system", "the daemon's health and identity", ctl_system_cmds},
    {"config", "the daemon's configuration, checked locally", ctl_config_cmds},
    {"db", "the database schema (runs tasker-orchestratord migrate)", ctl_db_cmds},
};
#define NGROUPS (sizeof groups / sizeof groups[0])

static void usage(FILE *fp, bool full)
{
    fputs("usage: taskerctl [--url URL] [--api-key KEY] [--output table|json] GROUP COMMAND [ARGS…]\n", fp);
    if (!full) {
        fputs("Try 'taskerctl --help'.\n", fp);
        return;
    }
    fputs("\nThe operator's command line of tasker-orchestratord: talks to its HTTP API.\n\nCommands:\n", fp);
    for (size_t g = 0; g < NGROUPS; g++) {
        for (const struct ctl_cmd *c = groups[g].cmds; c->name; c++)
            fprintf(fp, "  %-8s %-10s %s\n", c->group, c->name, c->summary);
    }
    fputs("\nGlobal options (also accepted after the command):\n"
          "  --url URL           the daemon (default $TASKER_URL, else http://127.0.0.1:8080)\n"
          "  --api-key KEY       an API key (or JWT), sent as a Bearer token (default $TASKER_API_KEY)\n"
          "  --output FORMAT     table (default on a terminal) or json (default otherwise)\n"
          "  -h, --help          this help; 'taskerctl GROUP COMMAND --help' for a command's\n"
          "  -V, --version       the version\n"
          "\nExit status: 0 ok, 1 refused by the daemon or a failed check, 2 usage, 3 daemon unreachable,\n"
          "4 unauthorized or forbidden; task wait: 5 error, 6 cancelled, 7 resolved manually,\n"
          "8 blocked by failures, 9 timed out.\n",
          fp);
}

static void group_usage(FILE *fp, const struct group *g)
{
    fprintf(fp, "usage: taskerctl %s COMMAND [ARGS…]\n\n%s:\n", g->name, g->summary);
    for (const struct ctl_cmd *c = g->cmds; c->name; c++)
        fprintf(fp, "  %-10s %s\n", c->name, c->summary);
    fprintf(fp, "\n'taskerctl %s COMMAND --help' for a command's options.\n", g->name);
}

/* argv0_dir: the directory of the running binary (to find tasker-orchestratord next to it). */
static const char *argv0_dir(void)
{
    static char dir[4096];
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0)
        return NULL;
    dir[n] = '\0';
    char *slash = strrchr(dir, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    return dir;
}

int main(int argc, char **argv)
{
    struct ctl c = {.output = isatty(STDOUT_FILENO) ? CTL_OUT_TABLE : CTL_OUT_JSON};
    const char *env_url = getenv("TASKER_URL");
    if (!ctl_set_url(&c, env_url && *env_url ? env_url : "http://127.0.0.1:8080"))
        return CTL_EUSAGE;
    c.api_key = getenv("TASKER_API_KEY");
    c.argv0_dir = argv0_dir();

    /* Global options before the group (the same ones every command accepts after it). */
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout, true);
            return CTL_OK;
        }
        if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("taskerctl %s\n", TASKER_VERSION);
            return CTL_OK;
        }
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        const char *val = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        bool known = true, good = true;
        if (n == 5 && strncmp(a, "--url", n) == 0)
            good = val && ctl_set_url(&c, val);
        else if (n == 8 && strncmp(a, "--output", n) == 0)
            good = val && ctl_set_output(&c, val);
        else if (n == 9 && strncmp(a, "--api-key", n) == 0)
            c.api_key = val;
        else
            known = false;
        if (!known || !val || !good) {
            if (!known)
                fprintf(stderr, "taskerctl: unknown option '%s'\n", a);
            else if (!val)
                fprintf(stderr, "taskerctl: option '%s' needs a value\n", a);
            usage(stderr, false);
            return CTL_EUSAGE;
        }
        if (!eq)
            i++;
    }
    if (i >= argc) {
        usage(stderr, false);
        return CTL_EUSAGE;
    }
    const struct group *g = NULL;
    for (size_t k = 0; k < NGROUPS; k++)
        if (strcmp(groups[k].name, argv[i]) == 0)
            g = &groups[k];
    if (!g) {
        fprintf(stderr, "taskerctl: unknown command '%s'\n", argv[i]);
        usage(stderr, false);
        return CTL_EUSAGE;
    }
    if (i + 1 >= argc || strcmp(argv[i + 1], "--help") == 0 || strcmp(argv[i + 1], "-h") == 0) {
        bool asked = i + 1 < argc;
        group_usage(asked ? stdout : stderr, g);
        return asked ? CTL_OK : CTL_EUSAGE;
    }
    const struct ctl_cmd *cmd = NULL;
    for (const struct ctl_cmd *k = g->cmds; k->name; k++)
        if (strcmp(k->name, argv[i + 1]) == 0)
            cmd = k;
    if (!cmd) {
        fprintf(stderr, "taskerctl: unknown command '%s %s'\n", g->name, argv[i + 1]);
        group_usage(stderr, g);
        return CTL_EUSAGE;
    }
    int rc = cmd->run(&c, cmd, argc - i - 1, argv + i + 1);
    ctl_free(&c);
    fflush(stdout);
    if (ferror(stdout)) {
        fputs("taskerctl: error writing the output\n", stderr);
        return CTL_EFAIL;
    }
    return rc == CTL_HELP ? CTL_OK : rc;
}
