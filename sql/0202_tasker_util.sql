-- 0202_tasker_util.sql — small shared pieces: queue names, safe parsing, backoff, the fast readiness
-- predicate, and the one way we put messages into (and take them out of) PGMQ queues.
--
-- Error codes raised by the tasker API (the HTTP layer maps them; the message is for humans):
--   TK400 invalid request or template     TK404 unknown template/task/step/namespace
--   TK409 conflict with the current state (cancel a finished task, resolve a finished step, …)

-- Queue names of a namespace (DESIGN §4). Namespace names are validated when they are created, so
-- these can never exceed PGMQ's 47-character limit.
CREATE OR REPLACE FUNCTION tasker.dispatch_queue(p_namespace text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'tasker_dispatch_' || p_namespace $$;

CREATE OR REPLACE FUNCTION tasker.completion_queue(p_namespace text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'tasker_completion_' || p_namespace $$;

-- tasker.check_namespace: raise TK400 for a malformed name, TK404 for one never registered.
-- Every function that builds a queue name from caller input goes through here first.
CREATE OR REPLACE FUNCTION tasker.check_namespace(p_namespace text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
  IF p_namespace IS NULL OR p_namespace !~ '^[a-z][a-z0-9_]{0,28}$' THEN
    RAISE EXCEPTION 'invalid namespace %: must match ^[a-z][a-z0-9_]{0,28}$', quote_nullable(p_namespace)
      USING ERRCODE = 'TK400';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM tasker.task_namespaces WHERE name = p_namespace) THEN
    RAISE EXCEPTION 'unknown namespace "%"', p_namespace USING ERRCODE = 'TK404';
  END IF;
END $$;

-- Parse untrusted text without raising: NULL when it is not what we want.
CREATE OR REPLACE FUNCTION tasker.uuid_or_null(p text) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN p::uuid END
$$;

CREATE OR REPLACE FUNCTION tasker.int_or_null(p jsonb) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN jsonb_typeof(p) = 'number' AND p::text ~ '^-?[0-9]{1,9}$' THEN p::text::integer END
$$;

-- tasker.backoff_delay: how long a failed step waits before its next attempt.
--   p_attempt: attempts made so far (1 after the first failure).
--   none → 0; linear → base × attempt; exponential → base × 2^(attempt-1);
--   fibonacci → base × fib(attempt) (1, 1, 2, 3, 5, …).
-- ±p_jitter_pct percent of uniform jitter spreads retries of many steps that failed together; the
-- result is capped at p_max_ms. A worker's retry_after hint replaces the computed delay (no
-- jitter: the worker asked for that moment) but is capped all the same.
CREATE OR REPLACE FUNCTION tasker.backoff_delay(
  p_kind text, p_base_ms integer, p_max_ms integer, p_attempt integer,
  p_retry_after_secs integer DEFAULT NULL, p_jitter_pct numeric DEFAULT 15)
RETURNS interval
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  v_ms numeric;
  a numeric := 0;
  b numeric := 1;
  t numeric;
BEGIN
  IF p_retry_after_secs IS NOT NULL AND p_retry_after_secs >= 0 THEN
    RETURN make_interval(secs => least(p_retry_after_secs::numeric * 1000, p_max_ms) / 1000.0);
  END IF;
  CASE p_kind
    WHEN 'none' THEN v_ms := 0;
    WHEN 'linear' THEN v_ms := p_base_ms::numeric * greatest(p_attempt, 1);
    WHEN 'fibonacci' THEN
      FOR i IN 1 .. least(greatest(p_attempt, 1), 60) LOOP
        t := a + b; a := b; b := t;
      END LOOP;
      v_ms := p_base_ms::numeric * a;
    ELSE -- exponential, the default
      v_ms := p_base_ms::numeric * power(2::numeric, least(greatest(p_attempt, 1) - 1, 40));
  END CASE;
  v_ms := least(v_ms, p_max_ms);
  v_ms := v_ms * (1 + (random() * 2 - 1) * p_jitter_pct / 100.0);
  RETURN make_interval(secs => greatest(least(v_ms, p_max_ms), 0) / 1000.0);
END $$;

-- tasker.state_after_failure: where an attempt that failed for good or not goes — a handed-back
-- failure (process_completions) or an expired lease (the sweep), one rule for both:
-- waiting_for_retry while the step is retryable, has attempts left and the error does not say
-- "retryable": false; else resolved_manually for a batch worker under failure_strategy
-- continue_on_failure (it stops blocking its convergence step, docs/dynamic-steps.md); else error.
CREATE OR REPLACE FUNCTION tasker.state_after_failure(p_retryable boolean, p_attempts integer,
  p_max_attempts integer, p_error jsonb, p_failure_strategy text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p_retryable AND p_attempts < p_max_attempts
                   AND coalesce(p_error->>'retryable', 'true') <> 'false' THEN 'waiting_for_retry'
              WHEN p_failure_strategy = 'continue_on_failure' THEN 'resolved_manually'
              ELSE 'error' END
$$;

-- tasker.continued_failure: the results a batch worker resolved by continue_on_failure keeps, so
-- its convergence step finds its error among its dependency results.
CREATE OR REPLACE FUNCTION tasker.continued_failure(p_error jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object('error', p_error, 'failure_strategy', 'continue_on_failure')
$$;

-- tasker.step_is_ready: the hot-path readiness test, on one step row. Same meaning as
-- get_step_readiness_status().ready_for_execution (DESIGN §3), but uses the unfinished_parents
-- counter instead of walking the edges. tests/sql/readiness_agreement.sql checks they agree.
CREATE OR REPLACE FUNCTION tasker.step_is_ready(
  p_state text, p_unfinished_parents integer, p_attempts integer, p_retryable boolean,
  p_max_attempts integer, p_next_retry_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT p_state IN ('pending', 'waiting_for_retry')
     AND p_unfinished_parents = 0
     AND (p_attempts = 0 OR (p_retryable AND p_attempts < p_max_attempts))
     AND (p_next_retry_at IS NULL OR p_next_retry_at <= now())
$$;

-- Queue access on the hot path. PGMQ's own functions build their SQL per call (EXECUTE format),
-- so every call is parsed and planned again: 0.1–0.2 ms each, six times per step. Instead each of
-- our queues gets three small accessor functions with static SQL, generated when its namespace is
-- registered (tasker.queue_accessors), whose plans plpgsql caches per connection; the wrappers below
-- reach them through a one-line dynamic call that costs little to plan. The accessors work on PGMQ's
-- table layout (pgmq.q_<queue>, pgmq.a_<queue>), the same with the real extension or ours, and keep
-- its semantics: read = skip-locked, invisible for vt seconds, read_ct + 1; archive = move to a_.
-- Two more serve consumers that read and consume in one transaction: take = skip-locked and
-- locked only (PGMQ's pop() before its delete), and archive with p_keep false = delete without an
-- archive row. They live in schema tasker (tasker.qread_/qtake_/qsend_/qarchive_<queue>), so a
-- role that may use the tasker schema may use them: no new grant for operators.

-- tasker.queue_accessors(queue): (re)create the four accessors of one queue.
-- The queue name is one of ours (tasker_dispatch_/tasker_completion_ + a validated namespace).
CREATE OR REPLACE FUNCTION tasker.queue_accessors(p_queue text) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
  IF p_queue !~ '^tasker_(dispatch|completion)_[a-z][a-z0-9_]{0,28}$' THEN
    RAISE EXCEPTION 'not a tasker queue name: %', quote_nullable(p_queue) USING ERRCODE = 'TK400';
  END IF;
  -- The picked ids reach the UPDATE as an array, so it is planned as primary-key lookups (joined to
  -- the CTE, it was planned as a hash join over the whole queue table).
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION tasker.%1$I(p_vt integer, p_qty integer)
    RETURNS TABLE (msg_id bigint, message jsonb)
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $b$
    BEGIN
      RETURN QUERY
      WITH picked AS (
        SELECT q.msg_id FROM pgmq.%2$I q
        WHERE q.vt <= clock_timestamp()
        ORDER BY q.msg_id LIMIT p_qty
        FOR UPDATE SKIP LOCKED
      ), upd AS (
        UPDATE pgmq.%2$I m
        SET vt = clock_timestamp() + make_interval(secs => p_vt), read_ct = m.read_ct + 1
        WHERE m.msg_id = ANY (ARRAY(SELECT picked.msg_id FROM picked))
        RETURNING m.msg_id, m.message
      )
      SELECT upd.msg_id, upd.message FROM upd ORDER BY upd.msg_id;
    END $b$ $f$, 'qread_' || p_queue, 'q_' || p_queue);
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION tasker.%1$I(p_messages jsonb[])
    RETURNS TABLE (msg_id bigint, workflow_step_uuid uuid)
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $b$
    BEGIN
      RETURN QUERY
      INSERT INTO pgmq.%2$I AS q (vt, message)
      SELECT clock_timestamp(), m FROM unnest(p_messages) AS m
      RETURNING q.msg_id, (q.message->>'step_uuid')::uuid;
    END $b$ $f$, 'qsend_' || p_queue, 'q_' || p_queue);
  -- archive: move to a_<queue> (PGMQ's archive()); with p_keep false, delete without an archive row
  -- (tasker.consume_messages under tasker.consumed_messages = 'delete'). The one-argument form of
  -- earlier versions is dropped so that a call with the ids alone stays unambiguous.
  IF to_regprocedure(format('tasker.%I(bigint[])', 'qarchive_' || p_queue)) IS NOT NULL THEN
    EXECUTE format('DROP FUNCTION tasker.%I(bigint[])', 'qarchive_' || p_queue);  -- IF EXISTS would say NOTICE to whoever registers a namespace
  END IF;
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION tasker.%1$I(p_msg_ids bigint[], p_keep boolean DEFAULT true) RETURNS integer
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $b$
    DECLARE
      v_n integer;
    BEGIN
      IF p_keep THEN
        WITH gone AS (
          DELETE FROM pgmq.%2$I m WHERE m.msg_id = ANY (p_msg_ids)
          RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
        )
        INSERT INTO pgmq.%3$I (msg_id, read_ct, enqueued_at, vt, message, headers)
        SELECT gone.msg_id, gone.read_ct, gone.enqueued_at, gone.vt, gone.message, gone.headers FROM gone;
      ELSE
        DELETE FROM pgmq.%2$I m WHERE m.msg_id = ANY (p_msg_ids);
      END IF;
      GET DIAGNOSTICS v_n = ROW_COUNT;
      RETURN v_n;
    END $b$ $f$, 'qarchive_' || p_queue, 'q_' || p_queue, 'a_' || p_queue);
  -- take: the messages stay as they are, only row-locked until the caller's transaction ends, so
  -- other readers skip them meanwhile. Setting vt and read_ct as read does would write a new row
  -- version and two index entries per message that the same transaction's archive or delete
  -- throws away; if the transaction fails, a read's update is undone too, so vt protects nothing
  -- here that the lock does not.
  EXECUTE format($f$
    CREATE OR REPLACE FUNCTION tasker.%1$I(p_qty integer)
    RETURNS TABLE (msg_id bigint, message jsonb)
    LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $b$
    BEGIN
      RETURN QUERY
      SELECT q.msg_id, q.message FROM pgmq.%2$I q
      WHERE q.vt <= clock_timestamp()
      ORDER BY q.msg_id LIMIT p_qty
      FOR UPDATE SKIP LOCKED;
    END $b$ $f$, 'qtake_' || p_queue, 'q_' || p_queue);
END $fn$;

-- tasker.read_messages: up to qty visible messages of one of our queues, oldest first, each made
-- invisible for vt seconds (PGMQ's read(), through the accessor).
CREATE OR REPLACE FUNCTION tasker.read_messages(p_queue text, p_vt integer, p_qty integer)
RETURNS TABLE (msg_id bigint, message jsonb)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT * FROM tasker.%I($1, $2)', 'qread_' || p_queue) USING p_vt, p_qty;
END $$;

-- tasker.take_messages: up to qty visible messages of one of our queues, oldest first, locked
-- (skip-locked) until this transaction ends but otherwise untouched: for a caller that consumes
-- them (tasker.consume_messages) in the same transaction, or leaves them for the next reader.
CREATE OR REPLACE FUNCTION tasker.take_messages(p_queue text, p_qty integer)
RETURNS TABLE (msg_id bigint, message jsonb)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT * FROM tasker.%I($1)', 'qtake_' || p_queue) USING p_qty;
END $$;

-- tasker.notify_queue: the wake-up for a queue's consumer (DESIGN §4), delivered at commit, so
-- never before the rows it announces are visible.
CREATE OR REPLACE FUNCTION tasker.notify_queue(p_queue text, p_namespace text, p_msg_id bigint) RETURNS void
LANGUAGE sql AS $$
  SELECT pg_notify('pgmq_message_ready',
    json_build_object('queue', p_queue, 'namespace', p_namespace, 'msg_id', p_msg_id)::text)
$$;

-- tasker.send_messages: put step messages into a queue and say which msg_id went with which step
-- (send_batch() returns ids without saying which message got which). At most one NOTIFY per queue
-- per call, after the insert (delivered at commit, so never before the rows are visible).
CREATE OR REPLACE FUNCTION tasker.send_messages(p_queue text, p_namespace text, p_messages jsonb[])
RETURNS TABLE (msg_id bigint, workflow_step_uuid uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_ids bigint[];
  v_steps uuid[];
BEGIN
  IF coalesce(cardinality(p_messages), 0) = 0 THEN
    RETURN;
  END IF;
  EXECUTE format('SELECT array_agg(s.msg_id), array_agg(s.workflow_step_uuid) FROM tasker.%I($1) AS s',
                 'qsend_' || p_queue)
    INTO v_ids, v_steps USING p_messages;
  PERFORM tasker.notify_queue(p_queue, p_namespace, (SELECT max(i) FROM unnest(v_ids) AS i));
  RETURN QUERY SELECT * FROM unnest(v_ids, v_steps);
END $$;

-- tasker.archive_messages: move messages of one queue to its archive (PGMQ's archive(), array
-- form). Returns how many were there to move.
CREATE OR REPLACE FUNCTION tasker.archive_messages(p_queue text, p_msg_ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_n integer;
BEGIN
  IF coalesce(cardinality(p_msg_ids), 0) = 0 THEN
    RETURN 0;
  END IF;
  EXECUTE format('SELECT tasker.%I($1)', 'qarchive_' || p_queue) INTO v_n USING p_msg_ids;
  RETURN v_n;
END $$;

-- tasker.consume_messages: remove messages of one of our queues once consumed (a claim, a
-- hand-back, a completion call, a sweep), as the SQL setting tasker.consumed_messages says:
-- 'archive' (unset: the default) moves them to the queue's archive like PGMQ's archive();
-- 'delete' drops them, which writes about a tenth less WAL per step (docs/performance.md,
-- "Round three"): the transition rows keep the same history. Any other value is an error, so a
-- typo cannot silently pick one. The RabbitMQ relay always archives (tasker.archive_messages):
-- the sweep reads its outbox's archive. Returns how many were there.
DROP FUNCTION IF EXISTS tasker.release_messages(text, text, bigint[]);  -- replaced by tasker.take_messages
CREATE OR REPLACE FUNCTION tasker.consume_messages(p_queue text, p_msg_ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_mode text := coalesce(nullif(current_setting('tasker.consumed_messages', true), ''), 'archive');
  v_n integer;
BEGIN
  IF coalesce(cardinality(p_msg_ids), 0) = 0 THEN
    RETURN 0;
  END IF;
  IF v_mode NOT IN ('archive', 'delete') THEN
    RAISE EXCEPTION 'tasker.consumed_messages must be archive or delete (got %)', quote_literal(v_mode)
      USING ERRCODE = 'TK400';
  END IF;
  EXECUTE format('SELECT tasker.%I($1, $2)', 'qarchive_' || p_queue) INTO v_n USING p_msg_ids, v_mode = 'archive';
  RETURN v_n;
END $$;

-- Accessors for the queues of every namespace registered before this file (re)ran.
DO $$
DECLARE
  v_ns text;
BEGIN
  FOR v_ns IN SELECT name FROM tasker.task_namespaces LOOP
    PERFORM tasker.queue_accessors(tasker.dispatch_queue(v_ns));
    PERFORM tasker.queue_accessors(tasker.completion_queue(v_ns));
  END LOOP;
END $$;

-- tasker.step_message: the dispatch/completion message body (DESIGN §4): a small pointer.
CREATE OR REPLACE FUNCTION tasker.step_message(p_task_uuid uuid, p_step_uuid uuid, p_attempt integer,
                                               p_correlation_id uuid)
RETURNS jsonb
-- STABLE, like jsonb_build_object itself: an IMMUTABLE wrapper around a STABLE body is never
-- inlined, and then costs a SQL-function call per message.
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object('task_uuid', p_task_uuid, 'step_uuid', p_step_uuid,
                            'attempt', p_attempt, 'correlation_id', p_correlation_id)
$$;

-- tasker.setting_int: an integer limit the daemon sets on its connections (-c tasker.<name>=…, from
-- its config; docs/configuration.md), or p_default where it is unset (psql, a worker, a test),
-- clamped to [p_min, p_max] so a bad value cannot lift a limit.
CREATE OR REPLACE FUNCTION tasker.setting_int(p_name text, p_default integer, p_min integer, p_max integer)
RETURNS integer
LANGUAGE sql STABLE AS $$
  SELECT greatest(p_min, least(p_max, coalesce(
    CASE WHEN current_setting('tasker.' || p_name, true) ~ '^\s*[0-9]{1,9}\s*$'
         THEN current_setting('tasker.' || p_name, true)::integer END, p_default)))
$$;

-- tasker.has_control_chars: true when text holds a character that could forge or disguise a log
-- line or an audit record: C0/C1 controls, DEL, and the Unicode direction marks and overrides.
CREATE OR REPLACE FUNCTION tasker.has_control_chars(p text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT p ~ '[\x01-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]'
$$;

-- tasker.quoted_name: a name as a JSON string for an error message, with the characters
-- tasker.has_control_chars refuses (C1 controls, DEL, direction marks and overrides, which JSON
-- leaves as they are) escaped too (U+202E becomes \u202e): the message that refuses such a name must not carry
-- the character into a log line or a client's terminal.
CREATE OR REPLACE FUNCTION tasker.quoted_name(p text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT string_agg(CASE WHEN c ~ '[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]'
                         THEN '\u' || lpad(to_hex(ascii(c)), 4, '0') ELSE c END, '' ORDER BY i)
  FROM regexp_split_to_table(to_json(p)::text, '') WITH ORDINALITY AS x(c, i)
$$;
