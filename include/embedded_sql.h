/* embedded_sql.h — the migrations/ and sql/ files compiled into the binary (scripts/embed-sql). */
#ifndef TASKER_EMBEDDED_SQL_H
#define TASKER_EMBEDDED_SQL_H

#include <stddef.h>

enum embedded_sql_kind {
    EMBED_MIGRATION, /* migrations/: applied once, in name order, never edited after landing */
    EMBED_FUNCTIONS  /* sql/: CREATE OR REPLACE definitions, re-applied when their text changes */
};

struct embedded_sql {
    enum embedded_sql_kind kind;
    const char *name;  /* file name without directory, e.g. "0001_schema.sql" */
    const char *text;  /* whole file, NUL-terminated */
    size_t length;     /* bytes, without the NUL */
};

/* In name order within each kind, migrations first (the Makefile sorts them). */
extern const struct embedded_sql embedded_sql_files[];
extern const size_t embedded_sql_count;

#endif
