/* migrate.h — applies the embedded migrations/ and sql/ files, tracked in tasker.schema_migrations. */
#ifndef TASKER_MIGRATE_H
#define TASKER_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "embedded_sql.h"

/* Session advisory lock that serializes concurrent `migrate` runs on one database: the ASCII bytes
 * of "TASKMIGR". A second run blocks on it and then finds nothing left to do. In pg_locks it shows
 * as locktype advisory, classid 0x5441534B (1413567307), objid 0x4D494752 (1296648018). */
#define MIGRATE_LOCK_KEY INT64_C(0x5441534B4D494752)

/* The application_name of the migrate connection, so it is recognisable in pg_stat_activity. */
#define MIGRATE_APPLICATION_NAME "tasker-migrate"

/* Hex SHA-256 of a file's bytes plus the terminating NUL. */
#define MIGRATE_CHECKSUM_LEN 65

/* What the database says about one embedded file, compared with the file compiled in. */
enum migrate_state {
    MIGRATE_PENDING, /* not recorded: will be applied */
    MIGRATE_APPLIED, /* recorded with the same checksum: nothing to do */
    MIGRATE_SKIPPED, /* recorded with the same checksum, but its only-if was false: nothing to do */
    MIGRATE_REAPPLY, /* sql/ file whose text changed since it was applied: will be applied again */
    MIGRATE_CHANGED  /* landed migration whose text (or kind) changed: refused, never applied */
};

/* One row of tasker.schema_migrations. Owned by whoever filled it; name is a borrowed or owned
 * pointer as the owner documents. */
struct migrate_record {
    const char *name;
    enum embedded_sql_kind kind;
    char checksum[MIGRATE_CHECKSUM_LEN];
    bool skipped;
};

/* The leading-comment directives of one file. only_if points into the file text (not
 * NUL-terminated); NULL when the file has no `-- tasker:only-if`. */
struct migrate_directives {
    const char *only_if;   /* SQL boolean expression, evaluated as SELECT (<expr>) */
    size_t only_if_len;    /* bytes */
    size_t only_if_line;   /* 1-based line of the directive, for error messages */
};

/* migrate_apply: connect to conninfo (URL or key=value string), take the advisory lock, create the
 * bookkeeping table if missing, refuse if any landed migration changed, then apply pending
 * migrations and changed sql/ files, one transaction each, printing one line per file and a summary
 * on stdout. Returns false on any failure (already logged); files committed before the failure stay
 * applied. Blocking libpq: meant for the one-shot `migrate` subcommand, never the event loop. */
bool migrate_apply(const char *conninfo) __attribute__((warn_unused_result));

/* migrate_status: print each embedded file with its state (applied / pending / changed! / skipped)
 * and any recorded file this binary does not know. Read-only: takes no lock and creates nothing.
 * Returns false if the database cannot be read or a landed migration changed (already logged). */
bool migrate_status(const char *conninfo) __attribute__((warn_unused_result));

/* migrate_check_current: true if every embedded file is recorded with its current checksum, i.e.
 * `migrate` would do nothing. Otherwise false with a one-line reason in err (nothing is logged, so
 * the caller decides how loud to be). Blocking: runs one query per embedded file on conn, which
 * must be idle. Meant for daemon startup, before the event loop runs. */
bool migrate_check_current(PGconn *conn, char *err, size_t errlen) __attribute__((warn_unused_result));

/* ---- pure helpers, exported for the unit tests ------------------------------------------------ */

/* migrate_parse_directives: read the `-- tasker:...` directives in the leading comment lines of a
 * file (lines that are blank or start with `--`, up to the first other line). Known directive:
 * `-- tasker:only-if <SQL boolean expression>` (the rest of that one line). Returns false with a
 * reason in err for an empty expression, a repeated only-if or an unknown `tasker:` directive: a
 * typo must not silently turn a condition off. */
bool migrate_parse_directives(const char *text, size_t len, struct migrate_directives *out, char *err,
                              size_t errlen) __attribute__((warn_unused_result));

/* migrate_line_of_position: the 1-based line holding the position-th character of text, where
 * position is PostgreSQL's 1-based error cursor (PG_DIAG_STATEMENT_POSITION). PostgreSQL counts
 * characters of the server encoding: pass utf8=true to count UTF-8 characters, false to count
 * bytes (SQL_ASCII). Out-of-range positions are clamped to the first or last line. */
size_t migrate_line_of_position(const char *text, size_t len, size_t position, bool utf8);

/* migrate_validate_files: check an embedded table before using it: names non-empty, plain file
 * names ending in ".sql" and unique across both kinds; all migrations before all sql/ files; each
 * kind in strictly increasing name order; text present; directives well formed. Returns false with
 * the first problem in err. */
bool migrate_validate_files(const struct embedded_sql *files, size_t n, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* migrate_classify: the state of an embedded file of kind `kind` whose bytes hash to checksum,
 * given its record (NULL if not recorded). */
enum migrate_state migrate_classify(enum embedded_sql_kind kind, const char *checksum,
                                    const struct migrate_record *rec);

/* migrate_state_str: "pending", "applied", "skipped", "reapply", "changed". */
const char *migrate_state_str(enum migrate_state state);

/* migrate_kind_str / migrate_kind_dir: "migration" / "functions" (the schema_migrations.kind
 * values) and "migrations" / "sql" (the source directory, for messages). */
const char *migrate_kind_str(enum embedded_sql_kind kind);
const char *migrate_kind_dir(enum embedded_sql_kind kind);

#endif
