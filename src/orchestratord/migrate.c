/* migrate.c — applies the embedded migrations/ then sql/ files, checksummed, under an advisory lock. */
#include "migrate.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define C_MIGRATE "migrate"

/* pg_type OIDs we bind or check. Fixed since PostgreSQL 7; the server headers are no dependency. */
#define OID_BOOL 16
#define OID_BYTEA 17

/* Longest source line quoted in an error message, in bytes. */
#define MIGRATE_QUOTE_MAX 200

/* The bookkeeping table (DESIGN §6 migrate). Created before anything else, under the lock (so two
 * first runs cannot race on the catalog), so the first migration can already be recorded. IF NOT
 * EXISTS: the schema may have been made by hand, or by a migration on a database whose bookkeeping
 * table was dropped. */
static const char migrate_bootstrap_sql[] =
    "CREATE SCHEMA IF NOT EXISTS tasker;\n"
    "CREATE TABLE IF NOT EXISTS tasker.schema_migrations (\n"
    "    name         text PRIMARY KEY,\n"
    "    kind         text NOT NULL CHECK (kind IN ('migration', 'functions')),\n"
    "    checksum     text NOT NULL,\n"
    "    applied_at   timestamptz NOT NULL DEFAULT now(),\n"
    "    skipped      boolean NOT NULL DEFAULT false,\n"
    "    execution_ms integer\n"
    ");\n";

/* One embedded file and what the database holds about it. */
struct plan_item {
    const struct embedded_sql *file;      /* borrowed from the embedded table */
    char checksum[MIGRATE_CHECKSUM_LEN];  /* of the embedded bytes, computed by the server */
    const struct migrate_record *rec;     /* borrowed from plan.records; NULL if not recorded */
    enum migrate_state state;
};

/* What one run knows before it changes anything. Owned by the run; plan_free releases it. */
struct plan {
    struct plan_item *items;        /* one per embedded file, in embedded order */
    size_t nitems;
    struct migrate_record *records; /* every row of schema_migrations; names malloc'd here */
    bool *record_embedded;          /* parallel to records: some embedded file has this name */
    size_t nrecords;
    bool table_exists;              /* false on a database migrate never touched */
};

/* One migrate connection and the file being applied (for NOTICE attribution). */
struct run {
    PGconn *conn;
    bool utf8;                              /* server counts error positions in UTF-8 characters */
    const struct embedded_sql *current;     /* file whose text is executing, or NULL */
};

/* ---- pure helpers -------------------------------------------------------------------------- */

const char *migrate_state_str(enum migrate_state state)
{
    switch (state) {
    case MIGRATE_PENDING: return "pending";
    case MIGRATE_APPLIED: return "applied";
    case MIGRATE_SKIPPED: return "skipped";
    case MIGRATE_REAPPLY: return "reapply";
    case MIGRATE_CHANGED: return "changed";
    }
    return "?";
}

const char *migrate_kind_str(enum embedded_sql_kind kind)
{
    return kind == EMBED_MIGRATION ? "migration" : "functions";
}

const char *migrate_kind_dir(enum embedded_sql_kind kind)
{
    return kind == EMBED_MIGRATION ? "migrations" : "sql";
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

bool migrate_parse_directives(const char *text, size_t len, struct migrate_directives *out, char *err,
                              size_t errlen)
{
    static const char tag[] = "tasker:";
    static const char only_if[] = "only-if";
    const size_t tag_len = sizeof tag - 1, only_if_len = sizeof only_if - 1;
    size_t pos = 0, line = 0;

    memset(out, 0, sizeof *out);
    while (pos < len) {
        size_t b = pos, e = pos;
        while (e < len && text[e] != '\n')
            e++;
        pos = e + 1;
        line++;
        while (b < e && is_blank(text[b]))
            b++;
        while (e > b && is_blank(text[e - 1]))
            e--;
        if (b == e)
            continue; /* blank lines may separate header comments */
        if (e - b < 2 || text[b] != '-' || text[b + 1] != '-')
            break; /* the first SQL line ends the header: directives below it are not ours */
        b += 2;
        while (b < e && is_blank(text[b]))
            b++;
        /* "tasker:" must be glued to a name; "-- tasker: core schema" is prose, not a directive. */
        if (e - b <= tag_len || memcmp(text + b, tag, tag_len) != 0 || is_blank(text[b + tag_len]))
            continue;
        b += tag_len;
        size_t name = b;
        while (b < e && !is_blank(text[b]))
            b++;
        size_t name_len = b - name;
        if (name_len != only_if_len || memcmp(text + name, only_if, only_if_len) != 0) {
            snprintf(err, errlen, "line %zu: unknown directive 'tasker:%.*s' (known: tasker:only-if)", line,
                     (int)name_len, text + name);
            return false;
        }
        while (b < e && is_blank(text[b]))
            b++;
        if (b == e) {
            snprintf(err, errlen, "line %zu: tasker:only-if needs a SQL boolean expression", line);
            return false;
        }
        if (out->only_if) {
            snprintf(err, errlen, "line %zu: tasker:only-if repeated (first on line %zu); combine the conditions "
                     "with AND on one line", line, out->only_if_line);
            return false;
        }
        out->only_if = text + b;
        out->only_if_len = e - b;
        out->only_if_line = line;
    }
    return true;
}

size_t migrate_line_of_position(const char *text, size_t len, size_t position, bool utf8)
{
    size_t line = 1, last = 1, chars = 0;

    if (position == 0)
        return 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (utf8 && (c & 0xC0) == 0x80)
            continue; /* continuation byte: part of the character already counted */
        chars++;
        last = line;
        if (chars == position)
            return line;
        if (c == '\n')
            line++;
    }
    return last;
}

