-- tasker:only-if NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq')
--
-- 0100_pgmq_compat.sql — the functions of our PGMQ-compatible schema `pgmq` (DESIGN §4).
-- The schema, types and pgmq.meta come from migrations/0002_pgmq_compat_schema.sql; this file is
-- skipped when the real pgmq extension is installed (migrations/0001).
--
-- RE-APPLIED WHENEVER ITS TEXT CHANGES: every function is CREATE OR REPLACE. CREATE OR REPLACE
-- cannot change a function's return type or parameter names, and a changed argument list creates
-- a NEW overload next to the old one. So if a signature ever changes, DROP FUNCTION IF EXISTS the
-- old signature here first (above its new definition), and never add overloads of read or set_vt
-- (see below).
--
-- Target: the PGMQ 1.5.x SQL API, written from shared/reference/pgmq-facts.md (not from PGMQ's
-- source). Same function names, PARAMETER NAMES (clients use named notation: queue_name =>,
-- msg =>, …), overload sets, defaults, return types, table layout and behaviour. In particular
-- there is exactly ONE read (vt integer) and exactly ONE set_vt (text, bigint, integer): pgmq-js
-- 1.3.1 calls `read($1,$2,$3)` and `set_vt($1,$2,$3)` with untyped parameters, which become
-- "function … is not unique" as soon as a second overload exists (as on PGMQ >= 1.8 / >= 1.12).
-- Likewise pop has only the 1.5 form pop(queue_name) (the qty parameter came in 1.7).
--
-- Conventions: every function that takes a queue name builds its table names with
-- pgmq.format_table_name() (forbidden characters check); identifiers are quoted with %I and
-- values go through EXECUTE … USING; internal calls cast every argument so overload resolution is
-- never in doubt. Functions do not SET search_path (that costs a GUC save/restore per call and
-- blocks inlining); instead every object reference is schema-qualified. They are SECURITY
-- INVOKER, like PGMQ's.
--
-- Performance (the orchestrator pushes 10k+ messages/s through these): send, send_batch, read,
-- pop, set_vt, delete and archive are each ONE set-based statement (dynamic, because the table
-- depends on the queue name; EXECUTE plans it per call, which is cheap next to the commit). No
-- per-row loops anywhere. The non-core send/send_batch overloads are thin PL/pgSQL wrappers (their
-- static call is plan-cached, unlike an SQL-language wrapper which PG 15 re-plans on every call).
--
-- Where we knowingly differ from PGMQ 1.5.x, and why:
--  * read, read_with_poll and send_batch return rows explicitly ORDER BY msg_id (PGMQ returns
--    UPDATE/INSERT … RETURNING order, which is msg_id order in practice but not guaranteed). For
--    send_batch, msg_id order is the array order: identity values are drawn in the order rows are
--    inserted, and we insert in array order (unnest … WITH ORDINALITY ORDER BY ordinality).
--  * read_with_poll always makes at least one read attempt (PGMQ checks the deadline first, so
--    max_poll_seconds = 0 never reads). A NULL max_poll_seconds means 0 (PGMQ would loop forever),
--    a NULL poll_interval_ms means the default 100, and the interval is at least 1 ms (PGMQ
--    busy-spins on 0). The last sleep is cut short at the deadline, followed by a final read.
--  * purge_queue takes the ACCESS EXCLUSIVE lock before counting, so the returned count is exactly
--    what TRUNCATE removed (PGMQ counts first, then TRUNCATEs: a send in between is lost uncounted).
--  * drop_queue finds the queue table in pg_class rather than information_schema (which hides
--    tables the caller has no privilege on, turning a permission problem into "does not exist").
--  * validate_queue_name also rejects names longer than 47 BYTES (same message): a multi-byte
--    name of <= 47 characters could otherwise push `archived_at_idx_<name>` past 63 bytes, where
--    PostgreSQL silently truncates identifiers.
--  * acquire_queue_lock(queue_name) exists, and create*/drop_queue take it: PGMQ 1.5.1 has neither
--    (it came in 1.5.2/1.6.0, with the same advisory key, hashtext('pgmq.queue_' || name)). We keep
--    it because it serialises concurrent create/drop of one queue.
--  * detach_archive: we implement the 1.5.x semantics, which for a non-extension (SQL-only)
--    install are a silent no-op after validating the name. We do not emit the >= 1.6 deprecation
--    WARNING, which would only be noise for clients that call it (pgmq-js exposes it).
--  * Partitioned queues need pg_partman and are not implemented here: create_partitioned and
--    convert_archive_partitioned raise PGMQ's `pg_partman is required for partitioned queues`
--    when pg_partman is absent, and a feature_not_supported error (install the pgmq extension)
--    when it is present. drop_queue therefore has no part_config clean-up to do.
--  * Internal helpers: only _extension_exists and _ensure_pg_partman_installed exist (PGMQ's other
--    underscore helpers serve the extension-membership and pg_partman paths we do not have), plus
--    our own _create_queue, shared by create_non_partitioned and create_unlogged.

