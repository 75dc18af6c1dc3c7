-- state_machine.sql — pgTAP tests of the task and step state machines (sql/0201 edges, sql/0205
-- triggers, migrations/0010 foreign keys): every legal edge of tasker.step_state_edges and
-- tasker.task_state_edges can be taken by a plain UPDATE of the state column and writes exactly one
-- transition row carrying the edge's event; every other pair of states is refused (exhaustively, and
-- the classic cases by name); creation in a non-initial state is refused; transition rows cannot be
-- rewritten.
--
-- Rows are inserted and moved by hand here (INSERT / UPDATE … SET state), which is exactly what the
-- triggers must police. A row is brought to the edge's from-state along the shortest legal path
-- (recursive CTE over the edge table), then the edge is taken. One transaction, rolled back.

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(35
  + (SELECT count(*)::integer FROM tasker.step_state_edges)
  + (SELECT count(*)::integer FROM tasker.task_state_edges)
  -- every ordered pair of distinct states that is not an edge
  + (SELECT count(*)::integer FROM tasker.step_states f, tasker.step_states t
     WHERE f.state <> t.state AND NOT EXISTS (SELECT 1 FROM tasker.step_state_edges e WHERE e.from_state = f.state AND e.to_state = t.state))
  + (SELECT count(*)::integer FROM tasker.task_states f, tasker.task_states t
     WHERE f.state <> t.state AND NOT EXISTS (SELECT 1 FROM tasker.task_state_edges e WHERE e.from_state = f.state AND e.to_state = t.state)));

-- A template and a host task for the hand-made steps.
SELECT task_template_uuid AS tpl FROM tasker.register_task_template(
  '{"name": "sm", "namespace_name": "tap_sm", "identity_strategy": "always_unique",
    "steps": [{"name": "x", "handler": {"callable": "noop"}}]}') \gset
SELECT named_step_uuid AS nstep FROM tasker.named_steps WHERE task_template_uuid = :'tpl' \gset
SELECT task_uuid AS host FROM tasker.create_task('{"name": "sm", "namespace": "tap_sm"}') \gset
CREATE TEMP TABLE ids (k text PRIMARY KEY, v uuid);
INSERT INTO ids VALUES ('tpl', :'tpl'), ('nstep', :'nstep'), ('host', :'host');