bool migrate_validate_files(const struct embedded_sql *files, size_t n, char *err, size_t errlen)
{
    bool seen_functions = false;

    for (size_t i = 0; i < n; i++) {
        const struct embedded_sql *f = &files[i];
        if (!f->name || !*f->name) {
            snprintf(err, errlen, "entry %zu has no name", i);
            return false;
        }
        if (f->kind != EMBED_MIGRATION && f->kind != EMBED_FUNCTIONS) {
            snprintf(err, errlen, "%s: unknown kind %d", f->name, (int)f->kind);
            return false;
        }
        const char *dir = migrate_kind_dir(f->kind);
        size_t nlen = strlen(f->name);
        if (nlen < 5 || strcmp(f->name + nlen - 4, ".sql") != 0 || strchr(f->name, '/')) {
            snprintf(err, errlen, "%s/%s: expected a plain file name ending in .sql", dir, f->name);
            return false;
        }
        if (!f->text) {
            snprintf(err, errlen, "%s/%s: no text", dir, f->name);
            return false;
        }
        /* PQexec stops at a NUL: the rest of the file would be silently ignored. */
        if (memchr(f->text, '\0', f->length)) {
            snprintf(err, errlen, "%s/%s: contains a NUL byte", dir, f->name);
            return false;
        }
        if (f->kind == EMBED_FUNCTIONS) {
            seen_functions = true;
        } else if (seen_functions) {
            snprintf(err, errlen, "migrations/%s comes after sql/ files; migrations must come first", f->name);
            return false;
        }
        if (i > 0 && files[i - 1].kind == f->kind && strcmp(files[i - 1].name, f->name) >= 0) {
            snprintf(err, errlen, "%s/%s is not in name order after %s/%s", dir, f->name, dir, files[i - 1].name);
            return false;
        }
        /* schema_migrations is keyed by the bare name, so it must be unique across both kinds. */
        for (size_t j = 0; j < i; j++) {
            if (strcmp(files[j].name, f->name) == 0) {
                snprintf(err, errlen, "%s/%s and %s/%s share a name; schema_migrations keys on the name alone",
                         migrate_kind_dir(files[j].kind), files[j].name, dir, f->name);
                return false;
            }
        }
        struct migrate_directives d;
        char why[160];
        if (!migrate_parse_directives(f->text, f->length, &d, why, sizeof why)) {
            snprintf(err, errlen, "%s/%s: %s", dir, f->name, why);
            return false;
        }
    }
    return true;
}

enum migrate_state migrate_classify(enum embedded_sql_kind kind, const char *checksum,
                                    const struct migrate_record *rec)
{
    if (!rec)
        return MIGRATE_PENDING;
    /* A file that moved between migrations/ and sql/ changes its rules; a human decides. */
    if (rec->kind != kind)
        return MIGRATE_CHANGED;
    if (strcmp(rec->checksum, checksum) != 0)
        return kind == EMBED_MIGRATION ? MIGRATE_CHANGED : MIGRATE_REAPPLY;
    return rec->skipped ? MIGRATE_SKIPPED : MIGRATE_APPLIED;
}

