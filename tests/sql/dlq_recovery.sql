-- dlq_recovery.sql — pgTAP tests of recovering a task in place (tasker.recover_task, the DLQ
-- update's recover, sql/0230 + 0260) and of the DLQ statistics (api_dlq_stats): a task the sweep
-- moved to the DLQ (error, open steps cancelled) comes back — every unfinished step or the chosen
-- ones, with fresh attempts, parent counts recounted, the task evaluated and its ready steps
-- dispatched at once — with its audit rows and its DLQ record resolved; refusals change nothing; a
-- task with dynamic steps keeps the rows its decision created and the decision is not run again.
-- One transaction, rolled back; now() is frozen, so staleness is made by back-dating (TEST-ONLY).

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(57);

-- Helpers -------------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.sid(p_task uuid, p_name text) RETURNS uuid
LANGUAGE sql AS $$ SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.st(p_task uuid, p_name text) RETURNS text
LANGUAGE sql AS $$ SELECT state FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.tst(p_task uuid) RETURNS text
LANGUAGE sql AS $$ SELECT state FROM tasker.tasks WHERE task_uuid = p_task $$;
CREATE FUNCTION pg_temp.claim(p_ns text) RETURNS bigint
LANGUAGE sql AS $$ SELECT count(*) FROM tasker.tasker_claim_and_execute_step(p_ns, 100, 300, 'w-dlq') $$;
CREATE FUNCTION pg_temp.ok(p_task uuid, p_name text, p_result jsonb DEFAULT '{"ok": true}') RETURNS text
LANGUAGE sql AS $$
  SELECT status FROM tasker.submit_step_result(pg_temp.sid(p_task, p_name),
    (SELECT attempt_no FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(p_task, p_name)), true, p_result)
$$;
CREATE FUNCTION pg_temp.fail(p_task uuid, p_name text) RETURNS text
LANGUAGE sql AS $$
  SELECT status FROM tasker.submit_step_result(pg_temp.sid(p_task, p_name),
    (SELECT attempt_no FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(p_task, p_name)), false, NULL,
    '{"message": "boom", "retryable": false}')
$$;
CREATE FUNCTION pg_temp.pc(p_ns text) RETURNS integer
LANGUAGE sql AS $$ SELECT messages FROM tasker.process_completions(p_ns, 1000, 30) $$;
-- Back-date a task and its steps by p_age (TEST-ONLY: no state change, so no transition rows),
-- then sweep: the task is past every threshold.
CREATE FUNCTION pg_temp.give_up(p_task uuid, p_age interval DEFAULT '25 hours') RETURNS text[]
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE tasker.tasks SET state_changed_at = now() - p_age, created_at = now() - p_age WHERE task_uuid = p_task;
  UPDATE tasker.workflow_steps SET updated_at = now() - p_age WHERE task_uuid = p_task;
  RETURN ARRAY(SELECT action FROM tasker.detect_and_transition_stuck_tasks(100, false) x WHERE x.task_uuid = p_task);
END $$;
CREATE FUNCTION pg_temp.step_trs(p_step uuid) RETURNS text[]
LANGUAGE sql AS $$
  SELECT array_agg(coalesce(from_state, '') || '>' || to_state || ':' || event ORDER BY ordinal)
  FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = p_step
$$;
CREATE FUNCTION pg_temp.task_trs(p_task uuid) RETURNS text[]
LANGUAGE sql AS $$
  SELECT array_agg(coalesce(from_state, '') || '>' || to_state || ':' || event ORDER BY ordinal)
  FROM tasker.task_transitions WHERE task_uuid = p_task
$$;
-- A picture of a task (states, attempts, parent counts) and its DLQ records, to show a refusal
-- changed nothing.
CREATE FUNCTION pg_temp.world(p_task uuid) RETURNS text
LANGUAGE sql AS $$
  SELECT concat_ws('|', (SELECT state || state_changed_at FROM tasker.tasks WHERE task_uuid = p_task),
    (SELECT string_agg(name || state || attempts || unfinished_parents, ',' ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = p_task),
    (SELECT string_agg(resolution_status, ',') FROM tasker.tasks_dlq WHERE task_uuid = p_task),
    (SELECT count(*) FROM tasker.workflow_step_transitions WHERE task_uuid = p_task),
    (SELECT count(*) FROM tasker.task_transitions WHERE task_uuid = p_task))
$$;

SELECT task_template_uuid FROM tasker.register_task_template(
  '{"name": "lin", "namespace_name": "tap_dlq", "identity_strategy": "always_unique",
    "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"max_attempts": 1}},
              {"name": "b", "handler": {"callable": "h"}, "dependencies": ["a"]},
              {"name": "c", "handler": {"callable": "h"}, "dependencies": ["b"]}]}') \g /dev/null

-- =============================================================================================
-- 1. A stale task moved to the DLQ, recovered whole
-- =============================================================================================
SELECT task_uuid AS t1 FROM tasker.create_task('{"name": "lin", "namespace": "tap_dlq"}') \gset
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT pg_temp.ok(:'t1', 'a') \g /dev/null
SELECT pg_temp.pc('tap_dlq') \g /dev/null
-- b is claimed (attempt 1), then lost.
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT is(pg_temp.give_up(:'t1', '2 hours'), ARRAY['moved_to_dlq'], 'setup: the sweep moves the stale task to the DLQ');
SELECT is(row(pg_temp.tst(:'t1'), pg_temp.st(:'t1', 'a'), pg_temp.st(:'t1', 'b'), pg_temp.st(:'t1', 'c'))::text,
          '(error,complete,cancelled,cancelled)', 'setup: the task is in error, its open steps cancelled');
SELECT dlq_entry_uuid AS d1 FROM tasker.tasks_dlq WHERE task_uuid = :'t1' \gset
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, %L)', :'t1', pg_temp.sid(:'t1', 'b'), 'resolve_manually'),
                 'TK409', NULL, 'before recovery, a step of the task cannot be resolved');

