-- 0205_tasker_audit.sql — the audit trail: every state change of a task or step appends one
-- transition row in the same statement, along a legal edge, and every hand-back one result-audit row
-- (with the result and error object handed back, each capped: tasker.audit_payload).
--
-- Statement-level AFTER triggers with transition tables: one set-based INSERT per UPDATE statement,
-- however many rows it changed, so batched state changes stay cheap. Legality is checked here, in
-- the same statement: a change with no row in *_state_edges raises 23503 (foreign_key_violation,
-- what the per-row foreign key raised before migration 0020 replaced it) and the whole statement
-- is undone; so is a creation state with no creation edge (TK409).
--
-- Who and why come from transaction-local settings the tasker functions set:
--   tasker.actor  — processor/operator id (default: the database role)
--   tasker.event  — overrides the edge's event name (e.g. complete_manually)
--   tasker.reason — free text stored in metadata.reason
--   tasker.claimed_operator — the operator an API caller says it acts for (cancelled_by, resolved_by,
--                   …), stored in metadata.claimed_operator. The caller is not trusted with the
--                   processor column: over HTTP that is always the authenticated API key.
-- Worker-driven edges (claim, hand-back) record the step's claimed_by instead.

CREATE OR REPLACE FUNCTION tasker.current_actor() RETURNS text
LANGUAGE sql STABLE AS $$ SELECT coalesce(nullif(current_setting('tasker.actor', true), ''), current_user::text) $$;

