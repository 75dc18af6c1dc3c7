-- readiness_agreement.sql — randomized: the hot-path readiness test agrees with the one definition.
--
-- DESIGN §3: get_step_readiness_status() defines readiness by walking the edges; hot paths use
-- tasker.step_is_ready() on the step row, which trusts the unfinished_parents counter. Here many
-- random DAG templates (3–12 steps, random acyclic dependencies, random retry policies) are run as
-- tasks and driven into random states through the real API only — create_task, claim, hand back
-- (success, failure, non-retryable failure, retry_after, stale and duplicate hand-backs),
-- heartbeat, process_completions, enqueue_ready_steps, resolve_step (all three actions), cancel_task
-- and the sweep — plus two TEST-ONLY clock moves: next_retry_at is moved to now() or into the past
-- (now() is frozen inside the transaction), and some leases are expired (lease_expires_at in the
-- past) for the sweep to find. At four checkpoints per round, for every step of every task:
--   step_is_ready(row) = get_step_readiness_status().ready_for_execution
--   unfinished_parents = total_parents - completed_parents
--   get_task_execution_context().ready_steps = number of ready steps
-- and a few invariants (attempts within max_attempts, dispatched steps have their message for
-- their attempt, task state agrees with its steps, stale hand-backs never accepted).
-- Some templates are dynamic (issue 10): a decision choosing among branches (one may be a batch
-- planner whose workers run under a random parallelism and failure strategy), a deferred
-- convergence step and a tail. Their DAGs grow at run time: the decisions and batch plans that
-- the random workers hand back (now and then an invalid one) and that operators complete by hand
-- go through the real functions, and the same comparisons run after every phase. Extra
-- invariants: no step exists twice in a task, every created step's creator is complete, and no
-- batch has more workers in flight than its parallelism.
--
-- Reproducible: the seed is printed as a TAP comment; rerun a failure with
--   TASKER_TAP_SEED=<seed> make check-db ONLY=sql      (or pg_prove … with that variable set)
-- (setseed() drives every choice, made over rows in creation order, never in uuid or queue
-- order, so the same seed replays the same run.)
-- Hand-backs, heartbeats and messages name an attempt by attempt_no (the fencing token, never
-- reset); attempts (reset by reset_for_retry) is the retry budget that readiness looks at.

BEGIN;
SET LOCAL client_min_messages = warning;
-- Thousands of API calls in one transaction leave the tables full of dead row versions, which
-- inflates the planner's costs until JIT compiles (and optimizes) nearly every query: that made this
-- file 20-100x slower, depending on what the database held before. JIT has nothing to test here.
SET LOCAL jit = off;
SELECT plan(96);

\set seed ''
\getenv seed TASKER_TAP_SEED
SELECT coalesce(nullif(:'seed', '')::bigint, floor(random() * 2147483647)::bigint) AS seed \gset
SELECT setseed(:seed / 2147483648.0) \g /dev/null
SELECT diag(format('readiness_agreement seed = %s (rerun: TASKER_TAP_SEED=%s)', :seed, :seed));

-- ---------------------------------------------------------------------------------------------
-- Bookkeeping
-- ---------------------------------------------------------------------------------------------
CREATE TEMP TABLE tpls (seq serial PRIMARY KEY, name text NOT NULL, n_steps integer NOT NULL, n_edges integer NOT NULL);
-- final_checks: checkpoints seen since the task finished; after two, its steps no longer change
-- and are not compared again (keeps the run short).
CREATE TEMP TABLE tasks (seq serial PRIMARY KEY, task_uuid uuid NOT NULL UNIQUE, tpl text NOT NULL,
                         final_checks integer NOT NULL DEFAULT 0);
CREATE TEMP TABLE cmp (round integer, phase text, task_uuid uuid, workflow_step_uuid uuid, state text,
                       hot boolean, def boolean, unfinished integer, total integer, completed integer);
CREATE TEMP TABLE ctxcmp (round integer, phase text, task_uuid uuid, ctx_ready integer, def_ready integer);
CREATE TEMP TABLE inv (round integer, phase text, what text, detail text);
CREATE TEMP TABLE api_errors (round integer, phase text, call text, sqlstate text, message text);
CREATE TEMP TABLE counts (what text PRIMARY KEY, n integer NOT NULL DEFAULT 0);

CREATE FUNCTION pg_temp.bump(p_what text, p_n integer DEFAULT 1) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO counts VALUES (p_what, p_n) ON CONFLICT (what) DO UPDATE SET n = counts.n + EXCLUDED.n
$$;
CREATE FUNCTION pg_temp.rnd(p_n integer) RETURNS integer
LANGUAGE sql VOLATILE AS $$ SELECT floor(random() * p_n)::integer $$;
CREATE FUNCTION pg_temp.chance(p double precision) RETURNS boolean
LANGUAGE sql VOLATILE AS $$ SELECT random() < p $$;
CREATE FUNCTION pg_temp.err(p_round integer, p_phase text, p_call text, p_state text, p_msg text) RETURNS void
LANGUAGE sql AS $$
  INSERT INTO api_errors VALUES (p_round, p_phase, p_call, p_state, p_msg)
$$;