CREATE TEMP TABLE r1 AS SELECT * FROM tasker.recover_task(:'t1', NULL, 'worker fleet back', 'op-proc', 'ops-anna');
SELECT is((SELECT row(previous_state, state, steps_recovered, steps_enqueued, dlq_entry_uuid = :'d1')::text FROM r1),
          '(error,steps_in_process,2,1,t)', 'recover: error → steps_in_process, two steps recovered, one dispatched at once');
SELECT is((SELECT recovered_steps FROM r1), (SELECT array_agg(x ORDER BY x) FROM unnest(ARRAY[pg_temp.sid(:'t1', 'b'), pg_temp.sid(:'t1', 'c')]) x),
          'recover: without a list, every step in error or cancelled is recovered');
SELECT is((SELECT row(state, attempts, attempt_no, unfinished_parents, completed_at IS NULL)::text FROM tasker.workflow_steps
           WHERE workflow_step_uuid = pg_temp.sid(:'t1', 'b')),
          '(enqueued,0,1,0,t)', 'recover: b is dispatched again with a fresh set of attempts (attempt_no keeps counting)');
SELECT is((SELECT (m.message->>'attempt')::integer FROM pgmq.q_tasker_dispatch_tap_dlq m
           WHERE m.message->>'step_uuid' = pg_temp.sid(:'t1', 'b')::text), 2, 'recover: the new dispatch message is for attempt 2');
SELECT is((SELECT row(state, unfinished_parents)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'t1', 'c')),
          '(pending,1)', 'recover: c is pending again, waiting for b (its parent count recounted)');
SELECT is(pg_temp.step_trs(pg_temp.sid(:'t1', 'b')),
          ARRAY['>pending:create', 'pending>enqueued:enqueue', 'enqueued>in_progress:claim', 'in_progress>cancelled:cancel',
                'cancelled>pending:recover', 'pending>enqueued:enqueue'],
          'recover: b''s history shows cancelled → pending (recover), then its dispatch');
SELECT is((SELECT row(processor, metadata->>'reason', metadata->>'claimed_operator')::text FROM tasker.workflow_step_transitions
           WHERE workflow_step_uuid = pg_temp.sid(:'t1', 'c') AND event = 'recover'),
          '(op-proc,"worker fleet back",ops-anna)', 'recover: the step transition names who, for whom and why');