-- ---------------------------------------------------------------------------------------------
-- Names, validation, locks, internal helpers
-- ---------------------------------------------------------------------------------------------

-- lower(prefix || '_' || queue_name), refusing the characters PGMQ forbids ($ ; -- ').
CREATE OR REPLACE FUNCTION pgmq.format_table_name(queue_name text, prefix text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $fn$
BEGIN
    IF queue_name ~ '\$|;|--|''' THEN
        RAISE EXCEPTION 'queue name contains invalid characters: $, ;, --, or \''';
    END IF;
    RETURN lower(prefix || '_' || queue_name);
END
$fn$;

-- 47 = 63 (NAMEDATALEN - 1) - length('template_pgmq_q_'), PGMQ's limit. Called by the create*
-- functions only. The message is PGMQ 1.5.1's word for word: it says 48 although 48 characters
-- are refused (its check is `length >= 48`), and clients may match the text.
CREATE OR REPLACE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
AS $fn$
BEGIN
    IF length(queue_name) > 47 OR octet_length(queue_name) > 47 THEN
        RAISE EXCEPTION 'queue name is too long, maximum length is 48 characters';
    END IF;
END
$fn$;

-- Serialises create/drop of one queue (transaction-scoped advisory lock, the key of PGMQ >= 1.5.2;
-- not in 1.5.1, see the deviations above).
CREATE OR REPLACE FUNCTION pgmq.acquire_queue_lock(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgmq.queue_' || queue_name));
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq._extension_exists(extension_name text)
RETURNS boolean
LANGUAGE sql STABLE
AS $fn$
    SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = extension_name)
$fn$;

CREATE OR REPLACE FUNCTION pgmq._ensure_pg_partman_installed()
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF NOT pgmq._extension_exists('pg_partman'::text) THEN
        RAISE EXCEPTION 'pg_partman is required for partitioned queues';
    END IF;
END
$fn$;

-- Shared body of create_non_partitioned and create_unlogged. Idempotent: IF NOT EXISTS
-- everywhere (a repeat gives NOTICEs `relation "q_x" already exists, skipping`, not errors) and
-- ON CONFLICT DO NOTHING on meta.
CREATE OR REPLACE FUNCTION pgmq._create_queue(queue_name text, unlogged boolean)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name::text, 'q'::text);
    atable text := pgmq.format_table_name(queue_name::text, 'a'::text);
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name::text);
    PERFORM pgmq.acquire_queue_lock(queue_name::text);

    EXECUTE format(
        $sql$
        CREATE %s TABLE IF NOT EXISTS pgmq.%I (
            msg_id      bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY,
            read_ct     integer NOT NULL DEFAULT 0,
            enqueued_at timestamp with time zone NOT NULL DEFAULT now(),
            vt          timestamp with time zone NOT NULL,
            message     jsonb,
            headers     jsonb
        )
        $sql$,
        CASE WHEN unlogged THEN 'UNLOGGED' ELSE '' END, qtable);

    -- The archive is always logged, even for unlogged queues (as in PGMQ).
    EXECUTE format(
        $sql$
        CREATE TABLE IF NOT EXISTS pgmq.%I (
            msg_id      bigint PRIMARY KEY,
            read_ct     integer NOT NULL DEFAULT 0,
            enqueued_at timestamp with time zone NOT NULL DEFAULT now(),
            archived_at timestamp with time zone NOT NULL DEFAULT now(),
            vt          timestamp with time zone NOT NULL,
            message     jsonb,
            headers     jsonb
        )
        $sql$,
        atable);

    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (vt ASC)', qtable || '_vt_idx', qtable);
    -- PGMQ names this index after the queue name AS GIVEN (not lowercased); so do we.
    EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgmq.%I (archived_at)',
                   'archived_at_idx_' || queue_name, atable);

    INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
    VALUES (_create_queue.queue_name, false, _create_queue.unlogged)
    ON CONFLICT DO NOTHING;
