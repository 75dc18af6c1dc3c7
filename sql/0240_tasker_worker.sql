-- 0240_tasker_worker.sql — the worker protocol (DESIGN §5.2–5.3): claim steps, extend leases,
-- hand results back. Any language's worker needs only these three functions.

-- tasker.ancestor_results: per given step, {step name: results} of every ancestor of it
-- (transitively), the data a handler usually needs from upstream (a batch plan's results without
-- its cursor_configs). Set-based over the whole claim
-- batch: one query per DAG level for all steps together (each an index lookup on the child side of
-- the edges), then one to gather the results. A recursive CTE here was planned as a scan of every
-- edge in the database, so its cost grew with the table instead of the batch.
DROP FUNCTION IF EXISTS tasker.ancestor_results(uuid);
CREATE OR REPLACE FUNCTION tasker.ancestor_results(p_step_uuids uuid[])
RETURNS TABLE (workflow_step_uuid uuid, results jsonb)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
  v_front_of uuid[] := p_step_uuids;   -- (v_front_of[i], v_front[i]): an ancestor pair still to expand
  v_front uuid[] := p_step_uuids;
  v_all_of uuid[] := '{}';
  v_all uuid[] := '{}';
BEGIN
  LOOP
    SELECT array_agg(p.of), array_agg(p.anc) INTO v_front_of, v_front
    FROM (SELECT DISTINCT f.of, e.from_step_uuid AS anc
          FROM unnest(v_front_of, v_front) AS f(of, step)
          JOIN tasker.workflow_step_edges e ON e.to_step_uuid = f.step) p
    WHERE NOT EXISTS (SELECT 1 FROM unnest(v_all_of, v_all) AS a(of, anc) WHERE a.of = p.of AND a.anc = p.anc);
    EXIT WHEN v_front IS NULL;
    v_all_of := v_all_of || v_front_of;
    v_all := v_all || v_front;
  END LOOP;
  RETURN QUERY
  SELECT q.step, coalesce(r.results, '{}'::jsonb)
  FROM unnest(p_step_uuids) AS q(step)
  -- A batch plan's cursor_configs stay out: every worker would otherwise carry the whole plan (850 KB
  -- at 10,000 batches) where its own cursor, in its inputs, is all it needs.
  LEFT JOIN (SELECT a.of, jsonb_object_agg(s.name,
                      CASE WHEN s.results->'batch_processing_outcome' ? 'cursor_configs'
                           THEN s.results #- '{batch_processing_outcome,cursor_configs}' ELSE s.results END) AS results
             FROM unnest(v_all_of, v_all) AS a(of, anc)
             JOIN tasker.workflow_steps s ON s.workflow_step_uuid = a.anc
             GROUP BY a.of) r ON r.of = q.step;
END $$;

-- tasker.tasker_claim_and_execute_step(namespace, qty, lease_secs, worker_id): take up to qty
-- dispatched steps of a namespace. Reads dispatch messages (skip-locked, invisible for
-- lease_secs), swaps each step enqueued → in_progress (attempts + 1, attempt_no + 1, lease until now +
-- lease_secs) and returns what the handler needs: handler, initialization, inputs, the task's
-- context, the results of every ancestor step. A message that does not match its step's
-- current attempt in state enqueued (a duplicate, a cancelled step, an attempt the sweep already
-- re-dispatched) is consumed and skipped; a malformed one is consumed and recorded in
-- tasker.rejected_messages (consumed: archived, or deleted under tasker.consumed_messages =
-- 'delete'). The message of a claimed step stays (invisible) until the hand-back consumes it.
-- Returns one row per claimed step.
-- The last four columns came with dynamic workflows (issue 10): handler.method and
-- handler.resolver, the step's type, and its last checkpoint (tasker.checkpoint_step).
DROP FUNCTION IF EXISTS tasker.tasker_claim_and_execute_step(text, integer, integer, text);
CREATE OR REPLACE FUNCTION tasker.tasker_claim_and_execute_step(p_namespace text, p_qty integer DEFAULT 1,
  p_lease_secs integer DEFAULT 30, p_worker_id text DEFAULT NULL)
RETURNS TABLE (msg_id bigint, task_uuid uuid, workflow_step_uuid uuid, attempt integer, step_name text,
  handler_callable text, handler_initialization jsonb, inputs jsonb, task_context jsonb,
  dependency_results jsonb, timeout_seconds integer, lease_expires_at timestamptz,
  correlation_id uuid, namespace text, task_name text,
  handler_method text, handler_resolver text, step_type text, checkpoint jsonb)
LANGUAGE plpgsql
-- Generic plans, costed for data in memory: see docs/performance.md ("Plans and the hot path").
SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $$
#variable_conflict use_column
DECLARE
  v_queue text;
  v_worker text := coalesce(nullif(p_worker_id, ''), 'worker-' || pg_backend_pid());
  v_ids bigint[];
  v_msgs jsonb[];
BEGIN
  PERFORM tasker.check_namespace(p_namespace);
  IF p_qty IS NULL OR p_qty NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'qty must be between 1 and 1000 (got %)', p_qty USING ERRCODE = 'TK400';
  END IF;
  IF p_lease_secs IS NULL OR p_lease_secs NOT BETWEEN 1 AND 86400 THEN
    RAISE EXCEPTION 'lease_secs must be between 1 and 86400 (got %)', p_lease_secs USING ERRCODE = 'TK400';
  END IF;
  PERFORM tasker.audit_context(v_worker);
  v_queue := tasker.dispatch_queue(p_namespace);

  SELECT array_agg(r.msg_id), array_agg(r.message) INTO v_ids, v_msgs
  FROM tasker.read_messages(v_queue, p_lease_secs, p_qty) AS r;
  IF v_ids IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY SELECT * FROM tasker.claim_messages(p_namespace, v_ids, v_msgs, p_lease_secs, v_worker);
END $$;

-- tasker.claim_messages(namespace, msg_ids, messages, lease_secs, worker_id): the claim itself, for
-- dispatch messages already taken from a queue — by tasker_claim_and_execute_step from PGMQ, or by
-- a worker from RabbitMQ (tasker.claim_dispatched_steps). Same fencing, same rows, same archive of
-- what it does not claim (a no-op for a message the relay already archived).
CREATE OR REPLACE FUNCTION tasker.claim_messages(p_namespace text, p_msg_ids bigint[], p_messages jsonb[],
  p_lease_secs integer, p_worker_id text)
RETURNS TABLE (msg_id bigint, task_uuid uuid, workflow_step_uuid uuid, attempt integer, step_name text,
  handler_callable text, handler_initialization jsonb, inputs jsonb, task_context jsonb,
  dependency_results jsonb, timeout_seconds integer, lease_expires_at timestamptz,
  correlation_id uuid, namespace text, task_name text,
  handler_method text, handler_resolver text, step_type text, checkpoint jsonb)
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $$
#variable_conflict use_column
DECLARE
  v_queue text;
  v_worker text := p_worker_id;
  v_ids bigint[] := p_msg_ids;
  v_msgs jsonb[] := p_messages;
  v_claimed uuid[];
  v_claimed_ids bigint[];
BEGIN
  PERFORM tasker.audit_context(v_worker);
  v_queue := tasker.dispatch_queue(p_namespace);
  IF v_ids IS NULL THEN
    RETURN;
  END IF;

  WITH m AS (
    SELECT u.msg_id, tasker.uuid_or_null(u.message->>'step_uuid') AS step, tasker.int_or_null(u.message->'attempt') AS attempt
    FROM unnest(v_ids, v_msgs) AS u(msg_id, message)
  ), claimed AS (
    UPDATE tasker.workflow_steps s
    SET state = 'in_progress', attempts = s.attempts + 1, attempt_no = s.attempt_no + 1, claimed_by = v_worker,
        lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_secs),
        dispatch_msg_id = m.msg_id, last_attempted_at = now(), updated_at = now()
    FROM m
    WHERE s.workflow_step_uuid = m.step AND s.state = 'enqueued' AND s.attempt_no + 1 = m.attempt
    RETURNING s.workflow_step_uuid, m.msg_id
  )
  SELECT array_agg(c.workflow_step_uuid), array_agg(c.msg_id) INTO v_claimed, v_claimed_ids FROM claimed c;

  -- Everything read but not claimed leaves the queue; malformed messages, and messages naming a
  -- step that does not exist, are recorded (a stale or duplicate one is normal and is not).
  INSERT INTO tasker.rejected_messages (queue_name, msg_id, message, reason)
  SELECT v_queue, u.msg_id, u.message,
         CASE WHEN jsonb_typeof(u.message) IS DISTINCT FROM 'object' THEN 'message is not a JSON object'
              WHEN tasker.uuid_or_null(u.message->>'step_uuid') IS NULL THEN 'step_uuid missing or not a UUID'
              WHEN tasker.int_or_null(u.message->'attempt') IS NULL THEN 'attempt missing or not an integer'
              ELSE 'unknown step ' || (u.message->>'step_uuid') END
  FROM unnest(v_ids, v_msgs) AS u(msg_id, message)
  WHERE NOT u.msg_id = ANY (coalesce(v_claimed_ids, '{}'))
    AND (tasker.uuid_or_null(u.message->>'step_uuid') IS NULL OR tasker.int_or_null(u.message->'attempt') IS NULL
         OR NOT EXISTS (SELECT 1 FROM tasker.workflow_steps s
                        WHERE s.workflow_step_uuid = tasker.uuid_or_null(u.message->>'step_uuid')));
  PERFORM tasker.consume_messages(v_queue,
    ARRAY(SELECT i FROM unnest(v_ids) AS i WHERE NOT i = ANY (coalesce(v_claimed_ids, '{}'))));

  RETURN QUERY
  SELECT c.msg_id, s.task_uuid, s.workflow_step_uuid, s.attempt_no, s.name, n.handler_callable,
         n.handler_initialization, s.inputs, t.context, a.results,
         n.timeout_seconds, s.lease_expires_at, t.correlation_id, t.namespace, tt.name,
         n.handler_method, n.handler_resolver, n.step_type, s.checkpoint
  FROM unnest(v_claimed, v_claimed_ids) AS c(step, msg_id)
  JOIN tasker.ancestor_results(v_claimed) AS a ON a.workflow_step_uuid = c.step
  JOIN tasker.workflow_steps s ON s.workflow_step_uuid = c.step
  JOIN tasker.named_steps n ON n.named_step_uuid = s.named_step_uuid
  JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
  JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
  ORDER BY c.msg_id;
