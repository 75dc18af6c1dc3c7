/* check_conf.c — unit tests of the configuration: defaults, parsing, errors, overlay, env vars, reload. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <check.h>

#include "amqp_link.h"
#include "conf.h"
#include "suites.h"

/* ---- fixture: a clean environment and a scratch directory ------------------------------------ */

/* The variables conf_load reads; a developer's shell may well have DATABASE_URL set. */
static const char *const env_vars[] = {"DATABASE_URL", "TASKER_ENV", "TASKER_CONFIG_PATH", "TASKER_WEB_BIND_ADDRESS"};
#define N_ENV_VARS (sizeof env_vars / sizeof env_vars[0])
static char *saved_env[N_ENV_VARS];
static char tmpdir[512];

static void env_setup(void)
{
    for (size_t i = 0; i < N_ENV_VARS; i++) {
        const char *v = getenv(env_vars[i]);
        saved_env[i] = v ? strdup(v) : NULL;
        unsetenv(env_vars[i]);
    }
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/check_conf.XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void env_teardown(void)
{
    for (size_t i = 0; i < N_ENV_VARS; i++) {
        if (saved_env[i])
            setenv(env_vars[i], saved_env[i], 1);
        else
            unsetenv(env_vars[i]);
        free(saved_env[i]);
        saved_env[i] = NULL;
    }
    unsetenv("CHECK_CONF_SECRET");
    if (tmpdir[0])
        nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir[0] = '\0';
}

/* put: write text to tmpdir/rel (creating environments/ if rel is under it); returns the path in a
 * static buffer of its own (one per call site slot: up to 4 live at once). */
static const char *put(const char *rel, const char *text)
{
    static char paths[4][1024];
    static int next;
    char *path = paths[next++ % 4];
    if (strchr(rel, '/')) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%.*s", tmpdir, (int)(strchr(rel, '/') - rel), rel);
        mkdir(dir, 0700);
    }
    snprintf(path, 1024, "%s/%s", tmpdir, rel);
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

/* dump: conf_dump into a string (caller frees) — compares two whole configurations key by key. */
static char *dump(const struct conf *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(fp);
    conf_dump(c, fp);
    fclose(fp);
    return buf;
}

static void assert_same_conf(const struct conf *a, const struct conf *b)
{
    char *da = dump(a), *db = dump(b);
    ck_assert_str_eq(da, db);
    free(da);
    free(db);
}

/* source_path: a file of the source tree; `make check-unit` runs from its root. */
static const char *source_path(const char *rel)
{
    static char path[1024];
    const char *root = getenv("TASKER_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/%s", root && *root ? root : ".", rel);
    return path;
}

/* ---- defaults -------------------------------------------------------------------------------- */

START_TEST(defaults_are_the_seed)
{
    struct conf c;
    memset(&c, 0xa5, sizeof c); /* conf_defaults must set every field, not rely on zeroed memory */
    conf_defaults(&c);
    ck_assert_int_eq(c.environment, CONF_ENV_DEVELOPMENT);
    ck_assert_str_eq(c.database_url, "postgresql://localhost/tasker");
    ck_assert_int_eq(c.pool_max_connections, 30);
    ck_assert_int_eq(c.pool_min_connections, 8);
    ck_assert_int_eq(c.pool_acquire_timeout_secs, 5);
    ck_assert_int_eq(c.pool_idle_timeout_secs, 300);
    ck_assert_int_eq(c.pool_max_lifetime_secs, 1800);
    ck_assert_int_eq(c.pool_reconnect_initial_ms, 100);
    ck_assert_int_eq(c.pool_reconnect_max_ms, 10000);
    ck_assert_int_eq(c.pool_breaker_failure_threshold, 5);
    ck_assert_int_eq(c.pool_breaker_open_secs, 30);
    ck_assert_int_eq(c.pool_statement_timeout_ms, 0);
    ck_assert_int_eq(c.pool_reserved_for_orchestration, 2);
    ck_assert_str_eq(c.processor_id, "");
    ck_assert_int_eq(c.completions_interval_ms, 5000);
    ck_assert_int_eq(c.completions_idle_interval_ms, 10000);
    ck_assert_int_eq(c.completions_batch_size, 100);
    ck_assert_int_eq(c.completions_visibility_timeout_secs, 30);
    ck_assert_int_eq(c.poller_interval_ms, 1000);
    ck_assert_int_eq(c.poller_idle_interval_ms, 5000);
    ck_assert_int_eq(c.poller_batch_size, 100);
    ck_assert_int_eq(c.sweeper_interval_secs, 30);
    ck_assert_int_eq(c.sweeper_batch_size, 100);
    ck_assert(!c.sweeper_dry_run);
    ck_assert_int_eq(c.stale_waiting_for_dependencies_minutes, 60);
    ck_assert_int_eq(c.stale_waiting_for_retry_minutes, 30);
    ck_assert_int_eq(c.stale_steps_in_process_minutes, 30);
    ck_assert_int_eq(c.stale_blocked_by_failures_minutes, 1440);
    ck_assert_int_eq(c.stale_task_max_lifetime_hours, 24);
    ck_assert_int_eq(c.sweeper_resend_grace_secs, 30);
    ck_assert_int_eq(c.sweeper_reevaluate_after_secs, 60);
    ck_assert_int_eq(c.namespace_refresh_secs, 30);
    ck_assert(c.vacuum_enabled);
    ck_assert_int_eq(c.vacuum_interval_ms, 1000);
    ck_assert_int_eq(c.vacuum_task_tables_interval_ms, 2000);
    ck_assert_int_eq(c.shutdown_timeout_secs, 30);
    ck_assert_str_eq(c.web_bind_address, "127.0.0.1:8080");
    ck_assert(c.web_enabled);
    ck_assert_int_eq(c.web_max_body_bytes, 1048576);
    ck_assert_int_eq(c.web_request_timeout_ms, 30000);
    ck_assert_int_eq(c.web_statement_timeout_ms, 20000);
    ck_assert_str_eq(c.log_level, "info");
    ck_assert(!c.log_json);
}
END_TEST

START_TEST(defaults_are_valid)
{
    struct conf c;
    char err[512];
    conf_defaults(&c);
    ck_assert_msg(conf_validate(&c, err, sizeof err), "%s", err);
}
END_TEST

START_TEST(load_without_file_is_defaults)
{
    struct conf c, d;
    struct conf_source src;
    char err[512];
    ck_assert_msg(conf_load(&c, &src, NULL, NULL, err, sizeof err), "%s", err);
    ck_assert_str_eq(src.base_path, "");
    ck_assert_str_eq(src.overlay_path, "");
    conf_defaults(&d);
    assert_same_conf(&c, &d);
}
END_TEST

START_TEST(env_names)
{
    enum conf_env e;
    ck_assert(conf_env_parse("test", &e) && e == CONF_ENV_TEST);
    ck_assert(conf_env_parse("development", &e) && e == CONF_ENV_DEVELOPMENT);
    ck_assert(conf_env_parse("production", &e) && e == CONF_ENV_PRODUCTION);
    ck_assert(!conf_env_parse("staging", &e));
    ck_assert(!conf_env_parse("Test", &e));
    ck_assert_str_eq(conf_env_name(CONF_ENV_TEST), "test");
    ck_assert_str_eq(conf_env_name(CONF_ENV_PRODUCTION), "production");
}
END_TEST

/* ---- good files ------------------------------------------------------------------------------ */

static const char good_text[] =
    "# a good file, with every kind of comment\n"
    "environment = \"production\"   # trailing comment\n"
    "database {\n"
    "    url = 'postgresql://orch@db.internal:5433/tasker?sslmode=require'\n"
    "    // a C++ comment\n"
    "    pool {\n"
    "        max_connections = 40\n"
    "        min_connections = 0\n"
    "        /* a block\n"
    "           comment { with a brace */\n"
    "        statement_timeout_ms = 15000\n"
    "    }\n"
    "}\n"
    "orchestration {\n"
    "    processor_id = \"orch-1\"\n"
    "    sweeper { dry_run = yes\n stale_task_max_lifetime_hours = 48 }\n"
    "    poller { interval_ms = 250 }\n"
    "}\n"
    "web { enabled = false\n bind_address = \"[::1]:9090\" }\n"
    "log { level = \"debug\"\n json = on }\n";

START_TEST(good_buffer)
{
    struct conf c;
    char err[512];
    conf_defaults(&c);
    ck_assert_msg(conf_load_buffer(&c, "good.conf", good_text, err, sizeof err), "%s", err);
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(c.environment, CONF_ENV_PRODUCTION);
    ck_assert_str_eq(c.database_url, "postgresql://orch@db.internal:5433/tasker?sslmode=require");
    ck_assert_int_eq(c.pool_max_connections, 40);
    ck_assert_int_eq(c.pool_min_connections, 0);
    ck_assert_int_eq(c.pool_statement_timeout_ms, 15000);
    ck_assert_str_eq(c.processor_id, "orch-1");
    ck_assert(c.sweeper_dry_run);
    ck_assert_int_eq(c.stale_task_max_lifetime_hours, 48);
    ck_assert_int_eq(c.poller_interval_ms, 250);
    ck_assert(!c.web_enabled);
    ck_assert_str_eq(c.web_bind_address, "[::1]:9090");
    ck_assert_str_eq(c.log_level, "debug");
    ck_assert(c.log_json);
    /* and nothing else moved */
    ck_assert_int_eq(c.pool_acquire_timeout_secs, 5);
    ck_assert_int_eq(c.poller_batch_size, 100);
    ck_assert_int_eq(c.sweeper_interval_secs, 30);
}
END_TEST

START_TEST(good_file)
{
    struct conf c;
    struct conf_source src;
    char err[512];
    const char *path = put("good.conf", good_text);
    ck_assert_msg(conf_load(&c, &src, path, NULL, err, sizeof err), "%s", err);
    ck_assert_str_eq(src.base_path, path);
    ck_assert_str_eq(src.overlay_path, ""); /* no environments/production.conf next to it */
    ck_assert_int_eq(c.environment, CONF_ENV_PRODUCTION);
    ck_assert_int_eq(c.pool_max_connections, 40);
}
END_TEST

START_TEST(buffer_changes_only_what_it_sets)
{
    struct conf c, expect;
    char err[512];
    conf_defaults(&c);
    c.pool_max_connections = 77;
    snprintf(c.log_level, sizeof c.log_level, "warn");
    expect = c;
    expect.poller_batch_size = 5;
    ck_assert_msg(conf_load_buffer(&c, "x.conf", "orchestration { poller { batch_size = 5 } }", err, sizeof err),
                  "%s", err);
    assert_same_conf(&c, &expect);
    ck_assert(conf_load_buffer(&c, "empty.conf", "", err, sizeof err));
    assert_same_conf(&c, &expect);
}
END_TEST

START_TEST(string_quoting)
{
    struct conf c;
    char err[512];
    conf_defaults(&c);
    /* libconfuse substitutes ${VAR} inside double quotes; single quotes and \$ keep it literal. */
    setenv("CHECK_CONF_SECRET", "s3cret", 1);
    ck_assert(conf_load_buffer(&c, "q.conf", "database { url = \"postgresql://u:${CHECK_CONF_SECRET}@h/db\" }", err,
                               sizeof err));
    ck_assert_str_eq(c.database_url, "postgresql://u:s3cret@h/db");
    ck_assert(conf_load_buffer(&c, "q.conf", "database { url = 'postgresql://u:${CHECK_CONF_SECRET}@h/db' }", err,
                               sizeof err));
    ck_assert_str_eq(c.database_url, "postgresql://u:${CHECK_CONF_SECRET}@h/db");
    ck_assert(conf_load_buffer(&c, "q.conf", "orchestration { processor_id = \"a\\$b#c\" }", err, sizeof err));
    ck_assert_str_eq(c.processor_id, "a$b#c");
}
END_TEST

/* ---- bad values: exact file:line prefixes ---------------------------------------------------- */

static const struct {
    const char *text;
    const char *error; /* the whole message, or its start when partial */
    bool partial;
} bad_cases[] = {
    /* unknown key, after comments of every kind (libconfuse 3.3 alone would miscount these lines) */
    {"# one\n# two\n/* three\n four */\ndatabase {\n  // five\n  pool {\n    bogus = 1\n  }\n}\n",
     "bad.conf:8: no such option 'bogus' (in section database.pool)", false},
    {"environment = \"test\"\nnosuch { a = 1 }\n", "bad.conf:2: no such option 'nosuch'", false},
    {"log {\n  colour = true\n}\n", "bad.conf:2: no such option 'colour' (in section log)", false},
    /* wrong types */
    {"database {\n  pool {\n    max_connections = \"ten\"\n  }\n}\n",
     "bad.conf:3: invalid integer value for option 'max_connections' (in section database.pool)", false},
    {"database { pool { max_connections = 1.5 } }\n",
     "bad.conf:1: invalid integer value for option 'max_connections' (in section database.pool)", false},
    {"\nlog { json = maybe }\n", "bad.conf:2: invalid boolean value for option 'json' (in section log)", false},
    {"database = 5\n", "bad.conf:1: missing opening brace for section 'database'", false},
    {"web {\n  bind_address = { \"a\" }\n}\n", "bad.conf:2: unexpected token '{' (in section web)", false},
    /* out of range */
    {"\n\ndatabase { pool {\n  max_connections = 0\n} }\n",
     "bad.conf:4: database.pool.max_connections = 0 is out of range (1..1000)", false},
    {"database { pool { max_connections = 1001 } }\n",
     "bad.conf:1: database.pool.max_connections = 1001 is out of range (1..1000)", false},
    {"orchestration { poller { interval_ms = -5 } }\n",
     "bad.conf:1: orchestration.poller.interval_ms = -5 is out of range (10..3600000)", false},
    {"web { max_body_bytes = 99999999999999 }\n",
     "bad.conf:1: web.max_body_bytes = 99999999999999 is out of range (1024..268435456)", false},
    /* cross-field rules */
    {"database {\n  pool {\n    min_connections = 40\n  }\n}\n",
     "bad.conf:3: database.pool.min_connections = 40 must not exceed database.pool.max_connections = 30", false},
    {"database {\n  pool {\n    min_connections = 20\n    max_connections = 10\n  }\n}\n",
     "bad.conf:4: database.pool.min_connections = 20 must not exceed database.pool.max_connections = 10 "
     "(database.pool.min_connections is set at bad.conf:3)",
     false},
    {"database { pool {\nreconnect_initial_ms = 500\nreconnect_max_ms = 200 } }\n",
     "bad.conf:3: database.pool.reconnect_initial_ms = 500 must not exceed database.pool.reconnect_max_ms = 200",
     true},
    /* formats of strings */
    {"environment = \"staging\"\n", "bad.conf:1: environment = \"staging\": must be test, development or production",
     false},
    {"\nlog { level = \"loud\" }\n", "bad.conf:2: log.level = \"loud\": must be error, warn, info or debug", false},
    {"database {\n url = \"mysql://u:pw@h/db\"\n}\n",
     "bad.conf:2: database.url must be a postgresql:// or postgres:// URL", false},
    {"web { bind_address = \"8080\" }\n", "bad.conf:1: web.bind_address = \"8080\": must be host:port", true},
    {"web { bind_address = \"h:65536\" }\n", "bad.conf:1: web.bind_address = \"h:65536\": must be host:port", true},
    {"web { bind_address = \"::1:80\" }\n", "bad.conf:1: web.bind_address = \"::1:80\": must be host:port", true},
    {"orchestration { processor_id = \"a b\" }\n",
     "bad.conf:1: orchestration.processor_id = \"a b\": may contain only printable ASCII other than space", false},
    /* syntax libconfuse would let through */
    {"database {\n  pool {\n    max_connections = 4\n", "bad.conf:2: '{' opened here is not closed", true},
    {"log { level = \"info\" }\n/* never\nclosed\n", "bad.conf:2: comment opened here is not closed", false},
    {"log { level = \"info\" } }\n", "bad.conf:1: unexpected closing brace", false},
    {"database {\n  url = \"postgresql://h/db\n}\n", "bad.conf:2: string opened here is not closed", false},
    {"log {\n  level = 'info\\'\n}\n", "bad.conf:2: string opened here is not closed", false},
};

START_TEST(bad_values)
{
    struct conf c;
    char err[512];
    conf_defaults(&c);
    ck_assert_msg(!conf_load_buffer(&c, "bad.conf", bad_cases[_i].text, err, sizeof err), "case %d accepted", _i);
    if (bad_cases[_i].partial)
        ck_assert_msg(strncmp(err, bad_cases[_i].error, strlen(bad_cases[_i].error)) == 0,
                      "case %d: got \"%s\", want it to start \"%s\"", _i, err, bad_cases[_i].error);
    else
        ck_assert_str_eq(err, bad_cases[_i].error);
}
END_TEST

START_TEST(long_string_is_an_error)
{
    struct conf c;
    char err[512], text[600];
    conf_defaults(&c);
    snprintf(text, sizeof text, "orchestration {\n processor_id = \"%0200d\"\n}\n", 0);
    ck_assert(!conf_load_buffer(&c, "long.conf", text, err, sizeof err));
    ck_assert_str_eq(err, "long.conf:2: orchestration.processor_id is longer than 127 bytes");
}
END_TEST

START_TEST(bad_file_reports_its_path)
{
    struct conf c;
    char err[1200], want[1200];
    const char *path = put("base.conf", "# base\n\nweb {\n  enabled = perhaps\n}\n");
    ck_assert(!conf_load(&c, NULL, path, NULL, err, sizeof err));
    snprintf(want, sizeof want, "%s:4: invalid boolean value for option 'enabled' (in section web)", path);
    ck_assert_str_eq(err, want);

    snprintf(want, sizeof want, "%s/nonexistent.conf", tmpdir);
    ck_assert(!conf_load(&c, NULL, want, NULL, err, sizeof err));
    strncat(want, ": cannot open: No such file or directory", sizeof want - strlen(want) - 1);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(validate_by_hand)
{
    struct conf c;
    char err[512];
    conf_defaults(&c);
    c.pool_min_connections = 50;
    ck_assert(!conf_validate(&c, err, sizeof err));
    ck_assert_str_eq(err, "configuration: database.pool.min_connections = 50 must not exceed "
                          "database.pool.max_connections = 30");
    conf_defaults(&c);
    c.environment = (enum conf_env)7;
    ck_assert(!conf_validate(&c, err, sizeof err));
    ck_assert_str_eq(err, "configuration: environment must be test, development or production");
    conf_defaults(&c);
    snprintf(c.log_level, sizeof c.log_level, "trace");
    ck_assert(!conf_validate(&c, err, sizeof err));
    ck_assert_str_eq(err, "configuration: log.level = \"trace\": must be error, warn, info or debug");
}
END_TEST

/* ---- overlay --------------------------------------------------------------------------------- */

static const char base_text[] = "# base\n"
                                "database {\n"
                                "    url = \"postgresql://base/db\"\n"
                                "    pool {\n"
                                "        max_connections = 40\n"
                                "        min_connections = 4\n"
                                "        acquire_timeout_secs = 7\n"
                                "    }\n"
                                "}\n"
                                "log { level = \"warn\" }\n";

START_TEST(overlay_changes_only_what_it_sets)
{
    struct conf c, expect;
    struct conf_source src;
    char err[1200];
    const char *base = put("base.conf", base_text);
    const char *overlay = put("environments/test.conf", "database { pool { max_connections = 10 } }\n");

    ck_assert_msg(conf_load(&c, &src, base, "test", err, sizeof err), "%s", err);
    ck_assert_str_eq(src.base_path, base);
    ck_assert_str_eq(src.overlay_path, overlay);

    conf_defaults(&expect);
    expect.environment = CONF_ENV_TEST;
    snprintf(expect.database_url, sizeof expect.database_url, "postgresql://base/db");
    expect.pool_max_connections = 10; /* the overlay's one key */
    expect.pool_min_connections = 4;  /* the rest of the same section keeps the base file's values */
    expect.pool_acquire_timeout_secs = 7;
    snprintf(expect.log_level, sizeof expect.log_level, "warn");
    assert_same_conf(&c, &expect);

    /* Another environment has no overlay here: the base file alone. */
    ck_assert(conf_load(&c, &src, base, "production", err, sizeof err));
    ck_assert_str_eq(src.overlay_path, "");
    ck_assert_int_eq(c.pool_max_connections, 40);
    ck_assert_int_eq(c.environment, CONF_ENV_PRODUCTION);
}
END_TEST

START_TEST(overlay_errors_name_the_overlay)
{
    struct conf c;
    char err[1200], want[1200];
    const char *base = put("base.conf", base_text);
    const char *overlay = put("environments/test.conf", "# overlay\n\ndatabase {\n  pool { min_connections = -1 }\n}\n");
    ck_assert(!conf_load(&c, NULL, base, "test", err, sizeof err));
    snprintf(want, sizeof want, "%s:4: database.pool.min_connections = -1 is out of range (0..1000)", overlay);
    ck_assert_str_eq(err, want);

    /* A cross-field error blames the later line and says where the other key was set. */
    overlay = put("environments/test.conf", "database {\n  pool { max_connections = 3 }\n}\n");
    ck_assert(!conf_load(&c, NULL, base, "test", err, sizeof err));
    snprintf(want, sizeof want,
             "%s:2: database.pool.min_connections = 4 must not exceed database.pool.max_connections = 3 "
             "(database.pool.min_connections is set at %s:6)",
             overlay, base);
    ck_assert_str_eq(err, want);

    overlay = put("environments/test.conf", "environment = \"production\"\n");
    ck_assert(!conf_load(&c, NULL, base, "test", err, sizeof err));
    snprintf(want, sizeof want, "%s:1: environment = \"production\" in the overlay of environment \"test\"", overlay);
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(file_environment_key_picks_overlay)
{
    struct conf c;
    struct conf_source src;
    char err[1200];
    const char *base = put("base.conf", "environment = \"production\"\n");
    const char *overlay = put("environments/production.conf", "database { pool { max_connections = 50 } }\n");
    put("environments/development.conf", "database { pool { max_connections = 25 } }\n");

    ck_assert_msg(conf_load(&c, &src, base, NULL, err, sizeof err), "%s", err);
    ck_assert_str_eq(src.overlay_path, overlay);
    ck_assert_int_eq(c.environment, CONF_ENV_PRODUCTION);
    ck_assert_int_eq(c.pool_max_connections, 50);

    /* -e (or TASKER_ENV) beats the file's key. */
    ck_assert(conf_load(&c, &src, base, "development", err, sizeof err));
    ck_assert_int_eq(c.environment, CONF_ENV_DEVELOPMENT);
    ck_assert_int_eq(c.pool_max_connections, 25);
}
END_TEST

/* ---- environment variables ------------------------------------------------------------------- */

START_TEST(env_var_overrides)
{
    struct conf c;
    struct conf_source src;
    char err[1200];
    const char *base = put("base.conf", base_text);
    put("environments/test.conf", "database { pool { max_connections = 10 } }\n");
    put("environments/production.conf", "database { pool { max_connections = 50 } }\n");

    setenv("DATABASE_URL", "postgresql://env@envhost/envdb", 1);
    setenv("TASKER_WEB_BIND_ADDRESS", "127.0.0.1:0", 1);
    setenv("TASKER_ENV", "test", 1);
    setenv("TASKER_CONFIG_PATH", base, 1);
    ck_assert_msg(conf_load(&c, &src, NULL, NULL, err, sizeof err), "%s", err);
    ck_assert_str_eq(src.base_path, base);
    ck_assert_str_eq(c.database_url, "postgresql://env@envhost/envdb");
    ck_assert_str_eq(c.web_bind_address, "127.0.0.1:0");
    ck_assert_int_eq(c.environment, CONF_ENV_TEST);
    ck_assert_int_eq(c.pool_max_connections, 10);

    /* -e beats TASKER_ENV; -c beats TASKER_CONFIG_PATH. */
    ck_assert(conf_load(&c, &src, base, "production", err, sizeof err));
    ck_assert_int_eq(c.environment, CONF_ENV_PRODUCTION);
    ck_assert_int_eq(c.pool_max_connections, 50);
    const char *other = put("other.conf", "log { level = \"error\" }\n");
    ck_assert(conf_load(&c, &src, other, NULL, err, sizeof err));
    ck_assert_str_eq(src.base_path, other);
    ck_assert_str_eq(c.log_level, "error");

    /* Empty variables count as unset. */
    setenv("DATABASE_URL", "", 1);
    setenv("TASKER_ENV", "", 1);
    ck_assert(conf_load(&c, &src, base, NULL, err, sizeof err));
    ck_assert_str_eq(c.database_url, "postgresql://base/db");
    ck_assert_int_eq(c.environment, CONF_ENV_DEVELOPMENT);
}
END_TEST

START_TEST(env_var_errors)
{
    struct conf c;
    char err[1200];
    setenv("DATABASE_URL", "mysql://nope", 1);
    ck_assert(!conf_load(&c, NULL, NULL, NULL, err, sizeof err));
    ck_assert_str_eq(err, "DATABASE_URL: database.url must be a postgresql:// or postgres:// URL");
    unsetenv("DATABASE_URL");

    setenv("TASKER_WEB_BIND_ADDRESS", "localhost", 1);
    ck_assert(!conf_load(&c, NULL, NULL, NULL, err, sizeof err));
    ck_assert_str_eq(err, "TASKER_WEB_BIND_ADDRESS: web.bind_address = \"localhost\": must be host:port with port "
                          "0..65535 (e.g. 0.0.0.0:8080 or [::1]:8080)");
    unsetenv("TASKER_WEB_BIND_ADDRESS");

    setenv("TASKER_ENV", "staging", 1);
    ck_assert(!conf_load(&c, NULL, NULL, NULL, err, sizeof err));
    ck_assert_str_eq(err, "TASKER_ENV: unknown environment \"staging\"; must be test, development or production");
    ck_assert(!conf_load(&c, NULL, NULL, "prod", err, sizeof err));
    ck_assert_str_eq(err, "-e: unknown environment \"prod\"; must be test, development or production");
}
END_TEST

START_TEST(env_without_a_file_is_refused)
{
    /* The overlays live next to the base file: asking for one with no file must not silently run
     * on the defaults (the tour's `-e development` would listen without its loopback overlay). */
    struct conf c;
    char err[1200];
    ck_assert(!conf_load(&c, NULL, NULL, "development", err, sizeof err));
    ck_assert_str_eq(err, "-e: environment \"development\" is read from environments/development.conf next to the "
                          "configuration file, and there is none: pass -c FILE (e.g. -c etc/tasker-orchestratord.conf) "
                          "or set TASKER_CONFIG_PATH");
    setenv("TASKER_ENV", "production", 1);
    ck_assert(!conf_load(&c, NULL, NULL, NULL, err, sizeof err));
    const char *want = "TASKER_ENV: environment \"production\" is read from environments/production.conf";
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
    /* With a file, the same request works (an overlay that does not exist there is simply absent). */
    const char *base = put("base.conf", "");
    ck_assert_msg(conf_load(&c, NULL, base, NULL, err, sizeof err), "%s", err);
    ck_assert_int_eq(c.environment, CONF_ENV_PRODUCTION);
    unsetenv("TASKER_ENV");
    /* Neither -e nor TASKER_ENV: the defaults alone are fine, and they listen on loopback only. */
    ck_assert_msg(conf_load(&c, NULL, NULL, NULL, err, sizeof err), "%s", err);
    ck_assert_str_eq(c.web_bind_address, "127.0.0.1:8080");
}
END_TEST

/* ---- the shipped files ----------------------------------------------------------------------- */

START_TEST(shipped_files_load)
{
    static const struct {
        const char *env;
        enum conf_env e;
        int max_connections;
    } envs[] = {{"test", CONF_ENV_TEST, 10}, {"development", CONF_ENV_DEVELOPMENT, 25}, {"production", CONF_ENV_PRODUCTION, 50}};
    char base[1024], want[1200], err[1200];
    snprintf(base, sizeof base, "%s", source_path("etc/tasker-orchestratord.conf"));
    for (size_t i = 0; i < sizeof envs / sizeof envs[0]; i++) {
        struct conf c;
        struct conf_source src;
        ck_assert_msg(conf_load(&c, &src, base, envs[i].env, err, sizeof err), "%s: %s", envs[i].env, err);
        snprintf(want, sizeof want, "%s/etc/environments/%s.conf",
                 getenv("TASKER_SOURCE_DIR") && *getenv("TASKER_SOURCE_DIR") ? getenv("TASKER_SOURCE_DIR") : ".",
                 envs[i].env);
        ck_assert_str_eq(src.overlay_path, want);
        ck_assert_int_eq(c.environment, envs[i].e);
        ck_assert_int_eq(c.pool_max_connections, envs[i].max_connections);
        /* API statements have a server-side timeout in every environment, below the request's
         * deadline, and every shipped pool keeps connections for orchestration. */
        ck_assert_int_gt(c.web_statement_timeout_ms, 0);
        ck_assert_int_le(c.web_statement_timeout_ms, c.web_request_timeout_ms);
        ck_assert_int_gt(c.pool_reserved_for_orchestration, 0);
        ck_assert_int_lt(c.pool_reserved_for_orchestration, c.pool_max_connections);
    }
}
END_TEST

START_TEST(shipped_base_file_is_the_defaults)
{
    /* The base file lists every key at its default: read on its own it must change nothing. */
    FILE *fp = fopen(source_path("etc/tasker-orchestratord.conf"), "r");
    ck_assert_ptr_nonnull(fp);
    static char text[64 * 1024];
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = '\0';
    struct conf c, d;
    char err[512];
    conf_defaults(&c);
    conf_defaults(&d);
    ck_assert_msg(conf_load_buffer(&c, "tasker-orchestratord.conf", text, err, sizeof err), "%s", err);
    assert_same_conf(&c, &d);
}
END_TEST

/* ---- reload ---------------------------------------------------------------------------------- */

START_TEST(reload_copies_reloadable_keys)
{
    struct conf cur, next;
    char changed[256] = "";
    conf_defaults(&cur);
    next = cur;
    /* reloadable */
    next.poller_interval_ms = 250;
    next.sweeper_dry_run = true;
    next.pool_acquire_timeout_secs = 9;
    snprintf(next.log_level, sizeof next.log_level, "debug");
    /* restart-only */
    next.pool_max_connections = 99;
    snprintf(next.database_url, sizeof next.database_url, "postgresql://elsewhere/db");
    snprintf(next.web_bind_address, sizeof next.web_bind_address, "127.0.0.1:9999");

    conf_apply_reload(&cur, &next, changed, sizeof changed);
    ck_assert_int_eq(cur.poller_interval_ms, 250);
    ck_assert(cur.sweeper_dry_run);
    ck_assert_int_eq(cur.pool_acquire_timeout_secs, 9);
    ck_assert_str_eq(cur.log_level, "debug");
    ck_assert_int_eq(cur.pool_max_connections, 30);
    ck_assert_str_eq(cur.database_url, "postgresql://localhost/tasker");
    ck_assert_str_eq(cur.web_bind_address, "127.0.0.1:8080");
    ck_assert_str_eq(changed, "database.url, database.pool.max_connections, web.bind_address");

    /* Nothing restart-only changed: nothing reported; the list is appended to, never cleared. */
    char none[64] = "";
    conf_defaults(&cur);
    next = cur;
    next.log_json = true;
    conf_apply_reload(&cur, &next, none, sizeof none);
    ck_assert_str_eq(none, "");
    ck_assert(cur.log_json);
    char more[64] = "earlier";
    next.environment = CONF_ENV_TEST;
    conf_apply_reload(&cur, &next, more, sizeof more);
    ck_assert_str_eq(more, "earlier, environment");
    ck_assert_int_eq(cur.environment, CONF_ENV_DEVELOPMENT);

    /* A short buffer truncates and stays terminated. */
    char tiny[8] = "";
    conf_defaults(&cur);
    conf_apply_reload(&cur, &next, tiny, sizeof tiny);
    ck_assert_str_eq(tiny, "environ");
}
END_TEST

/* ---- dump ------------------------------------------------------------------------------------ */

START_TEST(dump_masks_and_reads_back)
{
    struct conf c, back;
    char err[512];
    conf_defaults(&c);
    snprintf(c.database_url, sizeof c.database_url, "postgresql://orch:pa$$@word@db/tasker?password=x&sslmode=require");
    snprintf(c.processor_id, sizeof c.processor_id, "a\"b\\c$d");
    c.pool_max_connections = 12;
    char *text = dump(&c);
    ck_assert_msg(strstr(text, "url = \"postgresql://orch:***@db/tasker?password=***&sslmode=require\"") != NULL,
                  "%s", text);
    ck_assert_ptr_null(strstr(text, "@word")); /* the password never shows */
    ck_assert_ptr_nonnull(strstr(text, "max_connections = 12  # default 30\n"));
    ck_assert_ptr_nonnull(strstr(text, "min_connections = 8\n"));

    /* Everything but the masked URL reads back to the same configuration. */
    conf_defaults(&back);
    ck_assert_msg(conf_load_buffer(&back, "dump.conf", text, err, sizeof err), "%s\n%s", err, text);
    snprintf(c.database_url, sizeof c.database_url, "%s", back.database_url);
    ck_assert_msg(strstr(text, "url = \"amqp://localhost:5672/%2F\"") != NULL, "%s", text);
    snprintf(c.rabbitmq_url, sizeof c.rabbitmq_url, "%s", back.rabbitmq_url); /* masked too */
    assert_same_conf(&back, &c);
    ck_assert_str_eq(back.processor_id, "a\"b\\c$d");
    free(text);
}
END_TEST

/* The AMQP link's pure helpers: URL masking and confirm-tag bookkeeping (out-of-order and multiple
 * acks, a nack, a return followed by its ack). */
START_TEST(amqp_mask_and_confirms)
{
    char out[256], why[200];
    amqp_url_mask("amqp://tasker:s3cret@127.0.0.1:5672/%2F", out, sizeof out);
    ck_assert_str_eq(out, "amqp://tasker:***@127.0.0.1:5672/%2F");
    amqp_url_mask("amqp://127.0.0.1/", out, sizeof out);
    ck_assert_str_eq(out, "amqp://127.0.0.1/");
    ck_assert(amqp_url_check("amqp://u:p@h:1/v", why, sizeof why));
    ck_assert(!amqp_url_check("http://u:secretpw@h/", why, sizeof why));
    ck_assert_ptr_null(strstr(why, "secretpw"));

    struct amqp_confirms c = { 0 };
    for (uint64_t t = 5; t < 10; t++)
        ck_assert(amqp_confirms_add(&c, t));
    ck_assert(!amqp_confirms_add(&c, 42)); /* tags are consecutive */
    ck_assert_uint_eq(amqp_confirms_settle(&c, 8, false, true), 1); /* out of order */
    ck_assert_uint_eq(amqp_confirms_settle(&c, 3, false, true), 0); /* an older burst's tag */
    amqp_confirms_returned(&c, 1);                                    /* tag 6 unroutable … */
    ck_assert_uint_eq(amqp_confirms_settle(&c, 7, true, true), 2);    /* … its ack: still returned */
    ck_assert(!amqp_confirms_done(&c));
    ck_assert_uint_eq(amqp_confirms_settle(&c, 9, false, false), 1);
    ck_assert(amqp_confirms_done(&c));
    ck_assert_int_eq(c.st[0], AMQP_CONFIRM_ACKED);
    ck_assert_int_eq(c.st[1], AMQP_CONFIRM_RETURNED);
    ck_assert_int_eq(c.st[3], AMQP_CONFIRM_ACKED);
    ck_assert_int_eq(c.st[4], AMQP_CONFIRM_NACKED);
    amqp_confirms_free(&c);
}
END_TEST

Suite *make_conf_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *tc;

    tc = tcase_create("defaults");
    tcase_set_timeout(tc, 5);
    tcase_add_checked_fixture(tc, env_setup, env_teardown);
    tcase_add_test(tc, defaults_are_the_seed);
    tcase_add_test(tc, defaults_are_valid);
    tcase_add_test(tc, load_without_file_is_defaults);
    tcase_add_test(tc, env_names);
    suite_add_tcase(s, tc);

    tc = tcase_create("parse");
    tcase_set_timeout(tc, 5);
    tcase_add_checked_fixture(tc, env_setup, env_teardown);
    tcase_add_test(tc, good_buffer);
    tcase_add_test(tc, good_file);
    tcase_add_test(tc, buffer_changes_only_what_it_sets);
    tcase_add_test(tc, string_quoting);
    tcase_add_loop_test(tc, bad_values, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    tcase_add_test(tc, long_string_is_an_error);
    tcase_add_test(tc, bad_file_reports_its_path);
    tcase_add_test(tc, validate_by_hand);
    suite_add_tcase(s, tc);

    tc = tcase_create("layers");
    tcase_set_timeout(tc, 5);
    tcase_add_checked_fixture(tc, env_setup, env_teardown);
    tcase_add_test(tc, overlay_changes_only_what_it_sets);
    tcase_add_test(tc, overlay_errors_name_the_overlay);
    tcase_add_test(tc, file_environment_key_picks_overlay);
    tcase_add_test(tc, env_var_overrides);
    tcase_add_test(tc, env_var_errors);
    tcase_add_test(tc, env_without_a_file_is_refused);
    tcase_add_test(tc, shipped_files_load);
    tcase_add_test(tc, shipped_base_file_is_the_defaults);
    suite_add_tcase(s, tc);

    tc = tcase_create("reload");
    tcase_set_timeout(tc, 5);
    tcase_add_test(tc, reload_copies_reloadable_keys);
    tcase_add_test(tc, dump_masks_and_reads_back);
    tcase_add_test(tc, amqp_mask_and_confirms);
    suite_add_tcase(s, tc);

    return s;
}