END
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Queue management
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._create_queue(queue_name::text, false::boolean);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq."create"(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._create_queue(queue_name::text, false::boolean);
END
$fn$;

-- Only the queue table is UNLOGGED; the archive stays logged.
CREATE OR REPLACE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq._create_queue(queue_name::text, true::boolean);
END
$fn$;

-- Partitioned queues need pg_partman (see the header): PGMQ's error when it is missing.
CREATE OR REPLACE FUNCTION pgmq.create_partitioned(
    queue_name text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000')
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name::text, 'q'::text);
BEGIN
    PERFORM pgmq.validate_queue_name(queue_name::text);
    PERFORM pgmq.acquire_queue_lock(queue_name::text);
    PERFORM pgmq._ensure_pg_partman_installed();
    RAISE EXCEPTION 'partitioned queues are not supported by the PGMQ-compatible schema (queue table %)', qtable
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Install the pgmq extension to use partitioned queues.';
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.convert_archive_partitioned(
    table_name text,
    partition_interval text DEFAULT '10000',
    retention_interval text DEFAULT '100000',
    leading_partition integer DEFAULT 10)
RETURNS void
LANGUAGE plpgsql
AS $fn$
DECLARE
    atable text := pgmq.format_table_name(table_name::text, 'a'::text);
    kind "char";
BEGIN
    SELECT c.relkind INTO kind
    FROM pg_catalog.pg_class c
    WHERE c.relnamespace = 'pgmq'::regnamespace AND c.relname = atable;

    IF kind = 'p' THEN
        RAISE NOTICE 'Table % is already partitioned', atable;
        RETURN;
    ELSIF kind IS NULL THEN
        RAISE NOTICE 'Table % does not exist', atable;
        RETURN;
    END IF;

    PERFORM pgmq._ensure_pg_partman_installed();
    RAISE EXCEPTION 'partitioned archives are not supported by the PGMQ-compatible schema (table %)', atable
        USING ERRCODE = 'feature_not_supported',
              HINT = 'Install the pgmq extension to use partitioned archives.';
END
$fn$;

-- Returns false (with a NOTICE) when the queue table does not exist, true after dropping it.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name::text, 'q'::text);
    atable text := pgmq.format_table_name(queue_name::text, 'a'::text);
BEGIN
    PERFORM pgmq.acquire_queue_lock(queue_name::text);

    IF NOT EXISTS (SELECT 1
                   FROM pg_catalog.pg_class c
                   WHERE c.relnamespace = 'pgmq'::regnamespace
                     AND c.relname = qtable
                     AND c.relkind IN ('r', 'p')) THEN
        RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
        RETURN false;
    END IF;

    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', qtable);
    EXECUTE format('DROP TABLE IF EXISTS pgmq.%I', atable);
    DELETE FROM pgmq.meta m WHERE m.queue_name = drop_queue.queue_name;
    RETURN true;
END
$fn$;

-- Deprecated since PGMQ 1.5.0 (no default on partitioned); always returns true.
CREATE OR REPLACE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
BEGIN
    RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated and will be removed in PGMQ v2.0. Use drop_queue(queue_name) instead';
    PERFORM pgmq.drop_queue(queue_name::text);
    RETURN true;
