-- tasker:only-if NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq')
--
-- 0002_pgmq_compat_schema.sql — the objects of our PGMQ-compatible schema `pgmq` that cannot be
-- CREATE OR REPLACE'd: the schema, the composite types, pgmq.meta, grants and default privileges.
-- The functions live in sql/0100_pgmq_compat.sql. Target: the PGMQ 1.5.x API (DESIGN §4), so
-- third-party clients such as pgmq-js 1.3.1 work unchanged. Written from the API facts in
-- shared/reference/pgmq-facts.md; not derived from PGMQ's source.
--
-- Skipped (see the only-if line) when migration 0001 installed the real extension.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- A schema `pgmq` that already holds a queue catalogue was not made by us (an upstream SQL-only
-- install, for instance). Its types and functions may be of another PGMQ version, so refuse
-- loudly instead of mixing two APIs.
DO $pgmq_guard$
BEGIN
  IF pg_catalog.to_regclass('pgmq.meta') IS NOT NULL THEN
    RAISE EXCEPTION 'schema pgmq already contains a PGMQ installation (pgmq.meta exists) that is not the pgmq extension'
      USING HINT = 'Install the pgmq extension over it, or drop schema pgmq if it holds nothing you need.';
  END IF;
END
$pgmq_guard$;

CREATE SCHEMA IF NOT EXISTS pgmq;

-- One row per queue. queue_name is stored exactly as given (case preserved); the tables use
-- lower(name). Column order is part of the API: list_queues() returns these columns in this order.
CREATE TABLE pgmq.meta (
    queue_name     varchar                  NOT NULL UNIQUE,
    is_partitioned boolean                  NOT NULL,
    is_unlogged    boolean                  NOT NULL,
    created_at     timestamp with time zone NOT NULL DEFAULT now()
);

-- Returned by read, read_with_poll, pop and set_vt. PGMQ 1.5 layout: headers last, no
-- last_read_at (that arrived in 1.10 as the 4th column and breaks positional clients).
CREATE TYPE pgmq.message_record AS (
    msg_id      bigint,
    read_ct     integer,
    enqueued_at timestamp with time zone,
    vt          timestamp with time zone,
    message     jsonb,
    headers     jsonb
);

-- Returned by list_queues(); same column order as pgmq.meta.
CREATE TYPE pgmq.queue_record AS (
    queue_name     varchar,
    is_partitioned boolean,
    is_unlogged    boolean,
    created_at     timestamp with time zone
);

-- Returned by metrics() and metrics_all(); queue_visible_length is last (added in PGMQ 1.5.0).
CREATE TYPE pgmq.metrics_result AS (
    queue_name           text,
    queue_length         bigint,
    newest_msg_age_sec   integer,
    oldest_msg_age_sec   integer,
    total_messages       bigint,
    scrape_time          timestamp with time zone,
    queue_visible_length bigint
);

-- Monitoring: pg_monitor may look at every queue, as with PGMQ. Default privileges cover the
-- q_/a_ tables and identity sequences that the role running this migration creates later.
GRANT USAGE ON SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL TABLES IN SCHEMA pgmq TO pg_monitor;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA pgmq TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON TABLES TO pg_monitor;
ALTER DEFAULT PRIVILEGES IN SCHEMA pgmq GRANT SELECT ON SEQUENCES TO pg_monitor;