-- Random templates: step i may depend on any earlier step (so the DAG is acyclic by construction).
CREATE FUNCTION pg_temp.make_templates(p_n integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  k integer;
  p double precision;
  steps jsonb;
  deps jsonb;
  edges integer;
BEGIN
  FOR t IN 1 .. p_n LOOP
    k := 3 + pg_temp.rnd(10);
    p := 0.15 + random() * 0.5;
    steps := '[]';
    edges := 0;
    FOR i IN 1 .. k LOOP
      deps := '[]';
      FOR j IN 1 .. i - 1 LOOP
        IF pg_temp.chance(p) THEN
          deps := deps || to_jsonb('s' || j);
          edges := edges + 1;
        END IF;
      END LOOP;
      steps := steps || jsonb_build_array(jsonb_build_object(
        'name', 's' || i, 'handler', jsonb_build_object('callable', 'rnd'), 'dependencies', deps,
        'retry', jsonb_build_object('max_attempts', 1 + pg_temp.rnd(4), 'retryable', pg_temp.chance(0.8),
                                    'backoff', (ARRAY['none', 'linear', 'exponential', 'fibonacci'])[1 + pg_temp.rnd(4)],
                                    'backoff_base_ms', 100 + pg_temp.rnd(1900))));
    END LOOP;
    PERFORM tasker.register_task_template(jsonb_build_object('name', 'rt' || t, 'namespace_name', 'tap_rdy',
      'identity_strategy', 'always_unique', 'steps', steps));
    INSERT INTO tpls (name, n_steps, n_edges) VALUES ('rt' || t, k, edges);
  END LOOP;
END $$;

-- Random dynamic templates. The first three: s1 and the batch planner `plan` (roots) → `work`
-- (batch_worker, parallelism 1–3, a random failure strategy) → conv (deferred; on work, sometimes
-- on s1 too) → tail. The others: s1 → dec (decision) → br1..brk (some with a child brX_c; with
-- probability 0.6 one more branch is `plan` → `work`) → conv (deferred; depends on every branch,
-- child and worker, and sometimes on s1 too, which makes it exist from the start behind a gate)
-- → tail.
CREATE FUNCTION pg_temp.make_dyn_templates(p_n integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  k integer;
  steps jsonb;
  conv_deps jsonb;
  retry jsonb;
BEGIN
  FOR t IN 1 .. p_n LOOP
    k := 2 + pg_temp.rnd(3);
    retry := jsonb_build_object('max_attempts', 1 + pg_temp.rnd(3), 'backoff', 'linear', 'backoff_base_ms', 100);
    steps := jsonb_build_array(
      jsonb_build_object('name', 's1', 'handler', jsonb_build_object('callable', 'rnd'), 'retry', retry),
      jsonb_build_object('name', 'dec', 'type', 'decision', 'handler', jsonb_build_object('callable', 'rnd'),
                         'dependencies', '["s1"]'::jsonb, 'retry', retry));
    conv_deps := CASE WHEN pg_temp.chance(0.5) THEN '["s1"]'::jsonb ELSE '[]'::jsonb END;
    IF t <= 3 THEN
      steps := steps - 1;  -- no decision: the planner is a root
      k := 0;
    END IF;
    FOR i IN 1 .. k LOOP
      steps := steps || jsonb_build_array(jsonb_build_object('name', 'br' || i, 'handler', jsonb_build_object('callable', 'rnd'),
                                                             'dependencies', '["dec"]'::jsonb, 'retry', retry));
      conv_deps := conv_deps || to_jsonb('br' || i);
      IF pg_temp.chance(0.4) THEN
        steps := steps || jsonb_build_array(jsonb_build_object('name', 'br' || i || '_c', 'handler', jsonb_build_object('callable', 'rnd'),
                                                               'dependencies', jsonb_build_array('br' || i), 'retry', retry));
        conv_deps := conv_deps || to_jsonb('br' || i || '_c');
      END IF;
    END LOOP;
    IF t <= 3 OR pg_temp.chance(0.6) THEN
      steps := steps || jsonb_build_array(
        jsonb_build_object('name', 'plan', 'type', 'batchable', 'handler', jsonb_build_object('callable', 'rnd'),
                           'dependencies', CASE WHEN t <= 3 THEN '[]' ELSE '["dec"]' END::jsonb, 'retry', retry),
        jsonb_build_object('name', 'work', 'type', 'batch_worker', 'handler', jsonb_build_object('callable', 'rnd'),
                           'dependencies', '["plan"]'::jsonb, 'retry', retry,
                           'batch_config', jsonb_build_object('parallelism', 1 + pg_temp.rnd(3), 'batch_size', 10,
                             'failure_strategy', (ARRAY['continue_on_failure', 'fail_fast', 'isolate'])[1 + pg_temp.rnd(3)])));
      conv_deps := conv_deps || '["work"]'::jsonb;
    END IF;
    steps := steps || jsonb_build_array(
      jsonb_build_object('name', 'conv', 'type', 'deferred_convergence', 'handler', jsonb_build_object('callable', 'rnd'),
                         'dependencies', conv_deps, 'retry', retry),
      jsonb_build_object('name', 'tail', 'handler', jsonb_build_object('callable', 'rnd'), 'dependencies', '["conv"]'::jsonb,
                         'retry', retry));
    PERFORM tasker.register_task_template(jsonb_build_object('name', 'dt' || t, 'namespace_name', 'tap_rdy',
      'identity_strategy', 'always_unique', 'steps', steps));
    INSERT INTO tpls (name, n_steps, n_edges)
    VALUES ('dt' || t, jsonb_array_length(steps),
            (SELECT sum(jsonb_array_length(coalesce(x->'dependencies', '[]')))::integer FROM jsonb_array_elements(steps) x));
  END LOOP;
END $$;

-- A random outcome for a decision or batchable step (p_invalid: the chance of one the
-- orchestrator must refuse); any other step: a plain result.
CREATE FUNCTION pg_temp.rand_result(p_type text, p_named uuid, p_invalid double precision DEFAULT 0.1) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  names text[];
  n integer;
BEGIN
  IF p_type = 'decision' THEN
    IF pg_temp.chance(p_invalid) THEN
      RETURN '{"decision_point_outcome": {"type": "create_steps", "step_names": ["no_such_branch"]}}';
    END IF;
    IF pg_temp.chance(0.1) THEN
      RETURN '{"decision_point_outcome": {"type": "no_branches"}}';
    END IF;
    SELECT array_agg(c.name ORDER BY c.position) INTO names
    FROM tasker.named_step_edges e JOIN tasker.named_steps c ON c.named_step_uuid = e.to_named_step_uuid
    WHERE e.from_named_step_uuid = p_named AND e.kind = 'declared';
    SELECT array_agg(x ORDER BY o) INTO names FROM unnest(names) WITH ORDINALITY AS u(x, o) WHERE pg_temp.chance(0.5);
    RETURN jsonb_build_object('decision_point_outcome', jsonb_build_object('type', 'create_steps',
      'step_names', to_jsonb(coalesce(names, ARRAY['br1']))));
  ELSIF p_type = 'batchable' THEN
    IF pg_temp.chance(p_invalid) THEN
      RETURN '{"batch_processing_outcome": {"type": "create_batches", "cursor_configs": [{"batch_id": "a", "start_cursor": 0, "end_cursor": 20}, {"batch_id": "b", "start_cursor": 10, "end_cursor": 30}]}}';
    END IF;
    IF pg_temp.chance(0.15) THEN
      RETURN CASE WHEN pg_temp.chance(0.5) THEN '{"batch_processing_outcome": "no_batches"}'
                  ELSE '{"batch_processing_outcome": {"type": "no_batches"}}' END::jsonb;
    END IF;
    n := 1 + pg_temp.rnd(5);
    RETURN jsonb_build_object('batch_processing_outcome', jsonb_build_object('type', 'create_batches',
      'cursor_configs', (SELECT jsonb_agg(jsonb_build_object('batch_id', lpad(g::text, 3, '0'), 'start_cursor', (g - 1) * 10,
                                                             'end_cursor', g * 10, 'batch_size', 10) ORDER BY g)
                         FROM generate_series(1, n) g)));
  END IF;
  RETURN jsonb_build_object('v', pg_temp.rnd(1000));
END $$;

CREATE FUNCTION pg_temp.create_tasks(p_round integer, p_n integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_tpl text;
  v uuid;
  k integer;
BEGIN
  FOR i IN 1 .. p_n LOOP
    k := 1 + pg_temp.rnd((SELECT count(*)::integer FROM tpls));
    SELECT name INTO v_tpl FROM tpls WHERE seq = k;
    BEGIN
      SELECT c.task_uuid INTO v FROM tasker.create_task(jsonb_build_object('name', v_tpl, 'namespace', 'tap_rdy',
        'context', jsonb_build_object('round', p_round, 'i', i))) c;
      INSERT INTO tasks (task_uuid, tpl) VALUES (v, v_tpl);
    EXCEPTION WHEN others THEN
      PERFORM pg_temp.err(p_round, 'create', 'create_task', SQLSTATE, SQLERRM);
    END;
  END LOOP;
END $$;

-- The comparison, over every step of every (still changing) task (FULL JOIN: a step missing from
-- the readiness function, or a row without a step, shows up as a mismatch).
CREATE FUNCTION pg_temp.checkpoint(p_round integer, p_phase text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  -- The same dead row versions make the planner pick seq scans for the readiness queries (10x
  -- slower). Index scans only, for the checkpoint's own queries; the API phases keep the defaults.
  PERFORM set_config('enable_seqscan', 'off', true);
  CREATE TEMP TABLE IF NOT EXISTS rs AS SELECT * FROM tasker.get_step_readiness_status(NULL) WITH NO DATA;
  TRUNCATE rs;
  INSERT INTO rs SELECT x.* FROM tasks t CROSS JOIN LATERAL tasker.get_step_readiness_status(t.task_uuid) x WHERE t.final_checks < 2;
  INSERT INTO cmp
  WITH s AS (SELECT s.* FROM tasker.workflow_steps s JOIN tasks t USING (task_uuid) WHERE t.final_checks < 2)
  SELECT p_round, p_phase, coalesce(s.task_uuid, r.task_uuid), coalesce(s.workflow_step_uuid, r.workflow_step_uuid), s.state,
         -- the hot path: the counter, and for batch workers their batch's parallelism (advance_tasks)
         tasker.step_is_ready(s.state, s.unfinished_parents, s.attempts, s.retryable, s.max_attempts, s.next_retry_at)
           AND (s.batch_parallelism IS NULL
                OR EXISTS (SELECT 1 FROM tasker.batch_line(ARRAY[s.task_uuid]) b
                           WHERE b.workflow_step_uuid = s.workflow_step_uuid AND b.goes)),
         r.ready_for_execution, s.unfinished_parents, r.total_parents, r.completed_parents
  FROM s FULL JOIN rs r ON r.workflow_step_uuid = s.workflow_step_uuid;

  INSERT INTO ctxcmp
  SELECT p_round, p_phase, t.task_uuid, c.ready_steps,
         (SELECT count(*) FILTER (WHERE x.ready_for_execution)::integer FROM rs x WHERE x.task_uuid = t.task_uuid)
  FROM tasks t CROSS JOIN LATERAL tasker.get_task_execution_context(t.task_uuid) c
  WHERE t.final_checks < 2;
  UPDATE tasks t SET final_checks = t.final_checks + 1
  FROM tasker.tasks x WHERE x.task_uuid = t.task_uuid AND x.state IN ('complete', 'error', 'cancelled', 'resolved_manually');

  -- Invariants.
  INSERT INTO inv
  SELECT p_round, p_phase, 'attempts > max_attempts', s.workflow_step_uuid || ' ' || s.attempts || '/' || s.max_attempts
  FROM tasker.workflow_steps s JOIN tasks t USING (task_uuid) WHERE s.attempts > s.max_attempts;
  INSERT INTO inv
  SELECT p_round, p_phase, 'dispatched step without its message',
         s.workflow_step_uuid || ' ' || s.state || ' attempt_no ' || s.attempt_no || ' msg ' || coalesce(s.dispatch_msg_id::text, 'null')
  FROM tasker.workflow_steps s JOIN tasks t USING (task_uuid)
  WHERE s.state IN ('enqueued', 'in_progress')
    AND NOT EXISTS (SELECT 1 FROM pgmq.q_tasker_dispatch_tap_rdy q
                    WHERE q.msg_id = s.dispatch_msg_id AND q.message->>'step_uuid' = s.workflow_step_uuid::text
                      AND (q.message->>'attempt')::integer = s.attempt_no + CASE WHEN s.state = 'enqueued' THEN 1 ELSE 0 END);
  INSERT INTO inv
  SELECT p_round, p_phase, 'complete task with an unfinished step', t.task_uuid::text
  FROM tasker.tasks t JOIN tasks USING (task_uuid)
  WHERE t.state = 'complete'
    AND EXISTS (SELECT 1 FROM tasker.workflow_steps s WHERE s.task_uuid = t.task_uuid AND s.state NOT IN ('complete', 'resolved_manually'));
  INSERT INTO inv
  SELECT p_round, p_phase, 'finished steps but task not complete', t.task_uuid || ' ' || t.state
  FROM tasker.tasks t JOIN tasks USING (task_uuid)
  WHERE t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
    AND NOT EXISTS (SELECT 1 FROM tasker.workflow_steps s WHERE s.task_uuid = t.task_uuid AND s.state NOT IN ('complete', 'resolved_manually'));
  INSERT INTO inv
  SELECT p_round, p_phase, 'step exists twice', s.task_uuid || ' ' || s.name
  FROM tasker.workflow_steps s JOIN tasks t USING (task_uuid)
  GROUP BY s.task_uuid, s.name HAVING count(*) > 1;
  INSERT INTO inv
  SELECT p_round, p_phase, 'created by a step that is not complete', s.workflow_step_uuid || ' ' || s.name || ' by ' || c.name || ' ' || c.state
  FROM tasker.workflow_steps s JOIN tasks t USING (task_uuid)
  JOIN tasker.workflow_steps c ON c.workflow_step_uuid = s.created_by
  WHERE c.state <> 'complete';
  INSERT INTO inv
  SELECT p_round, p_phase, 'batch parallelism exceeded', s.created_by || ': ' || count(*) || ' in flight, parallelism ' || min(s.batch_parallelism)
  FROM tasker.workflow_steps s JOIN tasks t USING (task_uuid)
  WHERE s.batch_parallelism IS NOT NULL
    AND s.state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
  GROUP BY s.created_by HAVING count(*) > min(s.batch_parallelism);
  PERFORM pg_temp.bump('checkpoints');
  PERFORM set_config('enable_seqscan', 'on', true);
END $$;

-- Workers: claim every dispatched step. (Everything, not a random number: which messages a partial
-- read returns follows queue order, and that follows UUIDv7 tie-breaks that setseed() does not
-- control, so a seed would not replay. What happens to each claimed step is random below.)
CREATE FUNCTION pg_temp.phase_claim(p_round integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE n integer;
BEGIN
  SELECT count(*) INTO n FROM tasker.tasker_claim_and_execute_step('tap_rdy', 1000, 300, 'w' || pg_temp.rnd(3));
  PERFORM pg_temp.bump('claimed', n);
EXCEPTION WHEN others THEN
  PERFORM pg_temp.err(p_round, 'claim', 'tasker_claim_and_execute_step', SQLSTATE, SQLERRM);
END $$;

-- Workers: decide, per running step (in creation order), what happens to it; hand back as one
-- batch. Some stale or duplicate hand-backs of steps that are not running are mixed in: those must
-- never be accepted.
CREATE FUNCTION pg_temp.phase_handback(p_round integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  r record;
  batch jsonb := '[]';
  known_stale uuid[] := '{}';
  x double precision;
  e jsonb;
  res record;
BEGIN
  FOR r IN
    SELECT s.workflow_step_uuid, s.attempt_no, s.state, n.step_type, n.named_step_uuid
    FROM tasks t JOIN tasker.workflow_steps s USING (task_uuid) JOIN tasker.named_steps n USING (named_step_uuid)
    WHERE s.state IN ('in_progress', 'complete', 'error', 'waiting_for_retry', 'cancelled')
    ORDER BY t.seq, n.position, s.name
  LOOP
    IF r.state <> 'in_progress' THEN
      -- a late or repeated hand-back from a worker that lost the step
      IF pg_temp.chance(0.03) THEN
        batch := batch || jsonb_build_array(jsonb_build_object('step_uuid', r.workflow_step_uuid,
          'attempt', greatest(r.attempt_no - pg_temp.rnd(2), 0), 'success', pg_temp.chance(0.5)));
        known_stale := known_stale || r.workflow_step_uuid;
      END IF;
      CONTINUE;
    END IF;
    x := random();
    IF x < 0.45 THEN
      batch := batch || jsonb_build_array(jsonb_build_object('step_uuid', r.workflow_step_uuid, 'attempt', r.attempt_no,
        'success', true, 'result', pg_temp.rand_result(r.step_type, r.named_step_uuid), 'worker_id', 'w', 'execution_ms', pg_temp.rnd(100)));
    ELSIF x < 0.75 THEN
      e := jsonb_build_object('message', 'random failure');
      IF pg_temp.chance(0.1) THEN e := e || '{"retryable": false}'; END IF;
      batch := batch || jsonb_build_array(jsonb_build_object('step_uuid', r.workflow_step_uuid, 'attempt', r.attempt_no,
        'success', false, 'error', e, 'retry_after_secs', CASE WHEN pg_temp.chance(0.2) THEN pg_temp.rnd(3) END));
    ELSIF x < 0.83 THEN
      BEGIN
        IF NOT tasker.heartbeat_step(r.workflow_step_uuid, r.attempt_no, 300) THEN
          PERFORM pg_temp.err(p_round, 'handback', 'heartbeat_step', 'false', 'heartbeat of a running step returned false');
        END IF;
      EXCEPTION WHEN others THEN
        PERFORM pg_temp.err(p_round, 'handback', 'heartbeat_step', SQLSTATE, SQLERRM);
      END;
    ELSIF x < 0.90 THEN
      -- TEST-ONLY: the worker vanished; the sweep will find the expired lease.
      UPDATE tasker.workflow_steps SET lease_expires_at = clock_timestamp() - interval '1 second'
      WHERE workflow_step_uuid = r.workflow_step_uuid;
      PERFORM pg_temp.bump('leases expired');
    END IF;
  END LOOP;
  IF jsonb_array_length(batch) = 0 THEN
    RETURN;
  END IF;
  BEGIN
    FOR res IN SELECT * FROM tasker.submit_step_results(batch) LOOP
      PERFORM pg_temp.bump('hand-back ' || res.status);
      IF res.status = 'accepted' AND res.workflow_step_uuid = ANY (known_stale) THEN
        INSERT INTO inv VALUES (p_round, 'handback', 'stale hand-back accepted', res.workflow_step_uuid::text);
      END IF;
    END LOOP;
  EXCEPTION WHEN others THEN
    -- The batch failed as a whole: hand back one by one so that one bad entry does not hide the rest.
    PERFORM pg_temp.bump('batches retried one by one');
    FOR i IN 0 .. jsonb_array_length(batch) - 1 LOOP
      BEGIN
        FOR res IN SELECT * FROM tasker.submit_step_results(jsonb_build_array(batch->i)) LOOP
          PERFORM pg_temp.bump('hand-back ' || res.status);
          IF res.status = 'accepted' AND res.workflow_step_uuid = ANY (known_stale) THEN
            INSERT INTO inv VALUES (p_round, 'handback', 'stale hand-back accepted', res.workflow_step_uuid::text);
          END IF;
        END LOOP;
      EXCEPTION WHEN others THEN
        PERFORM pg_temp.err(p_round, 'handback', 'submit_step_results', SQLSTATE, SQLERRM);
      END;
    END LOOP;
  END;
END $$;

-- The orchestrator consumes the completions (all of them, in one or two batches: a partial
-- batch would depend on queue order, see phase_claim).
CREATE FUNCTION pg_temp.phase_complete(p_round integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE p record;
BEGIN
  FOR i IN 1 .. 1 + pg_temp.rnd(2) LOOP
    SELECT * INTO p FROM tasker.process_completions('tap_rdy', 10000, 30);
    PERFORM pg_temp.bump('completions processed', p.messages);
    IF p.rejected > 0 THEN
      INSERT INTO inv VALUES (p_round, 'complete', 'well-formed completion rejected', p.rejected_details::text);
    END IF;
  END LOOP;
EXCEPTION WHEN others THEN
  PERFORM pg_temp.err(p_round, 'complete', 'process_completions', SQLSTATE, SQLERRM);
END $$;

-- TEST-ONLY clock moves, then maybe the poller.
CREATE FUNCTION pg_temp.phase_time(p_round integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  r record;
  x double precision;
  n integer;
BEGIN
  FOR r IN
    SELECT s.workflow_step_uuid FROM tasks t JOIN tasker.workflow_steps s USING (task_uuid) JOIN tasker.named_steps n USING (named_step_uuid)
    WHERE s.state = 'waiting_for_retry' ORDER BY t.seq, n.position, s.name
  LOOP
    x := random();
    IF x < 0.35 THEN
      UPDATE tasker.workflow_steps SET next_retry_at = now() - make_interval(secs => 0.001 + random() * 5)
      WHERE workflow_step_uuid = r.workflow_step_uuid;
    ELSIF x < 0.5 THEN
      UPDATE tasker.workflow_steps SET next_retry_at = now() WHERE workflow_step_uuid = r.workflow_step_uuid;  -- the boundary
    END IF;
  END LOOP;
  IF pg_temp.chance(0.6) THEN
    BEGIN
      SELECT steps_enqueued INTO n FROM tasker.enqueue_ready_steps(1000);
      PERFORM pg_temp.bump('enqueued by the poller', n);
    EXCEPTION WHEN others THEN
      PERFORM pg_temp.err(p_round, 'time', 'enqueue_ready_steps', SQLSTATE, SQLERRM);
    END;
  END IF;
END $$;

-- Operators and clients: resolve steps in error (and sometimes other unfinished steps), cancel
-- tasks, and now and then the sweep.
CREATE FUNCTION pg_temp.phase_operator(p_round integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  r record;
  v_action text;
  x double precision;
BEGIN
  FOR r IN
    SELECT t.task_uuid, s.workflow_step_uuid, s.state, n.step_type, n.named_step_uuid
    FROM tasks t JOIN tasker.tasks tk USING (task_uuid) JOIN tasker.workflow_steps s USING (task_uuid)
    JOIN tasker.named_steps n USING (named_step_uuid)
    WHERE tk.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
      AND s.state NOT IN ('complete', 'resolved_manually', 'cancelled')
    ORDER BY t.seq, n.position, s.name
  LOOP
    x := random();
    IF r.state = 'error' AND x < 0.5 THEN
      v_action := (ARRAY['reset_for_retry', 'reset_for_retry', 'resolve_manually', 'complete_manually'])[1 + pg_temp.rnd(4)];
    ELSIF r.state <> 'error' AND x < 0.02 THEN
      v_action := (ARRAY['resolve_manually', 'complete_manually'])[1 + pg_temp.rnd(2)];
    ELSE
      CONTINUE;
    END IF;
    -- the task may have finished through an earlier resolve in this loop
    CONTINUE WHEN (SELECT state FROM tasker.tasks WHERE task_uuid = r.task_uuid) IN ('complete', 'error', 'cancelled', 'resolved_manually');
    BEGIN
      PERFORM tasker.resolve_step(r.task_uuid, r.workflow_step_uuid, v_action,
        -- a decision or planner completed by hand needs an outcome it can act on
        CASE WHEN v_action = 'complete_manually' THEN pg_temp.rand_result(r.step_type, r.named_step_uuid, 0) END,
        'random operator', 'op');
      PERFORM pg_temp.bump('resolve ' || v_action);
    EXCEPTION WHEN others THEN
      PERFORM pg_temp.err(p_round, 'operator', 'resolve_step ' || v_action || ' on ' || r.state, SQLSTATE, SQLERRM);
    END;
  END LOOP;

  FOR r IN
    SELECT t.task_uuid FROM tasks t JOIN tasker.tasks tk USING (task_uuid)
    WHERE tk.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually') ORDER BY t.seq
  LOOP
    CONTINUE WHEN NOT pg_temp.chance(0.025);
    BEGIN
      PERFORM tasker.cancel_task(r.task_uuid, 'random cancel', 'client');
      PERFORM pg_temp.bump('cancel');
    EXCEPTION WHEN others THEN
      PERFORM pg_temp.err(p_round, 'operator', 'cancel_task', SQLSTATE, SQLERRM);
    END;
  END LOOP;

  IF pg_temp.chance(0.5) OR EXISTS (SELECT 1 FROM tasker.workflow_steps s JOIN tasks USING (task_uuid)
                                    WHERE s.state = 'in_progress' AND s.lease_expires_at < clock_timestamp()) THEN
    BEGIN
      PERFORM pg_temp.bump('sweep rows', (SELECT count(*)::integer FROM tasker.detect_and_transition_stuck_tasks(1000, pg_temp.chance(0.2))));
      PERFORM pg_temp.bump('sweeps');
    EXCEPTION WHEN others THEN
      PERFORM pg_temp.err(p_round, 'operator', 'detect_and_transition_stuck_tasks', SQLSTATE, SQLERRM);
    END;
  END IF;
END $$;

CREATE FUNCTION pg_temp.run_round(p_round integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_temp.create_tasks(p_round, CASE WHEN p_round = 1 THEN 12 ELSE pg_temp.rnd(3) END);
  IF p_round = 1 THEN
    -- and one task of every dynamic template, so that each shape runs whatever the seed
    INSERT INTO tasks (task_uuid, tpl)
    SELECT (SELECT c.task_uuid FROM tasker.create_task(jsonb_build_object('name', x.name, 'namespace', 'tap_rdy',
                                                                        'context', jsonb_build_object('first', x.seq))) c), x.name
    FROM tpls x WHERE x.name LIKE 'dt%' ORDER BY x.seq;
  END IF;
  PERFORM pg_temp.checkpoint(p_round, 'created');
  PERFORM pg_temp.phase_claim(p_round);
  PERFORM pg_temp.phase_handback(p_round);
  PERFORM pg_temp.checkpoint(p_round, 'handed back');
  PERFORM pg_temp.phase_complete(p_round);
  PERFORM pg_temp.checkpoint(p_round, 'completions');
  PERFORM pg_temp.phase_time(p_round);
  PERFORM pg_temp.checkpoint(p_round, 'time+poll');
  PERFORM pg_temp.phase_operator(p_round);
  PERFORM pg_temp.checkpoint(p_round, 'operator');
END $$;

-- ---------------------------------------------------------------------------------------------
-- Run: 10 random static templates, 8 random dynamic ones, 40 rounds.
-- ---------------------------------------------------------------------------------------------
-- Planner trap: the tasker tables hold whatever earlier rolled-back runs left (dead rows, and
-- pg_class.reltuples/relpages from autovacuum, e.g. reltuples = 0 over many pages). The planner
-- scales that density to the pages our transaction fills and believes them nearly empty: the run
-- went from 3 s to minutes. So ANALYZE once this run's first rows are in (ANALYZE counts our own
-- uncommitted rows). Note: ANALYZE writes reltuples/relpages in place, so those two planner numbers
-- outlive the ROLLBACK (autovacuum rewrites them); nothing else does.
SELECT pg_temp.make_templates(10) \g /dev/null
SELECT pg_temp.make_dyn_templates(8) \g /dev/null
SELECT pg_temp.run_round(k) FROM generate_series(1, 2) k \g /dev/null
ANALYZE tasker.tasks, tasker.workflow_steps, tasker.workflow_step_edges, tasker.workflow_step_transitions,
        tasker.workflow_step_result_audit, tasker.task_transitions, tasker.named_steps, tasker.named_step_edges,
        tasker.task_templates, tasker.task_namespaces;
SELECT pg_temp.run_round(k) FROM generate_series(3, 40) k \g /dev/null

SELECT diag(format('templates: %s (steps %s, edges %s); tasks: %s; steps: %s', (SELECT count(*) FROM tpls),
                   (SELECT string_agg(n_steps::text, ',' ORDER BY seq) FROM tpls), (SELECT sum(n_edges) FROM tpls),
                   (SELECT count(*) FROM tasks), (SELECT count(*) FROM tasker.workflow_steps JOIN tasks USING (task_uuid))));
SELECT diag('activity: ' || (SELECT string_agg(what || ' ' || n, ', ' ORDER BY what) FROM counts));
SELECT diag(format('dynamic: %s steps created at run time (%s batch workers), %s outcomes refused',
                   (SELECT count(*) FROM tasker.workflow_steps s JOIN tasks USING (task_uuid) WHERE s.created_by IS NOT NULL),
                   (SELECT count(*) FROM tasker.workflow_steps s JOIN tasks USING (task_uuid) WHERE s.batch_parallelism IS NOT NULL),
                   (SELECT count(*) FROM tasker.workflow_step_transitions x JOIN tasks USING (task_uuid) WHERE x.event = 'invalid_outcome')));
SELECT diag('task states at the end: ' || (SELECT string_agg(state || ' ' || n, ', ' ORDER BY state)
                                            FROM (SELECT t.state, count(*) AS n FROM tasker.tasks t JOIN tasks USING (task_uuid) GROUP BY 1) x));

-- ---------------------------------------------------------------------------------------------
-- Assertions: per round, then overall.
-- ---------------------------------------------------------------------------------------------
SELECT is((SELECT count(*) FROM cmp c WHERE c.round = k AND c.hot IS DISTINCT FROM c.def), 0::bigint,
          format('round %s: step_is_ready(row) = get_step_readiness_status().ready_for_execution for all %s step checks%s', k,
                 (SELECT count(*) FROM cmp c WHERE c.round = k),
                 coalesce(' — first mismatch: ' || (SELECT format('%s step %s in %s: hot %s, definition %s (unfinished %s, parents %s/%s)',
                                                                   c.phase, c.workflow_step_uuid, c.state, c.hot, c.def, c.unfinished, c.completed, c.total)
                                                   FROM cmp c WHERE c.round = k AND c.hot IS DISTINCT FROM c.def LIMIT 1), '')))
FROM generate_series(1, 40) k;
SELECT is((SELECT count(*) FROM cmp c WHERE c.round = k AND c.unfinished IS DISTINCT FROM c.total - c.completed), 0::bigint,
          format('round %s: unfinished_parents = total_parents - completed_parents%s', k,
                 coalesce(' — first mismatch: ' || (SELECT format('%s step %s in %s: unfinished %s, parents %s/%s',
                                                                   c.phase, c.workflow_step_uuid, c.state, c.unfinished, c.completed, c.total)
                                                   FROM cmp c WHERE c.round = k AND c.unfinished IS DISTINCT FROM c.total - c.completed LIMIT 1), '')))
FROM generate_series(1, 40) k;
SELECT cmp_ok((SELECT count(*) FROM cmp), '>=', 2000::bigint, format('hundreds of comparisons at least (%s)', (SELECT count(*) FROM cmp)));
SELECT cmp_ok((SELECT count(*) FROM cmp WHERE def), '>=', 50::bigint,
              format('many of them on ready steps (%s ready, %s not ready)', (SELECT count(*) FROM cmp WHERE def), (SELECT count(*) FROM cmp WHERE NOT def)));
SELECT cmp_ok((SELECT count(*) FROM cmp WHERE state IN ('pending', 'waiting_for_retry') AND NOT def), '>=', 100::bigint,
              'many on pending/retrying steps that are not ready (parents, attempts or backoff)');
SELECT cmp_ok((SELECT count(DISTINCT state) FROM cmp), '>=', 9::bigint,
              format('step states seen at checkpoints: %s', (SELECT string_agg(DISTINCT state, ', ') FROM cmp)));
SELECT cmp_ok((SELECT count(DISTINCT (total, completed)) FROM cmp WHERE total > 1), '>=', 5::bigint,
              'fan-in steps seen at several stages of their parents');
SELECT is((SELECT count(*) FROM ctxcmp WHERE ctx_ready IS DISTINCT FROM def_ready), 0::bigint,
          format('get_task_execution_context().ready_steps = ready steps by the definition (%s task checks)', (SELECT count(*) FROM ctxcmp)));
SELECT is((SELECT count(*) FROM inv WHERE what = 'attempts > max_attempts'), 0::bigint, 'no step ever ran more attempts than allowed');
SELECT is((SELECT count(*) FROM inv WHERE what = 'dispatched step without its message'), 0::bigint,
          format('every enqueued/in_progress step has its dispatch message for its attempt%s',
                 coalesce(' — e.g. ' || (SELECT round || ' ' || phase || ': ' || detail FROM inv WHERE what = 'dispatched step without its message' LIMIT 1), '')));
SELECT is((SELECT count(*) FROM inv WHERE what IN ('complete task with an unfinished step', 'finished steps but task not complete')), 0::bigint,
          format('task state agrees with its steps (complete iff every step is done)%s',
                 coalesce(' — e.g. ' || (SELECT round || ' ' || phase || ': ' || what || ' ' || detail FROM inv
                                          WHERE what IN ('complete task with an unfinished step', 'finished steps but task not complete') LIMIT 1), '')));
SELECT is((SELECT count(*) FROM inv WHERE what IN ('stale hand-back accepted', 'well-formed completion rejected')), 0::bigint,
          'stale hand-backs are never accepted; well-formed completions are never rejected');
SELECT is((SELECT count(*) FROM inv WHERE what IN ('step exists twice', 'created by a step that is not complete')), 0::bigint,
          format('dynamic steps: none exists twice, each was created by a complete decision or planner%s',
                 coalesce(' — e.g. ' || (SELECT round || ' ' || phase || ': ' || what || ' ' || detail FROM inv
                                          WHERE what IN ('step exists twice', 'created by a step that is not complete') LIMIT 1), '')));
SELECT is((SELECT count(*) FROM inv WHERE what = 'batch parallelism exceeded'), 0::bigint,
          format('no batch ever had more workers in flight than its parallelism%s',
                 coalesce(' — e.g. ' || (SELECT round || ' ' || phase || ': ' || detail FROM inv WHERE what = 'batch parallelism exceeded' LIMIT 1), '')));
SELECT cmp_ok((SELECT count(*) FROM cmp c JOIN tasker.workflow_steps s USING (workflow_step_uuid) WHERE s.created_by IS NOT NULL),
              '>=', 100::bigint, 'many comparisons on steps created at run time');
SELECT cmp_ok((SELECT count(DISTINCT s.created_by) FROM tasker.workflow_steps s JOIN tasks USING (task_uuid)
               JOIN tasker.named_steps n USING (named_step_uuid) WHERE n.step_type = 'batch_worker'), '>=', 3::bigint,
              'several batch plans created workers');
SELECT cmp_ok((SELECT count(*) FROM cmp c JOIN tasker.workflow_steps s USING (workflow_step_uuid)
               JOIN tasker.named_steps n USING (named_step_uuid)
               WHERE n.step_type = 'deferred_convergence' AND c.state = 'pending' AND c.total > c.completed), '>=', 5::bigint,
              'deferred steps compared while waiting for created parents or gates');
SELECT is((SELECT count(*) FROM api_errors), 0::bigint,
          format('no API call failed%s',
                 coalesce(' — e.g. ' || (SELECT format('round %s %s %s: %s %s', round, phase, call, sqlstate, message) FROM api_errors LIMIT 1), '')));

SELECT * FROM finish();
ROLLBACK;
