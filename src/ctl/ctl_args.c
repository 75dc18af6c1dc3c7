/* ctl_args.c — taskerctl's command-line parsing: each command's options plus the global ones. */
#include "ctl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Global options, accepted before the command and by every command, so both
 * `taskerctl --output json task list` and `taskerctl task list --output json` work. */
static const char global_help[] =
    "  --url URL           the daemon (default $TASKER_URL, else http://127.0.0.1:8080)\n"
    "  --api-key KEY       an API key (or JWT), sent as a Bearer token (default $TASKER_API_KEY)\n"
    "  --output FORMAT     table (default on a terminal) or json (default otherwise)\n"
    "  -h, --help          this help\n";

void ctl_cmd_usage(const struct ctl_cmd *cmd, bool full, FILE *fp)
{
    fprintf(fp, "usage: taskerctl %s %s%s%s\n", cmd->group, cmd->name, cmd->synopsis[0] ? " " : "", cmd->synopsis);
    if (!full) {
        fprintf(fp, "Try 'taskerctl %s %s --help'.\n", cmd->group, cmd->name);
        return;
    }
    fprintf(fp, "\n%s\n", cmd->summary);
    if (cmd->options)
        fprintf(fp, "\nOptions:\n%s", cmd->options);
    fprintf(fp, "\nGlobal options:\n%s", global_help);
}

int ctl_usage_error(const struct ctl_cmd *cmd, const char *fmt, ...)
{
    va_list ap;
    fputs("taskerctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    ctl_cmd_usage(cmd, false, stderr);
    return CTL_EUSAGE;
}

bool ctl_set_url(struct ctl *c, const char *url)
{
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        fprintf(stderr, "taskerctl: --url must start with http:// or https:// (got '%s')\n", url);
        return false;
    }
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        n--;
    if (n >= sizeof c->url) {
        fprintf(stderr, "taskerctl: --url is too long\n");
        return false;
    }
    memcpy(c->url, url, n);
    c->url[n] = '\0';
    return true;
}

bool ctl_set_output(struct ctl *c, const char *name)
{
    if (strcmp(name, "table") == 0)
        c->output = CTL_OUT_TABLE;
    else if (strcmp(name, "json") == 0)
        c->output = CTL_OUT_JSON;
    else {
        fprintf(stderr, "taskerctl: --output must be table or json (got '%s')\n", name);
        return false;
    }
    return true;
}

bool ctl_parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* find: the option named by arg ("--name" / "-x"); NULL when it is not one of opts. */
static const struct ctl_opt *find(const struct ctl_opt *opts, const char *name, size_t namelen, char shortc)
{
    for (const struct ctl_opt *o = opts; o && o->name; o++) {
        if (shortc ? o->short_name == shortc : (strlen(o->name) == namelen && strncmp(o->name, name, namelen) == 0))
            return o;
    }
    return NULL;
}

int ctl_parse(struct ctl *c, const struct ctl_cmd *cmd, int argc, char **argv, const struct ctl_opt *opts,
              const char **pos, int *npos, int min_pos, int max_pos)
{
    /* Global options land here and are applied once the whole line has parsed. */
    const char *g_url = NULL, *g_key = NULL, *g_output = NULL;
    bool help = false;
    const struct ctl_opt globals[] = {
        {.name = "url", .value = &g_url},
        {.name = "api-key", .value = &g_key},
        {.name = "output", .value = &g_output},
        {.name = "help", .short_name = 'h', .flag = &help},
        {0},
    };
    bool only_pos = false;
    *npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || strcmp(a, "-") == 0) {
            if (*npos >= max_pos || *npos >= CTL_POS_MAX)
                return ctl_usage_error(cmd, "unexpected argument '%s'", a);
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        const char *name = a + (a[1] == '-' ? 2 : 1);
        const char *eq = a[1] == '-' ? strchr(name, '=') : NULL;
        size_t namelen = eq ? (size_t)(eq - name) : strlen(name);
        char shortc = a[1] != '-' ? name[0] : 0;
        if (shortc && name[1])
            return ctl_usage_error(cmd, "unknown option '%s'", a);
        const struct ctl_opt *o = find(opts, name, namelen, shortc);
        const struct ctl_opt *g = o ? NULL : find(globals, name, namelen, shortc);
        if (!o && !g)
            return ctl_usage_error(cmd, "unknown option '%s'", a);
        if (!o)
            o = g;
        const char *val = NULL;
        if (o->flag) {
            if (eq)
                return ctl_usage_error(cmd, "option '--%s' takes no value", o->name);
        } else if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return ctl_usage_error(cmd, "option '%s' needs a value", a);
        }
        if (o->flag) {
            *o->flag = true;
        } else if (o->list) {
            if (*o->list_n >= o->list_max)
                return ctl_usage_error(cmd, "option '--%s' given more than %d times", o->name, o->list_max);
            o->list[(*o->list_n)++] = val;
        } else {
            *o->value = val;
        }
    }
    if ((g_url && !ctl_set_url(c, g_url)) || (g_output && !ctl_set_output(c, g_output))) {
        ctl_cmd_usage(cmd, false, stderr);
        return CTL_EUSAGE;
    }
    if (g_key)
        c->api_key = g_key;
    if (help) {
        ctl_cmd_usage(cmd, true, stdout);
        return CTL_HELP;
    }
    if (*npos < min_pos)
        return ctl_usage_error(cmd, "missing argument (%d needed, %d given)", min_pos, *npos);
    return CTL_OK;
}
