-- scale.sql — pgTAP tests of what migration 0030 and the scale rewrite of enqueue_ready_steps and
-- detect_and_transition_stuck_tasks (sql/0250) must keep or add (issue 6: a poll and a sweep cost
-- the same with 1,000 or 100,000 unfinished tasks):
--   * the poll, once plpgsql has cached its plan (6th call on), still dispatches a ready step of a
--     live task and still skips a task that has a step in error;
--   * the sweep's look for vanished dispatch messages reads a window of 10 × batch enqueued steps
--     per call, in (updated_at, step) order from where the last call stopped, wrapping around: each
--     missing message is found within ceil(enqueued / window) calls; ties on updated_at (one
--     transaction enqueues many steps) are ordered by step uuid; at most `batch` are re-sent per
--     call and the next call resumes right after the last one re-sent, so none is skipped;
--   * the stale-task candidates, now read through two partial indexes, are what the old single
--     query chose (the `batch` oldest by state change among the tasks quiet for the shortest
--     threshold or past the maximum lifetime) as long as at most `batch` are past the lifetime.
-- One transaction, rolled back. now() is frozen inside it: staleness and the resend grace are
-- passed by back-dating updated_at / state_changed_at / created_at (TEST-ONLY: no state change).

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(22);

CREATE FUNCTION pg_temp.tpl(p_ns text, p_name text, p_steps jsonb) RETURNS uuid
LANGUAGE sql AS $$
  SELECT task_template_uuid FROM tasker.register_task_template(jsonb_build_object(
    'name', p_name, 'namespace_name', p_ns, 'identity_strategy', 'always_unique', 'steps', p_steps))
$$;
CREATE FUNCTION pg_temp.step(p_name text, p_deps text[] DEFAULT '{}', p_retry jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('name', p_name, 'handler', jsonb_build_object('callable', 'h'),
                            'dependencies', to_jsonb(p_deps), 'retry', p_retry)
$$;
CREATE FUNCTION pg_temp.new_task(p_ns text, p_name text) RETURNS uuid
LANGUAGE sql AS $$ SELECT task_uuid FROM tasker.create_task(jsonb_build_object('name', p_name, 'namespace', p_ns)) $$;
CREATE FUNCTION pg_temp.sid(p_task uuid, p_name text) RETURNS uuid
LANGUAGE sql AS $$ SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.st(p_task uuid, p_name text) RETURNS text
LANGUAGE sql AS $$ SELECT state FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.poll() RETURNS text
LANGUAGE sql AS $$ SELECT row(steps_enqueued, tasks_touched)::text FROM tasker.enqueue_ready_steps(100) $$;

-- =============================================================================================
-- 1. The poll with its plan cached
-- =============================================================================================
SELECT pg_temp.tpl('tap_scale_poll', 'failing', jsonb_build_array(
  pg_temp.step('a', '{}', '{"max_attempts": 1}'), pg_temp.step('b'), pg_temp.step('d'), pg_temp.step('c', '{b}'))) \g /dev/null
SELECT pg_temp.tpl('tap_scale_poll', 'pair', jsonb_build_array(pg_temp.step('a'), pg_temp.step('b', '{a}'))) \g /dev/null
-- A task with a step in error, one still running (so it is not blocked) and one ready behind
-- a completed parent.
SELECT pg_temp.new_task('tap_scale_poll', 'failing') AS pf \gset
SELECT count(*) FROM tasker.tasker_claim_and_execute_step('tap_scale_poll', 10, 300, 'w1') \g /dev/null
SELECT count(*) FROM tasker.submit_step_results(jsonb_build_array(
  jsonb_build_object('step_uuid', pg_temp.sid(:'pf', 'a'), 'attempt', 1, 'success', false, 'error', jsonb_build_object('message', 'boom')),
  jsonb_build_object('step_uuid', pg_temp.sid(:'pf', 'b'), 'attempt', 1, 'success', true, 'result', '{}'::jsonb))) \g /dev/null
SELECT count(*) FROM tasker.process_completions('tap_scale_poll', 100, 30) \g /dev/null
SELECT is((SELECT row(pg_temp.st(:'pf', 'a'), pg_temp.st(:'pf', 'b'), pg_temp.st(:'pf', 'c'), pg_temp.st(:'pf', 'd'),
                      (SELECT state FROM tasker.tasks WHERE task_uuid = :'pf'))::text),
          '(error,complete,pending,in_progress,steps_in_process)',
          'poll setup: a in error, b complete, c ready behind b, d running, the task in process');
SELECT is(string_agg(pg_temp.poll(), ' '), '(0,0) (0,0) (0,0) (0,0) (0,0) (0,0) (0,0)',
          'poll: seven calls (the plan is cached from the sixth) dispatch nothing of a task with a step in error')
FROM generate_series(1, 7);
SELECT is(pg_temp.st(:'pf', 'c'), 'pending', 'poll: the ready step of the task with a step in error stays pending');
SELECT pg_temp.new_task('tap_scale_poll', 'pair') AS pp \gset
UPDATE tasker.workflow_steps SET unfinished_parents = 0 WHERE workflow_step_uuid = pg_temp.sid(:'pp', 'b');  -- TEST-ONLY: ready, never dispatched
SELECT is(pg_temp.poll(), '(1,1)', 'poll (cached plan): a ready step that was never dispatched is dispatched');
SELECT is(pg_temp.st(:'pp', 'b'), 'enqueued', 'poll (cached plan): … and is enqueued');

-- =============================================================================================
-- 2. The resend window
-- =============================================================================================
SELECT pg_temp.tpl('tap_scale_sw', 'one', jsonb_build_array(pg_temp.step('a'))) \g /dev/null
SELECT count(pg_temp.new_task('tap_scale_sw', 'one')) FROM generate_series(1, 45) \g /dev/null
-- TEST-ONLY: past the grace period, in groups of ten with the same updated_at (ties).
UPDATE tasker.workflow_steps s SET updated_at = now() - interval '10 minutes' + x.grp * interval '1 second'
FROM (SELECT s.workflow_step_uuid, (row_number() OVER (ORDER BY s.workflow_step_uuid) - 1) / 10 AS grp
      FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid) WHERE t.namespace = 'tap_scale_sw') x
