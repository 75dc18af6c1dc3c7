-- 0001_pgmq_extension.sql — use the real PGMQ extension when this server can install it.
--
-- DESIGN §4: if `CREATE EXTENSION pgmq` is possible we use the extension; otherwise migration
-- 0002 and sql/0100_pgmq_compat.sql install our own PGMQ-1.5-compatible schema `pgmq` (both
-- carry `-- tasker:only-if NOT EXISTS (… pg_extension … 'pgmq')`, so they are skipped when this
-- file installed the extension).
--
-- We only try when no schema `pgmq` exists yet: an existing schema is either a previous SQL-only
-- install or our compat schema, and CREATE EXTENSION would fail on it anyway.
-- If the extension is listed but cannot be created (for instance the role lacks CREATE on the
-- database, or the packaged control file is broken), we warn and fall back to the compat schema
-- instead of failing the whole migration: the compat schema gives the same API.
--
-- Note for our own SQL: an installed extension may be newer than 1.5 (1.10+ inserts
-- last_read_at into pgmq.message_record), so our code selects message_record columns by name.
DO $pgmq_ext$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'pgmq')
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'pgmq') THEN
    BEGIN
      CREATE EXTENSION IF NOT EXISTS pgmq;
      RAISE NOTICE 'tasker: using the pgmq extension, version %',
        (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgmq');
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'tasker: the pgmq extension is available but could not be created (%: %); '
                    'installing the PGMQ-compatible schema instead', SQLSTATE, SQLERRM;
    END;
  END IF;
END
$pgmq_ext$;
