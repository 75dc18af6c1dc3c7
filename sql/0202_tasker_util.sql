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

-- tasker.send_messages: put messages into one PGMQ queue and wake listeners; returns each new
-- msg_id with the step it points at. One INSERT for the whole batch, straight into the queue
-- table, because send_batch() returns ids without saying which message got which. The table
-- layout is PGMQ's (real extension or ours), so this works with both. At most one NOTIFY per
-- queue per call, after the insert (delivered at commit, so never before the rows are visible).
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
  EXECUTE format(
    'WITH ins AS (INSERT INTO pgmq.%I (vt, message)
                  SELECT clock_timestamp(), m FROM unnest($1::jsonb[]) AS m
                  RETURNING msg_id, (message->>''step_uuid'')::uuid AS step)
     SELECT array_agg(msg_id), array_agg(step) FROM ins', 'q_' || p_queue)
    INTO v_ids, v_steps USING p_messages;
  PERFORM pg_notify('pgmq_message_ready', json_build_object('queue', p_queue, 'namespace', p_namespace,
    'msg_id', (SELECT max(i) FROM unnest(v_ids) AS i))::text);
  RETURN QUERY SELECT * FROM unnest(v_ids, v_steps);
END $$;

-- tasker.archive_messages: move messages of one queue to its archive (PGMQ's archive(), array form).
CREATE OR REPLACE FUNCTION tasker.archive_messages(p_queue text, p_msg_ids bigint[]) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_n integer;
BEGIN
  IF coalesce(cardinality(p_msg_ids), 0) = 0 THEN
    RETURN 0;
  END IF;
  SELECT count(*) INTO v_n FROM pgmq.archive(p_queue::text, p_msg_ids::bigint[]);
  RETURN v_n;
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
