/* main.c — entry point of tasker-orchestratord: command line, subcommands, and (later) the daemon. */
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "daemon.h"
#include "migrate.h"
#include "statements.h"
#include "version.h"


/* Exit codes, shared by every mode. */
enum {
    EXIT_OK = 0,     /* done */
    EXIT_FAIL = 1,   /* the work failed; the cause was logged */
    EXIT_USAGE = 2   /* bad command line: nothing was attempted */
};

/* Daemon options, parsed now so the command line is stable; the daemon work consumes them. */
struct main_opts {
    const char *config_path; /* -c FILE, NULL for the built-in default */
    const char *env;         /* -e ENV (test|development|production), NULL for TASKER_ENV */
    bool check_config;       /* --check-config: validate and exit */
    bool verbose;            /* -v with --check-config: also print the effective configuration */
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tasker-orchestratord [-c FILE] [-e ENV] [--check-config]\n"
            "       tasker-orchestratord migrate [--status] [--database-url URL] [-v]\n"
            "       tasker-orchestratord --version | --help\n"
            "\n"
            "Workflow orchestration daemon on PostgreSQL.\n"
            "\n"
            "Commands:\n"
            "  (none)                 run the daemon until SIGTERM (drains in-flight work first)\n"
            "  migrate                apply the migrations/ and sql/ files built into this binary,\n"
            "                         tracked in tasker.schema_migrations; safe to run concurrently\n"
            "  sql-check              prepare every statement the daemon runs against $DATABASE_URL\n"
            "                         (a schema mismatch fails here, not in production)\n"
            "\n"
            "Daemon options:\n"
            "  -c, --config FILE      configuration file\n"
            "  -e, --env ENV          environment overlay: test, development or production\n"
            "                         (default: $TASKER_ENV), read from environments/ENV.conf\n"
            "                         next to the -c FILE, which it therefore needs\n"
            "      --check-config     validate the configuration and exit (0 valid, non-zero not)\n"
            "  -v, --verbose          with --check-config: print the effective configuration\n"
            "\n"
            "migrate options:\n"
            "      --status           list each file as applied, pending, changed! or skipped;\n"
            "                         changes nothing (exit 1 if a landed migration changed)\n"
            "  -d, --database-url URL database to migrate (default: $DATABASE_URL)\n"
            "  -v, --verbose          also show PostgreSQL NOTICEs and debug detail\n"
            "\n"
            "Other:\n"
            "  -h, --help             show this help\n"
            "  -V, --version          show the version\n"
            "\n"
            "Exit status: 0 ok, 1 failure, 2 usage error.\n");
}

/* usage_error: print "tasker-orchestratord: <message>" and a pointer to --help; returns EXIT_USAGE. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("tasker-orchestratord: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nTry 'tasker-orchestratord --help'.\n", stderr);
    return EXIT_USAGE;
}

/* cmd_migrate: `migrate [--status] [--database-url URL] [-v]`; argv[0] is "migrate". */
static int cmd_migrate(int argc, char **argv)
{
    static const struct option opts[] = {
        {"status", no_argument, NULL, 's'},
        {"database-url", required_argument, NULL, 'd'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool status = false;
    const char *url = getenv("DATABASE_URL");
    int c;

    optind = 0; /* glibc: 0 re-initialises getopt for a second argument vector */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+d:vh", opts, NULL)) != -1) {
        switch (c) {
        case 's': status = true; break;
        case 'd': url = optarg; break;
        case 'v': log_init(LOG_LVL_DEBUG, false); break;
        case 'h': usage(stdout); return EXIT_OK;
        default: return usage_error("migrate: unknown option or missing argument '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return usage_error("migrate: unexpected argument '%s'", argv[optind]);
    if (!url || !*url)
        return usage_error("migrate: no database: set DATABASE_URL or pass --database-url URL");

    if (status)
        return migrate_status(url) ? EXIT_OK : EXIT_FAIL;
    return migrate_apply(url) ? EXIT_OK : EXIT_FAIL; /* errors have already been logged */
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"env", required_argument, NULL, 'e'},
        {"check-config", no_argument, NULL, 'C'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct main_opts mo = {0};
    int c;

    log_init(LOG_LVL_INFO, false);
    opterr = 0; /* we word our own usage errors */
    /* '+': stop at the first non-option, so a subcommand's options are its own. */
    while ((c = getopt_long(argc, argv, "+c:e:vhV", opts, NULL)) != -1) {
        switch (c) {
        case 'c': mo.config_path = optarg; break;
        case 'e': mo.env = optarg; break;
        case 'C': mo.check_config = true; break;
        case 'v': mo.verbose = true; break;
        case 'h': usage(stdout); return EXIT_OK;
        case 'V': printf("tasker-orchestratord %s\n", TASKER_VERSION); return EXIT_OK;
        default: return usage_error("unknown option or missing argument '%s'", argv[optind - 1]);
        }
    }

    if (optind < argc) {
        const char *cmd = argv[optind];
        if (strcmp(cmd, "migrate") == 0)
            return cmd_migrate(argc - optind, argv + optind);
        if (strcmp(cmd, "sql-check") == 0) {
            const char *url = getenv("DATABASE_URL");
            if (!url || !*url)
                return usage_error("sql-check: set DATABASE_URL to a migrated database");
            return statements_verify(url) ? EXIT_OK : EXIT_FAIL;
        }
        return usage_error("unknown command '%s'", cmd);
    }

    if (mo.check_config)
        return daemon_check_config(mo.config_path, mo.env, mo.verbose);
    return daemon_run(mo.config_path, mo.env);
}