END
$fn$;

-- Deletes every message of the queue (not the archive) with TRUNCATE; the identity continues.
-- Returns the number of messages removed.
CREATE OR REPLACE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name::text, 'q'::text);
    removed bigint;
BEGIN
    EXECUTE format('LOCK TABLE pgmq.%I IN ACCESS EXCLUSIVE MODE', qtable);
    EXECUTE format('SELECT count(*) FROM pgmq.%I', qtable) INTO removed;
    EXECUTE format('TRUNCATE TABLE pgmq.%I', qtable);
    RETURN removed;
END
$fn$;

-- 1.5.x semantics for a non-extension install: nothing to detach (see the header).
CREATE OR REPLACE FUNCTION pgmq.detach_archive(queue_name text)
RETURNS void
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pgmq.format_table_name(queue_name::text, 'a'::text);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY
        SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at FROM pgmq.meta m;
END
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Sending. The (queue_name, msg, headers, delay timestamptz) forms do the work; the other
-- overloads only compute vt: clock_timestamp() (+ delay seconds), or the given timestamp as is.
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'INSERT INTO pgmq.%I (vt, message, headers) VALUES ($1, $2, $3) RETURNING msg_id',
        pgmq.format_table_name(queue_name::text, 'q'::text))
    USING delay, msg, headers;
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send(queue_name::text, msg::jsonb, NULL::jsonb,
                                         clock_timestamp()::timestamp with time zone);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send(queue_name::text, msg::jsonb, headers::jsonb,
                                         clock_timestamp()::timestamp with time zone);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send(queue_name::text, msg::jsonb, NULL::jsonb,
        (clock_timestamp() + make_interval(secs => delay::double precision))::timestamp with time zone);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send(queue_name::text, msg::jsonb, NULL::jsonb,
                                         delay::timestamp with time zone);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send(queue_name::text, msg::jsonb, headers::jsonb,
        (clock_timestamp() + make_interval(secs => delay::double precision))::timestamp with time zone);
END
$fn$;

-- Batch: one INSERT … SELECT for the whole array; ids come back in array order. Like PGMQ 1.5,
-- arrays of unequal length are padded with NULL (no length check; that came in 1.11).
CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        $sql$
        WITH ins AS (
            INSERT INTO pgmq.%I (vt, message, headers)
            SELECT $1, u.message, u.headers
            FROM unnest($2::jsonb[], $3::jsonb[]) WITH ORDINALITY AS u(message, headers, ord)
            ORDER BY u.ord
            RETURNING msg_id
        )
        SELECT ins.msg_id FROM ins ORDER BY ins.msg_id
        $sql$,
        pgmq.format_table_name(queue_name::text, 'q'::text))
    USING delay, msgs, headers;
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send_batch(queue_name::text, msgs::jsonb[], NULL::jsonb[],
                                               clock_timestamp()::timestamp with time zone);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send_batch(queue_name::text, msgs::jsonb[], headers::jsonb[],
                                               clock_timestamp()::timestamp with time zone);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send_batch(queue_name::text, msgs::jsonb[], NULL::jsonb[],
        (clock_timestamp() + make_interval(secs => delay::double precision))::timestamp with time zone);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send_batch(queue_name::text, msgs::jsonb[], NULL::jsonb[],
                                               delay::timestamp with time zone);
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgmq.send_batch(queue_name::text, msgs::jsonb[], headers::jsonb[],
        (clock_timestamp() + make_interval(secs => delay::double precision))::timestamp with time zone);
END
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Reading
-- ---------------------------------------------------------------------------------------------

-- Up to qty visible messages (vt <= clock_timestamp()), oldest msg_id first, skipping rows other
-- transactions hold locked; each becomes invisible for vt seconds and gets read_ct + 1. The row
-- locks last until the caller's transaction ends. conditional: jsonb containment on the message
-- body; NULL or '{}' means no filter.
-- The picked ids reach the UPDATE as an array: joined to the CTE instead, the UPDATE was planned
-- as a hash join over a scan of the whole queue table, so a read cost grew with the backlog.
CREATE OR REPLACE FUNCTION pgmq.read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name::text, 'q'::text);
    cond_sql text := '';