END $$;

-- tasker.submit_step_results(results jsonb): hand back a batch of results, each an object
-- {step_uuid, attempt, success, result, error, worker_id, execution_ms, retry_after_secs}.
-- Fenced on (step, attempt, in_progress): an accepted one stores the result (or error), swaps the
-- step to enqueued_for_orchestration / enqueued_as_error_for_orchestration (the audit rows come
-- with it), sends a completion message and consumes the dispatch message — all in this
-- transaction. With p_send_completions false (messaging.backend = rabbitmq) no completion message
-- goes to PGMQ: the worker publishes the completion pointer to RabbitMQ after this commits, and the
-- sweep finds the step should that pointer be lost (tasker.recover_handed_back_steps).
-- Anything else changes nothing and says why, per entry, in input order:
--   accepted | duplicate (this attempt was already handed back) | stale (the lease was lost: the
--   step was cancelled, resolved, expired or re-dispatched) | unknown_step | invalid (malformed entry).
-- An error may be a string or an object; {"retryable": false} in it makes the failure permanent.
DROP FUNCTION IF EXISTS tasker.submit_step_results(jsonb);
CREATE OR REPLACE FUNCTION tasker.submit_step_results(p_results jsonb, p_send_completions boolean DEFAULT true)
RETURNS TABLE (workflow_step_uuid uuid, attempt integer, status text, state text)
LANGUAGE plpgsql
-- Generic plans, costed for data in memory: see docs/performance.md ("Plans and the hot path").
SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $$
#variable_conflict use_column
DECLARE
  r record;
  v_accepted uuid[];
  v_accepted_attempts integer[];