/* ---- libpq plumbing -------------------------------------------------------------------------- */

/* Copy a libpq message into buf without its trailing newline(s). Returns buf. */
static const char *trimmed(const char *msg, char *buf, size_t len)
{
    snprintf(buf, len, "%s", msg ? msg : "");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* NOTICEs (e.g. "schema already exists, skipping") are noise at the default level; WARNINGs are
 * not, so they stay visible. */
static void notice_receiver(void *arg, const PGresult *res)
{
    const struct run *run = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char where[256] = "";

    if (run->current)
        snprintf(where, sizeof where, "%s/%s: ", migrate_kind_dir(run->current->kind), run->current->name);
    if (sev && strcmp(sev, "WARNING") == 0)
        log_warn(C_MIGRATE, "%sWARNING:  %s", where, msg ? msg : "");
    else
        log_debug(C_MIGRATE, "%s%s:  %s", where, sev ? sev : "NOTICE", msg ? msg : "");
}

/* Connect with our application_name and UTF-8 (the embedded files are UTF-8). connect_timeout comes
 * before dbname so a URL may override it; the two after it are ours and win (libpq keeps the last
 * value of a repeated keyword). Returns false after logging. */
static bool run_connect(struct run *run, const char *conninfo)
{
    const char *const keys[] = {"connect_timeout", "dbname", "application_name", "client_encoding", NULL};
    const char *const vals[] = {"10", conninfo, MIGRATE_APPLICATION_NAME, "UTF8", NULL};
    char buf[1024];

    run->conn = PQconnectdbParams(keys, vals, 1);
    if (!run->conn) {
        log_error(C_MIGRATE, "cannot connect to the database: out of memory");
        return false;
    }
    if (PQstatus(run->conn) != CONNECTION_OK) {
        log_error(C_MIGRATE, "cannot connect to the database: %s", trimmed(PQerrorMessage(run->conn), buf, sizeof buf));
        PQfinish(run->conn);
        run->conn = NULL;
        return false;
    }
    const char *enc = PQparameterStatus(run->conn, "server_encoding");
    run->utf8 = !(enc && strcmp(enc, "SQL_ASCII") == 0);
    PQsetNoticeReceiver(run->conn, notice_receiver, run);
    log_debug(C_MIGRATE, "connected to database %s on %s, server %d", PQdb(run->conn), PQhost(run->conn),
              PQserverVersion(run->conn));
    return true;
}

/* Run one statement of ours (not a file's); what names it in the error. Logs on failure. */
static bool exec_simple(PGconn *conn, const char *sql, const char *what)
{
    char buf[1024];
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(res);
        return true;
    }
    log_error(C_MIGRATE, "%s failed: %s", what,
              trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), buf, sizeof buf));
    PQclear(res);
    return false;
}

/* Abandon the open transaction, if any. Failure is only logged at debug: we are already failing and
 * closing the connection aborts the transaction anyway. */
static void rollback(PGconn *conn)
{
    PGTransactionStatusType ts = PQtransactionStatus(conn);
    if (ts != PQTRANS_INTRANS && ts != PQTRANS_INERROR)
        return;
    PGresult *res = PQexec(conn, "ROLLBACK");
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
        log_debug(C_MIGRATE, "ROLLBACK failed: %s", PQerrorMessage(conn));
    PQclear(res);
}

/* Report a failed file: "DIR/NAME: ERROR:  message", the line the error cursor points at (or
 * fixed_line when the failing SQL was not the file text), then DETAIL, HINT and CONTEXT. */