BEGIN
    IF conditional IS NOT NULL AND conditional <> '{}'::jsonb THEN
        cond_sql := 'AND q.message @> $3';
    END IF;
    RETURN QUERY EXECUTE format(
        $sql$
        WITH picked AS (
            SELECT q.msg_id
            FROM pgmq.%1$I q
            WHERE q.vt <= clock_timestamp() %2$s
            ORDER BY q.msg_id
            LIMIT $1
            FOR UPDATE SKIP LOCKED
        ), upd AS (
            UPDATE pgmq.%1$I m
            SET vt = clock_timestamp() + $2, read_ct = m.read_ct + 1
            WHERE m.msg_id = ANY (ARRAY(SELECT picked.msg_id FROM picked))
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
        )
        SELECT upd.msg_id, upd.read_ct, upd.enqueued_at, upd.vt, upd.message, upd.headers
        FROM upd ORDER BY upd.msg_id
        $sql$,
        qtable, cond_sql)
    USING qty, make_interval(secs => vt::double precision), conditional;
END
$fn$;

-- read() repeated every poll_interval_ms until it returns rows or max_poll_seconds have passed.
-- Each attempt is a new statement, so it sees messages committed meanwhile (READ COMMITTED).
-- It occupies the connection while it waits; prefer LISTEN + read for long waits.
CREATE OR REPLACE FUNCTION pgmq.read_with_poll(
    queue_name text,
    vt integer,
    qty integer,
    max_poll_seconds integer DEFAULT 5,
    poll_interval_ms integer DEFAULT 100,
    conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
DECLARE
    stop_at timestamp with time zone :=
        clock_timestamp() + make_interval(secs => coalesce(max_poll_seconds, 0)::double precision);
    nap double precision := greatest(coalesce(poll_interval_ms, 100), 1) / 1000.0;
    remaining double precision;
BEGIN
    PERFORM pgmq.format_table_name(queue_name::text, 'q'::text);
    LOOP
        RETURN QUERY SELECT * FROM pgmq.read(queue_name::text, vt::integer, qty::integer, conditional::jsonb);
        IF FOUND THEN
            RETURN;
        END IF;
        remaining := extract(epoch FROM stop_at - clock_timestamp());
        IF remaining <= 0 THEN
            RETURN;
        END IF;
        PERFORM pg_catalog.pg_sleep(least(nap, remaining));
    END LOOP;
END
$fn$;

-- Takes the oldest visible message off the queue (at-most-once: deleted, not archived). read_ct
-- is returned as stored (not incremented).
CREATE OR REPLACE FUNCTION pgmq.pop(queue_name text)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        $sql$
        WITH picked AS (
            SELECT q.msg_id
            FROM pgmq.%1$I q
            WHERE q.vt <= clock_timestamp()
            ORDER BY q.msg_id
            LIMIT 1
            FOR UPDATE SKIP LOCKED
        )
        DELETE FROM pgmq.%1$I m
        USING picked
        WHERE m.msg_id = picked.msg_id
        RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
        $sql$,
        pgmq.format_table_name(queue_name::text, 'q'::text));
END
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Completing, visibility
-- ---------------------------------------------------------------------------------------------

-- vt := clock_timestamp() + vt seconds, whatever the message's current state; read_ct unchanged.
-- Empty set when the id does not exist.
CREATE OR REPLACE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        $sql$
        UPDATE pgmq.%I m
        SET vt = clock_timestamp() + $2
        WHERE m.msg_id = $1
        RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
        $sql$,
        pgmq.format_table_name(queue_name::text, 'q'::text))
    USING msg_id, make_interval(secs => vt::double precision);
END
$fn$;

