-- result_audit.sql — pgTAP tests of the result audit's payloads (migration 0050, sql/0205): every
-- hand-back keeps the result and error object the worker sent, so a success overwritten by a later
-- attempt (after a reset, or a recovery) is still in the step's history; payloads over 64 KiB of
-- JSON text are replaced by {"truncated": true, "bytes": N}; the API's step audit shows them.
-- One transaction, rolled back.

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(10);

SELECT task_template_uuid AS tpl FROM tasker.register_task_template(
  '{"name": "ra", "namespace_name": "tap_ra", "identity_strategy": "always_unique",
    "steps": [{"name": "a", "handler": {"callable": "h_a"}, "retry": {"max_attempts": 1}},
              {"name": "b", "handler": {"callable": "h_b"}, "dependencies": ["a"]}]}') \gset
SELECT task_uuid AS t FROM tasker.create_task('{"name": "ra", "namespace": "tap_ra"}') \gset
SELECT workflow_step_uuid AS a FROM tasker.workflow_steps WHERE task_uuid = :'t' AND name = 'a' \gset

CREATE FUNCTION pg_temp.att(p_step uuid) RETURNS integer
LANGUAGE sql AS $$ SELECT attempt_no FROM tasker.workflow_steps WHERE workflow_step_uuid = p_step $$;

-- Attempt 1 fails with an error object (and a partial result); it goes to error (one attempt).
SELECT count(*) FROM tasker.tasker_claim_and_execute_step('tap_ra', 10, 300, 'w-ra') \g /dev/null
SELECT status FROM tasker.submit_step_result(:'a', pg_temp.att(:'a'), false, '{"partial": 1}',
  '{"message": "db down", "error_type": "io", "retryable": false, "detail": {"host": "db1"}}') \g /dev/null
SELECT count(*) FROM tasker.process_completions('tap_ra', 100, 30) \g /dev/null
SELECT is((SELECT row(attempt, success, result, error)::text FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = :'a'),
          row(1, false, '{"partial": 1}'::jsonb,
              '{"message": "db down", "error_type": "io", "retryable": false, "detail": {"host": "db1"}}'::jsonb)::text,
          'a failed hand-back keeps its result and its whole error object');

-- Reset; attempt 2 succeeds with result R2.
SELECT state FROM tasker.resolve_step(:'t', :'a', 'reset_for_retry') \g /dev/null
SELECT count(*) FROM tasker.tasker_claim_and_execute_step('tap_ra', 10, 300, 'w-ra') \g /dev/null
SELECT status FROM tasker.submit_step_result(:'a', pg_temp.att(:'a'), true, '{"rows": 42}') \g /dev/null
SELECT is((SELECT row(success, result, error)::text FROM tasker.workflow_step_result_audit
           WHERE workflow_step_uuid = :'a' AND attempt = 2),
          row(true, '{"rows": 42}'::jsonb, NULL::jsonb)::text, 'a successful hand-back keeps its result (no error)');
SELECT is((SELECT array_agg(coalesce(result->>'rows', result->>'partial') || '/' || coalesce(error->>'message', '-') ORDER BY attempt)
           FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = :'a'),
          ARRAY['1/db down', '42/-'], 'both attempts are in the history, each with its own payload');

-- A success overwritten by a later attempt: the step's results now say something else, the audit
-- still holds what attempt 2 returned. (Overwrite the step's results by hand: no state change.)
UPDATE tasker.workflow_steps SET results = '{"rows": 0}' WHERE workflow_step_uuid = :'a';  -- TEST-ONLY
SELECT is((SELECT result FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = :'a' AND attempt = 2),
          '{"rows": 42}'::jsonb, 'the audit row keeps the payload of its attempt when the step''s results change later');

-- The cap: a result of more than 64 KiB of JSON text is replaced by a marker with its size; one of
-- exactly 65536 bytes is kept.
SELECT count(*) FROM tasker.process_completions('tap_ra', 100, 30) \g /dev/null
SELECT workflow_step_uuid AS b FROM tasker.workflow_steps WHERE task_uuid = :'t' AND name = 'b' \gset
SELECT count(*) FROM tasker.tasker_claim_and_execute_step('tap_ra', 10, 300, 'w-ra') \g /dev/null
-- {"x": "…"} is 9 bytes of JSON text around the string.
SELECT status FROM tasker.submit_step_result(:'b', pg_temp.att(:'b'), false, jsonb_build_object('x', repeat('r', 65536 - 9)),
  jsonb_build_object('message', repeat('e', 70000))) \g /dev/null
SELECT is((SELECT octet_length(result::text) FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = :'b'),
          65536, 'a result of exactly 64 KiB of JSON text is kept whole');
SELECT is((SELECT error FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = :'b'),
          jsonb_build_object('truncated', true, 'bytes', octet_length(jsonb_build_object('message', repeat('e', 70000))::text)),
          'an error over 64 KiB is replaced by {"truncated": true, "bytes": N}');
SELECT is((SELECT error->>'message' FROM tasker.workflow_steps WHERE workflow_step_uuid = :'b'), repeat('e', 70000),
          '… while the step itself keeps the whole error');
SELECT count(*) FROM tasker.process_completions('tap_ra', 100, 30) \g /dev/null
UPDATE tasker.workflow_steps SET next_retry_at = now() - interval '1 second' WHERE workflow_step_uuid = :'b';  -- TEST-ONLY: backoff passed
SELECT steps_enqueued FROM tasker.enqueue_ready_steps(100) \g /dev/null
SELECT count(*) FROM tasker.tasker_claim_and_execute_step('tap_ra', 10, 300, 'w-ra') \g /dev/null
SELECT status FROM tasker.submit_step_result(:'b', pg_temp.att(:'b'), true, jsonb_build_object('x', repeat('r', 65536 - 8))) \g /dev/null
SELECT is((SELECT result FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = :'b' AND attempt = 2),
          '{"truncated": true, "bytes": 65537}'::jsonb, 'a result one byte over the cap is replaced by the marker');

-- The API's step audit shows them.
SELECT is((SELECT json_agg(json_build_object('attempt', r->'attempt', 'result', r->'result', 'error', r->'error'))::jsonb
           FROM json_array_elements(tasker.api_step_audit_json(:'t', :'a')->'results') r),
          '[{"attempt": 1, "result": {"partial": 1}, "error": {"message": "db down", "error_type": "io", "retryable": false, "detail": {"host": "db1"}}},
            {"attempt": 2, "result": {"rows": 42}, "error": null}]'::jsonb,
          'GET …/audit: each result row carries its result and error');
SELECT is((SELECT (r->'result')::jsonb FROM json_array_elements(tasker.api_step_audit_json(:'t', :'b')->'results') r
           WHERE (r->>'attempt')::integer = 2),
          '{"truncated": true, "bytes": 65537}'::jsonb, 'GET …/audit: a capped payload shows its marker');

SELECT * FROM finish();
ROLLBACK;
