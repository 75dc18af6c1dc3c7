-- 0230_tasker_tasks.sql — moving tasks forward: the shared advance step, task creation, cancel,
-- manual step resolution and the recovery of a task given up on (DESIGN §5.1, §5.4, §5.6).
--
-- Locking rule, the one that keeps two daemons from both missing (or both doing) a fan-in: whoever
-- changes the steps of a task on the orchestration side holds that task's row lock (FOR UPDATE,
-- taken in task_uuid order when there are several) for the rest of its transaction. Workers
-- never take task locks; they only touch steps in enqueued / in_progress, which the orchestration
-- side leaves alone except under a task lock.

-- tasker.released_children: the children of steps that just became complete or resolved_manually,
-- each with how many of its parents are among them: what advance_tasks counts down (and dispatches,
-- if that was the last parent). Empty arrays when there are none.
DROP FUNCTION IF EXISTS tasker.release_children(uuid[]);
CREATE OR REPLACE FUNCTION tasker.released_children(p_step_uuids uuid[], OUT steps uuid[], OUT counts integer[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
  SELECT coalesce(array_agg(e.to_step_uuid), '{}'), coalesce(array_agg(e.n), '{}') INTO steps, counts
  FROM (SELECT x.to_step_uuid, count(*)::integer AS n
        FROM tasker.workflow_step_edges x
        WHERE x.from_step_uuid = ANY (p_step_uuids)
        GROUP BY x.to_step_uuid) e;
END $$;

-- tasker.tasks_blocked_by_error: of these tasks, those with a step in error, so that nothing new
-- may start in them. A batch worker under failure_strategy isolate does not block: its siblings
-- and the rest of the task go on, and only what depends on it waits (docs/dynamic-steps.md).
-- One statement for a whole batch of tasks, through workflow_steps_error_idx (migration 0065),
-- which holds only steps in error. plpgsql, so its plan is cached for the session: as a sql
-- function with a sub-select it was never inlined and was planned anew in every statement that
-- called it (0.2 ms of each one-message completion call, by pg_stat_statements), and called once
-- per task it cost 2 ms of a 50-task completion call (auto_explain).
CREATE OR REPLACE FUNCTION tasker.tasks_blocked_by_error(p_task_uuids uuid[]) RETURNS uuid[]
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
  RETURN ARRAY(SELECT DISTINCT x.task_uuid FROM tasker.workflow_steps x
               WHERE x.task_uuid = ANY (p_task_uuids) AND x.state = 'error'
                 AND x.failure_strategy IS DISTINCT FROM 'isolate');
END $$;

-- tasker.task_has_blocking_error: the same question for one task (the poller's candidates).
CREATE OR REPLACE FUNCTION tasker.task_has_blocking_error(p_task_uuid uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT cardinality(tasker.tasks_blocked_by_error(ARRAY[p_task_uuid])) > 0
$$;

-- tasker.advance_tasks: for tasks whose row locks the caller holds, dispatch every ready step
-- (unless the task has a step in error: then nothing new starts) and move each task to the state
-- its steps imply. Returns how many steps were dispatched and tasks completed/blocked.
-- p_released_steps / p_released_counts: children whose parents just completed and whose
-- unfinished_parents the caller has not yet counted down (step i loses p_released_counts[i]). This
-- function counts them down itself, in the same UPDATE that dispatches a child that became ready,
-- so the common case (a child released and dispatched in one transaction) changes its row once,
-- not twice (count down, then dispatch). tasker.released_children computes both arrays.
DROP FUNCTION IF EXISTS tasker.advance_tasks(uuid[]);
CREATE OR REPLACE FUNCTION tasker.advance_tasks(p_task_uuids uuid[],
  p_released_steps uuid[] DEFAULT '{}', p_released_counts integer[] DEFAULT '{}',
  OUT steps_enqueued integer, OUT tasks_completed integer, OUT tasks_blocked integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  r record;
  v_n integer;
  v_msg_ids bigint[];
  v_steps uuid[];
  v_live uuid[];
  v_blocked uuid[];
  v_released_done integer := 0;
BEGIN
  steps_enqueued := 0;
  -- The tasks that may dispatch: not finished, and no step in error.
  v_blocked := tasker.tasks_blocked_by_error(p_task_uuids);
  SELECT array_agg(t.task_uuid) INTO v_live
  FROM tasker.tasks t
  WHERE t.task_uuid = ANY (p_task_uuids)
    AND t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
    AND NOT t.task_uuid = ANY (v_blocked);
  -- Ready steps: released children whose count reaches 0 with this release, and any other ready
  -- step of those tasks. The two sets are disjoint (a released child's stored count is still ≥ 1)
  -- and each is reached by key from its own small driving set: a released child through its
  -- primary key, the rest through the task index. (Joining the released list to the tasks' steps
  -- instead was planned as a nested loop over both, quadratic in a 1→50→1 batch.)
  FOR r IN
    SELECT c.namespace, array_agg(c.msg) AS msgs, count(*) FILTER (WHERE c.released) AS n_released
    FROM (
      SELECT t.namespace, true AS released,
             tasker.step_message(s.task_uuid, s.workflow_step_uuid, s.attempt_no + 1, t.correlation_id) AS msg
      FROM unnest(p_released_steps, p_released_counts) AS x(step, n)
      JOIN tasker.workflow_steps s ON s.workflow_step_uuid = x.step
      JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
      WHERE s.task_uuid = ANY (v_live) AND s.state IN ('pending', 'waiting_for_retry')
        AND s.batch_parallelism IS NULL
        AND tasker.step_is_ready(s.state, s.unfinished_parents - x.n, s.attempts, s.retryable,
                                 s.max_attempts, s.next_retry_at)
      UNION ALL
      -- Other ready steps. The candidates come from two small partial indexes instead of every
      -- row version of every step of the task (idx_tup_fetch showed about 27 index fetches of
      -- workflow_steps per step with the task index): pending ones through
      -- workflow_steps_pending_ready2_idx (its predicate is written out so the planner may use
      -- it), due retries through workflow_steps_retry_idx (the poller takes them within its
      -- interval anyway, so that range stays short).
      SELECT t.namespace, false,
             tasker.step_message(s.task_uuid, s.workflow_step_uuid, s.attempt_no + 1, t.correlation_id)
      FROM (SELECT p.* FROM tasker.workflow_steps p
            WHERE p.task_uuid = ANY (v_live) AND p.state = 'pending' AND p.unfinished_parents = 0
              AND p.batch_parallelism IS NULL
            UNION ALL
            SELECT r.* FROM tasker.workflow_steps r
            WHERE r.state = 'waiting_for_retry' AND r.next_retry_at <= now() AND r.task_uuid = ANY (v_live)
              AND r.batch_parallelism IS NULL) s
      JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
      WHERE tasker.step_is_ready(s.state, s.unfinished_parents, s.attempts, s.retryable, s.max_attempts,
                                 s.next_retry_at)
      UNION ALL
      -- Batch workers: per batch (same creating step), at most batch_parallelism in flight; the
      -- rest wait, in name (batch_id) order, for a sibling to finish. Static workflows have none,
      -- so this costs them one probe of workflow_steps_batch_waiting_idx per task.
      SELECT t.namespace, false,
             tasker.step_message(w.task_uuid, w.workflow_step_uuid, w.attempt_no + 1, t.correlation_id)
      FROM tasker.batch_line(v_live) w
      JOIN tasker.tasks t ON t.task_uuid = w.task_uuid
      WHERE w.goes
    ) c
    GROUP BY c.namespace
  LOOP
    -- Through arrays, so the UPDATE is planned as index lookups per sent step (joined to the
    -- function's result directly, it was planned as a scan of every step in the database). A
    -- dispatched step is ready, and ready means no unfinished parent: its count becomes 0, which
    -- also counts down a released child in the same row change.
    SELECT array_agg(sent.msg_id), array_agg(sent.workflow_step_uuid) INTO v_msg_ids, v_steps
    FROM tasker.send_messages(tasker.dispatch_queue(r.namespace), r.namespace, r.msgs) AS sent;
    UPDATE tasker.workflow_steps s
    SET state = 'enqueued', dispatch_msg_id = u.msg_id, unfinished_parents = 0, updated_at = now()
    FROM unnest(v_steps, v_msg_ids) AS u(step, msg_id)
    WHERE s.workflow_step_uuid = u.step AND s.state IN ('pending', 'waiting_for_retry');
    GET DIAGNOSTICS v_n = ROW_COUNT;
    steps_enqueued := steps_enqueued + v_n;
    v_released_done := v_released_done + r.n_released;
  END LOOP;

  -- Released children that were not dispatched (still waiting for another parent, or their task
  -- dispatches nothing new) are counted down here: every released step that is not now enqueued
  -- (a child with an unfinished parent is never enqueued before its release, so enqueued means
  -- dispatched just above). Released steps are distinct, so the count says whether any is left.
  IF cardinality(p_released_steps) > v_released_done THEN
    UPDATE tasker.workflow_steps c
    SET unfinished_parents = c.unfinished_parents - x.n, updated_at = now()
    FROM unnest(p_released_steps, p_released_counts) AS x(step, n)
    WHERE c.workflow_step_uuid = x.step AND c.state <> 'enqueued';
  END IF;

  WITH counts AS (
    SELECT t.task_uuid, t.state,
           count(*) AS total,
           count(*) FILTER (WHERE s.state IN ('complete', 'resolved_manually')) AS done,
           count(*) FILTER (WHERE s.state = 'error') AS failed,
           count(*) FILTER (WHERE s.state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration',
                                              'enqueued_as_error_for_orchestration')) AS in_flight,
           count(*) FILTER (WHERE s.state = 'waiting_for_retry') AS retrying
    FROM tasker.tasks t
    JOIN tasker.workflow_steps s ON s.task_uuid = t.task_uuid
    WHERE t.task_uuid = ANY (p_task_uuids)
      AND t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
    GROUP BY t.task_uuid, t.state
  ), target AS (
    SELECT c.task_uuid, c.state AS from_state,
           CASE WHEN c.done = c.total THEN 'complete'
                WHEN c.failed > 0 AND c.in_flight = 0 THEN 'blocked_by_failures'
                WHEN c.in_flight > 0 THEN 'steps_in_process'
                WHEN c.retrying > 0 THEN 'waiting_for_retry'
                ELSE 'waiting_for_dependencies' END AS to_state
    FROM counts c
  ), moved AS (
    UPDATE tasker.tasks t
    SET state = g.to_state, state_changed_at = now(), updated_at = now(),
        completed_at = CASE WHEN g.to_state = 'complete' THEN now() ELSE t.completed_at END
    FROM target g
    WHERE t.task_uuid = g.task_uuid AND t.state = g.from_state AND g.to_state <> g.from_state
    RETURNING t.state
  )
  SELECT count(*) FILTER (WHERE m.state = 'complete'), count(*) FILTER (WHERE m.state = 'blocked_by_failures')
  INTO tasks_completed, tasks_blocked
  FROM moved m;
END $$;

-- tasker.lock_tasks: take the row locks of the given tasks in task_uuid order (the fixed order
-- that rules out deadlocks between daemons) and return the ones that exist. With p_skip_locked,
-- tasks another transaction holds are skipped instead of waited for.
CREATE OR REPLACE FUNCTION tasker.lock_tasks(p_task_uuids uuid[], p_skip_locked boolean DEFAULT false)
RETURNS uuid[]
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v uuid[];
BEGIN
  IF p_skip_locked THEN
    SELECT array_agg(x.task_uuid) INTO v FROM (
      SELECT t.task_uuid FROM tasker.tasks t WHERE t.task_uuid = ANY (p_task_uuids)
      ORDER BY t.task_uuid FOR UPDATE SKIP LOCKED) x;
  ELSE
    SELECT array_agg(x.task_uuid) INTO v FROM (
      SELECT t.task_uuid FROM tasker.tasks t WHERE t.task_uuid = ANY (p_task_uuids)
      ORDER BY t.task_uuid FOR UPDATE) x;
  END IF;
  RETURN coalesce(v, '{}');
END $$;

-- tasker.cancel_open_steps: cancel every step of these (locked) tasks that has not finished, and
-- archive their dispatch messages so no worker picks them up. Steps in error keep their state
-- (they say what went wrong). Returns the number of steps cancelled.
CREATE OR REPLACE FUNCTION tasker.cancel_open_steps(p_task_uuids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  r record;
  v_n integer;
BEGIN
  FOR r IN
    SELECT t.namespace, array_agg(s.dispatch_msg_id) AS ids
    FROM tasker.tasks t
    JOIN tasker.workflow_steps s ON s.task_uuid = t.task_uuid
    WHERE t.task_uuid = ANY (p_task_uuids) AND s.state IN ('enqueued', 'in_progress')
      AND s.dispatch_msg_id IS NOT NULL
    GROUP BY t.namespace
  LOOP
    PERFORM tasker.consume_messages(tasker.dispatch_queue(r.namespace), r.ids);
  END LOOP;
  UPDATE tasker.workflow_steps s
  SET state = 'cancelled', lease_expires_at = NULL, updated_at = now()
  WHERE s.task_uuid = ANY (p_task_uuids)
    AND s.state IN ('pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration',
                    'enqueued_as_error_for_orchestration', 'waiting_for_retry');
  GET DIAGNOSTICS v_n = ROW_COUNT;
  RETURN v_n;
END $$;

-- tasker.create_task(request jsonb): one run of a template (tasker-core's TaskRequest fields:
-- name, namespace (default 'default'), version (default: the latest registered), context,
-- initiator, source_system, reason, tags, priority (-100..100), correlation_id,
-- parent_correlation_id, idempotency_key, requested_at). In one transaction: the task, its
-- steps and edges, their first transitions, and the root steps dispatched.
-- Identity: idempotency_key if given; else the template's strategy — strict = template + context,
-- caller_provided = the key (required), always_unique = none. A duplicate creates nothing and
-- returns the existing task with created = false.
-- Errors: TK400 malformed request, TK404 unknown template.
CREATE OR REPLACE FUNCTION tasker.create_task(p_request jsonb)
RETURNS TABLE (task_uuid uuid, created boolean, state text, steps_enqueued integer, identity_hash text)
LANGUAGE plpgsql
-- Generic plans, costed for data in memory: see docs/performance.md ("Plans and the hot path").
SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $$
#variable_conflict use_column
DECLARE
  v_name text;
  v_ns text;
  v_version text;
  v_tpl record;
  v_context jsonb;
  v_tags jsonb;
  v_priority integer;
  v_correlation uuid;
  v_parent_correlation uuid;
  v_key text;
  v_requested_at timestamptz := now();
  v_hash text;
  v_task uuid := tasker.uuid_generate_v7();
  v_named uuid[];
  v_ws uuid[];
  v_msgs jsonb[];
  v_field text;
BEGIN
  PERFORM tasker.audit_context(NULL);
  IF p_request IS NULL OR jsonb_typeof(p_request) <> 'object' THEN
    RAISE EXCEPTION 'a task request must be a JSON object' USING ERRCODE = 'TK400';
  END IF;
  v_name := tasker.json_text(p_request, 'name', NULL, 'task request');
  IF v_name IS NULL OR v_name = '' THEN
    RAISE EXCEPTION 'task request: name is required' USING ERRCODE = 'TK400';
  END IF;
  v_ns := tasker.json_text(p_request, 'namespace', 'default', 'task request');
  v_version := tasker.json_text(p_request, 'version', NULL, 'task request');
  IF v_ns !~ '^[a-z][a-z0-9_]{0,28}$' THEN
    RAISE EXCEPTION 'task request: invalid namespace %', quote_literal(v_ns) USING ERRCODE = 'TK400';
  END IF;

  SELECT tt.task_template_uuid, tt.identity_strategy, tt.version INTO v_tpl
  FROM tasker.task_templates tt
  JOIN tasker.task_namespaces n ON n.task_namespace_uuid = tt.task_namespace_uuid
  WHERE n.name = v_ns AND tt.name = v_name AND (v_version IS NULL OR tt.version = v_version)
  -- Latest = highest numeric version (1.10 > 1.9), then most recently registered.
  ORDER BY array_remove(string_to_array(regexp_replace(tt.version, '[^0-9.]', '', 'g'), '.'), '')::numeric[] DESC NULLS LAST,
           tt.created_at DESC
  LIMIT 1;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown template %/%@%', v_ns, v_name, coalesce(v_version, 'latest') USING ERRCODE = 'TK404';
  END IF;

  v_context := coalesce(nullif(p_request->'context', 'null'::jsonb), '{}'::jsonb);
  IF jsonb_typeof(v_context) <> 'object' THEN
    RAISE EXCEPTION 'task request: context must be a JSON object' USING ERRCODE = 'TK400';
  END IF;
  v_tags := coalesce(nullif(p_request->'tags', 'null'::jsonb), '[]'::jsonb);
  IF jsonb_typeof(v_tags) <> 'array'
     OR EXISTS (SELECT 1 FROM jsonb_array_elements(v_tags) AS g WHERE jsonb_typeof(g) <> 'string') THEN
    RAISE EXCEPTION 'task request: tags must be an array of strings' USING ERRCODE = 'TK400';
  END IF;
  v_priority := tasker.json_int(p_request, 'priority', 0, -100, 100, 'task request');
  v_correlation := coalesce(tasker.uuid_or_null(tasker.json_text(p_request, 'correlation_id', NULL, 'task request')),
                            CASE WHEN p_request ? 'correlation_id' AND p_request->'correlation_id' <> 'null'::jsonb THEN NULL
                                 ELSE tasker.uuid_generate_v7() END);
  IF v_correlation IS NULL THEN
    RAISE EXCEPTION 'task request: correlation_id must be a UUID' USING ERRCODE = 'TK400';
  END IF;
  v_parent_correlation := tasker.uuid_or_null(tasker.json_text(p_request, 'parent_correlation_id', NULL, 'task request'));
  IF v_parent_correlation IS NULL AND p_request ? 'parent_correlation_id' AND p_request->'parent_correlation_id' <> 'null'::jsonb THEN
    RAISE EXCEPTION 'task request: parent_correlation_id must be a UUID' USING ERRCODE = 'TK400';
  END IF;
  v_key := tasker.json_text(p_request, 'idempotency_key', NULL, 'task request');
  IF v_key IS NOT NULL AND length(v_key) NOT BETWEEN 1 AND 255 THEN
    RAISE EXCEPTION 'task request: idempotency_key must be 1 to 255 characters' USING ERRCODE = 'TK400';
  END IF;
  IF p_request ? 'requested_at' AND p_request->'requested_at' <> 'null'::jsonb THEN
    BEGIN
      v_requested_at := (p_request->>'requested_at')::timestamptz;
    EXCEPTION WHEN others THEN
      RAISE EXCEPTION 'task request: requested_at must be a timestamp (got %)', p_request->'requested_at'
        USING ERRCODE = 'TK400';
    END;
  END IF;
  FOREACH v_field IN ARRAY ARRAY['initiator', 'source_system', 'reason'] LOOP
    IF length(tasker.json_text(p_request, v_field, NULL, 'task request')) > 255 THEN
      RAISE EXCEPTION 'task request: % is longer than 255 characters', v_field USING ERRCODE = 'TK400';
    END IF;
  END LOOP;

  v_hash := CASE
    WHEN v_key IS NOT NULL THEN encode(sha256(convert_to(v_tpl.task_template_uuid::text || ':key:' || v_key, 'UTF8')), 'hex')
    WHEN v_tpl.identity_strategy = 'strict' THEN encode(sha256(convert_to(v_tpl.task_template_uuid::text || ':context:' || v_context::text, 'UTF8')), 'hex')
    WHEN v_tpl.identity_strategy = 'always_unique' THEN 'unique:' || v_task::text
  END;
  IF v_hash IS NULL THEN
    RAISE EXCEPTION 'template %/%@% uses identity_strategy caller_provided: the request needs an idempotency_key',
      v_ns, v_name, v_tpl.version USING ERRCODE = 'TK400';
  END IF;

  INSERT INTO tasker.tasks AS t (task_uuid, task_template_uuid, namespace, state, priority, context,
    initiator, source_system, reason, tags, identity_hash, idempotency_key, correlation_id,
    parent_correlation_id, requested_at)
  VALUES (v_task, v_tpl.task_template_uuid, v_ns, 'steps_in_process', v_priority, v_context,
    coalesce(p_request->>'initiator', 'system'), coalesce(p_request->>'source_system', 'tasker'),
    coalesce(p_request->>'reason', 'Task requested'), v_tags, v_hash, v_key, v_correlation,
    v_parent_correlation, v_requested_at)
  ON CONFLICT (identity_hash) DO NOTHING;
  IF NOT FOUND THEN
    -- Made before (or by a concurrent call that committed first): report that task, create nothing.
    RETURN QUERY SELECT t.task_uuid, false, t.state, 0, v_hash FROM tasker.tasks t WHERE t.identity_hash = v_hash;
    RETURN;
  END IF;

  -- The steps created with the task: all of a static template; of a dynamic one, those no
  -- decision or batch plan has to create first (named_steps.init_created, DESIGN §12).
  SELECT array_agg(n.named_step_uuid ORDER BY n.position), array_agg(tasker.uuid_generate_v7() ORDER BY n.position)
  INTO v_named, v_ws
  FROM tasker.named_steps n WHERE n.task_template_uuid = v_tpl.task_template_uuid AND n.init_created;

  SELECT array_agg(tasker.step_message(v_task, x.w, 1, v_correlation))
  INTO v_msgs
  FROM unnest(v_named, v_ws) AS x(nid, w)
  JOIN tasker.named_steps n ON n.named_step_uuid = x.nid
  WHERE n.init_parent_count = 0;

  WITH sent AS (
    SELECT * FROM tasker.send_messages(tasker.dispatch_queue(v_ns), v_ns, v_msgs)
  )
  INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, named_step_uuid, name, state,
    attempts, max_attempts, retryable, unfinished_parents, dispatch_msg_id)
  SELECT x.w, v_task, n.named_step_uuid, n.name,
         CASE WHEN n.init_parent_count = 0 THEN 'enqueued' ELSE 'pending' END,
         0, n.max_attempts, n.retryable, n.init_parent_count, sent.msg_id
  FROM unnest(v_named, v_ws) AS x(nid, w)
  JOIN tasker.named_steps n ON n.named_step_uuid = x.nid
  LEFT JOIN sent ON sent.workflow_step_uuid = x.w;

  INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, task_uuid)
  SELECT p.w, c.w, v_task
  FROM tasker.named_step_edges e
  JOIN unnest(v_named, v_ws) AS p(nid, w) ON p.nid = e.from_named_step_uuid
  JOIN unnest(v_named, v_ws) AS c(nid, w) ON c.nid = e.to_named_step_uuid
  WHERE e.task_template_uuid = v_tpl.task_template_uuid;

  RETURN QUERY SELECT v_task, true, 'steps_in_process'::text, cardinality(v_msgs), v_hash;
END $$;

-- tasker.cancel_task: cancel a task that has not finished: its unfinished steps are cancelled and
-- their dispatch messages archived, in one transaction. TK404 unknown task, TK409 already finished.
-- p_actor is the processor of the transitions; p_claimed_operator (who the caller says it acts
-- for) goes to their metadata.claimed_operator.
DROP FUNCTION IF EXISTS tasker.cancel_task(uuid, text, text);
CREATE OR REPLACE FUNCTION tasker.cancel_task(p_task_uuid uuid, p_reason text DEFAULT NULL, p_actor text DEFAULT NULL,
  p_claimed_operator text DEFAULT NULL)
RETURNS TABLE (task_uuid uuid, previous_state text, state text, steps_cancelled integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_state text;
  v_n integer;
BEGIN
  PERFORM tasker.audit_context(p_actor, NULL, p_reason, p_claimed_operator);
  SELECT t.state INTO v_state FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown task %', p_task_uuid USING ERRCODE = 'TK404';
  END IF;
  IF v_state IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN
    RAISE EXCEPTION 'task % is already % and cannot be cancelled', p_task_uuid, v_state USING ERRCODE = 'TK409';
  END IF;
  v_n := tasker.cancel_open_steps(ARRAY[p_task_uuid]);
  UPDATE tasker.tasks t
  SET state = 'cancelled', state_changed_at = now(), completed_at = now(), updated_at = now()
  WHERE t.task_uuid = p_task_uuid AND t.state = v_state;
  RETURN QUERY SELECT p_task_uuid, v_state, 'cancelled'::text, v_n;
END $$;

-- tasker.resolve_step: an operator's hand on one step of an unfinished task, then the task moves
-- on at once (tasker-core forgets that part):
--   reset_for_retry   error → pending with a fresh set of attempts (attempts back to 0; attempt_no,
--                     the fencing token, keeps counting), dispatched again if ready
--   resolve_manually  any unfinished step → resolved_manually (satisfies its children)
--   complete_manually any unfinished step → complete, with p_result as its results
-- TK400 unknown action, TK404 unknown task/step, TK409 the step or task is in the wrong state.
-- p_actor and p_claimed_operator as in cancel_task.
DROP FUNCTION IF EXISTS tasker.resolve_step(uuid, uuid, text, jsonb, text, text);
CREATE OR REPLACE FUNCTION tasker.resolve_step(p_task_uuid uuid, p_step_uuid uuid, p_action text,
  p_result jsonb DEFAULT NULL, p_reason text DEFAULT NULL, p_actor text DEFAULT NULL, p_claimed_operator text DEFAULT NULL)
RETURNS TABLE (workflow_step_uuid uuid, previous_state text, state text, task_state text, steps_enqueued integer)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_task_state text;
  v_step record;
  v_ns text;
  v_to text;
  v_adv record;
  v_released uuid[] := '{}';
  v_released_n integer[] := '{}';
  v_outcome_error text;
BEGIN
  IF p_action IS NULL OR p_action NOT IN ('reset_for_retry', 'resolve_manually', 'complete_manually') THEN
    RAISE EXCEPTION 'unknown action %: use reset_for_retry, resolve_manually or complete_manually',
      quote_nullable(p_action) USING ERRCODE = 'TK400';
  END IF;
  PERFORM tasker.audit_context(p_actor, p_action, p_reason, p_claimed_operator);
  SELECT t.state, t.namespace INTO v_task_state, v_ns FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown task %', p_task_uuid USING ERRCODE = 'TK404';
  END IF;
  SELECT s.state, s.dispatch_msg_id, n.step_type, n.named_step_uuid INTO v_step
  FROM tasker.workflow_steps s
  JOIN tasker.named_steps n ON n.named_step_uuid = s.named_step_uuid
  WHERE s.workflow_step_uuid = p_step_uuid AND s.task_uuid = p_task_uuid
  FOR UPDATE OF s;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown step % in task %', p_step_uuid, p_task_uuid USING ERRCODE = 'TK404';
  END IF;
  IF v_task_state IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN
    RAISE EXCEPTION 'task % is already %; its steps can no longer change%', p_task_uuid, v_task_state,
      CASE WHEN v_task_state = 'error' THEN ' (recover the task first: tasker.recover_task)' ELSE '' END
      USING ERRCODE = 'TK409';
  END IF;

  IF p_action = 'reset_for_retry' THEN
    IF v_step.state <> 'error' THEN
      RAISE EXCEPTION 'only a step in error can be reset for retry (step % is %)', p_step_uuid, v_step.state
        USING ERRCODE = 'TK409';
    END IF;
    v_to := 'pending';
    UPDATE tasker.workflow_steps s
    SET state = 'pending', attempts = 0, next_retry_at = NULL, error = NULL, retry_after_secs = NULL,
        lease_expires_at = NULL, updated_at = now()
    WHERE s.workflow_step_uuid = p_step_uuid AND s.state = 'error';
  ELSE
    IF v_step.state IN ('complete', 'resolved_manually', 'cancelled') THEN
      RAISE EXCEPTION 'step % is already %', p_step_uuid, v_step.state USING ERRCODE = 'TK409';
    END IF;
    v_to := CASE p_action WHEN 'resolve_manually' THEN 'resolved_manually' ELSE 'complete' END;
    -- Completing a decision or batchable step by hand acts on the outcome in p_result, as if a
    -- worker had returned it; one the orchestrator would refuse is refused here.
    IF p_action = 'complete_manually' AND v_step.step_type IN ('decision', 'batchable') THEN
      v_outcome_error := tasker.outcome_error(v_step.step_type, v_step.named_step_uuid, coalesce(p_result, '{}'::jsonb));
      IF v_outcome_error IS NOT NULL THEN
        RAISE EXCEPTION 'cannot complete % step % with this result: %', v_step.step_type, p_step_uuid, v_outcome_error
          USING ERRCODE = 'TK400';
      END IF;
    END IF;
    UPDATE tasker.workflow_steps s
    SET state = v_to, lease_expires_at = NULL, completed_at = now(), updated_at = now(),
        results = CASE WHEN p_action = 'complete_manually' THEN coalesce(p_result, '{}'::jsonb) ELSE s.results END
    WHERE s.workflow_step_uuid = p_step_uuid AND s.state = v_step.state;
    IF v_step.state IN ('enqueued', 'in_progress') AND v_step.dispatch_msg_id IS NOT NULL THEN
      PERFORM tasker.consume_messages(tasker.dispatch_queue(v_ns), ARRAY[v_step.dispatch_msg_id]);
    END IF;
    SELECT r.steps, r.counts INTO v_released, v_released_n FROM tasker.released_children(ARRAY[p_step_uuid]) r;
    IF p_action = 'complete_manually' AND v_step.step_type IN ('decision', 'batchable') THEN
      PERFORM tasker.create_dynamic_steps(ARRAY[p_step_uuid]);
    END IF;
  END IF;

  PERFORM set_config('tasker.event', '', true);  -- what follows are ordinary dispatch/evaluation edges
  v_adv := tasker.advance_tasks(ARRAY[p_task_uuid], v_released, v_released_n);
  RETURN QUERY
  SELECT p_step_uuid, v_step.state::text, s.state, t.state, v_adv.steps_enqueued
  FROM tasker.workflow_steps s JOIN tasker.tasks t ON t.task_uuid = s.task_uuid
  WHERE s.workflow_step_uuid = p_step_uuid;
END $$;

-- tasker.recover_task: bring back a task the sweep gave up on (or one blocked by failures), in
-- place, the way reset_for_retry brings back one step (issue 15 §6):
--   * the chosen steps (p_step_uuids; NULL = every step in error or cancelled) go error/cancelled →
--     pending (event recover) with a fresh set of attempts (attempts 0; attempt_no, the fencing
--     token, keeps counting; the checkpoint is kept), their unfinished-parent count recounted from
--     the edges (a parent that was cancelled or failed is not satisfied);
--   * a task in error goes error → pending (event recover), then is evaluated at once like any
--     other (advance_tasks): ready steps are dispatched in this transaction; its recovered_at is
--     set, from which the sweep counts its maximum lifetime again;
--   * the task's open DLQ record, if any, is marked manually_resolved (resolved_by = the claimed
--     operator, else the actor; resolution_notes = p_reason when given; metadata.recovery says who
--     recovered which steps when).
-- Steps already finished (complete, resolved_manually) are never run again: a decision that
-- created steps keeps them, and those steps (cancelled with the task) are recovered like the rest.
-- Steps not chosen stay as they are: a cancelled one left behind keeps the task from completing.
-- TK400 empty step list; TK404 unknown task or step; TK409 task complete/cancelled/resolved_manually,
-- a chosen step that is not in error or cancelled, or (NULL list) no step to recover.
-- p_actor and p_claimed_operator as in cancel_task.
CREATE OR REPLACE FUNCTION tasker.recover_task(p_task_uuid uuid, p_step_uuids uuid[] DEFAULT NULL,
  p_reason text DEFAULT NULL, p_actor text DEFAULT NULL, p_claimed_operator text DEFAULT NULL)
RETURNS TABLE (task_uuid uuid, previous_state text, state text, steps_recovered integer, steps_enqueued integer,
  recovered_steps uuid[], dlq_entry_uuid uuid)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_state text;
  v_steps uuid[];
  v_bad record;
  v_n integer;
  v_adv record;
  v_dlq uuid;
BEGIN
  PERFORM tasker.audit_context(p_actor, 'recover', p_reason, p_claimed_operator);
  SELECT t.state INTO v_state FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown task %', p_task_uuid USING ERRCODE = 'TK404';
  END IF;
  IF v_state IN ('complete', 'cancelled', 'resolved_manually') THEN
    RAISE EXCEPTION 'task % is % and cannot be recovered', p_task_uuid, v_state USING ERRCODE = 'TK409';
  END IF;

  IF p_step_uuids IS NULL THEN
    SELECT array_agg(s.workflow_step_uuid ORDER BY s.workflow_step_uuid) INTO v_steps
    FROM tasker.workflow_steps s
    WHERE s.task_uuid = p_task_uuid AND s.state IN ('error', 'cancelled');
    IF v_steps IS NULL THEN
      RAISE EXCEPTION 'task % (%) has no step in error or cancelled: nothing to recover', p_task_uuid, v_state
        USING ERRCODE = 'TK409';
    END IF;
  ELSE
    IF cardinality(p_step_uuids) = 0 OR array_position(p_step_uuids, NULL) IS NOT NULL THEN
      RAISE EXCEPTION 'recover: the step list must name at least one step, and no null (omit it to recover every step in error or cancelled)'
        USING ERRCODE = 'TK400';
    END IF;
    SELECT x.id, s.state INTO v_bad
    FROM unnest(p_step_uuids) AS x(id)
    LEFT JOIN tasker.workflow_steps s ON s.workflow_step_uuid = x.id AND s.task_uuid = p_task_uuid
    WHERE s.state IS NULL OR s.state NOT IN ('error', 'cancelled')
    ORDER BY s.state IS NOT NULL, x.id
    LIMIT 1;
    IF FOUND AND v_bad.state IS NULL THEN
      RAISE EXCEPTION 'unknown step % in task %', v_bad.id, p_task_uuid USING ERRCODE = 'TK404';
    ELSIF FOUND THEN
      RAISE EXCEPTION 'step % is %: only steps in error or cancelled can be recovered%', v_bad.id, v_bad.state,
        CASE WHEN v_bad.state IN ('complete', 'resolved_manually') THEN ' (a finished step is not run again)' ELSE '' END
        USING ERRCODE = 'TK409';
    END IF;
    v_steps := ARRAY(SELECT DISTINCT x FROM unnest(p_step_uuids) AS x ORDER BY x);
  END IF;

  -- The parent counts are read from the rows as they were before this statement: a parent being
  -- recovered with its child is not satisfied either way.
  UPDATE tasker.workflow_steps s
  SET state = 'pending', attempts = 0, next_retry_at = NULL, error = NULL, retry_after_secs = NULL,
      lease_expires_at = NULL, completed_at = NULL, updated_at = now(),
      unfinished_parents = (SELECT count(*) FROM tasker.workflow_step_edges e
                            JOIN tasker.workflow_steps p ON p.workflow_step_uuid = e.from_step_uuid
                            WHERE e.to_step_uuid = s.workflow_step_uuid
                              AND p.state NOT IN ('complete', 'resolved_manually'))
  WHERE s.workflow_step_uuid = ANY (v_steps) AND s.task_uuid = p_task_uuid AND s.state IN ('error', 'cancelled');
  GET DIAGNOSTICS v_n = ROW_COUNT;

  -- A task in error leaves it; any recovered task's maximum lifetime (the sweep's) counts from
  -- now (recovered_at, migration 0051).
  UPDATE tasker.tasks t
  SET state = CASE WHEN v_state = 'error' THEN 'pending' ELSE t.state END,
      completed_at = CASE WHEN v_state = 'error' THEN NULL ELSE t.completed_at END,
      state_changed_at = CASE WHEN v_state = 'error' THEN now() ELSE t.state_changed_at END,
      recovered_at = now(), updated_at = now()
  WHERE t.task_uuid = p_task_uuid AND t.state = v_state;

  UPDATE tasker.tasks_dlq d
  SET resolution_status = 'manually_resolved', resolution_timestamp = now(),
      resolved_by = coalesce(p_claimed_operator, tasker.current_actor()),
      resolution_notes = coalesce(p_reason, d.resolution_notes),
      metadata = d.metadata || jsonb_build_object('recovery', jsonb_strip_nulls(jsonb_build_object(
                   'recovered_at', now(), 'recovered_by', tasker.current_actor(),
                   'claimed_operator', p_claimed_operator, 'reason', p_reason, 'steps', to_jsonb(v_steps)))),
      updated_at = now()
  WHERE d.task_uuid = p_task_uuid AND d.resolution_status = 'pending'
  RETURNING d.dlq_entry_uuid INTO v_dlq;

  PERFORM set_config('tasker.event', '', true);  -- what follows are ordinary dispatch/evaluation edges
  v_adv := tasker.advance_tasks(ARRAY[p_task_uuid]);
  RETURN QUERY
  SELECT p_task_uuid, v_state, t.state, v_n, v_adv.steps_enqueued, v_steps, v_dlq
  FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid;
END $$;