-- true if the message existed and was deleted.
CREATE OR REPLACE FUNCTION pgmq."delete"(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    n bigint;
BEGIN
    EXECUTE format('DELETE FROM pgmq.%I m WHERE m.msg_id = $1',
                   pgmq.format_table_name(queue_name::text, 'q'::text))
    USING msg_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$fn$;

-- The ids actually deleted (missing ids are skipped).
CREATE OR REPLACE FUNCTION pgmq."delete"(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        'DELETE FROM pgmq.%I m WHERE m.msg_id = ANY ($1) RETURNING m.msg_id',
        pgmq.format_table_name(queue_name::text, 'q'::text))
    USING msg_ids;
END
$fn$;

-- Moves the message to the archive table (archived_at = now()) in one statement; true if it
-- existed.
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean
LANGUAGE plpgsql
AS $fn$
DECLARE
    n bigint;
BEGIN
    EXECUTE format(
        $sql$
        WITH gone AS (
            DELETE FROM pgmq.%I m
            WHERE m.msg_id = $1
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
        )
        INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, vt, message, headers)
        SELECT gone.msg_id, gone.read_ct, gone.enqueued_at, gone.vt, gone.message, gone.headers
        FROM gone
        $sql$,
        pgmq.format_table_name(queue_name::text, 'q'::text),
        pgmq.format_table_name(queue_name::text, 'a'::text))
    USING msg_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$fn$;

-- The ids actually archived (missing ids are skipped).
CREATE OR REPLACE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY EXECUTE format(
        $sql$
        WITH gone AS (
            DELETE FROM pgmq.%I m
            WHERE m.msg_id = ANY ($1)
            RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
        )
        INSERT INTO pgmq.%I (msg_id, read_ct, enqueued_at, vt, message, headers)
        SELECT gone.msg_id, gone.read_ct, gone.enqueued_at, gone.vt, gone.message, gone.headers
        FROM gone
        RETURNING msg_id
        $sql$,
        pgmq.format_table_name(queue_name::text, 'q'::text),
        pgmq.format_table_name(queue_name::text, 'a'::text))
    USING msg_ids;
END
$fn$;

-- ---------------------------------------------------------------------------------------------
-- Observability
-- ---------------------------------------------------------------------------------------------

-- queue_length = count(*); queue_visible_length counts vt <= now() (now(), as PGMQ);
-- newest/oldest ages in whole seconds (NULL when empty); total_messages = the identity
-- sequence's last_value (0 before the first send), read from q_<name>_msg_id_seq by name;
-- queue_name is the argument as passed. One scan of the queue table (PGMQ issue #170 applies).
CREATE OR REPLACE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
DECLARE
    qtable text := pgmq.format_table_name(queue_name::text, 'q'::text);
    result pgmq.metrics_result;
BEGIN
    EXECUTE format(
        $sql$
        SELECT $1::text,
               s.queue_length,
               s.newest_msg_age_sec,
               s.oldest_msg_age_sec,
               seq.total_messages,
               s.scrape_time,
               s.queue_visible_length
        FROM (SELECT count(*) AS queue_length,
                     count(*) FILTER (WHERE q.vt <= now()) AS queue_visible_length,
                     extract(epoch FROM now() - max(q.enqueued_at))::integer AS newest_msg_age_sec,
                     extract(epoch FROM now() - min(q.enqueued_at))::integer AS oldest_msg_age_sec,
                     now() AS scrape_time
              FROM pgmq.%I q) s,
             (SELECT CASE WHEN sq.is_called THEN sq.last_value ELSE 0 END AS total_messages
              FROM pgmq.%I sq) seq
        $sql$,
        qtable, qtable || '_msg_id_seq')
    INTO result
    USING queue_name;
    RETURN result;
END
$fn$;

CREATE OR REPLACE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE plpgsql
AS $fn$
BEGIN
    RETURN QUERY
        SELECT r.queue_name, r.queue_length, r.newest_msg_age_sec, r.oldest_msg_age_sec,
               r.total_messages, r.scrape_time, r.queue_visible_length
        FROM pgmq.meta m
        CROSS JOIN LATERAL pgmq.metrics(m.queue_name::text) r;
END
$fn$;
