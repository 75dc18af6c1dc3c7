-- rabbitmq_completions.sql — pgTAP tests of completions under messaging.backend = rabbitmq
-- (sql/0270): a hand-back with p_send_completions = false writes no PGMQ completion message;
-- process_completion_pointers completes a batch of pointers (duplicates and stale attempts are
-- no-ops, malformed ones are recorded) and dispatches the children; recover_handed_back_steps
-- completes a hand-back whose pointer was lost, once its grace has passed, and a pointer arriving
-- after that changes nothing. One transaction, rolled back.

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(16);

SELECT task_template_uuid AS tpl FROM tasker.register_task_template(
  '{"name": "rq", "namespace_name": "tap_rq", "identity_strategy": "always_unique",
    "steps": [{"name": "a", "handler": {"callable": "h_a"}},
              {"name": "b", "handler": {"callable": "h_b"}, "dependencies": ["a"]}]}') \gset
SELECT task_uuid AS t FROM tasker.create_task('{"name": "rq", "namespace": "tap_rq"}') \gset
SELECT workflow_step_uuid AS a FROM tasker.workflow_steps WHERE task_uuid = :'t' AND name = 'a' \gset
SELECT workflow_step_uuid AS b FROM tasker.workflow_steps WHERE task_uuid = :'t' AND name = 'b' \gset

CREATE FUNCTION pg_temp.completion_msgs() RETURNS bigint
LANGUAGE sql AS $$ SELECT count(*) FROM pgmq.q_tasker_completion_tap_rq $$;
CREATE FUNCTION pg_temp.state(p_step uuid) RETURNS text
LANGUAGE sql AS $$ SELECT state FROM tasker.workflow_steps WHERE workflow_step_uuid = p_step $$;

-- Hand-back without a PGMQ completion message.
SELECT count(*) FROM tasker.tasker_claim_and_execute_step('tap_rq', 10, 300, 'w-rq') \g /dev/null
SELECT is((SELECT status FROM tasker.submit_step_results(
             jsonb_build_array(jsonb_build_object('step_uuid', :'a', 'attempt', 1, 'success', true, 'result', '{"n": 1}'::jsonb)),
             false)),
          'accepted', 'submit_step_results(…, false): the hand-back is accepted');
SELECT is(pg_temp.state(:'a'), 'enqueued_for_orchestration', '… the step awaits the orchestrator');
SELECT is(pg_temp.completion_msgs(), 0::bigint, '… and no completion message went to PGMQ');
SELECT is((SELECT messages FROM tasker.process_completions('tap_rq', 100, 30)), 0,
          '… so PGMQ''s process_completions finds nothing');

-- One batch of pointers: the real one, a duplicate of it, another attempt, two malformed.
SELECT is((SELECT row(messages, steps_completed, stale, rejected, steps_enqueued)::text
           FROM tasker.process_completion_pointers('tap_rq', jsonb_build_array(
             jsonb_build_object('msg_id', 7, 'message', jsonb_build_object('step_uuid', :'a', 'attempt', 1)),
             jsonb_build_object('msg_id', 8, 'message', jsonb_build_object('step_uuid', :'a', 'attempt', 1)),
             jsonb_build_object('msg_id', 9, 'message', jsonb_build_object('step_uuid', :'a', 'attempt', 2)),
             jsonb_build_object('msg_id', 10, 'message', 'not json'),
             jsonb_build_object('msg_id', 11, 'message', '{"attempt": 1}'::jsonb)))),
          row(5, 1, 2, 2, 1)::text,
          'process_completion_pointers: 5 pointers → 1 step completed, 2 stale, 2 rejected, the child dispatched');
SELECT is(pg_temp.state(:'a'), 'complete', '… the step is complete');
SELECT is(pg_temp.state(:'b'), 'enqueued', '… its child is enqueued');
SELECT is((SELECT count(*) FROM tasker.workflow_step_transitions
           WHERE workflow_step_uuid = :'a' AND to_state = 'complete'), 1::bigint,
          '… with one audit row for the completion');
SELECT is((SELECT array_agg(msg_id || ':' || reason ORDER BY msg_id) FROM tasker.rejected_messages
           WHERE queue_name = 'tasker_completion_tap_rq'),
          ARRAY['10:message is not a JSON object', '11:step_uuid missing or not a UUID'],
          '… the malformed ones are recorded under the completion queue, by delivery tag');
SELECT is((SELECT messages FROM tasker.process_completion_pointers('tap_rq', '[]')), 0,
          'an empty batch of pointers does nothing');
SELECT throws_ok($$SELECT * FROM tasker.process_completion_pointers('tap_rq', '{}')$$, 'TK400',
                 'deliveries must be a JSON array of at most 10000 entries', 'deliveries must be an array');

-- The lost pointer: b is handed back, no pointer is ever processed; the sweep's recovery finds it.
SELECT count(*) FROM tasker.tasker_claim_and_execute_step('tap_rq', 10, 300, 'w-rq') \g /dev/null
SELECT status FROM tasker.submit_step_results(
  jsonb_build_array(jsonb_build_object('step_uuid', :'b', 'attempt', 1, 'success', true)), false) \g /dev/null
SELECT is((SELECT messages FROM tasker.recover_handed_back_steps(3600, 100)), 0,
          'recover_handed_back_steps: a hand-back younger than the grace is left to its pointer');
UPDATE tasker.workflow_steps SET updated_at = now() - interval '2 minutes' WHERE workflow_step_uuid = :'b';  -- TEST-ONLY: the grace passed
SELECT is((SELECT row(messages, steps_completed, tasks_completed)::text FROM tasker.recover_handed_back_steps(60, 100)),
          row(1, 1, 1)::text, '… past the grace it completes the step, and the task with it');
SELECT is((SELECT state FROM tasker.tasks WHERE task_uuid = :'t'), 'complete', '… the task is complete');
SELECT is((SELECT stale FROM tasker.process_completion_pointers('tap_rq', jsonb_build_array(
             jsonb_build_object('msg_id', 12, 'message', jsonb_build_object('step_uuid', :'b', 'attempt', 1))))),
          1, 'a pointer arriving after the recovery is stale and changes nothing');
SELECT is(pg_temp.completion_msgs(), 0::bigint, 'no PGMQ completion message was written at any point');

SELECT * FROM finish();
ROLLBACK;
