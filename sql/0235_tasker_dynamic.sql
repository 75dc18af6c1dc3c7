-- 0235_tasker_dynamic.sql — steps created at run time (DESIGN §12, docs/dynamic-steps.md): the
-- outcome a decision or batchable step hands back is checked, then the steps it asks for are
-- created, with their edges, counts and first transitions, in the transaction that completes it.

-- tasker.batch_outcome: a batchable step's batch_processing_outcome; tasker-core's handlers also
-- write the bare string "no_batches".
CREATE OR REPLACE FUNCTION tasker.batch_outcome(p_results jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN p_results->'batch_processing_outcome' = '"no_batches"'::jsonb THEN '{"type": "no_batches"}'::jsonb
              ELSE p_results->'batch_processing_outcome' END
$$;

-- tasker.batch_worker_template: the batch_worker step a batchable step's plan creates: the one
-- the outcome (or the batchable step's initialization) names, else its only batch_worker child.
-- NULL when the name is not a batch_worker child of it.
CREATE OR REPLACE FUNCTION tasker.batch_worker_template(p_batchable uuid, p_outcome jsonb) RETURNS uuid
LANGUAGE sql STABLE AS $$
  SELECT w.named_step_uuid
  FROM tasker.named_steps b
  JOIN tasker.named_step_edges e ON e.from_named_step_uuid = b.named_step_uuid AND e.kind = 'declared'
  JOIN tasker.named_steps w ON w.named_step_uuid = e.to_named_step_uuid AND w.step_type = 'batch_worker'
  WHERE b.named_step_uuid = p_batchable
    AND w.name = coalesce(p_outcome->>'worker_template_name', b.handler_initialization->>'worker_template_name', w.name)
  ORDER BY w.position
  LIMIT 1
$$;

-- tasker.outcome_error: why the result of a decision or batchable step cannot be acted on, or
-- NULL when it can (every other type: NULL). Checked before the step is marked complete: a step
-- whose outcome is refused goes to error instead, with this text, and creates nothing.
-- Limits: tasker.max_decision_steps (decision_points.max_steps, default 100) names per decision,
-- tasker.max_batch_workers (batch_processing.max_workers, default 10000) workers per plan.
CREATE OR REPLACE FUNCTION tasker.outcome_error(p_step_type text, p_named_step uuid, p_results jsonb)
RETURNS text
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
  o jsonb;
  v_bad text;
  v_n integer;
  v_max integer;
BEGIN
  IF p_step_type = 'decision' THEN
    o := p_results->'decision_point_outcome';
    IF jsonb_typeof(o) IS DISTINCT FROM 'object' THEN
      RETURN 'a decision step must return decision_point_outcome: {"type": "create_steps", "step_names": [...]} or {"type": "no_branches"}';
    END IF;
    IF o->>'type' = 'no_branches' THEN
      RETURN NULL;
    END IF;
    IF o->>'type' IS DISTINCT FROM 'create_steps' THEN
      RETURN format('decision_point_outcome.type must be create_steps or no_branches (got %s)', coalesce(o->'type', 'null'));
    END IF;
    IF jsonb_typeof(o->'step_names') IS DISTINCT FROM 'array'
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(o->'step_names') AS x WHERE jsonb_typeof(x) <> 'string') THEN
      RETURN 'decision_point_outcome.step_names must be an array of step names';
    END IF;
    v_n := jsonb_array_length(o->'step_names');
    v_max := tasker.setting_int('max_decision_steps', 100, 0, 100000);
    IF v_n > v_max THEN
      RETURN format('the decision chose %s steps; at most %s are allowed (decision_points.max_steps)', v_n, v_max);
    END IF;
    SELECT x INTO v_bad FROM jsonb_array_elements_text(o->'step_names') AS x GROUP BY x HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
      RETURN format('the decision chose %s twice', tasker.quoted_name(v_bad));
    END IF;
    SELECT x INTO v_bad FROM jsonb_array_elements_text(o->'step_names') AS x
    WHERE NOT EXISTS (SELECT 1 FROM tasker.named_step_edges e
                      JOIN tasker.named_steps c ON c.named_step_uuid = e.to_named_step_uuid
                      WHERE e.from_named_step_uuid = p_named_step AND e.kind = 'declared' AND c.name = x)
    LIMIT 1;
    IF FOUND THEN
      RETURN format('the decision chose %s, which is not one of its branches (%s)', tasker.quoted_name(v_bad),
        (SELECT string_agg(c.name, ', ' ORDER BY c.position) FROM tasker.named_step_edges e
         JOIN tasker.named_steps c ON c.named_step_uuid = e.to_named_step_uuid
         WHERE e.from_named_step_uuid = p_named_step AND e.kind = 'declared'));
    END IF;
    RETURN NULL;
  ELSIF p_step_type = 'batchable' THEN
    o := tasker.batch_outcome(p_results);
    IF jsonb_typeof(o) IS DISTINCT FROM 'object' THEN
      RETURN 'a batchable step must return batch_processing_outcome: {"type": "create_batches", "cursor_configs": [...], ...} or {"type": "no_batches"}';
    END IF;
    IF tasker.batch_worker_template(p_named_step, o) IS NULL THEN
      RETURN format('worker_template_name %s is not a batch_worker step of this batchable step', coalesce(o->'worker_template_name', 'null'));
    END IF;
    IF o->>'type' = 'no_batches' THEN
      RETURN NULL;
    END IF;
    IF o->>'type' IS DISTINCT FROM 'create_batches' THEN
      RETURN format('batch_processing_outcome.type must be create_batches or no_batches (got %s)', coalesce(o->'type', 'null'));
    END IF;
    IF jsonb_typeof(o->'cursor_configs') IS DISTINCT FROM 'array' OR jsonb_array_length(o->'cursor_configs') = 0 THEN
      RETURN 'batch_processing_outcome.cursor_configs must be a non-empty array (return {"type": "no_batches"} for none)';
    END IF;
    v_n := jsonb_array_length(o->'cursor_configs');
    v_max := tasker.setting_int('max_batch_workers', 10000, 1, 1000000);
    IF v_n > v_max THEN
      RETURN format('the plan asks for %s batch workers; at most %s are allowed (batch_processing.max_workers)', v_n, v_max);
    END IF;
    SELECT format('cursor_configs[%s]: %s', c.i - 1, c.why) INTO v_bad
    FROM (SELECT x.i,
                 CASE WHEN jsonb_typeof(x.c) <> 'object' THEN 'must be an object'
                      WHEN jsonb_typeof(x.c->'batch_id') NOT IN ('string', 'number') OR (x.c->>'batch_id') !~ '^[A-Za-z0-9_.-]{1,64}$'
                        THEN 'batch_id must be 1 to 64 letters, digits, dots, dashes or underscores'
                      WHEN coalesce(x.c->'start_cursor', 'null') = 'null' OR coalesce(x.c->'end_cursor', 'null') = 'null'
                        THEN 'start_cursor and end_cursor are required'
                      WHEN jsonb_typeof(x.c->'start_cursor') = 'number' AND (x.c->>'start_cursor')::numeric < 0
                        THEN 'start_cursor is negative'
                      WHEN jsonb_typeof(x.c->'start_cursor') = 'number' AND jsonb_typeof(x.c->'end_cursor') = 'number'
                           AND (x.c->>'end_cursor')::numeric < (x.c->>'start_cursor')::numeric
                        THEN 'end_cursor is before start_cursor'
                 END AS why
          FROM jsonb_array_elements(o->'cursor_configs') WITH ORDINALITY AS x(c, i)) c
    WHERE c.why IS NOT NULL
    ORDER BY c.i LIMIT 1;
    IF FOUND THEN
      RETURN v_bad;
    END IF;
    SELECT x->>'batch_id' INTO v_bad FROM jsonb_array_elements(o->'cursor_configs') AS x
    GROUP BY x->>'batch_id' HAVING count(*) > 1 LIMIT 1;
    IF FOUND THEN
      RETURN format('batch_id %s appears twice', tasker.quoted_name(v_bad));
    END IF;
    -- Numeric ranges (start inclusive, end exclusive) must not overlap: sorted by start, each
    -- starts at or after the end of the one before.
    SELECT format('batch %s [%s, %s) overlaps batch %s, which ends at %s', r.id, r.s, r.e, r.prev_id, r.prev_e) INTO v_bad
    FROM (SELECT x->>'batch_id' AS id, (x->>'start_cursor')::numeric AS s, (x->>'end_cursor')::numeric AS e,
                 lag(x->>'batch_id') OVER w AS prev_id, lag((x->>'end_cursor')::numeric) OVER w AS prev_e
          FROM jsonb_array_elements(o->'cursor_configs') AS x
          WHERE jsonb_typeof(x->'start_cursor') = 'number' AND jsonb_typeof(x->'end_cursor') = 'number'
          WINDOW w AS (ORDER BY (x->>'start_cursor')::numeric, (x->>'end_cursor')::numeric)) r
    WHERE r.s < r.prev_e
    LIMIT 1;
    IF FOUND THEN
      RETURN v_bad;
    END IF;
    RETURN NULL;
  END IF;
  RETURN NULL;
END $$;

-- tasker.create_dynamic_steps(creators): for decision and batchable steps that have just become
-- complete (in this transaction, under their tasks' locks, outcomes already checked by
-- tasker.outcome_error), create the steps their outcomes ask for. Set-based over all creators:
--   1. seeds: the branches a decision chose; a batch plan's workers, named <template>_<batch_id>
--      (no_batches: one placeholder <template>_000 with is_no_op = true), inputs = the worker
--      template's initialization + cursor + batch_metadata + is_no_op + __template_step_name;
--   2. the closure, layer by layer from the seeds along declared edges: a deferred_convergence
--      step as soon as one of its declared parents exists, any other step (not a batch_worker,
--      not a decision's branch) once all its declared parents exist;
--   3. edges into every new step from the rows of its declared parents and gates, wherever they
--      are (new or old); a batch worker's one edge comes from its batchable step; an existing
--      step that has not started (a deferred_convergence step, or a decision's branch with other
--      parents) gains an edge from each new step that is one of its declared parents or gates (it
--      cannot have started: a gate holds it);
--   4. unfinished_parents of new steps = their edges from unfinished parents; existing steps
--      count up their new edges.
-- A creator is processed once, because it is processed only by the compare-and-swap that
-- completes it. Returns the number of steps created.
CREATE OR REPLACE FUNCTION tasker.create_dynamic_steps(p_creators uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  -- New rows: r_*[k] is one row.
  r_task uuid[];
  r_named uuid[];
  r_uuid uuid[];
  r_name text[];
  r_inputs jsonb[];
  r_creator uuid[];
  r_par integer[];
  r_strategy text[];
  r_instance boolean[];
  -- The (task, named step) pairs created in this pass, and the closure's last layer.
  v_set_task uuid[];
  v_set_named uuid[];
  v_front_task uuid[];
  v_front_named uuid[];
  v_add_task uuid[];
  v_add_named uuid[];
  v_tasks uuid[];
  e_from uuid[];
  e_to uuid[];
  e_open boolean[];
  e_task uuid[];
BEGIN
  -- 1. Seeds.
  WITH c AS (
    SELECT s.workflow_step_uuid AS creator, s.task_uuid, s.results, n.step_type, n.named_step_uuid,
           n.task_template_uuid
    FROM tasker.workflow_steps s
    JOIN tasker.named_steps n ON n.named_step_uuid = s.named_step_uuid
    WHERE s.workflow_step_uuid = ANY (p_creators) AND n.step_type IN ('decision', 'batchable')
  ), chosen AS (
    -- A step that is a branch of two decisions exists once: not again when it exists already,
    -- and once when both choose it in this pass (its edges come from both, below).
    SELECT DISTINCT ON (c.task_uuid, ch.named_step_uuid)
           c.task_uuid, ch.named_step_uuid, ch.name, NULL::jsonb AS inputs, c.creator,
           NULL::integer AS par, NULL::text AS strategy, false AS instance
    FROM c
    CROSS JOIN jsonb_array_elements_text(CASE WHEN c.step_type = 'decision'
                                                   AND c.results->'decision_point_outcome'->>'type' = 'create_steps'
                                              THEN c.results->'decision_point_outcome'->'step_names' END) AS nm(name)
    JOIN tasker.named_steps ch ON ch.task_template_uuid = c.task_template_uuid AND ch.name = nm.name
    WHERE NOT EXISTS (SELECT 1 FROM tasker.workflow_steps s
                      WHERE s.task_uuid = c.task_uuid AND s.named_step_uuid = ch.named_step_uuid)
    ORDER BY c.task_uuid, ch.named_step_uuid, c.creator
  ), plans AS (
    SELECT c.task_uuid, c.creator, o.o, w.named_step_uuid AS w_named, w.name AS w_name,
           w.handler_initialization AS w_init, w.batch_config
    FROM c
    CROSS JOIN LATERAL (SELECT tasker.batch_outcome(c.results) AS o) o
    JOIN tasker.named_steps w ON w.named_step_uuid = tasker.batch_worker_template(c.named_step_uuid, o.o)
    WHERE c.step_type = 'batchable'
  ), workers AS (
    SELECT p.task_uuid, p.w_named, p.w_name || '_' || (g.cfg->>'batch_id') AS name,
           p.w_init || jsonb_build_object(
             'cursor', g.cfg,
             'batch_metadata', jsonb_build_object('cursor_field', p.batch_config->'cursor_field',
                                                  'failure_strategy', p.batch_config->'failure_strategy',
                                                  'checkpoint_interval', p.batch_config->'checkpoint_interval'),
             'is_no_op', g.noop,
             '__template_step_name', p.w_name) AS inputs,
           p.creator, (p.batch_config->>'parallelism')::integer AS par, p.batch_config->>'failure_strategy' AS strategy,
           true AS instance
    FROM plans p
    CROSS JOIN LATERAL (
      SELECT x AS cfg, false AS noop FROM jsonb_array_elements(CASE WHEN p.o->>'type' = 'create_batches' THEN p.o->'cursor_configs' END) AS x
      UNION ALL
      SELECT '{"batch_id": "000", "start_cursor": 0, "end_cursor": 0, "batch_size": 0}'::jsonb, true
      WHERE p.o->>'type' = 'no_batches') g
  ), seeds AS (
    SELECT * FROM chosen UNION ALL SELECT * FROM workers
  )
  SELECT array_agg(x.task_uuid), array_agg(x.named_step_uuid), array_agg(tasker.uuid_generate_v7()),
         array_agg(x.name), array_agg(x.inputs), array_agg(x.creator), array_agg(x.par), array_agg(x.strategy),
         array_agg(x.instance)
  INTO r_task, r_named, r_uuid, r_name, r_inputs, r_creator, r_par, r_strategy, r_instance
  FROM seeds x;
  IF r_task IS NULL THEN
    RETURN 0;
  END IF;
  SELECT array_agg(DISTINCT t) INTO v_tasks FROM unnest(r_task) AS t;
  SELECT array_agg(d.task), array_agg(d.named) INTO v_set_task, v_set_named
  FROM (SELECT DISTINCT t AS task, n AS named FROM unnest(r_task, r_named) AS x(t, n)) d;
  v_front_task := v_set_task;
  v_front_named := v_set_named;

  -- 2. The closure, one layer at a time (as deep as the template's dynamic part).
  LOOP
    SELECT array_agg(a.task), array_agg(a.named) INTO v_add_task, v_add_named
    FROM (
      SELECT DISTINCT f.task, c.named_step_uuid AS named
      FROM unnest(v_front_task, v_front_named) AS f(task, named)
      JOIN tasker.named_step_edges e ON e.from_named_step_uuid = f.named AND e.kind = 'declared'
      JOIN tasker.named_steps c ON c.named_step_uuid = e.to_named_step_uuid
      WHERE c.step_type <> 'batch_worker'
        -- a decision's branch exists only if that decision chose it
        AND NOT EXISTS (SELECT 1 FROM tasker.named_step_edges d
                        JOIN tasker.named_steps dp ON dp.named_step_uuid = d.from_named_step_uuid
                        WHERE d.to_named_step_uuid = c.named_step_uuid AND d.kind = 'declared' AND dp.step_type = 'decision')
        AND NOT EXISTS (SELECT 1 FROM tasker.workflow_steps s
                        WHERE s.task_uuid = f.task AND s.named_step_uuid = c.named_step_uuid)
        AND NOT EXISTS (SELECT 1 FROM unnest(v_set_task, v_set_named) AS z(task, named)
                        WHERE z.task = f.task AND z.named = c.named_step_uuid)
        AND (c.step_type = 'deferred_convergence'
             OR NOT EXISTS (SELECT 1 FROM tasker.named_step_edges d
                            WHERE d.to_named_step_uuid = c.named_step_uuid AND d.kind = 'declared'
                              AND NOT EXISTS (SELECT 1 FROM tasker.workflow_steps s
                                              WHERE s.task_uuid = f.task AND s.named_step_uuid = d.from_named_step_uuid)
                              AND NOT EXISTS (SELECT 1 FROM unnest(v_set_task, v_set_named) AS z(task, named)
                                              WHERE z.task = f.task AND z.named = d.from_named_step_uuid)))
    ) a;
    EXIT WHEN v_add_task IS NULL;
    v_set_task := v_set_task || v_add_task;
    v_set_named := v_set_named || v_add_named;
    v_front_task := v_add_task;
    v_front_named := v_add_named;
    SELECT r_task || array_agg(a.task), r_named || array_agg(a.named), r_uuid || array_agg(tasker.uuid_generate_v7()),
           r_name || array_agg(n.name), r_inputs || array_agg(NULL::jsonb),
           r_creator || array_agg((SELECT r.c FROM unnest(r_task, r_creator) AS r(t, c) WHERE r.t = a.task LIMIT 1)),
           r_par || array_agg(NULL::integer), r_strategy || array_agg(NULL::text), r_instance || array_agg(false)
    INTO r_task, r_named, r_uuid, r_name, r_inputs, r_creator, r_par, r_strategy, r_instance
    FROM unnest(v_add_task, v_add_named) AS a(task, named)
    JOIN tasker.named_steps n ON n.named_step_uuid = a.named;
  END LOOP;

  -- 3. Edges, with whether each parent is unfinished.
  WITH nw AS (
    SELECT * FROM unnest(r_task, r_named, r_uuid, r_creator, r_instance) AS n(task, named, uuid, creator, instance)
  ), pool AS (
    SELECT s.task_uuid AS task, s.named_step_uuid AS named, s.workflow_step_uuid AS uuid,
           s.state NOT IN ('complete', 'resolved_manually') AS open
    FROM tasker.workflow_steps s WHERE s.task_uuid = ANY (v_tasks)
    UNION ALL
    SELECT n.task, n.named, n.uuid, true FROM nw n
  ), edges AS (
    SELECT p.uuid AS parent, n.uuid AS child, p.open, n.task
    FROM nw n
    JOIN tasker.named_step_edges e ON e.to_named_step_uuid = n.named
    JOIN pool p ON p.task = n.task AND p.named = e.from_named_step_uuid
    WHERE NOT n.instance
    UNION ALL
    SELECT n.creator, n.uuid, false, n.task FROM nw n WHERE n.instance
    UNION ALL
    SELECT n.uuid, t.workflow_step_uuid, true, n.task
    FROM nw n
    JOIN tasker.named_step_edges e ON e.from_named_step_uuid = n.named
    JOIN tasker.workflow_steps t ON t.task_uuid = n.task AND t.named_step_uuid = e.to_named_step_uuid
                                 AND t.state = 'pending'
  )
  SELECT array_agg(x.parent), array_agg(x.child), array_agg(x.open), array_agg(x.task)
  INTO e_from, e_to, e_open, e_task FROM edges x;

  -- 4. Rows (their first transitions come from the insert trigger), edges, counts.
  INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, named_step_uuid, name, state, attempts,
    max_attempts, retryable, unfinished_parents, inputs, created_by, batch_parallelism, failure_strategy)
  SELECT r.uuid, r.task, r.named, r.name, 'pending', 0, n.max_attempts, n.retryable,
         coalesce(cnt.n, 0), r.inputs, r.creator, r.par, r.strategy
  FROM unnest(r_task, r_named, r_uuid, r_name, r_inputs, r_creator, r_par, r_strategy)
       AS r(task, named, uuid, name, inputs, creator, par, strategy)
  JOIN tasker.named_steps n ON n.named_step_uuid = r.named
  LEFT JOIN (SELECT e.child, count(*)::integer AS n FROM unnest(e_to, e_open) AS e(child, open)
             WHERE e.open GROUP BY e.child) cnt ON cnt.child = r.uuid;
  INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid, task_uuid)
  SELECT e.parent, e.child, e.task FROM unnest(e_from, e_to, e_task) AS e(parent, child, task);
  UPDATE tasker.workflow_steps t
  SET unfinished_parents = t.unfinished_parents + x.n, updated_at = now()
  FROM (SELECT e.child, count(*)::integer AS n FROM unnest(e_to, e_open) AS e(child, open)
        WHERE e.open AND e.child NOT IN (SELECT unnest(r_uuid)) GROUP BY e.child) x
  WHERE t.workflow_step_uuid = x.child;
  RETURN cardinality(r_uuid);
END $$;

-- tasker.creations_over_budget(msg_ids, messages): of one process_completions read, the completion
-- messages of batch plans that would take this call past its budget of steps to create
-- (tasker.max_created_steps_per_call, default 1000: workers planned, summed in message order). They
-- are put back in the queue, visible at once, and the next call takes them first. Each plan is
-- still created whole in the transaction that completes it (DESIGN §12), and the first plan of a
-- read always goes, however big: a bound on the plans per call, not on a plan. Why: creating a
-- worker costs about 0.3–0.8 ms (its row, edge, transitions, message and dispatch), so the 100 plans
-- of 100 workers one read could hold made a call of 3–25 s that stopped every other completion of
-- the namespace, and on a loaded machine a backlog of plans no task could finish (docs/performance.md).
-- NULL when nothing is over. One primary-key probe per message; only batchable steps count.
CREATE OR REPLACE FUNCTION tasker.creations_over_budget(p_msg_ids bigint[], p_messages jsonb[]) RETURNS bigint[]
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan SET random_page_cost = 1.1 AS $$
#variable_conflict use_column
DECLARE
  v_over bigint[];
BEGIN
  SELECT array_agg(z.msg_id) INTO v_over
  FROM (SELECT p.msg_id, p.n, sum(p.n) OVER (ORDER BY p.msg_id) AS upto
        FROM (SELECT u.msg_id, jsonb_array_length(o.cfgs) AS n
              FROM unnest(p_msg_ids, p_messages) AS u(msg_id, message)
              JOIN tasker.workflow_steps s ON s.workflow_step_uuid = tasker.uuid_or_null(u.message->>'step_uuid')
                                          AND s.attempt_no = tasker.int_or_null(u.message->'attempt')
                                          AND s.state = 'enqueued_for_orchestration'
              JOIN tasker.named_steps n ON n.named_step_uuid = s.named_step_uuid AND n.step_type = 'batchable'
              CROSS JOIN LATERAL (SELECT tasker.batch_outcome(s.results)->'cursor_configs' AS cfgs) o
              WHERE jsonb_typeof(o.cfgs) = 'array') p) z
  WHERE z.upto > tasker.setting_int('max_created_steps_per_call', 1000, 1, 1000000) AND z.upto > z.n;
  RETURN v_over;
END $$;
