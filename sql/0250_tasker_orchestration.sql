-- 0250_tasker_orchestration.sql — what the daemon calls on its timers and wake-ups (DESIGN §5.4–5.6):
-- consume completions, poll for ready steps, sweep for stuck and stale work.

-- tasker.apply_completions(queue, msg_ids, messages): the body of every completion path — PGMQ's
-- process_completions and RabbitMQ's process_completion_pointers / recover_handed_back_steps
-- (0270) hand it the completion messages they took, {"step_uuid", "attempt", …} each. Per message:
-- success → complete; failure with attempts left (retryable step, error not marked "retryable":
-- false) → waiting_for_retry with next_retry_at = now + backoff (the step's policy, ±jitter, the
-- worker's retry_after honoured up to the cap); else → error. Then, per affected task, locked in
-- task_uuid order so two daemons cannot both miss a fan-in: dispatch the children that became
-- ready, or finish the task. A stale message (its step no longer awaits orchestration for that
-- attempt) changes nothing; a malformed one is recorded in tasker.rejected_messages under `queue`
-- (msg_ids[i] naming it) and in `rejected`. Taking the messages from their queue, and settling
-- them there, is the caller's business.
-- handback_latency_ms: per step recorded (complete, retry or error), milliseconds from its hand-back
-- (submit_step_results set updated_at) to now, just before this transaction commits.
CREATE OR REPLACE FUNCTION tasker.apply_completions(p_queue text, p_ids bigint[], p_msgs jsonb[])
RETURNS TABLE (messages integer, steps_completed integer, steps_retrying integer, steps_failed integer,
  stale integer, rejected integer, steps_enqueued integer, tasks_completed integer, tasks_blocked integer,
  rejected_details jsonb, handback_latency_ms integer[])
LANGUAGE plpgsql
-- Generic plans, costed for data in memory: see docs/performance.md ("Plans and the hot path").
SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $$
#variable_conflict use_column
DECLARE
  v_queue text := p_queue;
  v_ids bigint[] := p_ids;
  v_msgs jsonb[] := p_msgs;
  v_tasks uuid[];
  v_done uuid[];
  v_creators uuid[];
  v_completed integer := 0;
  v_retrying integer := 0;
  v_failed integer := 0;
  v_rejected jsonb;
  v_handed_back timestamptz[];
  v_released uuid[] := '{}';
  v_released_n integer[] := '{}';
  v_adv record;
BEGIN
  PERFORM tasker.audit_context(NULL);
  IF coalesce(cardinality(v_ids), 0) = 0 THEN
    RETURN QUERY SELECT 0, 0, 0, 0, 0, 0, 0, 0, 0, '[]'::jsonb, '{}'::integer[];
    RETURN;
  END IF;
  -- Malformed or pointing at nothing: recorded; the caller settles them with the rest.
  WITH m AS (
    SELECT u.msg_id, u.message, tasker.uuid_or_null(u.message->>'step_uuid') AS step,
           tasker.int_or_null(u.message->'attempt') AS attempt
    FROM unnest(v_ids, v_msgs) AS u(msg_id, message)
  ), bad AS (
    SELECT m.msg_id, m.message,
           CASE WHEN jsonb_typeof(m.message) IS DISTINCT FROM 'object' THEN 'message is not a JSON object'
                WHEN m.step IS NULL THEN 'step_uuid missing or not a UUID'
                WHEN m.attempt IS NULL THEN 'attempt missing or not an integer'
                ELSE 'unknown step ' || m.step END AS reason
    FROM m
    WHERE m.step IS NULL OR m.attempt IS NULL
       OR NOT EXISTS (SELECT 1 FROM tasker.workflow_steps s WHERE s.workflow_step_uuid = m.step)
  ), ins AS (
    INSERT INTO tasker.rejected_messages (queue_name, msg_id, message, reason)
    SELECT v_queue, b.msg_id, b.message, b.reason FROM bad b
  )
  SELECT coalesce(jsonb_agg(jsonb_build_object('msg_id', b.msg_id, 'reason', b.reason)), '[]'::jsonb)
  INTO v_rejected FROM bad b;

  -- Lock the tasks first, in order; every step change below happens under these locks.
  SELECT array_agg(DISTINCT s.task_uuid) INTO v_tasks
  FROM unnest(v_msgs) AS u(message)
  JOIN tasker.workflow_steps s ON s.workflow_step_uuid = tasker.uuid_or_null(u.message->>'step_uuid');
  v_tasks := tasker.lock_tasks(coalesce(v_tasks, '{}'));

  WITH m AS (
    SELECT tasker.uuid_or_null(u.message->>'step_uuid') AS step, tasker.int_or_null(u.message->'attempt') AS attempt
    FROM unnest(v_msgs) AS u(message)
  ), checked AS MATERIALIZED (
    -- A decision's or batch planner's outcome is checked before the step may complete. Once per
    -- step: inlined, the check ran once per reference below (five times a plan).
    SELECT s.workflow_step_uuid, s.state, s.retryable, s.attempts, s.max_attempts, s.error,
           s.retry_after_secs, s.failure_strategy, s.updated_at, n.step_type, n.backoff, n.backoff_base_ms,
           n.max_backoff_ms,
           CASE WHEN s.state = 'enqueued_for_orchestration' AND n.step_type IN ('decision', 'batchable')
                THEN tasker.outcome_error(n.step_type, n.named_step_uuid, s.results) END AS outcome_error
    FROM (SELECT DISTINCT m.step, m.attempt FROM m) m
    JOIN tasker.workflow_steps s ON s.workflow_step_uuid = m.step AND s.attempt_no = m.attempt
    JOIN tasker.named_steps n ON n.named_step_uuid = s.named_step_uuid
    WHERE s.state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
  ), decided AS (
    SELECT c.*,
           CASE WHEN c.state = 'enqueued_for_orchestration' THEN
                  CASE WHEN c.outcome_error IS NULL THEN 'complete' ELSE 'error' END
                ELSE tasker.state_after_failure(c.retryable, c.attempts, c.max_attempts, c.error,
                                                c.failure_strategy) END AS to_state
    FROM checked c
  ), upd AS (
    UPDATE tasker.workflow_steps s
    SET state = d.to_state,
        next_retry_at = CASE WHEN d.to_state = 'waiting_for_retry'
                             THEN now() + tasker.backoff_delay(d.backoff, d.backoff_base_ms, d.max_backoff_ms,
                                                               d.attempts, d.retry_after_secs) END,
        completed_at = CASE WHEN d.to_state IN ('complete', 'resolved_manually') THEN now() END,
        error = CASE WHEN d.outcome_error IS NOT NULL
                     THEN jsonb_build_object('message', d.outcome_error, 'error_type', 'invalid_outcome',
                                             'retryable', false)
                     ELSE s.error END,
        results = CASE WHEN d.to_state = 'resolved_manually' THEN tasker.continued_failure(s.error)
                       ELSE s.results END,
        updated_at = now()
    FROM decided d
    WHERE s.workflow_step_uuid = d.workflow_step_uuid AND s.state = d.state
    RETURNING s.workflow_step_uuid, s.state, d.step_type, d.updated_at AS handed_back_at
  )
  SELECT array_agg(u.workflow_step_uuid) FILTER (WHERE u.state IN ('complete', 'resolved_manually')),
         array_agg(u.workflow_step_uuid) FILTER (WHERE u.state = 'complete' AND u.step_type IN ('decision', 'batchable')),
         count(*) FILTER (WHERE u.state IN ('complete', 'resolved_manually')),
         count(*) FILTER (WHERE u.state = 'waiting_for_retry'),
         count(*) FILTER (WHERE u.state = 'error'),
         array_agg(u.handed_back_at)
  INTO v_done, v_creators, v_completed, v_retrying, v_failed, v_handed_back
  FROM upd u;

  -- The children of the completed steps: counted down by advance_tasks, in the same UPDATE that
  -- dispatches those that became ready. Taken before dynamic creation, whose new steps count a
  -- completed creator as finished already.
  IF v_done IS NOT NULL THEN
    SELECT r.steps, r.counts INTO v_released, v_released_n FROM tasker.released_children(v_done) r;
  END IF;
  IF v_creators IS NOT NULL THEN
    PERFORM tasker.create_dynamic_steps(v_creators);
  END IF;
  v_adv := tasker.advance_tasks(v_tasks, v_released, v_released_n);

  RETURN QUERY SELECT cardinality(v_ids), v_completed, v_retrying, v_failed,
    cardinality(v_ids) - jsonb_array_length(v_rejected) - v_completed - v_retrying - v_failed,
    jsonb_array_length(v_rejected), v_adv.steps_enqueued, v_adv.tasks_completed, v_adv.tasks_blocked,
    v_rejected,
    coalesce((SELECT array_agg(greatest(0, (extract(epoch FROM clock_timestamp() - h) * 1000)::integer))
              FROM unnest(v_handed_back) AS h), '{}'::integer[]);
END $$;

-- tasker.process_completions(namespace, batch, vt): consume up to `batch` messages of
-- tasker_completion_<namespace> in one transaction: take them (skip-locked, tasker.take_messages),
-- tasker.apply_completions on them, then consume every message applied (stale and malformed ones
-- too; archived or deleted as tasker.consumed_messages says). Batch plans past the call's creation
-- budget (tasker.creations_over_budget) are left in the queue, untouched and visible again at this
-- transaction's end, with a wake-up for the next call; they count nowhere in this call's figures.
-- p_vt is accepted and ignored: a message is never left read but unconsumed past this
-- transaction, so no visibility timeout applies (until round three of issue 14 it set one that
-- the same transaction then threw away; docs/performance.md).
DROP FUNCTION IF EXISTS tasker.process_completions(text, integer, integer);
CREATE OR REPLACE FUNCTION tasker.process_completions(p_namespace text, p_batch integer DEFAULT 100,
  p_vt integer DEFAULT 30)
RETURNS TABLE (messages integer, steps_completed integer, steps_retrying integer, steps_failed integer,
  stale integer, rejected integer, steps_enqueued integer, tasks_completed integer, tasks_blocked integer,
  rejected_details jsonb, handback_latency_ms integer[])
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $$
#variable_conflict use_column
DECLARE
  v_queue text;
  v_ids bigint[];
  v_msgs jsonb[];
  v_deferred bigint[];
BEGIN
  PERFORM tasker.check_namespace(p_namespace);
  IF p_batch IS NULL OR p_batch NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'batch must be between 1 and 10000 (got %)', p_batch USING ERRCODE = 'TK400';
  END IF;
  v_queue := tasker.completion_queue(p_namespace);
  SELECT array_agg(r.msg_id), array_agg(r.message) INTO v_ids, v_msgs
  FROM tasker.take_messages(v_queue, p_batch) AS r;
  IF v_ids IS NULL THEN
    RETURN QUERY SELECT 0, 0, 0, 0, 0, 0, 0, 0, 0, '[]'::jsonb, '{}'::integer[];
    RETURN;
  END IF;
  -- Batch plans past this call's creation budget stay in the queue for the next call (visible
  -- again at commit, with a wake-up); they are neither processed nor counted here. The first
  -- plan always goes, so something is left to apply.
  v_deferred := tasker.creations_over_budget(v_ids, v_msgs);
  IF v_deferred IS NOT NULL THEN
    PERFORM tasker.notify_queue(v_queue, p_namespace, (SELECT min(i) FROM unnest(v_deferred) AS i));
    SELECT array_agg(u.msg_id), array_agg(u.message) INTO v_ids, v_msgs
    FROM unnest(v_ids, v_msgs) AS u(msg_id, message) WHERE NOT u.msg_id = ANY (v_deferred);
  END IF;
  RETURN QUERY SELECT * FROM tasker.apply_completions(v_queue, v_ids, v_msgs);
  PERFORM tasker.consume_messages(v_queue, v_ids);