SELECT is((pg_temp.task_trs(:'t1'))[2:], ARRAY['steps_in_process>error:fail', 'error>pending:recover', 'pending>steps_in_process:steps_in_flight'],
          'recover: the task goes error → pending (recover) → steps_in_process');
SELECT is((SELECT row(processor, metadata->>'reason', metadata->>'claimed_operator')::text FROM tasker.task_transitions
           WHERE task_uuid = :'t1' AND event = 'recover'), '(op-proc,"worker fleet back",ops-anna)',
          'recover: the task transition names who, for whom and why');
SELECT is((SELECT row(state_changed_at = now(), completed_at IS NULL)::text FROM tasker.tasks WHERE task_uuid = :'t1'), '(t,t)',
          'recover: the task is live again (state_changed_at now, completed_at cleared)');
SELECT is((SELECT row(resolution_status, resolved_by, resolution_notes, resolution_timestamp = now(),
                      metadata->'recovery'->>'recovered_by', metadata->'recovery'->'steps' = to_jsonb((SELECT recovered_steps FROM r1)),
                      metadata->>'detected_by' IS NOT NULL)::text
           FROM tasker.tasks_dlq WHERE dlq_entry_uuid = :'d1'),
          '(manually_resolved,ops-anna,"worker fleet back",t,op-proc,t,t)',
          'recover: the open DLQ record is resolved (who, why, which steps; its own metadata kept)');
-- … and the task finishes.
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT pg_temp.ok(:'t1', 'b') \g /dev/null
SELECT pg_temp.pc('tap_dlq') \g /dev/null
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT pg_temp.ok(:'t1', 'c') \g /dev/null
SELECT pg_temp.pc('tap_dlq') \g /dev/null
SELECT is(pg_temp.tst(:'t1'), 'complete', 'recover: the recovered task runs to completion');
SELECT is((SELECT array_agg(attempt || ':' || success ORDER BY attempt) FROM tasker.workflow_step_result_audit
           WHERE workflow_step_uuid = pg_temp.sid(:'t1', 'b')), ARRAY['2:true'],
          'recover: the re-run is audited under its own attempt number');

-- =============================================================================================
-- 2. A task blocked too long (a failed step), recovered step by step
-- =============================================================================================
SELECT task_uuid AS t2 FROM tasker.create_task('{"name": "lin", "namespace": "tap_dlq"}') \gset
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT pg_temp.fail(:'t2', 'a') \g /dev/null
SELECT pg_temp.pc('tap_dlq') \g /dev/null
SELECT is(pg_temp.tst(:'t2'), 'blocked_by_failures', 'setup: a failed for good, the task is blocked');
SELECT is(pg_temp.give_up(:'t2'), ARRAY['moved_to_dlq'], 'setup: the sweep gives up on the blocked task');
SELECT is(row(pg_temp.tst(:'t2'), pg_temp.st(:'t2', 'a'), pg_temp.st(:'t2', 'b'))::text, '(error,error,cancelled)',
          'setup: a keeps its error, b is cancelled');
SELECT dlq_entry_uuid AS d2 FROM tasker.tasks_dlq WHERE task_uuid = :'t2' \gset

-- Refusals first: each changes nothing.
CREATE TEMP TABLE w2 AS SELECT pg_temp.world(:'t2') AS w;
SELECT throws_ok(format('SELECT * FROM tasker.recover_task(%L, ARRAY[%L]::uuid[])', :'t2', gen_random_uuid()), 'TK404', NULL,
                 'recover: a step of another task (or none) → TK404');
SELECT throws_ok(format('SELECT * FROM tasker.recover_task(%L, %L::uuid[])', :'t2', '{}'), 'TK400', NULL,
                 'recover: an empty step list → TK400');
SELECT throws_ok(format('SELECT * FROM tasker.recover_task(%L, ARRAY[%L, %L]::uuid[])', :'t2', pg_temp.sid(:'t2', 'a'), pg_temp.sid(:'t1', 'a')),
                 'TK404', NULL, 'recover: one step of another task in the list → TK404, nothing recovered');