WHERE s.workflow_step_uuid = x.workflow_step_uuid;
-- Each step's place in the walk's order.
CREATE TEMP TABLE ord AS
SELECT row_number() OVER (ORDER BY s.updated_at, s.workflow_step_uuid)::integer AS pos, s.workflow_step_uuid, s.updated_at,
       s.dispatch_msg_id
FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid) WHERE t.namespace = 'tap_scale_sw';
CREATE FUNCTION pg_temp.sweep_pos(p_dry boolean, p_action text) RETURNS integer[]
LANGUAGE sql AS $$
  SELECT coalesce(array_agg(o.pos ORDER BY o.pos), '{}')
  FROM tasker.detect_and_transition_stuck_tasks(2, p_dry) d JOIN ord o USING (workflow_step_uuid)
  WHERE d.action = p_action
$$;
CREATE FUNCTION pg_temp.drop_msgs(p_pos integer[]) RETURNS bigint
LANGUAGE sql AS $$
  SELECT count(pgmq.delete('tasker_dispatch_tap_scale_sw', o.dispatch_msg_id)) FROM ord o WHERE o.pos = ANY (p_pos)
$$;
UPDATE tasker.sweep_cursor SET resend_after_updated_at = NULL, resend_after_step_uuid = NULL;  -- TEST-ONLY: from the start
SELECT is(pg_temp.drop_msgs('{3,24,44}'), 3::bigint, 'resend setup: the messages of 3 of 45 enqueued steps deleted');
-- batch 2 → a window of 20: 1–20, 21–40, 41–45 then 1–15 (wrap), 16–35.
SELECT is(pg_temp.sweep_pos(true, 'would_resend'), '{3}', 'resend window, dry run 1: steps 1–20 checked');
SELECT is((SELECT row(c.resend_after_updated_at, c.resend_after_step_uuid)::text FROM tasker.sweep_cursor c),
          (SELECT row(o.updated_at, o.workflow_step_uuid)::text FROM ord o WHERE o.pos = 20),
          'resend window: the position is the last step looked at (a dry run moves it too)');
SELECT is(pg_temp.sweep_pos(true, 'would_resend'), '{24}', 'resend window, dry run 2: steps 21–40');
SELECT is(pg_temp.sweep_pos(true, 'would_resend'), '{3,44}', 'resend window, dry run 3: steps 41–45, then from the oldest again');
SELECT is(pg_temp.sweep_pos(true, 'would_resend'), '{24}', 'resend window, dry run 4: steps 16–35');
SELECT is((SELECT count(*) FROM ord o JOIN tasker.workflow_steps s USING (workflow_step_uuid)
           WHERE s.dispatch_msg_id IS DISTINCT FROM o.dispatch_msg_id OR s.updated_at <> o.updated_at), 0::bigint,
          'resend window: the dry runs re-sent nothing');
-- A dry run in a read-only transaction (a replica) works; it just keeps its place.
CREATE FUNCTION pg_temp.dry_run_read_only() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
BEGIN
  BEGIN  -- a subtransaction: read-only until its end
    PERFORM set_config('transaction_read_only', 'on', true);
    SELECT count(*) INTO n FROM tasker.detect_and_transition_stuck_tasks(2, true) WHERE action = 'would_resend';
    RAISE EXCEPTION 'read-only dry run: % would_resend', n;
  EXCEPTION WHEN raise_exception THEN
    RETURN SQLERRM;
  END;
EXCEPTION WHEN others THEN
  RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT is(pg_temp.dry_run_read_only(), 'read-only dry run: 2 would_resend', 'resend window: a dry run in a read-only transaction works (steps 36–45, 1–10)');