static void report_file_error(const struct run *run, const struct embedded_sql *f, const PGresult *res,
                              size_t fixed_line)
{
    const char *dir = migrate_kind_dir(f->kind);
    char buf[1024];
    const char *sev = res ? PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    /* libpq's own errors (lost connection) have no fields, only a message. */
    if (!primary)
        primary = trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(run->conn), buf, sizeof buf);
    log_error(C_MIGRATE, "%s/%s: %s:  %s", dir, f->name, sev ? sev : "ERROR", primary);

    size_t line = fixed_line;
    const char *pos = res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
    if (!line && pos) {
        unsigned long p = strtoul(pos, NULL, 10);
        line = migrate_line_of_position(f->text, f->length, (size_t)p, run->utf8);
    }
    if (line) {
        /* Quote the line so the message stands alone in a CI log. */
        const char *s = f->text, *end = f->text + f->length;
        for (size_t l = 1; l < line && s < end; s++)
            if (*s == '\n')
                l++;
        const char *e = s;
        while (e < end && *e != '\n' && *e != '\r')
            e++;
        while (s < e && is_blank(*s))
            s++;
        int qlen = (int)(e - s > MIGRATE_QUOTE_MAX ? MIGRATE_QUOTE_MAX : e - s);
        log_error(C_MIGRATE, "%s/%s: line %zu: %.*s%s", dir, f->name, line, qlen, s,
                  e - s > MIGRATE_QUOTE_MAX ? " ..." : "");
    }
    static const struct { int field; const char *label; } extra[] = {
        {PG_DIAG_MESSAGE_DETAIL, "DETAIL"}, {PG_DIAG_MESSAGE_HINT, "HINT"}, {PG_DIAG_CONTEXT, "CONTEXT"},
    };
    for (size_t i = 0; res && i < sizeof extra / sizeof extra[0]; i++) {
        const char *v = PQresultErrorField(res, extra[i].field);
        if (v)
            log_error(C_MIGRATE, "%s/%s: %s:  %s", dir, f->name, extra[i].label, v);
    }
}

/* ---- the plan: what is embedded versus what is recorded -------------------------------------- */

static void plan_free(struct plan *p)
{
    for (size_t i = 0; i < p->nrecords; i++)
        free((char *)p->records[i].name);
    free(p->records);
    free(p->record_embedded);
    free(p->items);
    memset(p, 0, sizeof *p);
}

/* Hash a file's bytes on the server (sha256() is built in since PostgreSQL 11), so the binary needs
 * no crypto library. Binary bytea parameter: the hash is of the exact bytes, whatever the encodings,
 * and equals `sha256sum FILE`. */
static bool checksum_file(PGconn *conn, const struct embedded_sql *f, char out[MIGRATE_CHECKSUM_LEN], char *err,
                          size_t errlen)
{
    const Oid types[1] = {OID_BYTEA};
    const char *const values[1] = {f->text};
    const int lengths[1] = {(int)f->length};
    const int formats[1] = {1};
    char buf[512];
    PGresult *res = PQexecParams(conn, "SELECT encode(sha256($1), 'hex')", 1, types, values, lengths, formats, 0);

    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(err, errlen, "checksum of %s/%s failed: %s", migrate_kind_dir(f->kind), f->name,
                 trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), buf, sizeof buf));
        PQclear(res);
        return false;
    }
    snprintf(out, MIGRATE_CHECKSUM_LEN, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return true;
}

/* Read schema_migrations (if it exists) into p->records. Fills err on failure. */
static bool plan_load_records(PGconn *conn, struct plan *p, char *err, size_t errlen)
{
    char buf[512];
    PGresult *res = PQexec(conn, "SELECT to_regclass('tasker.schema_migrations') IS NOT NULL");

    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(err, errlen, "cannot look for tasker.schema_migrations: %s",
                 trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), buf, sizeof buf));
        PQclear(res);
        return false;
    }
    p->table_exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!p->table_exists)
        return true;

    res = PQexec(conn, "SELECT name, kind, checksum, skipped FROM tasker.schema_migrations ORDER BY name");
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "cannot read tasker.schema_migrations: %s",
                 trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(conn), buf, sizeof buf));
        PQclear(res);
        return false;
    }
    size_t n = (size_t)PQntuples(res);
    p->records = calloc(n ? n : 1, sizeof *p->records);
    p->record_embedded = calloc(n ? n : 1, sizeof *p->record_embedded);
    if (!p->records || !p->record_embedded) {
        snprintf(err, errlen, "out of memory reading tasker.schema_migrations");
        PQclear(res);
        return false;
    }
    p->nrecords = n; /* names start NULL, so plan_free is safe whenever we stop */
    for (size_t i = 0; i < n; i++) {
        struct migrate_record *r = &p->records[i];
        const char *kind = PQgetvalue(res, (int)i, 1);
        r->name = strdup(PQgetvalue(res, (int)i, 0));
        if (!r->name) {
            snprintf(err, errlen, "out of memory reading tasker.schema_migrations");
            PQclear(res);
            return false;
        }
        r->kind = strcmp(kind, "migration") == 0 ? EMBED_MIGRATION : EMBED_FUNCTIONS;
        snprintf(r->checksum, sizeof r->checksum, "%s", PQgetvalue(res, (int)i, 2));
        r->skipped = strcmp(PQgetvalue(res, (int)i, 3), "t") == 0;
    }
    PQclear(res);
    return true;
}