BEGIN
  IF p_results IS NULL OR jsonb_typeof(p_results) <> 'array' THEN
    RAISE EXCEPTION 'results must be a JSON array of result objects' USING ERRCODE = 'TK400';
  END IF;
  PERFORM tasker.audit_context(NULL);

  WITH inp AS (
    -- One entry per (step, attempt): the first valid one, so a duplicate in the same batch can
    -- neither win nor be confused with the one that did.
    SELECT DISTINCT ON (tasker.uuid_or_null(x->>'step_uuid'), tasker.int_or_null(x->'attempt'))
           tasker.uuid_or_null(x->>'step_uuid') AS step,
           tasker.int_or_null(x->'attempt') AS attempt,
           CASE WHEN jsonb_typeof(x->'success') = 'boolean' THEN (x->'success')::text::boolean END AS success,
           nullif(x->'result', 'null'::jsonb) AS result,
           CASE WHEN jsonb_typeof(x->'error') = 'object' THEN x->'error'
                WHEN jsonb_typeof(x->'error') = 'string' THEN jsonb_build_object('message', x->'error')
                WHEN x->'error' IS NOT NULL AND x->'error' <> 'null'::jsonb THEN jsonb_build_object('message', (x->'error')::text)
                ELSE jsonb_build_object('message', 'step failed (no error given)') END AS error,
           nullif(x->>'worker_id', '') AS worker_id,
           tasker.int_or_null(x->'execution_ms') AS execution_ms,
           tasker.int_or_null(x->'retry_after_secs') AS retry_after_secs
    FROM jsonb_array_elements(p_results) WITH ORDINALITY AS e(x, n)
    WHERE jsonb_typeof(x->'success') = 'boolean'
    ORDER BY tasker.uuid_or_null(x->>'step_uuid'), tasker.int_or_null(x->'attempt'), n
  ), upd AS (
    UPDATE tasker.workflow_steps s
    SET state = CASE WHEN i.success THEN 'enqueued_for_orchestration' ELSE 'enqueued_as_error_for_orchestration' END,
        results = i.result,
        error = CASE WHEN i.success THEN NULL ELSE i.error END,
        retry_after_secs = CASE WHEN i.success THEN NULL ELSE i.retry_after_secs END,
        last_execution_ms = i.execution_ms,
        claimed_by = coalesce(i.worker_id, s.claimed_by),
        lease_expires_at = NULL,
        updated_at = now()
    FROM inp i
    WHERE s.workflow_step_uuid = i.step AND s.attempt_no = i.attempt AND s.state = 'in_progress'
    RETURNING s.workflow_step_uuid, s.attempt_no
  )
  SELECT array_agg(u.workflow_step_uuid), array_agg(u.attempt_no) INTO v_accepted, v_accepted_attempts FROM upd u;

  -- Completion messages and dispatch archives, one statement of each per namespace.
  FOR r IN
    SELECT t.namespace,
           array_agg(tasker.step_message(s.task_uuid, s.workflow_step_uuid, s.attempt_no, t.correlation_id)) AS msgs,
           array_agg(s.dispatch_msg_id) FILTER (WHERE s.dispatch_msg_id IS NOT NULL) AS dispatch_ids
    FROM tasker.workflow_steps s
    JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
    WHERE s.workflow_step_uuid = ANY (v_accepted)
    GROUP BY t.namespace
  LOOP
    IF p_send_completions IS NOT FALSE THEN
      PERFORM tasker.send_messages(tasker.completion_queue(r.namespace), r.namespace, r.msgs);
    END IF;
    PERFORM tasker.consume_messages(tasker.dispatch_queue(r.namespace), r.dispatch_ids);
  END LOOP;

  -- Statuses per entry. Accepted is the first valid entry of an accepted (step, attempt); a
  -- later entry for the same attempt in this batch is a duplicate of it.
  RETURN QUERY
  SELECT x.step, x.attempt,
         CASE WHEN x.step IS NULL OR x.attempt IS NULL OR x.success IS NULL THEN 'invalid'
              WHEN x.accepted AND x.first_of_attempt THEN 'accepted'
              WHEN x.state IS NULL THEN 'unknown_step'
              WHEN x.accepted
                OR EXISTS (SELECT 1 FROM tasker.workflow_step_result_audit a
                           WHERE a.workflow_step_uuid = x.step AND a.attempt = x.attempt) THEN 'duplicate'
              ELSE 'stale' END,
         x.state
  FROM (
    -- The step's state as a per-entry lookup (a subplan on the primary key): as a join it was
    -- planned as a scan of every step in the database. OFFSET 0 keeps it from being inlined twice.
    SELECT i.*, acc.step IS NOT NULL AS accepted,
           (SELECT s.state FROM tasker.workflow_steps s WHERE s.workflow_step_uuid = i.step) AS state
    FROM (SELECT e.*, e.n = min(e.n) FILTER (WHERE e.success) OVER (PARTITION BY e.step, e.attempt) AS first_of_attempt
          FROM (SELECT tasker.uuid_or_null(x.v->>'step_uuid') AS step, tasker.int_or_null(x.v->'attempt') AS attempt,
                       CASE WHEN jsonb_typeof(x.v->'success') = 'boolean' THEN true END AS success, x.n
                FROM jsonb_array_elements(p_results) WITH ORDINALITY AS x(v, n)) e) i
    LEFT JOIN unnest(v_accepted, v_accepted_attempts) AS acc(step, attempt)
           ON acc.step = i.step AND acc.attempt = i.attempt
    OFFSET 0) x
  ORDER BY x.n;