-- tasker.audit_context: every tasker API function calls this first, so the event, reason and
-- claimed operator of an earlier call in the same transaction never leak into this one. A NULL
-- actor keeps whatever the session set (the daemon sets tasker.actor once per connection).
-- (It took three arguments before p_claimed_operator: drop that form, or calls would be ambiguous.)
DROP FUNCTION IF EXISTS tasker.audit_context(text, text, text);
CREATE OR REPLACE FUNCTION tasker.audit_context(p_actor text, p_event text DEFAULT NULL, p_reason text DEFAULT NULL,
  p_claimed_operator text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  IF p_actor IS NOT NULL THEN
    PERFORM set_config('tasker.actor', p_actor, true);
  END IF;
  PERFORM set_config('tasker.event', coalesce(p_event, ''), true);
  PERFORM set_config('tasker.reason', coalesce(p_reason, ''), true);
  PERFORM set_config('tasker.claimed_operator', coalesce(p_claimed_operator, ''), true);
END $$;

-- Steps ----------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION tasker.audit_step_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_bad record;
BEGIN
  SELECT n.workflow_step_uuid, n.state INTO v_bad
  FROM new_steps n
  WHERE NOT EXISTS (SELECT 1 FROM tasker.step_state_edges e WHERE e.from_state IS NULL AND e.to_state = n.state)
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'step % cannot be created in state %', v_bad.workflow_step_uuid, v_bad.state
      USING ERRCODE = 'TK409';
  END IF;
  INSERT INTO tasker.workflow_step_transitions
    (workflow_step_uuid, task_uuid, from_state, to_state, event, attempt, metadata, processor)
  SELECT n.workflow_step_uuid, n.task_uuid, NULL, n.state,
         coalesce(nullif(current_setting('tasker.event', true), ''), e.event), n.attempt_no,
         jsonb_strip_nulls(jsonb_build_object('msg_id', n.dispatch_msg_id,
                                              'reason', nullif(current_setting('tasker.reason', true), ''))),
         tasker.current_actor()
  FROM new_steps n
  JOIN tasker.step_state_edges e ON e.from_state IS NULL AND e.to_state = n.state;
  RETURN NULL;
END $$;

-- tasker.refuse_move: raise for a state change that is not an edge. Called from the audit
-- triggers' INSERT … SELECT for the first offending row, which undoes the whole statement.
CREATE OR REPLACE FUNCTION tasker.refuse_move(p_kind text, p_uuid uuid, p_from text, p_to text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'illegal % state change % → % (% %)', p_kind, p_from, p_to, p_kind, p_uuid
    USING ERRCODE = '23503', HINT = 'The legal changes are the rows of tasker.' || p_kind || '_state_edges.';
END $$;

-- tasker.audit_payload: a result or error object as the result audit keeps it (migration 0050):
-- whole up to 64 KiB of JSON text, else {"truncated": true, "bytes": N}. An inlinable SQL
-- expression, so the trigger stays one statement; a small payload costs one conversion to text.
-- STABLE like jsonb_build_object in its body: declared IMMUTABLE it was never inlined, and ran as
-- a statement of its own per payload (pg_stat_statements with track = all showed it).
CREATE OR REPLACE FUNCTION tasker.audit_payload(p jsonb) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p IS NULL OR octet_length(p::text) <= 65536 THEN p
              ELSE jsonb_build_object('truncated', true, 'bytes', octet_length(p::text)) END
$$;

-- enable_nestloop = off (also on audit_task_update): the join of the old and new transition tables
-- must be a hash join whatever their size. plpgsql caches this statement's plan per connection, and
-- a transition table is costed at the size it had when the plan was made: planned on a small
-- statement, the join stayed a nested loop, quadratic in the rows changed. A dispatch of 10,000
-- batch workers then spent 32 s of its 34 s comparing 10^8 pairs here (EXPLAIN ANALYZE through
-- auto_explain: "Rows Removed by Join Filter: 99990000"); with a hash join, 1 s. Every join here is
-- by key or against the small edge table, so no nested loop is ever the plan we want.
CREATE OR REPLACE FUNCTION tasker.audit_step_update() RETURNS trigger
LANGUAGE plpgsql SET enable_nestloop = off AS $$
#variable_conflict use_column
DECLARE
  -- Read once per statement, not once per row.
  v_event text := nullif(current_setting('tasker.event', true), '');
  v_reason text := nullif(current_setting('tasker.reason', true), '');
  v_claimed text := nullif(current_setting('tasker.claimed_operator', true), '');
  v_actor text := tasker.current_actor();
BEGIN
  WITH changed AS (
    SELECT o.state AS from_state, n.*
    FROM old_steps o
    JOIN new_steps n USING (workflow_step_uuid)
    WHERE o.state <> n.state
  ), ins AS (
    INSERT INTO tasker.workflow_step_transitions
      (workflow_step_uuid, task_uuid, from_state, to_state, event, attempt, metadata, processor)
    SELECT c.workflow_step_uuid, c.task_uuid, c.from_state, c.state,
           CASE WHEN e.to_state IS NULL THEN tasker.refuse_move('step', c.workflow_step_uuid, c.from_state, c.state)
                ELSE coalesce(v_event, e.event) END,
           c.attempt_no,
           jsonb_strip_nulls(jsonb_build_object(
             'reason', v_reason,
             'claimed_operator', v_claimed,
             'msg_id', CASE WHEN c.state IN ('enqueued', 'in_progress') THEN c.dispatch_msg_id END,
             'lease_expires_at', CASE WHEN c.state = 'in_progress' THEN c.lease_expires_at END,
             'next_retry_at', CASE WHEN c.state = 'waiting_for_retry' THEN c.next_retry_at END,
             'error', CASE WHEN c.state IN ('enqueued_as_error_for_orchestration', 'waiting_for_retry', 'error')
                           THEN c.error->'message' END)),
           CASE WHEN c.state IN ('in_progress', 'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
                THEN c.claimed_by ELSE v_actor END
    FROM changed c
    LEFT JOIN tasker.step_state_edges e ON e.from_state = c.from_state AND e.to_state = c.state
    RETURNING workflow_step_transition_uuid, workflow_step_uuid, task_uuid, to_state, attempt
  )
  INSERT INTO tasker.workflow_step_result_audit
    (workflow_step_uuid, workflow_step_transition_uuid, task_uuid, attempt, worker_id, success, execution_time_ms,
     result, error)
  SELECT i.workflow_step_uuid, i.workflow_step_transition_uuid, i.task_uuid, i.attempt, c.claimed_by,
         i.to_state = 'enqueued_for_orchestration', c.last_execution_ms,
         tasker.audit_payload(c.results), tasker.audit_payload(c.error)
  FROM ins i
  JOIN changed c USING (workflow_step_uuid)
  WHERE i.to_state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration');
  RETURN NULL;
END $$;

-- Tasks ----------------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION tasker.audit_task_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_bad record;
BEGIN
  SELECT n.task_uuid, n.state INTO v_bad
  FROM new_tasks n
  WHERE NOT EXISTS (SELECT 1 FROM tasker.task_state_edges e WHERE e.from_state IS NULL AND e.to_state = n.state)
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'task % cannot be created in state %', v_bad.task_uuid, v_bad.state USING ERRCODE = 'TK409';
  END IF;
  INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, event, metadata, processor)
  SELECT n.task_uuid, NULL, n.state, coalesce(nullif(current_setting('tasker.event', true), ''), e.event),
         jsonb_strip_nulls(jsonb_build_object('reason', nullif(current_setting('tasker.reason', true), ''))),
         tasker.current_actor()
  FROM new_tasks n
  JOIN tasker.task_state_edges e ON e.from_state IS NULL AND e.to_state = n.state;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION tasker.audit_task_update() RETURNS trigger
LANGUAGE plpgsql SET enable_nestloop = off AS $$
#variable_conflict use_column
DECLARE
  v_event text := nullif(current_setting('tasker.event', true), '');
  v_metadata jsonb := jsonb_strip_nulls(jsonb_build_object(
    'reason', nullif(current_setting('tasker.reason', true), ''),
    'claimed_operator', nullif(current_setting('tasker.claimed_operator', true), '')));
  v_actor text := tasker.current_actor();
BEGIN
  INSERT INTO tasker.task_transitions (task_uuid, from_state, to_state, event, metadata, processor)
  SELECT n.task_uuid, o.state, n.state,
         CASE WHEN e.to_state IS NULL THEN tasker.refuse_move('task', n.task_uuid, o.state, n.state)
              ELSE coalesce(v_event, e.event) END,
         v_metadata, v_actor
  FROM old_tasks o
  JOIN new_tasks n USING (task_uuid)
  LEFT JOIN tasker.task_state_edges e ON e.from_state = o.state AND e.to_state = n.state
  WHERE o.state <> n.state;
  RETURN NULL;
END $$;

-- Transition rows are history: nobody rewrites them (retention may still DELETE old ones).
CREATE OR REPLACE FUNCTION tasker.refuse_history_update() RETURNS trigger
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'TK409';
END $$;

DROP TRIGGER IF EXISTS audit_insert ON tasker.workflow_steps;
CREATE TRIGGER audit_insert AFTER INSERT ON tasker.workflow_steps
  REFERENCING NEW TABLE AS new_steps FOR EACH STATEMENT EXECUTE FUNCTION tasker.audit_step_insert();
DROP TRIGGER IF EXISTS audit_update ON tasker.workflow_steps;
CREATE TRIGGER audit_update AFTER UPDATE ON tasker.workflow_steps
  REFERENCING OLD TABLE AS old_steps NEW TABLE AS new_steps
  FOR EACH STATEMENT EXECUTE FUNCTION tasker.audit_step_update();
DROP TRIGGER IF EXISTS audit_insert ON tasker.tasks;
CREATE TRIGGER audit_insert AFTER INSERT ON tasker.tasks
  REFERENCING NEW TABLE AS new_tasks FOR EACH STATEMENT EXECUTE FUNCTION tasker.audit_task_insert();
DROP TRIGGER IF EXISTS audit_update ON tasker.tasks;
CREATE TRIGGER audit_update AFTER UPDATE ON tasker.tasks
  REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks
  FOR EACH STATEMENT EXECUTE FUNCTION tasker.audit_task_update();
DROP TRIGGER IF EXISTS append_only ON tasker.task_transitions;
CREATE TRIGGER append_only BEFORE UPDATE ON tasker.task_transitions
  FOR EACH STATEMENT EXECUTE FUNCTION tasker.refuse_history_update();
DROP TRIGGER IF EXISTS append_only ON tasker.workflow_step_transitions;
CREATE TRIGGER append_only BEFORE UPDATE ON tasker.workflow_step_transitions
  FOR EACH STATEMENT EXECUTE FUNCTION tasker.refuse_history_update();