/* Build the plan: records, a checksum per embedded file, and each file's state. Changes nothing in
 * the database. Fills err on failure; p is always safe to plan_free. */
static bool plan_load(PGconn *conn, const struct embedded_sql *files, size_t n, struct plan *p, char *err,
                      size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (!plan_load_records(conn, p, err, errlen))
        return false;
    p->items = calloc(n ? n : 1, sizeof *p->items);
    if (!p->items) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    p->nitems = n;
    for (size_t i = 0; i < n; i++) {
        struct plan_item *it = &p->items[i];
        it->file = &files[i];
        if (!checksum_file(conn, it->file, it->checksum, err, errlen))
            return false;
        for (size_t r = 0; r < p->nrecords; r++) {
            if (strcmp(p->records[r].name, it->file->name) == 0) {
                it->rec = &p->records[r];
                p->record_embedded[r] = true;
                break;
            }
        }
        it->state = migrate_classify(it->file->kind, it->checksum, it->rec);
    }
    return true;
}

/* Log why a landed migration is refused. */
static void report_changed(const struct plan_item *it)
{
    const struct embedded_sql *f = it->file;
    if (it->rec->kind != f->kind)
        log_error(C_MIGRATE, "%s/%s is recorded as kind '%s' but this binary has it as kind '%s'",
                  migrate_kind_dir(f->kind), f->name, migrate_kind_str(it->rec->kind), migrate_kind_str(f->kind));
    else
        log_error(C_MIGRATE, "%s/%s was changed after it was applied: recorded checksum %s, this binary's file %s",
                  migrate_kind_dir(f->kind), f->name, it->rec->checksum, it->checksum);
}

/* ---- applying --------------------------------------------------------------------------------- */

/* Take the session advisory lock, saying so when another run holds it, then create the bookkeeping
 * table if it is missing. The lock lasts until the connection closes. */
static bool lock_and_bootstrap(struct run *run)
{
    char key[32], buf[512];
    const char *const values[1] = {key};
    snprintf(key, sizeof key, "%" PRId64, MIGRATE_LOCK_KEY);

    PGresult *res = PQexecParams(run->conn, "SELECT pg_try_advisory_lock($1::bigint)", 1, NULL, values, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        log_error(C_MIGRATE, "cannot take the migrate lock: %s",
                  trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(run->conn), buf, sizeof buf));
        PQclear(res);
        return false;
    }
    bool got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (!got) {
        log_info(C_MIGRATE, "another migrate run holds the lock (advisory key %s); waiting for it", key);
        res = PQexecParams(run->conn, "SELECT pg_advisory_lock($1::bigint)", 1, NULL, values, NULL, NULL, 0);
        if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
            log_error(C_MIGRATE, "cannot take the migrate lock: %s",
                      trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(run->conn), buf, sizeof buf));
            PQclear(res);
            return false;
        }
        PQclear(res);
    }
    /* Only when missing: CREATE SCHEMA checks the CREATE privilege on the database even when the
     * schema exists, and a migrate role may own tasker without holding that privilege. */
    res = PQexec(run->conn, "SELECT to_regclass('tasker.schema_migrations') IS NOT NULL");
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        log_error(C_MIGRATE, "cannot look for tasker.schema_migrations: %s",
                  trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(run->conn), buf, sizeof buf));
        PQclear(res);
        return false;
    }
    bool exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return exists || exec_simple(run->conn, migrate_bootstrap_sql, "creating tasker.schema_migrations");
}

/* Evaluate a file's only-if inside its transaction. Returns 1 (apply), 0 (skip) or -1 (logged). */
static int eval_only_if(struct run *run, const struct embedded_sql *f, const struct migrate_directives *d)
{
    size_t qlen = d->only_if_len + sizeof "SELECT ()";
    char *q = malloc(qlen);
    if (!q) {
        log_error(C_MIGRATE, "%s/%s: out of memory", migrate_kind_dir(f->kind), f->name);
        return -1;
    }
    snprintf(q, qlen, "SELECT (%.*s)", (int)d->only_if_len, d->only_if);
    /* The extended protocol refuses several statements, so a stray ';' cannot smuggle one in. */
    PGresult *res = PQexecParams(run->conn, q, 0, NULL, NULL, NULL, NULL, 0);
    free(q);
    if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
        report_file_error(run, f, res, d->only_if_line);
        PQclear(res);
        return -1;
    }
    int verdict = -1;
    if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQftype(res, 0) != OID_BOOL)
        log_error(C_MIGRATE, "%s/%s: line %zu: tasker:only-if must be one boolean expression", migrate_kind_dir(f->kind),
                  f->name, d->only_if_line);
    else if (PQgetisnull(res, 0, 0))
        /* NULL is neither: refusing beats guessing whether a layer gets installed. */
        log_error(C_MIGRATE, "%s/%s: line %zu: tasker:only-if expression is NULL", migrate_kind_dir(f->kind),
                  f->name, d->only_if_line);
    else
        verdict = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return verdict;
}