-- ---------------------------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------------------------
-- Shortest legal path of states from p_from to p_to (both included); NULL when unreachable.
CREATE FUNCTION pg_temp.path(p_kind text, p_from text, p_to text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE v text[];
BEGIN
  IF p_kind = 'step' THEN
    WITH RECURSIVE p(state, path) AS (
      SELECT p_from, ARRAY[p_from]
      UNION ALL
      SELECT e.to_state, p.path || e.to_state FROM p JOIN tasker.step_state_edges e ON e.from_state = p.state
      WHERE NOT e.to_state = ANY (p.path) AND cardinality(p.path) < 8)
    SELECT path INTO v FROM p WHERE state = p_to ORDER BY cardinality(path), path LIMIT 1;
  ELSE
    WITH RECURSIVE p(state, path) AS (
      SELECT p_from, ARRAY[p_from]
      UNION ALL
      SELECT e.to_state, p.path || e.to_state FROM p JOIN tasker.task_state_edges e ON e.from_state = p.state
      WHERE NOT e.to_state = ANY (p.path) AND cardinality(p.path) < 8)
    SELECT path INTO v FROM p WHERE state = p_to ORDER BY cardinality(path), path LIMIT 1;
  END IF;
  RETURN v;
END $$;

-- A new step in the host task, created in p_state (a creation state).
CREATE FUNCTION pg_temp.new_step(p_state text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE v uuid := tasker.uuid_generate_v7();
BEGIN
  INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, named_step_uuid, name, state, attempts, max_attempts,
                                     retryable, unfinished_parents)
  VALUES (v, (SELECT ids.v FROM ids WHERE k = 'host'), (SELECT ids.v FROM ids WHERE k = 'nstep'), 'x', p_state, 0, 3, true, 0);
  RETURN v;
END $$;

-- A new task of the template, created in p_state.
CREATE FUNCTION pg_temp.new_task(p_state text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE v uuid := tasker.uuid_generate_v7();
BEGIN
  INSERT INTO tasker.tasks (task_uuid, task_template_uuid, namespace, state, identity_hash, correlation_id)
  VALUES (v, (SELECT ids.v FROM ids WHERE k = 'tpl'), 'tap_sm', p_state, 'sm:' || v, gen_random_uuid());
  RETURN v;
END $$;

-- A step (or task) brought to p_state along legal edges, one UPDATE statement per edge.
CREATE FUNCTION pg_temp.step_at(p_state text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
  v uuid := pg_temp.new_step('pending');
  p text[] := pg_temp.path('step', 'pending', p_state);
BEGIN
  IF p IS NULL THEN RAISE EXCEPTION 'no path from pending to %', p_state; END IF;
  FOR i IN 2 .. cardinality(p) LOOP
    UPDATE tasker.workflow_steps SET state = p[i] WHERE workflow_step_uuid = v AND state = p[i - 1];
  END LOOP;
  RETURN v;
END $$;

CREATE FUNCTION pg_temp.task_at(p_state text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
  v uuid := pg_temp.new_task('pending');
  p text[] := pg_temp.path('task', 'pending', p_state);
BEGIN
  IF p IS NULL THEN RAISE EXCEPTION 'no path from pending to %', p_state; END IF;
  FOR i IN 2 .. cardinality(p) LOOP
    UPDATE tasker.tasks SET state = p[i] WHERE task_uuid = v AND state = p[i - 1];
  END LOOP;
  RETURN v;
END $$;

-- Take one edge with a compare-and-swap UPDATE; report "<rows updated> <transition rows written>
-- <from>><to>:<event>" for what the audit trigger wrote.
CREATE FUNCTION pg_temp.take_step_edge(p_from text, p_to text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  v uuid := pg_temp.step_at(p_from);
  n0 bigint := (SELECT max(ordinal) FROM tasker.workflow_step_transitions);
  r integer;
  t text;
BEGIN
  UPDATE tasker.workflow_steps SET state = p_to WHERE workflow_step_uuid = v AND state = p_from;
  GET DIAGNOSTICS r = ROW_COUNT;
  SELECT count(*) || ' ' || string_agg(coalesce(from_state, '') || '>' || to_state || ':' || event, ',')
  INTO t FROM tasker.workflow_step_transitions WHERE ordinal > n0;
  RETURN r || ' ' || t || CASE WHEN (SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = v) = p_to
                              THEN '' ELSE ' (state not changed)' END;
END $$;

CREATE FUNCTION pg_temp.take_task_edge(p_from text, p_to text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  v uuid := pg_temp.task_at(p_from);
  n0 bigint := (SELECT max(ordinal) FROM tasker.task_transitions);
  r integer;
  t text;
BEGIN
  UPDATE tasker.tasks SET state = p_to WHERE task_uuid = v AND state = p_from;
  GET DIAGNOSTICS r = ROW_COUNT;
  SELECT count(*) || ' ' || string_agg(coalesce(from_state, '') || '>' || to_state || ':' || event, ',')
  INTO t FROM tasker.task_transitions WHERE ordinal > n0 AND task_uuid = v;
  RETURN r || ' ' || t || CASE WHEN (SELECT state FROM tasker.tasks WHERE task_uuid = v) = p_to
                              THEN '' ELSE ' (state not changed)' END;
END $$;

-- Creation: insert in p_state; report the transition rows written for the new row.
CREATE FUNCTION pg_temp.create_step_in(p_state text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE v uuid := pg_temp.new_step(p_state);
BEGIN
  RETURN (SELECT count(*) || ' ' || string_agg(coalesce(from_state, '') || '>' || to_state || ':' || event, ',')
          FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = v);
END $$;
CREATE FUNCTION pg_temp.create_task_in(p_state text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE v uuid := pg_temp.new_task(p_state);
BEGIN
  RETURN (SELECT count(*) || ' ' || string_agg(coalesce(from_state, '') || '>' || to_state || ':' || event, ',')
          FROM tasker.task_transitions WHERE task_uuid = v);
END $$;

-- Try an illegal change: 'refused <SQLSTATE>' when the UPDATE fails (its effects undone), else
-- what happened. The row is left in p_from either way.
CREATE FUNCTION pg_temp.try_step(p_from text, p_to text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE v uuid := pg_temp.step_at(p_from);
BEGIN
  BEGIN
    UPDATE tasker.workflow_steps SET state = p_to WHERE workflow_step_uuid = v AND state = p_from;
    RETURN 'accepted (' || (SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = v) || ')';
  EXCEPTION WHEN others THEN
    -- 23503: no edge (from, to). A move into a hand-back state may trip the result-audit
    -- unique (step, attempt) first (23505): refused all the same.
    RETURN CASE WHEN SQLSTATE IN ('23503', '23505') THEN 'refused' ELSE 'refused ' || SQLSTATE || ': ' || SQLERRM END;
  END;
END $$;
CREATE FUNCTION pg_temp.try_task(p_from text, p_to text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE v uuid := pg_temp.task_at(p_from);
BEGIN
  BEGIN
    UPDATE tasker.tasks SET state = p_to WHERE task_uuid = v AND state = p_from;
    RETURN 'accepted (' || (SELECT state FROM tasker.tasks WHERE task_uuid = v) || ')';
  EXCEPTION WHEN others THEN
    -- 23503: no edge (from, to). A move into a hand-back state may trip the result-audit
    -- unique (step, attempt) first (23505): refused all the same.
    RETURN CASE WHEN SQLSTATE IN ('23503', '23505') THEN 'refused' ELSE 'refused ' || SQLSTATE || ': ' || SQLERRM END;
  END;
END $$;

-- =============================================================================================
-- 1. The edge tables themselves
-- =============================================================================================
SELECT set_eq($$SELECT state FROM tasker.step_states$$,
              ARRAY['pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration',
                    'waiting_for_retry', 'complete', 'error', 'cancelled', 'resolved_manually'],
              'step states: the names of DESIGN §3');
SELECT set_eq($$SELECT state FROM tasker.task_states$$,
              ARRAY['pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
                    'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures', 'complete', 'error',
                    'cancelled', 'resolved_manually'],
              'task states: the names of DESIGN §3');
SELECT set_eq($$SELECT state FROM tasker.task_states WHERE is_terminal$$, ARRAY['complete', 'error', 'cancelled', 'resolved_manually'],
              'task terminal states: complete, error, cancelled, resolved_manually');
SELECT set_eq($$SELECT state FROM tasker.step_states WHERE satisfies_dependencies$$, ARRAY['complete', 'resolved_manually'],
              'step states that satisfy dependencies: complete, resolved_manually');
-- Terminal means the machinery never moves the row again; only an operator's recovery of a task
-- given up on (tasker.recover_task) does: task error → pending, step cancelled → pending.
SELECT set_eq($$SELECT 'step', e.from_state, e.to_state, e.event FROM tasker.step_state_edges e
                JOIN tasker.step_states s ON s.state = e.from_state WHERE s.is_terminal
                UNION ALL
                SELECT 'task', e.from_state, e.to_state, e.event FROM tasker.task_state_edges e
                JOIN tasker.task_states s ON s.state = e.from_state WHERE s.is_terminal$$,
              $$VALUES ('step', 'cancelled', 'pending', 'recover'), ('task', 'error', 'pending', 'recover')$$,
              'the only edges out of a terminal state are the recovery edges (event recover)');
SELECT is((SELECT count(*) FROM tasker.step_states s WHERE NOT s.is_terminal
             AND NOT EXISTS (SELECT 1 FROM tasker.step_state_edges e WHERE e.from_state = s.state))
          + (SELECT count(*) FROM tasker.task_states s WHERE NOT s.is_terminal
             AND NOT EXISTS (SELECT 1 FROM tasker.task_state_edges e WHERE e.from_state = s.state)),
          0::bigint, 'every non-terminal state has a way out');
SELECT is(ARRAY(SELECT s.state FROM tasker.step_states s WHERE pg_temp.path('step', 'pending', s.state) IS NULL),
          '{}'::text[], 'every step state is reachable from pending');
SELECT is(ARRAY(SELECT s.state FROM tasker.task_states s WHERE pg_temp.path('task', 'pending', s.state) IS NULL),
          '{}'::text[], 'every task state is reachable from pending');
-- The size of the tables as of this writing: a change of the state machines must show up here.
SELECT is((SELECT count(*) FROM tasker.step_state_edges), 36::bigint, 'step edges: 36 (2 creation, 14 protocol, 20 operator/cancel/recover)');
SELECT is((SELECT count(*) FROM tasker.task_state_edges), 66::bigint, 'task edges: 66 (65 + the recovery error → pending)');

-- =============================================================================================
-- 2. Every legal edge: one UPDATE, one transition row with the edge's event
-- =============================================================================================
SELECT is(pg_temp.create_step_in(e.to_state), format('1 >%s:%s', e.to_state, e.event),
          format('step creation in %s writes one transition (%s)', e.to_state, e.event))
FROM tasker.step_state_edges e WHERE e.from_state IS NULL ORDER BY e.to_state;
SELECT is(pg_temp.take_step_edge(e.from_state, e.to_state), format('1 1 %s>%s:%s', e.from_state, e.to_state, e.event),
          format('step edge %s → %s (%s)', e.from_state, e.to_state, e.event))
FROM tasker.step_state_edges e WHERE e.from_state IS NOT NULL ORDER BY e.from_state, e.to_state;
SELECT is(pg_temp.create_task_in(e.to_state), format('1 >%s:%s', e.to_state, e.event),
          format('task creation in %s writes one transition (%s)', e.to_state, e.event))
FROM tasker.task_state_edges e WHERE e.from_state IS NULL ORDER BY e.to_state;
SELECT is(pg_temp.take_task_edge(e.from_state, e.to_state), format('1 1 %s>%s:%s', e.from_state, e.to_state, e.event),
          format('task edge %s → %s (%s)', e.from_state, e.to_state, e.event))
FROM tasker.task_state_edges e WHERE e.from_state IS NOT NULL ORDER BY e.from_state, e.to_state;

-- =============================================================================================
-- 3. Every other pair of states is refused (the FK (from_state, to_state) → edges: 23503)
-- (the row-by-row list is exhaustive; the named cases below also check the row and the history)
-- =============================================================================================
SELECT is(pg_temp.try_step(f.state, t.state), 'refused', format('step %s → %s is refused', f.state, t.state))
FROM tasker.step_states f, tasker.step_states t
WHERE f.state <> t.state
  AND NOT EXISTS (SELECT 1 FROM tasker.step_state_edges e WHERE e.from_state = f.state AND e.to_state = t.state)
ORDER BY f.state, t.state;
SELECT is(pg_temp.try_task(f.state, t.state), 'refused', format('task %s → %s is refused', f.state, t.state))
FROM tasker.task_states f, tasker.task_states t
WHERE f.state <> t.state
  AND NOT EXISTS (SELECT 1 FROM tasker.task_state_edges e WHERE e.from_state = f.state AND e.to_state = t.state)
ORDER BY f.state, t.state;

-- The classic illegal moves, by name: refused, the row unchanged, no transition written.
SELECT pg_temp.step_at('complete') AS s_complete \gset
SELECT pg_temp.step_at('pending') AS s_pending \gset
SELECT pg_temp.step_at('cancelled') AS s_cancelled \gset
SELECT pg_temp.task_at('complete') AS t_complete \gset
CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM tasker.workflow_step_transitions) AS st, (SELECT count(*) FROM tasker.task_transitions) AS tt;
SELECT throws_ok(format('UPDATE tasker.workflow_steps SET state = %L WHERE workflow_step_uuid = %L', 'pending', :'s_complete'),
                 '23503', NULL, 'step complete → pending is refused');
SELECT throws_ok(format('UPDATE tasker.workflow_steps SET state = %L WHERE workflow_step_uuid = %L', 'in_progress', :'s_pending'),
                 '23503', NULL, 'step pending → in_progress is refused (a claim needs a dispatch first)');
SELECT throws_ok(format('UPDATE tasker.workflow_steps SET state = %L WHERE workflow_step_uuid = %L', 'enqueued', :'s_cancelled'),
                 '23503', NULL, 'step cancelled → enqueued is refused');
SELECT throws_ok(format('UPDATE tasker.tasks SET state = %L WHERE task_uuid = %L', 'steps_in_process', :'t_complete'),
                 '23503', NULL, 'task complete → steps_in_process is refused');
SELECT is((SELECT array_agg(state ORDER BY k) FROM (VALUES (1, (SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = :'s_complete')),
                                                           (2, (SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = :'s_pending')),
                                                           (3, (SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = :'s_cancelled')),
                                                           (4, (SELECT state FROM tasker.tasks WHERE task_uuid = :'t_complete'))) x(k, state)),
          ARRAY['complete', 'pending', 'cancelled', 'complete'], 'refused changes leave the rows as they were');
SELECT is((SELECT row((SELECT count(*) FROM tasker.workflow_step_transitions) - st, (SELECT count(*) FROM tasker.task_transitions) - tt)::text FROM before),
          '(0,0)', 'refused changes write no transition rows');

-- =============================================================================================
-- 4. Statements, not rows: batches, no-op updates, the event override, creation refusals
-- =============================================================================================
SELECT pg_temp.step_at('enqueued') AS b1 \gset
SELECT pg_temp.step_at('enqueued') AS b2 \gset
SELECT pg_temp.step_at('enqueued') AS b3 \gset
SELECT pg_temp.step_at('complete') AS b4 \gset
SELECT throws_ok(format('UPDATE tasker.workflow_steps SET state = %L WHERE workflow_step_uuid IN (%L, %L)', 'in_progress', :'b1', :'b4'),
                 '23503', NULL, 'one illegal row refuses the whole statement');
SELECT is((SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = :'b1'), 'enqueued', '… the legal row of it did not move either');
UPDATE tasker.workflow_steps SET state = 'in_progress', attempts = 1, attempt_no = 1 WHERE workflow_step_uuid IN (:'b1', :'b2', :'b3') AND state = 'enqueued';
SELECT is((SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid IN (:'b1', :'b2', :'b3') AND from_state = 'enqueued'
             AND to_state = 'in_progress' AND event = 'claim' AND attempt = 1), 3::bigint,
          'a three-row UPDATE writes three transition rows (with the attempt number)');
SELECT ok((SELECT count(DISTINCT ordinal) = 3 FROM tasker.workflow_step_transitions WHERE workflow_step_uuid IN (:'b1', :'b2', :'b3')
             AND to_state = 'in_progress'), 'each transition row has its own ordinal');
CREATE TEMP TABLE nb AS SELECT count(*) AS n FROM tasker.workflow_step_transitions;
UPDATE tasker.workflow_steps SET attempts = 2, attempt_no = 2, updated_at = now() WHERE workflow_step_uuid = :'b1';
UPDATE tasker.workflow_steps SET state = 'in_progress' WHERE workflow_step_uuid = :'b2';
SELECT is((SELECT count(*) FROM tasker.workflow_step_transitions) - (SELECT n FROM nb), 0::bigint,
          'an UPDATE that does not change the state writes no transition');
SELECT set_config('tasker.event', 'complete_manually', true) \g /dev/null
SELECT set_config('tasker.actor', 'op-sm', true) \g /dev/null
SELECT set_config('tasker.reason', 'by hand', true) \g /dev/null
UPDATE tasker.workflow_steps SET state = 'complete' WHERE workflow_step_uuid = :'b3';
SELECT is((SELECT row(from_state, to_state, event, processor, metadata->>'reason')::text FROM tasker.workflow_step_transitions
           WHERE workflow_step_uuid = :'b3' ORDER BY ordinal DESC LIMIT 1),
          '(in_progress,complete,complete_manually,op-sm,"by hand")', 'tasker.event/actor/reason override event, processor, reason');
SELECT set_config('tasker.event', '', true) \g /dev/null
SELECT set_config('tasker.actor', '', true) \g /dev/null
SELECT set_config('tasker.reason', '', true) \g /dev/null
UPDATE tasker.workflow_steps SET state = 'enqueued_for_orchestration', claimed_by = 'w-sm' WHERE workflow_step_uuid = :'b2';
SELECT is((SELECT row(event, processor)::text FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = :'b2' ORDER BY ordinal DESC LIMIT 1),
          '(hand_back_success,w-sm)', 'worker-driven edges record the worker (claimed_by) as processor');
SELECT is((SELECT count(*) FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = :'b2'), 1::bigint,
          'a hand-back edge writes one result-audit row');
SELECT throws_ok(format('INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, named_step_uuid, name, state, attempts, max_attempts, retryable, unfinished_parents) VALUES (%L, %L, %L, %L, %L, 0, 3, true, 0)',
                        '01900000-0000-7000-8000-000000000001', :'host', :'nstep', 'x', 'in_progress'),
                 'TK409', 'step 01900000-0000-7000-8000-000000000001 cannot be created in state in_progress',
                 'a step cannot be created in_progress');
SELECT throws_ok(format('INSERT INTO tasker.workflow_steps (workflow_step_uuid, task_uuid, named_step_uuid, name, state, attempts, max_attempts, retryable, unfinished_parents) VALUES (%L, %L, %L, %L, %L, 0, 3, true, 0)',
                        '01900000-0000-7000-8000-000000000002', :'host', :'nstep', 'x', 'complete'),
                 'TK409', 'step 01900000-0000-7000-8000-000000000002 cannot be created in state complete',
                 'a step cannot be created complete');
SELECT throws_ok(format('INSERT INTO tasker.tasks (task_uuid, task_template_uuid, namespace, state, identity_hash, correlation_id) VALUES (%L, %L, %L, %L, %L, %L)',
                        '01900000-0000-7000-8000-000000000003', :'tpl', 'tap_sm', 'complete', 'sm:x3', gen_random_uuid()),
                 'TK409', 'task 01900000-0000-7000-8000-000000000003 cannot be created in state complete',
                 'a task cannot be created complete');
SELECT throws_ok(format('INSERT INTO tasker.tasks (task_uuid, task_template_uuid, namespace, state, identity_hash, correlation_id) VALUES (%L, %L, %L, %L, %L, %L)',
                        '01900000-0000-7000-8000-000000000004', :'tpl', 'tap_sm', 'waiting_for_retry', 'sm:x4', gen_random_uuid()),
                 'TK409', 'task 01900000-0000-7000-8000-000000000004 cannot be created in state waiting_for_retry',
                 'a task cannot be created waiting_for_retry');
SELECT throws_ok($$UPDATE tasker.task_transitions SET event = 'rewritten'$$, 'TK409', 'task_transitions is append-only',
                 'task transitions refuse UPDATE');
SELECT throws_ok($$UPDATE tasker.workflow_step_transitions SET event = 'rewritten'$$, 'TK409', 'workflow_step_transitions is append-only',
                 'step transitions refuse UPDATE');
SELECT throws_ok($$UPDATE tasker.workflow_step_transitions SET event = event WHERE false$$, 'TK409', 'workflow_step_transitions is append-only',
                 'step transitions refuse even an UPDATE that matches nothing (statement trigger)');

-- The state columns' CHECK lists (migration 0020) are exactly the state tables.
SELECT set_eq($$SELECT unnest(regexp_matches(pg_get_constraintdef(oid), '''([a-z_]+)''', 'g'))
                FROM pg_constraint WHERE conname = 'workflow_steps_state_check'$$,
              $$SELECT state FROM tasker.step_states$$, 'workflow_steps.state CHECK lists exactly tasker.step_states');
SELECT set_eq($$SELECT unnest(regexp_matches(pg_get_constraintdef(oid), '''([a-z_]+)''', 'g'))
                FROM pg_constraint WHERE conname = 'tasks_state_check'$$,
              $$SELECT state FROM tasker.task_states$$, 'tasks.state CHECK lists exactly tasker.task_states');
SELECT throws_like(format('UPDATE tasker.workflow_steps SET state = %L WHERE workflow_step_uuid = %L', 'bogus', :'b2'),
                   '%workflow_steps_state_check%', 'a step state outside the list is refused');
SELECT throws_like(format('UPDATE tasker.workflow_steps SET state = %L WHERE workflow_step_uuid = %L', 'pending', :'b2'),
                   'illegal step state change enqueued_for_orchestration → pending%', 'an illegal change names the move');

SELECT * FROM finish();
ROLLBACK;