SELECT throws_ok(format('SELECT * FROM tasker.recover_task(%L)', gen_random_uuid()), 'TK404', NULL, 'recover: unknown task → TK404');
SELECT throws_ok(format('SELECT * FROM tasker.recover_task(%L)', :'t1'), 'TK409',
                 format('task %s is complete and cannot be recovered', :'t1'), 'recover: a complete task → TK409');
SELECT is(pg_temp.world(:'t2'), (SELECT w FROM w2), 'recover: the refusals changed nothing');

-- Only a: it runs again; b stays cancelled.
CREATE TEMP TABLE r2 AS SELECT * FROM tasker.recover_task(:'t2', ARRAY[pg_temp.sid(:'t2', 'a')], 'fixed the input', 'op-proc');
SELECT is((SELECT row(previous_state, state, steps_recovered, steps_enqueued)::text FROM r2), '(error,steps_in_process,1,1)',
          'recover (chosen steps): only a is recovered and dispatched');
SELECT is(row(pg_temp.st(:'t2', 'a'), pg_temp.st(:'t2', 'b'), pg_temp.st(:'t2', 'c'))::text, '(enqueued,cancelled,cancelled)',
          'recover (chosen steps): the steps not chosen stay cancelled');
SELECT is((pg_temp.step_trs(pg_temp.sid(:'t2', 'a')))[5:], ARRAY['error>pending:recover', 'pending>enqueued:enqueue'],
          'recover: a step in error goes error → pending with event recover');
SELECT is((SELECT row(resolution_status, resolved_by)::text FROM tasker.tasks_dlq WHERE dlq_entry_uuid = :'d2'),
          '(manually_resolved,op-proc)', 'recover: without a claimed operator, resolved_by is the actor');
-- t2 was created 25 hours ago, past the 24-hour maximum lifetime: that counts from its recovery now.
SELECT is((SELECT count(*) FROM tasker.detect_and_transition_stuck_tasks(100, false) x WHERE x.task_uuid = :'t2'), 0::bigint,
          'recover: the next sweep does not give the recovered task up again (its lifetime counts from the recovery)');
SELECT is((SELECT row(recovered_at = now(), created_at < now() - interval '24 hours')::text FROM tasker.tasks WHERE task_uuid = :'t2'),
          '(t,t)', 'recover: recovered_at is stamped, created_at stays a fact');
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT pg_temp.ok(:'t2', 'a') \g /dev/null
SELECT pg_temp.pc('tap_dlq') \g /dev/null
SELECT is(pg_temp.tst(:'t2'), 'waiting_for_dependencies', 'recover (chosen steps): a cancelled step left behind keeps the task from finishing');
SELECT throws_ok(format('SELECT * FROM tasker.recover_task(%L, ARRAY[%L]::uuid[])', :'t2', pg_temp.sid(:'t2', 'a')), 'TK409',
                 format('step %s is complete: only steps in error or cancelled can be recovered (a finished step is not run again)',
                        pg_temp.sid(:'t2', 'a')), 'recover: a complete step → TK409');
-- A live task can be recovered too (no DLQ record is open now).
CREATE TEMP TABLE r3 AS SELECT * FROM tasker.recover_task(:'t2', NULL, NULL, 'op-proc');
SELECT is((SELECT row(previous_state, state, steps_recovered, steps_enqueued, dlq_entry_uuid)::text FROM r3),
          '(waiting_for_dependencies,steps_in_process,2,1,)', 'recover: the rest, later, on the live task (no DLQ record to resolve)');
SELECT is(row(pg_temp.st(:'t2', 'b'), (SELECT unfinished_parents FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'t2', 'c')))::text,
          '(enqueued,1)', 'recover: b (its parent complete) is dispatched, c waits for b');
SELECT is((SELECT count(*) FROM tasker.task_transitions WHERE task_uuid = :'t2' AND event = 'recover'), 1::bigint,
          'recover: a live task takes no recover transition of its own');
SELECT throws_ok(format('SELECT * FROM tasker.recover_task(%L, ARRAY[%L]::uuid[])', :'t2', pg_temp.sid(:'t2', 'c')), 'TK409', NULL,
                 'recover: a pending step → TK409');