END $$;

-- tasker.enqueue_ready_steps(limit): the poller's pass. Dispatches retries whose backoff has
-- passed and ready steps that were never dispatched, for up to `limit` tasks; tasks another
-- daemon holds are skipped (FOR UPDATE SKIP LOCKED), so several daemons split the work.
-- next_retry_at is the earliest future retry, so the caller can sleep until then.
-- Cost: both candidate lists walk a small partial index (workflow_steps_retry_idx,
-- workflow_steps_pending_ready2_idx) and look at each candidate's task by key, so an idle poll
-- costs the same with 1,000 or 100,000 unfinished tasks. The task check is a LATERAL subquery with
-- LIMIT 1 on purpose: the planner cannot turn it into a join, so a misestimate (state = 'pending'
-- and unfinished_parents = 0 are correlated; it guessed 75,000 rows for none) can no longer make it
-- read every task or every step (39 ms at 100,000 unfinished tasks); the extended statistics
-- workflow_steps_state_parents_stats (migration 0030) fix the estimate itself, so plpgsql keeps the
-- cached generic plan instead of planning every call. Still not flat: candidates that stay put,
-- i.e. due retries and ready steps of tasks blocked by a failed step, are looked at on every poll.
CREATE OR REPLACE FUNCTION tasker.enqueue_ready_steps(p_limit integer DEFAULT 100)
RETURNS TABLE (steps_enqueued integer, tasks_touched integer, next_retry_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_tasks uuid[];
  v_enqueued integer := 0;
BEGIN
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'limit must be between 1 and 10000 (got %)', p_limit USING ERRCODE = 'TK400';
  END IF;
  PERFORM tasker.audit_context(NULL);
  SELECT array_agg(DISTINCT c.task_uuid) INTO v_tasks
  FROM (
    (SELECT s.task_uuid
     FROM tasker.workflow_steps s
     CROSS JOIN LATERAL (
       SELECT 1 FROM tasker.tasks t
       WHERE t.task_uuid = s.task_uuid
         AND t.state NOT IN ('blocked_by_failures', 'complete', 'error', 'cancelled', 'resolved_manually')
         AND NOT tasker.task_has_blocking_error(t.task_uuid)
       LIMIT 1) live
     WHERE s.state = 'waiting_for_retry' AND s.next_retry_at <= now()
     ORDER BY s.next_retry_at
     LIMIT p_limit)
    UNION ALL
    (SELECT s.task_uuid
     FROM tasker.workflow_steps s
     CROSS JOIN LATERAL (
       SELECT 1 FROM tasker.tasks t
       WHERE t.task_uuid = s.task_uuid
         AND t.state NOT IN ('blocked_by_failures', 'complete', 'error', 'cancelled', 'resolved_manually')
         -- a task with a step in error dispatches nothing new (advance_tasks' rule): not a candidate
         AND NOT tasker.task_has_blocking_error(t.task_uuid)
       LIMIT 1) live
     -- batch workers held back by their batch's parallelism are not candidates (they go when a
     -- sibling finishes): workflow_steps_pending_ready2_idx leaves them out
     WHERE s.state = 'pending' AND s.unfinished_parents = 0 AND s.batch_parallelism IS NULL
     ORDER BY s.task_uuid
     LIMIT p_limit)
  ) c;

  v_tasks := tasker.lock_tasks(coalesce(v_tasks, '{}'), true);
  IF cardinality(v_tasks) > 0 THEN
    v_enqueued := (tasker.advance_tasks(v_tasks)).steps_enqueued;
  END IF;

  RETURN QUERY
  SELECT v_enqueued, cardinality(v_tasks),
         (SELECT min(s.next_retry_at) FROM tasker.workflow_steps s
          WHERE s.state = 'waiting_for_retry' AND s.next_retry_at > now());
END $$;

-- tasker.staleness_threshold: minutes a task may stay in a state before the sweep gives up on it.
-- A template's lifecycle.max_<state>_minutes overrides the default (tasker-core's keys).
CREATE OR REPLACE FUNCTION tasker.staleness_threshold(p_state text, p_lifecycle jsonb,
  p_waiting_deps integer, p_waiting_retry integer, p_in_process integer, p_blocked integer)
RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE p_state
    WHEN 'waiting_for_dependencies' THEN coalesce(tasker.int_or_null(p_lifecycle->'max_waiting_for_dependencies_minutes'), p_waiting_deps)
    WHEN 'waiting_for_retry' THEN coalesce(tasker.int_or_null(p_lifecycle->'max_waiting_for_retry_minutes'), p_waiting_retry)
    WHEN 'steps_in_process' THEN coalesce(tasker.int_or_null(p_lifecycle->'max_steps_in_process_minutes'), p_in_process)
    WHEN 'blocked_by_failures' THEN coalesce(tasker.int_or_null(p_lifecycle->'max_blocked_by_failures_minutes'), p_blocked)
    ELSE coalesce(tasker.int_or_null(p_lifecycle->'max_transient_minutes'), 10)
  END
$$;

-- tasker.detect_and_transition_stuck_tasks(...): the sweep, one daemon at a time (advisory lock;
-- a second caller returns at once with action 'skipped_locked'). In order:
--   1. lease_expired: in_progress steps whose lease passed count as a failed attempt (retry with
--      backoff, or error), and their tasks move on;
--   2. resent: enqueued steps whose dispatch message is gone (older than p_resend_grace_secs)
--      get a new message for the same attempt. Under RabbitMQ (p_broker_drained not NULL) the
--      relay archives a message once the broker holds it, so "gone from the outbox" says nothing;
--      p_broker_drained maps a namespace to how long ago (seconds, by the daemon's monotonic clock,
--      so no two clocks need agree) the daemon last saw its broker queue with no ready message,
--      and a step counts as lost only when its message was
--      archived before that moment (it was delivered to a worker that never claimed it, or the
--      broker lost it), or is in neither the outbox nor its archive (deleted by hand). A message
--      archived later may still wait in the broker behind a backlog: left alone. Each call looks at no more than 10 × p_batch_size
--      enqueued steps (index order, from where the last call stopped, wrapping around; the
--      position is kept in tasker.sweep_cursor), so a call costs the same with 1,000 or 100,000
--      steps waiting in queues, and a vanished message is found within
--      ceil(enqueued steps / (10 × p_batch_size)) sweeps. Up to p_batch_size are re-sent per call;
--   3. reevaluated: unfinished tasks nobody looked at for p_reevaluate_after_secs are re-evaluated
--      (dispatch what is ready, fix a task state left behind);
--   4. moved_to_dlq: tasks stuck in one state past its threshold (minutes; template lifecycle
--      overrides) or older than p_task_max_lifetime_hours go to error with a DLQ record, and their
--      unfinished steps are cancelled.
-- With p_dry_run nothing changes but section 2's position; the rows say what would happen. One row
-- per action taken. Every section reads through an index and a bounded number of rows: its batch
-- (section 2: ten times that), whatever the number of unfinished tasks.
DROP FUNCTION IF EXISTS tasker.detect_and_transition_stuck_tasks(integer, boolean, integer, integer, integer, integer,
  integer, integer, integer);
