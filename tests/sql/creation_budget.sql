-- creation_budget.sql — pgTAP tests of the bound on steps created per process_completions call
-- (tasker.creations_over_budget): batch plans past the budget wait in the queue for the next call,
-- each plan is still created whole with its planner's completion, and the first plan of a read
-- always goes. Runs in one transaction that is rolled back (namespace tap_budget).

BEGIN;
SET LOCAL client_min_messages = warning;
SET LOCAL jit = off;
SELECT plan(18);

SELECT status FROM tasker.register_task_template(jsonb_build_object(
  'name', 'plans', 'namespace_name', 'tap_budget', 'identity_strategy', 'always_unique',
  'steps', jsonb_build_array(
    jsonb_build_object('name', 'plan', 'type', 'batchable', 'handler', jsonb_build_object('callable', 'p')),
    jsonb_build_object('name', 'work', 'type', 'batch_worker', 'dependencies', jsonb_build_array('plan'),
      'handler', jsonb_build_object('callable', 'w'), 'batch_config', jsonb_build_object('parallelism', 1000)),
    jsonb_build_object('name', 'join', 'type', 'deferred_convergence', 'dependencies', jsonb_build_array('work'),
      'handler', jsonb_build_object('callable', 'j'))))) \g /dev/null

-- Three tasks whose plans ask for 8, 3 and 3 workers, handed back in that order.
CREATE TEMP TABLE t (n integer, task uuid);
INSERT INTO t SELECT n, (tasker.create_task(jsonb_build_object('name', 'plans', 'namespace', 'tap_budget',
  'context', jsonb_build_object('n', n)))).task_uuid FROM generate_series(1, 3) n;
SELECT count(*) FROM tasker.tasker_claim_and_execute_step('tap_budget', 10, 300, 'w1') \g /dev/null
CREATE FUNCTION pg_temp.outcome(p_workers integer) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('batch_processing_outcome', jsonb_build_object('type', 'create_batches',
    'cursor_configs', (SELECT jsonb_agg(jsonb_build_object('batch_id', lpad(g::text, 3, '0'), 'start_cursor', g - 1,
                                                           'end_cursor', g)) FROM generate_series(1, p_workers) g)))
$$;
SELECT count(*) FROM t, LATERAL tasker.submit_step_result(
  (SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = t.task AND name = 'plan'), 1, true,
  pg_temp.outcome(CASE t.n WHEN 1 THEN 8 ELSE 3 END)) s
WHERE s.status = 'accepted' \g /dev/null

-- A task's planner state and how many workers it has.
CREATE FUNCTION pg_temp.shape(p_n integer) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT (SELECT s.state FROM tasker.workflow_steps s WHERE s.task_uuid = t.task AND s.name = 'plan') || ' '
         || (SELECT count(*) FROM tasker.workflow_steps s WHERE s.task_uuid = t.task AND s.name LIKE 'work\_%')
  FROM t WHERE t.n = p_n
$$;
CREATE TEMP TABLE pc AS SELECT * FROM tasker.process_completions('tap_budget', 1, 30) WITH NO DATA;
CREATE FUNCTION pg_temp.pc() RETURNS text
LANGUAGE sql AS $$
  WITH r AS (INSERT INTO pc SELECT * FROM tasker.process_completions('tap_budget', 100, 30) RETURNING *)
  SELECT format('%s messages, %s completed, %s stale, %s enqueued', messages, steps_completed, stale, steps_enqueued) FROM r
$$;

SELECT set_config('tasker.max_created_steps_per_call', '5', true) \g /dev/null
SELECT is(tasker.creations_over_budget(
            ARRAY(SELECT msg_id FROM pgmq.q_tasker_completion_tap_budget ORDER BY msg_id),
            ARRAY(SELECT message FROM pgmq.q_tasker_completion_tap_budget ORDER BY msg_id)),
          ARRAY(SELECT msg_id FROM pgmq.q_tasker_completion_tap_budget ORDER BY msg_id OFFSET 1),
          'over budget: every plan after the first, which alone is past the budget');
SELECT is(pg_temp.pc(), '1 messages, 1 completed, 0 stale, 8 enqueued',
          'first call: the first plan goes although it is bigger than the budget; the rest are not counted');
SELECT is(pg_temp.shape(1), 'complete 8', 'its planner is complete with all its workers');
SELECT is(pg_temp.shape(2), 'enqueued_for_orchestration 0', 'the second plan waits, nothing of it created');
SELECT is(pg_temp.shape(3), 'enqueued_for_orchestration 0', 'so does the third');
SELECT is((SELECT count(*)::integer FROM pgmq.q_tasker_completion_tap_budget WHERE vt <= clock_timestamp()), 2,
          'their messages are back in the queue, visible now');
SELECT is((SELECT count(*)::integer FROM pgmq.a_tasker_completion_tap_budget), 1, 'only the processed one is archived');
SELECT is((SELECT ready_for_execution FROM tasker.get_step_readiness_status((SELECT task FROM t WHERE n = 2))
           WHERE name = 'plan'), false, 'readiness: the waiting planner is not ready (it awaits orchestration)');

SELECT is(pg_temp.pc(), '1 messages, 1 completed, 0 stale, 3 enqueued',
          'second call: the waiting plans come first; 3 + 3 would pass the budget of 5, so one goes');
SELECT is(pg_temp.shape(2) || ', ' || pg_temp.shape(3), 'complete 3, enqueued_for_orchestration 0', 'the second created whole');
SELECT is(pg_temp.pc(), '1 messages, 1 completed, 0 stale, 3 enqueued', 'third call: the last plan');
SELECT is(pg_temp.shape(3), 'complete 3', 'the third created whole');
SELECT is(pg_temp.pc(), '0 messages, 0 completed, 0 stale, 0 enqueued', 'nothing left');

SELECT is((SELECT array_agg(w.state ORDER BY t.n, w.name) FILTER (WHERE w.state <> 'enqueued') FROM t
           JOIN tasker.workflow_steps w ON w.task_uuid = t.task AND w.name LIKE 'work\_%'), NULL,
          'every worker created is dispatched');
SELECT is((SELECT count(*)::integer FROM t JOIN tasker.workflow_steps j ON j.task_uuid = t.task AND j.name = 'join'), 3,
          'each task got its convergence step');
SELECT is((SELECT count(*)::integer FROM t
           JOIN tasker.workflow_steps w ON w.task_uuid = t.task AND w.name LIKE 'work\_%'
           JOIN tasker.get_step_readiness_status(t.task) r ON r.workflow_step_uuid = w.workflow_step_uuid
           WHERE r.dependencies_satisfied), 14, 'readiness agrees: every worker''s planner is complete');
SELECT set_config('tasker.max_created_steps_per_call', '', true) \g /dev/null
SELECT is(tasker.creations_over_budget(ARRAY[1::bigint], ARRAY['{"step_uuid": "not a uuid"}'::jsonb]), NULL,
          'a malformed message is no plan (it is rejected by the call itself)');
SELECT is(tasker.setting_int('max_created_steps_per_call', 1000, 1, 1000000), 1000, 'the default budget is 1000 steps');

SELECT * FROM finish();
ROLLBACK;