SELECT throws_ok(format('SELECT * FROM tasker.recover_task(%L)', :'t2'), 'TK409', NULL,
                 'recover: nothing in error or cancelled → TK409');
SELECT tasker.cancel_task(:'t2') \g /dev/null
SELECT throws_ok(format('SELECT * FROM tasker.recover_task(%L)', :'t2'), 'TK409',
                 format('task %s is cancelled and cannot be recovered', :'t2'), 'recover: a cancelled task → TK409');

-- =============================================================================================
-- 3. Through the DLQ update
-- =============================================================================================
SELECT task_uuid AS t3 FROM tasker.create_task('{"name": "lin", "namespace": "tap_dlq"}') \gset
SELECT is(pg_temp.give_up(:'t3', '2 hours'), ARRAY['moved_to_dlq'], 'setup: a third task in the DLQ');
SELECT dlq_entry_uuid AS d3 FROM tasker.tasks_dlq WHERE task_uuid = :'t3' \gset
CREATE TEMP TABLE w3 AS SELECT pg_temp.world(:'t3') AS w;
SELECT throws_ok(format($$SELECT tasker.api_update_dlq(%L, '{"recover": true, "resolution_status": "permanently_failed"}', 'api')$$, :'d3'),
                 'TK400', NULL, 'DLQ update: recover with another status → TK400');
SELECT throws_ok(format($$SELECT tasker.api_update_dlq(%L, '{"resolution_notes": "x", "steps": ["%s"]}', 'api')$$, :'d3', pg_temp.sid(:'t3', 'a')),
                 'TK400', NULL, 'DLQ update: steps without recover → TK400');
SELECT throws_ok(format($$SELECT tasker.api_update_dlq(%L, '{"recover": "yes"}', 'api')$$, :'d3'),
                 'TK400', NULL, 'DLQ update: recover must be a boolean');
SELECT throws_ok(format($$SELECT tasker.api_update_dlq(%L, '{"recover": true, "steps": ["not-a-uuid"]}', 'api')$$, :'d3'),
                 'TK400', NULL, 'DLQ update: steps must be step UUIDs');
SELECT is(pg_temp.world(:'t3'), (SELECT w FROM w3), 'DLQ update: the refused updates changed nothing');
CREATE TEMP TABLE u3 AS SELECT tasker.api_update_dlq(:'d3',
  '{"recover": true, "resolution_notes": "queue purged by mistake", "resolved_by": "ops-ben", "metadata": {"ticket": "OPS-7"}}', 'api:ops')::jsonb AS j;
SELECT is((SELECT row(j->>'resolution_status', j->>'resolved_by', j->>'resolution_notes', j->'metadata'->>'ticket',
                      j->'metadata'->'recovery'->>'claimed_operator', j->>'task_state')::text FROM u3),
          '(manually_resolved,ops-ben,"queue purged by mistake",OPS-7,ops-ben,steps_in_process)',
          'DLQ update with recover: the task runs again and the record says who and why');
SELECT is((SELECT row(processor, metadata->>'claimed_operator', metadata->>'reason')::text FROM tasker.task_transitions
           WHERE task_uuid = :'t3' AND event = 'recover'), '(api:ops,ops-ben,"queue purged by mistake")',
          'DLQ update with recover: the task''s recover transition is audited');

-- =============================================================================================
-- 4. A task with dynamic steps: the decision's rows stay, the decision is not run again
-- =============================================================================================
SELECT task_template_uuid FROM tasker.register_task_template(
  '{"name": "dyn", "namespace_name": "tap_dlq", "identity_strategy": "always_unique",
    "steps": [{"name": "d", "type": "decision", "handler": {"callable": "decide"}},
              {"name": "x", "handler": {"callable": "h"}, "dependencies": ["d"]},
              {"name": "y", "handler": {"callable": "h"}, "dependencies": ["d"]},
              {"name": "z", "type": "deferred_convergence", "handler": {"callable": "h"}, "dependencies": ["x", "y"]}]}') \g /dev/null