/* Record a file inside its transaction. sql/ files are upserted since they are re-applied. */
static bool record_file(struct run *run, const struct plan_item *it, bool skipped, long ms)
{
    static const char insert_sql[] =
        "INSERT INTO tasker.schema_migrations (name, kind, checksum, skipped, execution_ms) "
        "VALUES ($1, $2, $3, $4, $5)";
    static const char upsert_sql[] =
        "INSERT INTO tasker.schema_migrations (name, kind, checksum, skipped, execution_ms) "
        "VALUES ($1, $2, $3, $4, $5) "
        "ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, checksum = EXCLUDED.checksum, "
        "applied_at = now(), skipped = EXCLUDED.skipped, execution_ms = EXCLUDED.execution_ms";
    char msbuf[24], buf[512];
    snprintf(msbuf, sizeof msbuf, "%ld", ms > INT32_MAX ? (long)INT32_MAX : ms);
    const char *const values[5] = {it->file->name, migrate_kind_str(it->file->kind), it->checksum,
                                   skipped ? "true" : "false", msbuf};
    /* A migration is inserted plainly: under the lock a conflict means something is badly wrong. */
    PGresult *res = PQexecParams(run->conn, it->file->kind == EMBED_MIGRATION ? insert_sql : upsert_sql, 5, NULL,
                                 values, NULL, NULL, 0);
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        log_error(C_MIGRATE, "%s/%s: recording it in tasker.schema_migrations failed: %s",
                  migrate_kind_dir(it->file->kind), it->file->name,
                  trimmed(res ? PQresultErrorMessage(res) : PQerrorMessage(run->conn), buf, sizeof buf));
        PQclear(res);
        return false;
    }
    PQclear(res);
    return true;
}

/* Apply one file in one transaction: only-if, the file text, the record, COMMIT. *skipped says
 * whether the only-if turned it into a recorded no-op. Logs and rolls back on failure. */
static bool apply_file(struct run *run, const struct plan_item *it, bool *skipped)
{
    const struct embedded_sql *f = it->file;
    const char *dir = migrate_kind_dir(f->kind);
    struct migrate_directives d;
    char why[256];
    struct timespec t0;

    *skipped = false;
    if (!migrate_parse_directives(f->text, f->length, &d, why, sizeof why)) {
        log_error(C_MIGRATE, "%s/%s: %s", dir, f->name, why);
        return false;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* A file's session-level SETs (search_path...) must not leak into the next file: otherwise a file
     * could work only when applied in the same run as an earlier one. RESET ALL, not DISCARD ALL,
     * which would also drop our advisory lock. */
    if (!exec_simple(run->conn, "RESET ALL", "RESET ALL") || !exec_simple(run->conn, "BEGIN", "BEGIN"))
        return false;
    if (d.only_if) {
        int verdict = eval_only_if(run, f, &d);
        if (verdict < 0)
            goto fail;
        *skipped = verdict == 0;
    }
    if (!*skipped) {
        /* The whole file as one simple query: PostgreSQL runs its statements in order and stops at the
         * first error, whose cursor is an offset into this text. */
        run->current = f;
        PGresult *res = PQexec(run->conn, f->text);
        run->current = NULL;
        ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
            if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
                log_error(C_MIGRATE, "%s/%s: COPY from/to the client is not supported in migration files", dir,
                          f->name);
            else
                report_file_error(run, f, res, 0);
            PQclear(res);
            goto fail;
        }
        PQclear(res);
        /* If the file committed on its own, part of it is already permanent and our record would be
         * written outside its transaction: stop rather than pretend. */
        if (PQtransactionStatus(run->conn) != PQTRANS_INTRANS) {
            log_error(C_MIGRATE, "%s/%s: the file ended our transaction itself (COMMIT or ROLLBACK in it?); files "
                      "must not control transactions", dir, f->name);
            goto fail;
        }
    }
    if (!record_file(run, it, *skipped, elapsed_ms(&t0)))
        goto fail;
    /* COMMIT can fail too (deferred constraints): blame the file. */
    PGresult *res = PQexec(run->conn, "COMMIT");
    if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
        report_file_error(run, f, res, 0);
        PQclear(res);
        goto fail;
    }
    PQclear(res);

    long ms = elapsed_ms(&t0);
    if (*skipped)
        printf("skipped  %s/%s (only-if false: %.*s) (%ld ms)\n", dir, f->name, (int)d.only_if_len, d.only_if, ms);
    else
        printf("%s %s/%s (%ld ms)\n", it->state == MIGRATE_REAPPLY ? "reapplied" : "applied ", dir, f->name, ms);
    fflush(stdout);
    return true;

