-- retry.sql — pgTAP tests of retries through the real API (claim → hand back failure →
-- process_completions → enqueue_ready_steps → claim …):
--   * "a failing step with max_attempts 3 runs exactly 3 times with growing backoff, then the task
--     ends blocked_by_failures" (DESIGN §5.4: error → blocked_by_failures, waiting for an operator);
--   * exponential growth over more attempts, the cap, and a lease expiry counting as an attempt;
--   * "a retry_after hint is honoured": next_retry_at = now + hint (no jitter), capped at
--     max_backoff_ms.
-- Time: inside the transaction now() is frozen, and next_retry_at = now() + backoff. To let a
-- backoff pass, the test first records next_retry_at - now() (the backoff chosen), then moves
-- next_retry_at into the past with a plain UPDATE (TEST-ONLY: no state change, no transition row).
-- Nothing sleeps. One transaction, rolled back.

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(54);

CREATE FUNCTION pg_temp.tpl(p_name text, p_retry jsonb) RETURNS uuid
LANGUAGE sql AS $$
  SELECT task_template_uuid FROM tasker.register_task_template(jsonb_build_object(
    'name', p_name, 'namespace_name', 'tap_retry', 'identity_strategy', 'always_unique',
    'steps', jsonb_build_array(jsonb_build_object('name', 's', 'handler', jsonb_build_object('callable', 'fail'), 'retry', p_retry))))