END $$;

-- tasker.submit_step_result: the one-result form of submit_step_results (DESIGN §5.3 signature).
-- Returns the entry's status (accepted | duplicate | stale | unknown_step | invalid) and the
-- step's state afterwards.
CREATE OR REPLACE FUNCTION tasker.submit_step_result(p_step_uuid uuid, p_attempt integer, p_success boolean,
  p_result jsonb DEFAULT NULL, p_error jsonb DEFAULT NULL, p_worker_id text DEFAULT NULL,
  p_execution_ms bigint DEFAULT NULL, p_retry_after_secs integer DEFAULT NULL)
RETURNS TABLE (status text, state text)
LANGUAGE sql AS $$
  SELECT r.status, r.state
  FROM tasker.submit_step_results(jsonb_build_array(jsonb_build_object(
    'step_uuid', p_step_uuid, 'attempt', p_attempt, 'success', p_success, 'result', p_result,
    'error', p_error, 'worker_id', p_worker_id, 'execution_ms', p_execution_ms,
    'retry_after_secs', p_retry_after_secs))) AS r
$$;

-- tasker.heartbeat_step(step_uuid, attempt, lease_secs): extend the lease of a running attempt
-- (and keep its dispatch message invisible as long). false = the lease is lost (the step was
-- cancelled, resolved or expired): the worker should stop and not hand back.
CREATE OR REPLACE FUNCTION tasker.heartbeat_step(p_step_uuid uuid, p_attempt integer, p_lease_secs integer DEFAULT 30)
RETURNS boolean
LANGUAGE plpgsql
-- Generic plans, costed for data in memory: see docs/performance.md ("Plans and the hot path").
SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $$
#variable_conflict use_column
DECLARE
  v_ns text;
  v_msg bigint;