CREATE OR REPLACE FUNCTION tasker.detect_and_transition_stuck_tasks(
  p_batch_size integer DEFAULT 100,
  p_dry_run boolean DEFAULT false,
  p_waiting_for_dependencies_minutes integer DEFAULT 60,
  p_waiting_for_retry_minutes integer DEFAULT 30,
  p_steps_in_process_minutes integer DEFAULT 30,
  p_blocked_by_failures_minutes integer DEFAULT 1440,
  p_task_max_lifetime_hours integer DEFAULT 24,
  p_resend_grace_secs integer DEFAULT 30,
  p_reevaluate_after_secs integer DEFAULT 60,
  p_broker_drained jsonb DEFAULT NULL)
RETURNS TABLE (action text, task_uuid uuid, workflow_step_uuid uuid, detail text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_satisfied uuid[];
  v_released uuid[] := '{}';
  v_released_n integer[] := '{}';
  v_tasks uuid[];
  v_ns record;
  v_ids uuid[];
  v_states text[];
  v_msg_ids bigint[];
  v_details text[];
  v_stale record;
  v_steps_snapshot jsonb;
  v_cur_at timestamptz;
  v_cur_step uuid;
  v_win_steps uuid[];
  v_win_at timestamptz[];
  v_win_ns text[];
  v_win_msgs bigint[];
  v_found integer[];
  v_pos integer[] := '{}';
  v_last integer;
  v_lap integer;
  v_lo_at timestamptz;
  v_lo_step uuid;
  v_hi_at timestamptz;
  v_hi_step uuid;
BEGIN
  IF p_batch_size IS NULL OR p_batch_size NOT BETWEEN 1 AND 10000 THEN
    RAISE EXCEPTION 'batch_size must be between 1 and 10000 (got %)', p_batch_size USING ERRCODE = 'TK400';
  END IF;
  IF NOT pg_try_advisory_xact_lock(hashtext('tasker.sweep')) THEN
    RETURN QUERY SELECT 'skipped_locked'::text, NULL::uuid, NULL::uuid, 'another sweep is running'::text;
    RETURN;
  END IF;
  PERFORM tasker.audit_context(NULL, NULL, NULL);

  -- 1. Expired leases.
  SELECT array_agg(DISTINCT x.task_uuid) INTO v_tasks FROM (
    SELECT s.task_uuid FROM tasker.workflow_steps s
    WHERE s.state = 'in_progress' AND s.lease_expires_at < clock_timestamp()
    ORDER BY s.lease_expires_at LIMIT p_batch_size) x;
  IF v_tasks IS NOT NULL THEN
    IF p_dry_run THEN
      RETURN QUERY SELECT 'would_expire_lease'::text, s.task_uuid, s.workflow_step_uuid,
                          format('lease of %s expired at %s', s.claimed_by, s.lease_expires_at)
        FROM tasker.workflow_steps s
        WHERE s.task_uuid = ANY (v_tasks) AND s.state = 'in_progress' AND s.lease_expires_at < clock_timestamp();
    ELSE
      v_tasks := tasker.lock_tasks(v_tasks, true);
      PERFORM set_config('tasker.reason', 'lease expired', true);
      WITH decided AS (
        SELECT x.*, tasker.state_after_failure(x.retryable, x.attempts, x.max_attempts, x.error,
                                               x.failure_strategy) AS to_state
        FROM (SELECT s.workflow_step_uuid, s.retryable, s.attempts, s.max_attempts, s.failure_strategy,
                     tasker.backoff_delay(n.backoff, n.backoff_base_ms, n.max_backoff_ms, s.attempts) AS delay,
                     jsonb_build_object('message', format('lease expired: worker %s did not hand back attempt %s in time',
                                                          s.claimed_by, s.attempt_no), 'error_type', 'lease_expired') AS error
              FROM tasker.workflow_steps s
              JOIN tasker.named_steps n ON n.named_step_uuid = s.named_step_uuid
              WHERE s.task_uuid = ANY (v_tasks) AND s.state = 'in_progress' AND s.lease_expires_at < clock_timestamp()) x
      ), upd AS (
        UPDATE tasker.workflow_steps s
        SET state = d.to_state,
            next_retry_at = CASE WHEN d.to_state = 'waiting_for_retry' THEN now() + d.delay END,
            error = d.error,
            results = CASE WHEN d.to_state = 'resolved_manually' THEN tasker.continued_failure(d.error)
                           ELSE s.results END,
            completed_at = CASE WHEN d.to_state = 'resolved_manually' THEN now() ELSE s.completed_at END,
            lease_expires_at = NULL, updated_at = now()
        FROM decided d
        WHERE s.workflow_step_uuid = d.workflow_step_uuid AND s.state = 'in_progress'
        RETURNING s.task_uuid, s.workflow_step_uuid, s.state, s.claimed_by, s.attempt_no, s.dispatch_msg_id
      )
      SELECT array_agg(u.workflow_step_uuid), array_agg(u.dispatch_msg_id),
             array_agg(format('attempt %s on %s: now %s', u.attempt_no, u.claimed_by, u.state)),
             array_agg(u.workflow_step_uuid) FILTER (WHERE u.state = 'resolved_manually')
      INTO v_ids, v_msg_ids, v_details, v_satisfied
      FROM upd u;
      RETURN QUERY
      SELECT 'lease_expired'::text, s.task_uuid, x.step, x.detail
      FROM unnest(v_ids, v_details) AS x(step, detail)
      JOIN tasker.workflow_steps s ON s.workflow_step_uuid = x.step;
      -- The expired attempt's dispatch message would come back after its vt only to be archived
      -- by the next claim that reads it: archive it now.
      FOR v_ns IN
        SELECT t.namespace AS name, array_agg(m.id) AS ids
        FROM unnest(v_ids, v_msg_ids) AS m(step, id)
        JOIN tasker.workflow_steps s ON s.workflow_step_uuid = m.step
        JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
        WHERE m.id IS NOT NULL
        GROUP BY t.namespace
      LOOP
        PERFORM tasker.consume_messages(tasker.dispatch_queue(v_ns.name), v_ns.ids);
      END LOOP;
      PERFORM set_config('tasker.reason', '', true);
      -- Workers resolved by continue_on_failure satisfy their children, as a completion does.
      IF v_satisfied IS NOT NULL THEN
        SELECT r.steps, r.counts INTO v_released, v_released_n FROM tasker.released_children(v_satisfied) r;
      END IF;
      PERFORM tasker.advance_tasks(v_tasks, v_released, v_released_n);
    END IF;
  END IF;

  -- 2. Dispatched steps whose message vanished (queue purged, message deleted by hand). Checking
  --    every enqueued step against its queue would cost a probe per step waiting anywhere, so a
  --    call checks a window of 10 × batch of them, in (updated_at, step) order after the last
  --    call's position, then from the oldest again (workflow_steps_enqueued_cursor_idx).
  SELECT c.resend_after_updated_at, c.resend_after_step_uuid INTO v_cur_at, v_cur_step FROM tasker.sweep_cursor c;
  -- Lap 1: after the position; lap 2 (when lap 1 did not fill the window): from the oldest up to
  -- and including it. Bounds are parameters, never ORs, so a cached generic plan still reads only
  -- the index range it needs.
  FOR v_lap IN 1..2 LOOP
    EXIT WHEN v_lap = 2 AND (v_cur_at IS NULL OR coalesce(cardinality(v_win_steps), 0) >= p_batch_size * 10);
    IF v_lap = 1 THEN
      v_lo_at := coalesce(v_cur_at, '-infinity'); v_lo_step := coalesce(v_cur_step, '00000000-0000-0000-0000-000000000000');
      v_hi_at := 'infinity'; v_hi_step := 'ffffffff-ffff-ffff-ffff-ffffffffffff';
    ELSE
      v_lo_at := '-infinity'; v_lo_step := '00000000-0000-0000-0000-000000000000';
      v_hi_at := v_cur_at; v_hi_step := v_cur_step;
    END IF;
    -- The aggregates take the rows in the subquery's (index) order: no join or sort in between.
    SELECT v_win_steps || array_agg(w.workflow_step_uuid), v_win_at || array_agg(w.updated_at),
           v_win_msgs || array_agg(w.dispatch_msg_id), v_win_ns || array_agg(w.namespace)
    INTO v_win_steps, v_win_at, v_win_msgs, v_win_ns
    FROM (SELECT s.updated_at, s.workflow_step_uuid, s.dispatch_msg_id,
                 (SELECT t.namespace FROM tasker.tasks t WHERE t.task_uuid = s.task_uuid) AS namespace
          FROM tasker.workflow_steps s
          WHERE s.state = 'enqueued' AND s.updated_at < now() - make_interval(secs => p_resend_grace_secs)
            AND (s.updated_at, s.workflow_step_uuid) > (v_lo_at, v_lo_step)
            AND (s.updated_at, s.workflow_step_uuid) <= (v_hi_at, v_hi_step)
          ORDER BY s.updated_at, s.workflow_step_uuid
          LIMIT p_batch_size * 10 - coalesce(cardinality(v_win_steps), 0)) w;
  END LOOP;
  IF v_win_steps IS NOT NULL THEN
    -- Positions (in the window) of the steps whose message is not in their namespace's queue.
    FOR v_ns IN SELECT DISTINCT n.name FROM unnest(v_win_ns) AS n(name) LOOP
      EXECUTE format(
        'SELECT array_agg(m.i::integer) FROM unnest($1::bigint[], $2::text[]) WITH ORDINALITY AS m(msg, ns, i)
         WHERE m.ns = $3 AND NOT EXISTS (SELECT 1 FROM pgmq.%I q WHERE q.msg_id = m.msg)
           AND ($4::jsonb IS NULL OR NOT EXISTS (
                 SELECT 1 FROM pgmq.%I a WHERE a.msg_id = m.msg
                   AND a.archived_at >= coalesce(now() - make_interval(secs => ($4 ->> $3)::double precision), ''-infinity'')))',
        'q_' || tasker.dispatch_queue(v_ns.name), 'a_' || tasker.dispatch_queue(v_ns.name))
        INTO v_found USING v_win_msgs, v_win_ns, v_ns.name, p_broker_drained;
      v_pos := v_pos || coalesce(v_found, '{}');
    END LOOP;
    -- The first p_batch_size of them are handled now; the next call starts after the last one
    -- handled, or after the window when all were.
    v_last := cardinality(v_win_steps);
    IF cardinality(v_pos) > p_batch_size THEN
      v_pos := ARRAY(SELECT p FROM unnest(v_pos) AS p ORDER BY p LIMIT p_batch_size);
      v_last := v_pos[p_batch_size];
    END IF;
    -- A dry run moves the position too (else a daemon set to dry_run would look at one window
    -- forever), unless it runs read-only (a replica, a READ ONLY transaction).
    IF NOT p_dry_run OR current_setting('transaction_read_only') = 'off' THEN
      UPDATE tasker.sweep_cursor c
      SET resend_after_updated_at = v_win_at[v_last], resend_after_step_uuid = v_win_steps[v_last];
    END IF;
  END IF;
  FOR v_ns IN
    SELECT v_win_ns[p] AS name, array_agg(v_win_steps[p]) AS ids
    FROM unnest(v_pos) AS p GROUP BY v_win_ns[p]
  LOOP
    v_ids := v_ns.ids;
    IF p_dry_run THEN
      RETURN QUERY SELECT 'would_resend'::text, s.task_uuid, s.workflow_step_uuid, 'dispatch message missing'::text
        FROM tasker.workflow_steps s WHERE s.workflow_step_uuid = ANY (v_ids);
      CONTINUE;
    END IF;
    RETURN QUERY
    WITH locked AS (
      SELECT s.workflow_step_uuid, s.task_uuid, s.attempt_no, s.dispatch_msg_id AS old_msg
      FROM tasker.workflow_steps s
      WHERE s.workflow_step_uuid = ANY (v_ids) AND s.state = 'enqueued'
      FOR UPDATE SKIP LOCKED
    ), sent AS (
      SELECT * FROM tasker.send_messages(tasker.dispatch_queue(v_ns.name), v_ns.name,
        ARRAY(SELECT tasker.step_message(l.task_uuid, l.workflow_step_uuid, l.attempt_no + 1, t.correlation_id)
              FROM locked l JOIN tasker.tasks t ON t.task_uuid = l.task_uuid))
    ), upd AS (
      UPDATE tasker.workflow_steps s SET dispatch_msg_id = sent.msg_id, updated_at = now()
      FROM sent WHERE s.workflow_step_uuid = sent.workflow_step_uuid AND s.state = 'enqueued'
      RETURNING s.task_uuid, s.workflow_step_uuid, s.dispatch_msg_id
    )
    SELECT 'resent'::text, u.task_uuid, u.workflow_step_uuid,
           format('dispatch message %s was missing; sent %s', l.old_msg, u.dispatch_msg_id)
    FROM upd u JOIN locked l USING (workflow_step_uuid);
  END LOOP;

  -- 3. Re-evaluate quiet unfinished tasks (states left behind by a bug or a hand edit; cheap when
  --    there is nothing to fix).
  SELECT array_agg(x.task_uuid) INTO v_tasks FROM (
    SELECT t.task_uuid FROM tasker.tasks t
    WHERE t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
      AND coalesce(t.last_swept_at, t.state_changed_at) < now() - make_interval(secs => p_reevaluate_after_secs)
    ORDER BY coalesce(t.last_swept_at, t.state_changed_at)
    LIMIT p_batch_size) x;
  IF v_tasks IS NOT NULL AND NOT p_dry_run THEN
    v_tasks := tasker.lock_tasks(v_tasks, true);
    SELECT array_agg(t.state ORDER BY t.task_uuid) INTO v_states
    FROM tasker.tasks t WHERE t.task_uuid = ANY (v_tasks);
    v_tasks := ARRAY(SELECT x FROM unnest(v_tasks) AS x ORDER BY x);
    PERFORM tasker.advance_tasks(v_tasks);
    RETURN QUERY
    SELECT 'reevaluated'::text, b.task_uuid, NULL::uuid, format('%s -> %s', b.state, t.state)
    FROM unnest(v_tasks, v_states) AS b(task_uuid, state)
    JOIN tasker.tasks t ON t.task_uuid = b.task_uuid
    WHERE t.state <> b.state;
    UPDATE tasker.tasks t SET last_swept_at = now() WHERE t.task_uuid = ANY (v_tasks);
  END IF;

  -- 4. Stale tasks → error + DLQ. Candidates: of the unfinished tasks quiet for the shortest
  --    threshold (tasks_stale_idx, oldest state change first) and of those past the maximum lifetime
  --    (tasks_unfinished_lifetime_idx, oldest first; the lifetime counts from the task's creation,
  --    or from its last recovery by an operator), the batch with the oldest state change. Each
  --    half reads at most a batch through its partial index, and the rows come straight from those
  --    reads (no join back to tasks the planner could turn into a scan of it). The only difference
  --    from taking the batch with the oldest state change among all of them: when more than a
  --    batch of tasks are past the lifetime at once, the longest-lived go first (each call moves
  --    every one it picks to the DLQ, so the rest follow in the next calls).
  FOR v_stale IN
    SELECT t.task_uuid, t.state, t.namespace, tt.name AS task_name, t.correlation_id, t.priority,
           t.requested_at, t.created_at,
           tasker.staleness_threshold(t.state, coalesce(tt.definition->'lifecycle', '{}'),
             p_waiting_for_dependencies_minutes, p_waiting_for_retry_minutes,
             p_steps_in_process_minutes, p_blocked_by_failures_minutes) AS threshold,
           -- Time without progress: since the task's state changed or any of its steps moved.
           extract(epoch FROM now() - greatest(t.state_changed_at,
             (SELECT max(s.updated_at) FROM tasker.workflow_steps s WHERE s.task_uuid = t.task_uuid))) / 60 AS idle_minutes,
           extract(epoch FROM now() - coalesce(t.recovered_at, t.created_at)) / 3600 AS age_hours, t.recovered_at
    FROM (
      (SELECT t.task_uuid, t.task_template_uuid, t.state, t.namespace, t.correlation_id, t.priority,
              t.requested_at, t.created_at, t.state_changed_at, t.recovered_at
       FROM tasker.tasks t
       WHERE t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
         AND t.state_changed_at < now() - make_interval(mins => least(p_waiting_for_dependencies_minutes,
               p_waiting_for_retry_minutes, p_steps_in_process_minutes, p_blocked_by_failures_minutes, 10))
       ORDER BY t.state_changed_at
       LIMIT p_batch_size)
      UNION
      (SELECT t.task_uuid, t.task_template_uuid, t.state, t.namespace, t.correlation_id, t.priority,
              t.requested_at, t.created_at, t.state_changed_at, t.recovered_at
       FROM tasker.tasks t
       WHERE t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
         AND coalesce(t.recovered_at, t.created_at) < now() - make_interval(hours => p_task_max_lifetime_hours)
       ORDER BY coalesce(t.recovered_at, t.created_at)
       LIMIT p_batch_size)) t
    JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
    ORDER BY t.state_changed_at
    LIMIT p_batch_size
  LOOP
    CONTINUE WHEN v_stale.idle_minutes < v_stale.threshold AND v_stale.age_hours < p_task_max_lifetime_hours;
    IF p_dry_run THEN
      RETURN QUERY SELECT 'would_move_to_dlq'::text, v_stale.task_uuid, NULL::uuid,
        format('%s for %s min (threshold %s)', v_stale.state, round(v_stale.idle_minutes), v_stale.threshold);
      CONTINUE;
    END IF;
    CONTINUE WHEN cardinality(tasker.lock_tasks(ARRAY[v_stale.task_uuid], true)) = 0;
    -- The snapshot shows the steps as they were when we gave up, before cancelling the open ones.
    SELECT jsonb_object_agg(s.name, s.state) INTO v_steps_snapshot
    FROM tasker.workflow_steps s WHERE s.task_uuid = v_stale.task_uuid;
    PERFORM set_config('tasker.reason', CASE WHEN v_stale.state = 'blocked_by_failures' THEN 'blocked_timeout'
                                             ELSE 'staleness_timeout' END, true);
    PERFORM tasker.cancel_open_steps(ARRAY[v_stale.task_uuid]);
    UPDATE tasker.tasks t SET state = 'error', state_changed_at = now(), completed_at = now(), updated_at = now()
    WHERE t.task_uuid = v_stale.task_uuid AND t.state = v_stale.state;
    CONTINUE WHEN NOT FOUND;
    INSERT INTO tasker.tasks_dlq (task_uuid, original_state, dlq_reason, task_snapshot, metadata)
    VALUES (v_stale.task_uuid, v_stale.state,
            CASE WHEN v_stale.state = 'blocked_by_failures' THEN 'blocked_timeout' ELSE 'staleness_timeout' END,
            jsonb_build_object('task_uuid', v_stale.task_uuid, 'namespace', v_stale.namespace,
              'task_name', v_stale.task_name, 'state', v_stale.state,
              'idle_minutes', round(v_stale.idle_minutes), 'threshold_minutes', v_stale.threshold,
              'age_hours', round(v_stale.age_hours, 2), 'correlation_id', v_stale.correlation_id,
              'priority', v_stale.priority, 'requested_at', v_stale.requested_at, 'created_at', v_stale.created_at,
              'recovered_at', v_stale.recovered_at,
              'steps', v_steps_snapshot,
              'snapshot_at', now()),
            jsonb_build_object('detected_by', tasker.current_actor()))
    ON CONFLICT (task_uuid) WHERE resolution_status = 'pending' DO NOTHING;
    PERFORM set_config('tasker.reason', '', true);
    RETURN QUERY SELECT 'moved_to_dlq'::text, v_stale.task_uuid, NULL::uuid,
      format('%s without progress for %s min (threshold %s), age %s h', v_stale.state,
             round(v_stale.idle_minutes), v_stale.threshold, round(v_stale.age_hours, 1));
  END LOOP;
END $$;