SELECT task_uuid AS t4 FROM tasker.create_task('{"name": "dyn", "namespace": "tap_dlq"}') \gset
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT pg_temp.ok(:'t4', 'd', '{"decision_point_outcome": {"type": "create_steps", "step_names": ["x"]}}') \g /dev/null
SELECT pg_temp.pc('tap_dlq') \g /dev/null
-- x is claimed, then lost.
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT is(pg_temp.give_up(:'t4', '2 hours'), ARRAY['moved_to_dlq'], 'setup: the dynamic task is moved to the DLQ');
SELECT is((SELECT string_agg(name || ':' || state, ',' ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = :'t4'),
          'd:complete,x:cancelled,z:cancelled', 'setup: the decision is complete, the rows it created cancelled');
CREATE TEMP TABLE d4 AS SELECT count(*) AS n FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = pg_temp.sid(:'t4', 'd');
CREATE TEMP TABLE r4 AS SELECT * FROM tasker.recover_task(:'t4');
SELECT is((SELECT row(state, steps_recovered, steps_enqueued)::text FROM r4), '(steps_in_process,2,1)',
          'recover (dynamic): x and z recovered, x dispatched');
SELECT is((SELECT string_agg(name || ':' || state || ':' || unfinished_parents, ',' ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = :'t4'),
          'd:complete:0,x:enqueued:0,z:pending:1',
          'recover (dynamic): same rows, no branch created twice, the convergence waits for x');
SELECT is((SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = pg_temp.sid(:'t4', 'd')), (SELECT n FROM d4),
          'recover (dynamic): the decision is not touched');
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT pg_temp.ok(:'t4', 'x') \g /dev/null
SELECT pg_temp.pc('tap_dlq') \g /dev/null
SELECT pg_temp.claim('tap_dlq') \g /dev/null
SELECT pg_temp.ok(:'t4', 'z') \g /dev/null
SELECT pg_temp.pc('tap_dlq') \g /dev/null
SELECT is(pg_temp.tst(:'t4'), 'complete', 'recover (dynamic): the task completes on the rows it has');

-- =============================================================================================
-- 5. DLQ statistics
-- =============================================================================================
-- Records so far: sections 1, 3 and 4 resolved by recovery, section 2's marked permanently_failed
-- here; and a new one, open, the oldest.
SELECT task_uuid AS t5 FROM tasker.create_task('{"name": "lin", "namespace": "tap_dlq"}') \gset
SELECT pg_temp.give_up(:'t5', '3 hours') \g /dev/null
UPDATE tasker.tasks_dlq SET dlq_timestamp = now() - interval '90 minutes' WHERE task_uuid = :'t5';  -- TEST-ONLY: an older entry
UPDATE tasker.tasks_dlq SET resolution_status = 'permanently_failed' WHERE task_uuid = :'t2';   -- TEST-ONLY
CREATE TEMP TABLE s AS SELECT tasker.api_dlq_stats()::jsonb AS j;
SELECT is((SELECT j->'by_status' FROM s),
          '{"pending": 1, "manually_resolved": 3, "permanently_failed": 1, "cancelled": 0}'::jsonb,
          'stats: counts by resolution status (every status listed)');
SELECT is((SELECT j->'total' FROM s), '5'::jsonb, 'stats: total');
SELECT is((SELECT jsonb_agg(jsonb_build_object('r', e->'dlq_reason', 't', e->'total', 'p', e->'pending', 'm', e->'manually_resolved',
                                               'f', e->'permanently_failed'))
           FROM s, jsonb_array_elements(j->'by_reason') e),
          '[{"r": "staleness_timeout", "t": 4, "p": 1, "m": 3, "f": 0}, {"r": "blocked_timeout", "t": 1, "p": 0, "m": 0, "f": 1}]'::jsonb,
          'stats: counts by reason and status');
SELECT is((SELECT row(j->'oldest_open'->>'task_uuid', (j->'oldest_open'->>'age_seconds')::bigint >= 5400)::text FROM s),
          row(:'t5', true)::text, 'stats: the oldest open entry, with its age');

SELECT * FROM finish();
ROLLBACK;