BEGIN
  IF p_lease_secs IS NULL OR p_lease_secs NOT BETWEEN 1 AND 86400 THEN
    RAISE EXCEPTION 'lease_secs must be between 1 and 86400 (got %)', p_lease_secs USING ERRCODE = 'TK400';
  END IF;
  UPDATE tasker.workflow_steps s
  SET lease_expires_at = clock_timestamp() + make_interval(secs => p_lease_secs)
  FROM tasker.tasks t
  WHERE s.workflow_step_uuid = p_step_uuid AND s.attempt_no = p_attempt AND s.state = 'in_progress'
    AND t.task_uuid = s.task_uuid
  RETURNING t.namespace, s.dispatch_msg_id INTO v_ns, v_msg;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF v_msg IS NOT NULL THEN
    PERFORM pgmq.set_vt(tasker.dispatch_queue(v_ns)::text, v_msg::bigint, p_lease_secs::integer);
  END IF;
  RETURN true;
END $$;

-- tasker.checkpoint_step(step_uuid, attempt, checkpoint, lease_secs): a running attempt records
-- how far it got, e.g. {"cursor": 420, "items_processed": 420, "accumulated_results": {...}}; the
-- stored checkpoint gains "timestamp" and "attempt". Fenced like heartbeat_step (false = the lease
-- is lost: stop, do not hand back). A checkpoint is progress: it moves the step's updated_at, which
-- the staleness sweep reads, and with p_lease_secs it extends the lease as a heartbeat does. It
-- survives retries and reset_for_retry, and the claim hands it to the next attempt, which resumes
-- from it. TK400 when the checkpoint is not a JSON object.
CREATE OR REPLACE FUNCTION tasker.checkpoint_step(p_step_uuid uuid, p_attempt integer, p_checkpoint jsonb,
  p_lease_secs integer DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  IF jsonb_typeof(p_checkpoint) IS DISTINCT FROM 'object' THEN
    RAISE EXCEPTION 'checkpoint must be a JSON object (got %)', coalesce(jsonb_typeof(p_checkpoint), 'null')
      USING ERRCODE = 'TK400';
  END IF;
  IF p_lease_secs IS NOT NULL AND p_lease_secs NOT BETWEEN 1 AND 86400 THEN
    RAISE EXCEPTION 'lease_secs must be between 1 and 86400 (got %)', p_lease_secs USING ERRCODE = 'TK400';
  END IF;
  UPDATE tasker.workflow_steps s
  SET checkpoint = p_checkpoint || jsonb_build_object('timestamp', clock_timestamp(), 'attempt', p_attempt),
      checkpoint_at = clock_timestamp(), updated_at = now()
  WHERE s.workflow_step_uuid = p_step_uuid AND s.attempt_no = p_attempt AND s.state = 'in_progress';
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  IF p_lease_secs IS NOT NULL THEN
    RETURN tasker.heartbeat_step(p_step_uuid, p_attempt, p_lease_secs);
  END IF;
  RETURN true;
END $$;