fail:
    rollback(run->conn);
    return false;
}

/* A pending migration named before one already applied was written in parallel with it: apply it,
 * since migrations must not depend on what came after them, but say so. */
static void warn_out_of_order(const struct plan *p, size_t i)
{
    const struct embedded_sql *f = p->items[i].file;
    for (size_t j = i + 1; j < p->nitems; j++) {
        const struct plan_item *later = &p->items[j];
        if (later->file->kind == EMBED_MIGRATION && later->rec) {
            log_warn(C_MIGRATE, "migrations/%s is applied after migrations/%s, which sorts later (out of order)",
                     f->name, later->file->name);
            return;
        }
    }
}

static bool apply_all(struct run *run)
{
    struct plan p;
    char err[512];
    size_t applied = 0, skipped = 0, current = 0, changed = 0;

    if (!plan_load(run->conn, embedded_sql_files, embedded_sql_count, &p, err, sizeof err)) {
        log_error(C_MIGRATE, "%s", err);
        plan_free(&p);
        return false;
    }
    /* Check every landed migration before applying anything, so a refused run changes nothing. */
    for (size_t i = 0; i < p.nitems; i++) {
        if (p.items[i].state == MIGRATE_CHANGED) {
            report_changed(&p.items[i]);
            changed++;
        }
    }
    /* A recorded migration this binary lacks means a newer build migrated the database (migrations
     * are never removed). Re-applying our older sql/ functions over its newer ones would quietly
     * downgrade the schema's code, so refuse. */
    for (size_t r = 0; r < p.nrecords; r++) {
        if (!p.record_embedded[r] && p.records[r].kind == EMBED_MIGRATION) {
            log_error(C_MIGRATE, "refusing to migrate: migrations/%s is recorded in the database but not in this "
                      "binary, so a newer build migrated it; run that build's migrate instead", p.records[r].name);
            plan_free(&p);
            return false;
        }
    }
    if (changed) {
        log_error(C_MIGRATE, "refusing to migrate: %zu landed migration%s changed, nothing was applied. Landed "
                  "migrations are never edited: restore the original file and add a new migration with the change",
                  changed, changed == 1 ? "" : "s");
        plan_free(&p);
        return false;
    }
    for (size_t i = 0; i < p.nitems; i++) {
        const struct plan_item *it = &p.items[i];
        bool was_skipped;
        if (it->state == MIGRATE_APPLIED || it->state == MIGRATE_SKIPPED) {
            current++;
            continue;
        }
        if (it->file->kind == EMBED_MIGRATION)
            warn_out_of_order(&p, i);
        if (!apply_file(run, it, &was_skipped)) {
            log_error(C_MIGRATE, "stopped at %s/%s; %zu file%s applied before it in this run",
                      migrate_kind_dir(it->file->kind), it->file->name, applied, applied == 1 ? "" : "s");
            plan_free(&p);
            return false;
        }
        if (was_skipped)
            skipped++;
        else
            applied++;
    }
    printf("migrate: %zu applied, %zu skipped, %zu up to date\n", applied, skipped, current);
    fflush(stdout);
    plan_free(&p);
    return true;
}

static bool validate_embedded(void)
{
    char err[512];
    if (migrate_validate_files(embedded_sql_files, embedded_sql_count, err, sizeof err))
        return true;
    log_error(C_MIGRATE, "the SQL files built into this binary are inconsistent: %s", err);
    return false;
}

