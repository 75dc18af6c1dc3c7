-- tasker:only-if NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq') AND to_regclass('pgmq.meta') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tasker.schema_migrations WHERE name = '0002_pgmq_compat_schema.sql')
--
-- 0001_pgmq_plain_sql_guard.sql — refuse a schema `pgmq` that already holds a PGMQ installation
-- that is not the extension (an upstream plain-SQL install), with a hint that can be followed.
-- 0002 refuses it too, but its hint (install the extension over it) cannot work: CREATE EXTENSION
-- pgmq fails on the existing pgmq.meta. 0002 has landed and is never edited, so the refusal moves
-- here, ahead of it. The only-if is false on our own layer (0002 recorded) and on the extension,
-- so on every database migrated before this file existed it is a recorded no-op.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
DO $pgmq_plain_guard$
BEGIN
  RAISE EXCEPTION 'schema pgmq already holds a PGMQ installation that is not the pgmq extension (a plain-SQL install: pgmq.meta exists)'
    USING HINT = 'tasker installs the pgmq extension or its own PGMQ-compatible schema and cannot adopt another install. '
                 'Migrate a fresh database, or move the queues aside and back as docs/operations.md '
                 '("Moving between the PGMQ extension and the bundled schema") describes, or DROP SCHEMA pgmq CASCADE '
                 'if it holds nothing you need. CREATE EXTENSION pgmq over it fails on pgmq.meta.';
END
$pgmq_plain_guard$;