$$;
CREATE FUNCTION pg_temp.new_task(p_name text) RETURNS uuid
LANGUAGE sql AS $$ SELECT task_uuid FROM tasker.create_task(jsonb_build_object('name', p_name, 'namespace', 'tap_retry')) $$;
CREATE FUNCTION pg_temp.sid(p_task uuid) RETURNS uuid
LANGUAGE sql AS $$ SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = p_task $$;
CREATE FUNCTION pg_temp.step(p_task uuid) RETURNS tasker.workflow_steps
LANGUAGE sql AS $$ SELECT * FROM tasker.workflow_steps WHERE task_uuid = p_task $$;
-- One run of the task's step: claim it (it must be the only thing dispatched), hand back a failure,
-- let the orchestrator decide. Returns "<claimed attempt>/<hand-back status>/<steps_retrying>,
-- <steps_failed>,<tasks_blocked>" or "nothing to claim".
CREATE FUNCTION pg_temp.run_and_fail(p_task uuid, p_error jsonb DEFAULT '{"message": "boom"}', p_retry_after integer DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  c record;
  h text;
  p record;
BEGIN
  SELECT * INTO c FROM tasker.tasker_claim_and_execute_step('tap_retry', 10, 300, 'w-retry');
  IF NOT FOUND THEN RETURN 'nothing to claim'; END IF;
  IF c.task_uuid <> p_task THEN RETURN 'claimed another task''s step'; END IF;
  SELECT status INTO h FROM tasker.submit_step_result(c.workflow_step_uuid, c.attempt, false, NULL,
    p_error || jsonb_build_object('attempt', c.attempt), 'w-retry', 10 * c.attempt, p_retry_after);
  SELECT * INTO p FROM tasker.process_completions('tap_retry');
  RETURN c.attempt || '/' || h || '/' || p.steps_retrying || ',' || p.steps_failed || ',' || p.tasks_blocked;
END $$;
-- The backoff chosen for the step (ms), then make it pass (TEST-ONLY) and run the poller.
CREATE TEMP TABLE delays (label text, n integer, ms numeric, PRIMARY KEY (label, n));
CREATE FUNCTION pg_temp.pass_backoff(p_task uuid, p_label text, p_n integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE v integer;
BEGIN
  INSERT INTO delays SELECT p_label, p_n, round(extract(epoch FROM next_retry_at - now()) * 1000, 3)
  FROM tasker.workflow_steps WHERE task_uuid = p_task;
  UPDATE tasker.workflow_steps SET next_retry_at = now() - interval '1 millisecond'
  WHERE task_uuid = p_task AND state = 'waiting_for_retry';
  SELECT steps_enqueued INTO v FROM tasker.enqueue_ready_steps(100);
  RETURN v;
END $$;
CREATE FUNCTION pg_temp.ms(p_label text, p_n integer) RETURNS numeric
LANGUAGE sql AS $$ SELECT ms FROM delays WHERE label = p_label AND n = p_n $$;

-- =============================================================================================
-- 1. max_attempts 3: exactly three runs, growing backoff, then blocked_by_failures
-- =============================================================================================
SELECT pg_temp.tpl('flaky', '{"max_attempts": 3, "backoff": "exponential", "backoff_base_ms": 1000, "max_backoff_ms": 30000}') \g /dev/null
SELECT pg_temp.new_task('flaky') AS t \gset
SELECT is(pg_temp.run_and_fail(:'t'), '1/accepted/1,0,0', 'run 1: claimed as attempt 1, failure accepted, step retries');
SELECT is(((pg_temp.step(:'t')).state, (pg_temp.step(:'t')).attempts)::text, '(waiting_for_retry,1)', 'after run 1: waiting_for_retry, attempts 1');
SELECT is((SELECT count(*) FROM tasker.tasker_claim_and_execute_step('tap_retry', 10, 300, 'w-early')), 0::bigint,
          'after run 1: nothing can be claimed while the backoff runs');
SELECT is((SELECT state FROM tasker.tasks WHERE task_uuid = :'t'), 'waiting_for_retry', 'after run 1: the task waits for the retry');
SELECT is(pg_temp.pass_backoff(:'t', 'flaky', 1), 1, 'backoff 1 passed: the poller dispatches the retry');
SELECT is(pg_temp.run_and_fail(:'t'), '2/accepted/1,0,0', 'run 2: attempt 2, retries again');
SELECT is(pg_temp.pass_backoff(:'t', 'flaky', 2), 1, 'backoff 2 passed: dispatched again');
SELECT is(pg_temp.run_and_fail(:'t'), '3/accepted/0,1,1', 'run 3: attempt 3 fails for good, the task is blocked');
SELECT ok(pg_temp.ms('flaky', 1) BETWEEN 850 AND 1150, format('backoff 1 = 1000 ms ± 15 %% (%s ms)', pg_temp.ms('flaky', 1)));
SELECT ok(pg_temp.ms('flaky', 2) BETWEEN 1700 AND 2300, format('backoff 2 = 2000 ms ± 15 %% (%s ms)', pg_temp.ms('flaky', 2)));
SELECT ok(pg_temp.ms('flaky', 2) > pg_temp.ms('flaky', 1), 'the backoff grows');
SELECT is(((pg_temp.step(:'t')).state, (pg_temp.step(:'t')).attempts, (pg_temp.step(:'t')).next_retry_at,
           (pg_temp.step(:'t')).error->>'message', (pg_temp.step(:'t')).error->>'attempt')::text,
          '(error,3,,boom,3)', 'the step is in error after 3 attempts, no retry planned, last error kept');
SELECT is((SELECT state FROM tasker.tasks WHERE task_uuid = :'t'), 'blocked_by_failures', 'the task ends blocked_by_failures');
SELECT is((SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = pg_temp.sid(:'t') AND event = 'claim'),
          3::bigint, 'the step ran exactly 3 times (3 claims)');
SELECT is(ARRAY(SELECT coalesce(from_state, '') || '>' || to_state || ':' || event || '#' || attempt
                FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = pg_temp.sid(:'t') ORDER BY ordinal),
          ARRAY['>enqueued:create_and_enqueue#0',
                'enqueued>in_progress:claim#1', 'in_progress>enqueued_as_error_for_orchestration:hand_back_failure#1',
                'enqueued_as_error_for_orchestration>waiting_for_retry:wait_for_retry#1', 'waiting_for_retry>enqueued:retry#1',
                'enqueued>in_progress:claim#2', 'in_progress>enqueued_as_error_for_orchestration:hand_back_failure#2',
                'enqueued_as_error_for_orchestration>waiting_for_retry:wait_for_retry#2', 'waiting_for_retry>enqueued:retry#2',
                'enqueued>in_progress:claim#3', 'in_progress>enqueued_as_error_for_orchestration:hand_back_failure#3',
                'enqueued_as_error_for_orchestration>error:fail#3'],
          'the step''s whole transition history, with attempts');
SELECT is(ARRAY(SELECT (metadata->>'next_retry_at')::timestamptz - now() FROM tasker.workflow_step_transitions
                WHERE workflow_step_uuid = pg_temp.sid(:'t') AND event = 'wait_for_retry' ORDER BY ordinal),
          ARRAY(SELECT make_interval(secs => ms / 1000) FROM delays WHERE label = 'flaky' ORDER BY n),
          'each wait_for_retry transition records the next_retry_at chosen');
SELECT results_eq(format($$SELECT a.attempt, a.success, a.worker_id, a.execution_time_ms, t.to_state
                          FROM tasker.workflow_step_result_audit a JOIN tasker.workflow_step_transitions t USING (workflow_step_transition_uuid)
                          WHERE a.workflow_step_uuid = %L ORDER BY a.attempt$$, pg_temp.sid(:'t')),
                  $$VALUES (1, false, 'w-retry', 10::bigint, 'enqueued_as_error_for_orchestration'),
                           (2, false, 'w-retry', 20::bigint, 'enqueued_as_error_for_orchestration'),
                           (3, false, 'w-retry', 30::bigint, 'enqueued_as_error_for_orchestration')$$,
                  'one result-audit row per attempt (3), each a failure tied to its hand-back');
SELECT is(ARRAY(SELECT (message->>'attempt')::int FROM pgmq.a_tasker_dispatch_tap_retry
                WHERE message->>'step_uuid' = pg_temp.sid(:'t')::text ORDER BY msg_id),
          ARRAY[1, 2, 3], 'three dispatch messages, attempts 1, 2, 3, all archived');
SELECT is(ARRAY(SELECT coalesce(from_state, '') || '>' || to_state || ':' || event FROM tasker.task_transitions
                WHERE task_uuid = :'t' ORDER BY ordinal),
          ARRAY['>steps_in_process:create_and_enqueue', 'steps_in_process>waiting_for_retry:steps_awaiting_retry',
                'waiting_for_retry>steps_in_process:steps_in_flight', 'steps_in_process>waiting_for_retry:steps_awaiting_retry',
                'waiting_for_retry>steps_in_process:steps_in_flight', 'steps_in_process>blocked_by_failures:permanent_failure'],
          'the task''s transition history');
-- No fourth run, whatever the daemon does.
UPDATE tasker.workflow_steps SET next_retry_at = now() - interval '1 hour' WHERE task_uuid = :'t';  -- TEST-ONLY (no effect expected)
SELECT is((SELECT steps_enqueued FROM tasker.enqueue_ready_steps(100)), 0, 'the poller does not dispatch a 4th attempt');
SELECT is((SELECT count(*) FROM tasker.detect_and_transition_stuck_tasks() WHERE task_uuid = :'t'), 0::bigint,
          'the sweep leaves the blocked task alone (within its blocked timeout)');
SELECT is(pg_temp.run_and_fail(:'t'), 'nothing to claim', 'no 4th claim');
SELECT is((SELECT not_ready_reason FROM tasker.get_step_readiness_status(:'t')),
          'failed for good after 3 of 3 attempt(s); needs an operator (reset_for_retry, resolve_manually or complete_manually)',
          'readiness says why and what an operator can do');
SELECT is((SELECT row(execution_status, recommended_action, health_status)::text FROM tasker.get_task_execution_context(:'t')),
          '(blocked_by_failures,handle_failures,blocked)', 'execution context: blocked_by_failures');

-- =============================================================================================
-- 2. Exponential growth over more attempts; the cap; linear and fibonacci
-- =============================================================================================
SELECT pg_temp.tpl('six', '{"max_attempts": 6, "backoff": "exponential", "backoff_base_ms": 100, "max_backoff_ms": 30000}') \g /dev/null
SELECT pg_temp.new_task('six') AS t6 \gset
SELECT is(ARRAY(SELECT pg_temp.run_and_fail(:'t6') || ' ' || coalesce(pg_temp.pass_backoff(:'t6', 'six', n)::text, '-')
                FROM generate_series(1, 5) n),
          ARRAY['1/accepted/1,0,0 1', '2/accepted/1,0,0 1', '3/accepted/1,0,0 1', '4/accepted/1,0,0 1', '5/accepted/1,0,0 1'],
          'max_attempts 6: five failed runs each retried');
SELECT is(pg_temp.run_and_fail(:'t6'), '6/accepted/0,1,1', 'the sixth failure is final');
SELECT is(ARRAY(SELECT ms >= 100 * 2 ^ (n - 1) * 0.85 AND ms <= 100 * 2 ^ (n - 1) * 1.15 FROM delays WHERE label = 'six' ORDER BY n),
          array_fill(true, ARRAY[5]), 'backoffs 100, 200, 400, 800, 1600 ms, each ± 15 %');
SELECT is(ARRAY(SELECT b.ms / a.ms BETWEEN 2 * 0.85 / 1.15 AND 2 * 1.15 / 0.85
                FROM delays a JOIN delays b ON b.label = a.label AND b.n = a.n + 1 WHERE a.label = 'six' ORDER BY a.n),
          array_fill(true, ARRAY[4]), 'each backoff about doubles the one before');
SELECT pg_temp.tpl('capped', '{"max_attempts": 5, "backoff": "exponential", "backoff_base_ms": 1000, "max_backoff_ms": 3000}') \g /dev/null
SELECT pg_temp.new_task('capped') AS tc \gset
SELECT count(*) FROM (SELECT pg_temp.run_and_fail(:'tc'), pg_temp.pass_backoff(:'tc', 'capped', n) FROM generate_series(1, 4) n) x \g /dev/null
SELECT tasker.cancel_task(:'tc') \g /dev/null
SELECT ok((SELECT bool_and(ms <= 3000) AND max(ms) >= 3000 * 0.85 FROM delays WHERE label = 'capped' AND n >= 3),
          format('the backoff is capped at max_backoff_ms (attempts 3-4: %s ms)',
                 (SELECT string_agg(ms::text, ', ' ORDER BY n) FROM delays WHERE label = 'capped' AND n >= 3)));
SELECT pg_temp.tpl('lin', '{"max_attempts": 4, "backoff": "linear", "backoff_base_ms": 1000}') \g /dev/null
SELECT pg_temp.new_task('lin') AS tl \gset
SELECT count(*) FROM (SELECT pg_temp.run_and_fail(:'tl'), pg_temp.pass_backoff(:'tl', 'lin', n) FROM generate_series(1, 3) n) x \g /dev/null
SELECT tasker.cancel_task(:'tl') \g /dev/null
SELECT is(ARRAY(SELECT ms BETWEEN 1000 * n * 0.85 AND 1000 * n * 1.15 FROM delays WHERE label = 'lin' ORDER BY n),
          ARRAY[true, true, true], 'linear: 1 s, 2 s, 3 s (± 15 %)');
SELECT pg_temp.tpl('fib', '{"max_attempts": 6, "backoff": "fibonacci", "backoff_base_ms": 1000}') \g /dev/null
SELECT pg_temp.new_task('fib') AS tf \gset
SELECT count(*) FROM (SELECT pg_temp.run_and_fail(:'tf'), pg_temp.pass_backoff(:'tf', 'fib', n) FROM generate_series(1, 5) n) x \g /dev/null
SELECT tasker.cancel_task(:'tf') \g /dev/null
SELECT is(ARRAY(SELECT ms BETWEEN 1000 * f * 0.85 AND 1000 * f * 1.15
                FROM delays JOIN unnest(ARRAY[1, 1, 2, 3, 5]) WITH ORDINALITY AS x(f, k) ON k = n WHERE label = 'fib' ORDER BY n),
          array_fill(true, ARRAY[5]), 'fibonacci: 1, 1, 2, 3, 5 s (± 15 %)');
SELECT pg_temp.tpl('none', '{"max_attempts": 3, "backoff": "none"}') \g /dev/null
SELECT pg_temp.new_task('none') AS tn \gset
SELECT is(pg_temp.run_and_fail(:'tn'), '1/accepted/1,0,0', 'backoff none: the failure retries');
SELECT is((pg_temp.step(:'tn')).next_retry_at, now(), 'backoff none: next_retry_at = now, ready at once');
SELECT is((pg_temp.step(:'tn')).state, 'enqueued', 'backoff none: process_completions dispatched the retry in the same pass');
SELECT tasker.cancel_task(:'tn') \g /dev/null
-- A lease expiry is a failed attempt too.
SELECT pg_temp.new_task('flaky') AS tx \gset
SELECT is(pg_temp.run_and_fail(:'tx'), '1/accepted/1,0,0', 'lease path: run 1 fails');
SELECT is(pg_temp.pass_backoff(:'tx', 'lease', 1), 1, 'lease path: retried');
SELECT is((SELECT attempt FROM tasker.tasker_claim_and_execute_step('tap_retry', 10, 300, 'w-vanishing')), 2, 'lease path: run 2 claimed …');
UPDATE tasker.workflow_steps SET lease_expires_at = clock_timestamp() - interval '1 second' WHERE task_uuid = :'tx';  -- TEST-ONLY: the worker vanished
SELECT is((SELECT array_agg(detail) FROM tasker.detect_and_transition_stuck_tasks() WHERE task_uuid = :'tx' AND action = 'lease_expired'),
          ARRAY['attempt 2 on w-vanishing: now waiting_for_retry'], 'lease path: … and lost; the sweep counts it as attempt 2');
SELECT is(pg_temp.pass_backoff(:'tx', 'lease', 2), 1, 'lease path: retried once more');
SELECT ok(pg_temp.ms('lease', 2) BETWEEN 1700 AND 2300, format('lease path: the lease expiry''s backoff is the second one (%s ms)', pg_temp.ms('lease', 2)));
SELECT is(pg_temp.run_and_fail(:'tx'), '3/accepted/0,1,1', 'lease path: run 3 is the last (2 failures + 1 expired lease = 3 attempts)');

-- =============================================================================================
-- 3. retry_after: honoured exactly (no jitter), capped at max_backoff_ms
-- =============================================================================================
SELECT pg_temp.tpl('hinted', '{"max_attempts": 5, "backoff": "exponential", "backoff_base_ms": 1000, "max_backoff_ms": 30000}') \g /dev/null
SELECT pg_temp.new_task('hinted') AS th \gset
SELECT is(pg_temp.run_and_fail(:'th', '{"message": "rate limited"}', 7), '1/accepted/1,0,0', 'retry_after 7: the failure retries');
SELECT is((pg_temp.step(:'th')).retry_after_secs, 7, 'retry_after: the hint is stored with the step');
SELECT is((pg_temp.step(:'th')).next_retry_at, now() + interval '7 seconds', 'retry_after 7: next_retry_at = now + 7 s exactly');
SELECT is(pg_temp.pass_backoff(:'th', 'hinted', 1), 1, 'retry_after: dispatched once it passed');
SELECT is(pg_temp.run_and_fail(:'th', '{"message": "rate limited"}', 120), '2/accepted/1,0,0', 'retry_after 120: the failure retries');
SELECT is((pg_temp.step(:'th')).next_retry_at, now() + interval '30 seconds', 'retry_after 120: capped at max_backoff_ms (30 s)');
SELECT is(pg_temp.pass_backoff(:'th', 'hinted', 2), 1, 'retry_after: dispatched again');
SELECT is(pg_temp.run_and_fail(:'th', '{"message": "rate limited"}', 0), '3/accepted/1,0,0', 'retry_after 0: the failure retries');
SELECT is((pg_temp.step(:'th')).next_retry_at, now(), 'retry_after 0: next_retry_at = now');
SELECT is((pg_temp.step(:'th')).state, 'enqueued', 'retry_after 0: dispatched again in the same pass, no clock moved');
SELECT is(pg_temp.run_and_fail(:'th', '{"message": "ok, no hint"}'), '4/accepted/1,0,0', 'no hint: the failure retries …');
SELECT ok(extract(epoch FROM (pg_temp.step(:'th')).next_retry_at - now()) BETWEEN 8 * 0.85 AND 8 * 1.15,
          '… with the policy''s backoff again (attempt 4: 8 s ± 15 %), an earlier hint is not reused');
SELECT pg_temp.new_task('hinted') AS th2 \gset
SELECT is(pg_temp.run_and_fail(:'th2', '{"message": "gone", "retryable": false}', 5), '1/accepted/0,1,1',
          'a hint does not make a non-retryable error retry');

SELECT * FROM finish();
ROLLBACK;