bool migrate_apply(const char *conninfo)
{
    struct run run = {0};

    if (!validate_embedded() || !run_connect(&run, conninfo))
        return false; /* errors have already been logged */
    bool ok = lock_and_bootstrap(&run) && apply_all(&run);
    PQfinish(run.conn); /* also releases the advisory lock */
    return ok;
}

/* ---- status and startup check ------------------------------------------------------------------ */

bool migrate_status(const char *conninfo)
{
    struct run run = {0};
    struct plan p;
    char err[512];
    size_t applied = 0, skipped = 0, pending = 0, changed = 0;

    if (!validate_embedded() || !run_connect(&run, conninfo))
        return false;
    if (!plan_load(run.conn, embedded_sql_files, embedded_sql_count, &p, err, sizeof err)) {
        log_error(C_MIGRATE, "%s", err);
        plan_free(&p);
        PQfinish(run.conn);
        return false;
    }
    for (size_t i = 0; i < p.nitems; i++) {
        const struct plan_item *it = &p.items[i];
        const char *dir = migrate_kind_dir(it->file->kind), *name = it->file->name;
        switch (it->state) {
        case MIGRATE_APPLIED:
            applied++;
            printf("applied   %s/%s\n", dir, name);
            break;
        case MIGRATE_SKIPPED:
            skipped++;
            printf("skipped   %s/%s (only-if was false)\n", dir, name);
            break;
        case MIGRATE_PENDING:
            pending++;
            printf("pending   %s/%s\n", dir, name);
            break;
        case MIGRATE_REAPPLY:
            pending++;
            printf("pending   %s/%s (changed since applied; migrate re-applies it)\n", dir, name);
            break;
        case MIGRATE_CHANGED:
            changed++;
            if (it->rec->kind != it->file->kind)
                printf("changed!  %s/%s (recorded as kind %s)\n", dir, name, migrate_kind_str(it->rec->kind));
            else
                printf("changed!  %s/%s (recorded %s, file %s)\n", dir, name, it->rec->checksum, it->checksum);
            break;
        }
    }
    /* Rows this binary does not know: the database was migrated by a newer build. */
    for (size_t r = 0; r < p.nrecords; r++)
        if (!p.record_embedded[r])
            printf("unknown   %s/%s (recorded in the database, not in this binary)\n",
                   migrate_kind_dir(p.records[r].kind), p.records[r].name);
    if (!p.table_exists)
        printf("(no tasker.schema_migrations yet: this database was never migrated)\n");
    printf("status: %zu applied, %zu skipped, %zu pending, %zu changed\n", applied, skipped, pending, changed);
    fflush(stdout);
    if (changed)
        log_error(C_MIGRATE, "%zu landed migration%s changed after being applied; migrate will refuse to run",
                  changed, changed == 1 ? "" : "s");
    plan_free(&p);
    PQfinish(run.conn);
    return changed == 0;
}

bool migrate_check_current(PGconn *conn, char *err, size_t errlen)
{
    struct plan p;
    size_t behind = 0;
    const struct plan_item *first = NULL;

    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "no database connection");
        return false;
    }
    if (!migrate_validate_files(embedded_sql_files, embedded_sql_count, err, errlen))
        return false;
    if (!plan_load(conn, embedded_sql_files, embedded_sql_count, &p, err, errlen)) {
        plan_free(&p);
        return false;
    }
    if (!p.table_exists) {
        snprintf(err, errlen, "the database was never migrated (no tasker.schema_migrations); run "
                 "`tasker-orchestratord migrate`");
        plan_free(&p);
        return false;
    }
    for (size_t i = 0; i < p.nitems; i++) {
        const struct plan_item *it = &p.items[i];
        if (it->state == MIGRATE_CHANGED) {
            snprintf(err, errlen, "%s/%s changed after it was applied; see `tasker-orchestratord migrate --status`",
                     migrate_kind_dir(it->file->kind), it->file->name);
            plan_free(&p);
            return false;
        }
        if (it->state == MIGRATE_PENDING || it->state == MIGRATE_REAPPLY) {
            if (!first)
                first = it;
            behind++;
        }
    }
    if (first) {
        snprintf(err, errlen, "the database is not fully migrated: %zu file%s to apply, first %s/%s; run "
                 "`tasker-orchestratord migrate`", behind, behind == 1 ? "" : "s",
                 migrate_kind_dir(first->file->kind), first->file->name);
        plan_free(&p);
        return false;
    }
    plan_free(&p);
    return true;
}