SELECT is(pg_temp.sweep_pos(true, 'would_resend'), '{3,44}', 'resend window: … and did not move the position');
-- More missing in a window than a batch: 2 re-sent per call, the next call resumes after them.
UPDATE tasker.sweep_cursor SET resend_after_updated_at = NULL, resend_after_step_uuid = NULL;  -- TEST-ONLY
SELECT is(pg_temp.drop_msgs('{5,6,7,8,9}'), 5::bigint, 'resend setup: 5 more messages deleted (8 missing)');
SELECT is(ARRAY[pg_temp.sweep_pos(false, 'resent')::text, pg_temp.sweep_pos(false, 'resent')::text, pg_temp.sweep_pos(false, 'resent')::text,
                pg_temp.sweep_pos(false, 'resent')::text, pg_temp.sweep_pos(false, 'resent')::text, pg_temp.sweep_pos(false, 'resent')::text],
          ARRAY['{3,5}', '{6,7}', '{8,9}', '{24}', '{44}', '{}'],
          'resend: two per call in walk order, resuming after the last re-sent; all 8 found, none twice');
SELECT is((SELECT count(*) FROM ord o JOIN tasker.workflow_steps s USING (workflow_step_uuid)
           WHERE o.pos IN (3, 5, 6, 7, 8, 9, 24, 44) AND s.state = 'enqueued' AND s.dispatch_msg_id <> o.dispatch_msg_id
             AND EXISTS (SELECT 1 FROM pgmq.q_tasker_dispatch_tap_scale_sw q WHERE q.msg_id = s.dispatch_msg_id)), 8::bigint,
          'resend: each of the 8 has a new message in its queue');
SELECT is((SELECT count(*) FROM ord o JOIN tasker.workflow_steps s USING (workflow_step_uuid)
           WHERE o.pos NOT IN (3, 5, 6, 7, 8, 9, 24, 44) AND s.dispatch_msg_id = o.dispatch_msg_id), 37::bigint,
          'resend: the 37 others keep their message');

-- =============================================================================================
-- 3. Stale-task candidates
-- =============================================================================================
SELECT pg_temp.tpl('tap_scale_dlq', 'one', jsonb_build_array(pg_temp.step('a'))) \g /dev/null
CREATE TEMP TABLE stale (label text PRIMARY KEY, task_uuid uuid, changed interval, created interval);
INSERT INTO stale VALUES
  ('t1', NULL, '5 hours', '5 hours'), ('t2', NULL, '4 hours', '4 hours'), ('t3', NULL, '3 hours', '3 hours'),
  ('t8', NULL, '150 minutes', '30 hours'),  -- both quiet and past the lifetime
  ('t4', NULL, '2 hours', '2 hours'),
  ('t5', NULL, '3 minutes', '30 hours'), ('t6', NULL, '2 minutes', '30 hours'), ('t7', NULL, '1 minute', '30 hours'),
  ('t9', NULL, '0', '0');                   -- neither
UPDATE stale SET task_uuid = pg_temp.new_task('tap_scale_dlq', 'one');
-- TEST-ONLY: age them; the steps moved when the task last changed state.
UPDATE tasker.tasks t SET state_changed_at = now() - x.changed, created_at = now() - x.created
FROM stale x WHERE t.task_uuid = x.task_uuid;
UPDATE tasker.workflow_steps s SET updated_at = now() - x.changed FROM stale x WHERE s.task_uuid = x.task_uuid;
CREATE FUNCTION pg_temp.dlq_labels(p_batch integer) RETURNS text
LANGUAGE sql AS $$
  SELECT string_agg(x.label, ',' ORDER BY x.changed DESC)
  FROM tasker.detect_and_transition_stuck_tasks(p_batch, true) d JOIN stale x USING (task_uuid)
  WHERE d.action = 'would_move_to_dlq'
$$;
-- What the single query before the rewrite chose (sql/0250 at b4ac93d).
CREATE FUNCTION pg_temp.old_candidates(p_batch integer) RETURNS text
LANGUAGE sql AS $$
  SELECT string_agg(x.label, ',' ORDER BY c.state_changed_at)
  FROM (SELECT t.task_uuid, t.state_changed_at FROM tasker.tasks t
        WHERE t.state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')
          AND (t.state_changed_at < now() - make_interval(mins => 10) OR t.created_at < now() - make_interval(hours => 24))
        ORDER BY t.state_changed_at LIMIT p_batch) c
  JOIN stale x USING (task_uuid)
$$;
SELECT is(pg_temp.dlq_labels(5), 't1,t2,t3,t8,t4', 'stale candidates, batch 5: the five quiet longest');
SELECT is(pg_temp.dlq_labels(6), 't1,t2,t3,t8,t4,t5', 'stale candidates, batch 6: … then the oldest past its lifetime');
SELECT is(pg_temp.dlq_labels(100), 't1,t2,t3,t8,t4,t5,t6,t7', 'stale candidates, batch 100: all eight, the one in both halves once');
SELECT is(ARRAY[pg_temp.dlq_labels(5), pg_temp.dlq_labels(6), pg_temp.dlq_labels(100)],
          ARRAY[pg_temp.old_candidates(5), pg_temp.old_candidates(6), pg_temp.old_candidates(100)],
          'stale candidates: the same as the single query before the rewrite');

SELECT * FROM finish();
ROLLBACK;
