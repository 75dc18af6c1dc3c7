-- consumed_messages.sql — pgTAP tests of what becomes of a queue message once consumed
-- (tasker.consume_messages, tasker.take_messages; issue 14 round three): archived by default,
-- dropped with tasker.consumed_messages = 'delete' (the history stays in the transition rows),
-- refused loudly for any other value; completion messages taken under a row lock only; the
-- relay's archive always kept; the audit tables keyed by step, their UUIDs v7 from the session's
-- PRNG (migration 0064). One transaction, rolled back
-- (namespace tap_cm).

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(17);

SELECT status FROM tasker.register_task_template(
  '{"name": "cm", "namespace_name": "tap_cm", "identity_strategy": "always_unique",
    "steps": [{"name": "a", "handler": {"callable": "h_a"}},
              {"name": "b", "handler": {"callable": "h_b"}, "dependencies": ["a"]}]}') \g /dev/null

CREATE FUNCTION pg_temp.counts() RETURNS text
LANGUAGE sql AS $$
  SELECT format('dispatch %s/%s, completion %s/%s',
    (SELECT count(*) FROM pgmq.q_tasker_dispatch_tap_cm), (SELECT count(*) FROM pgmq.a_tasker_dispatch_tap_cm),
    (SELECT count(*) FROM pgmq.q_tasker_completion_tap_cm), (SELECT count(*) FROM pgmq.a_tasker_completion_tap_cm))
$$;
-- One step of every task of tap_cm through its whole path: claim, hand-back, completion call.
CREATE FUNCTION pg_temp.one_round() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  v_n integer;
BEGIN
  PERFORM tasker.submit_step_results(jsonb_agg(jsonb_build_object('step_uuid', c.workflow_step_uuid,
    'attempt', c.attempt, 'success', true, 'result', '{}'::jsonb)))
  FROM tasker.tasker_claim_and_execute_step('tap_cm', 100, 300, 'w-cm') c;
  SELECT p.messages INTO v_n FROM tasker.process_completions('tap_cm', 100, 30) p;
  RETURN v_n;
END $$;

-- Unset: archived, as PGMQ's archive() does.
SELECT task_uuid AS t1 FROM tasker.create_task('{"name": "cm", "namespace": "tap_cm"}') \gset
SELECT is(pg_temp.one_round(), 1, 'default: the completion call consumed one message');
SELECT is(pg_temp.counts(), 'dispatch 1/1, completion 0/1',
          'default: the consumed dispatch and completion messages are in their archives (b is dispatched)');
SELECT is((SELECT read_ct FROM pgmq.a_tasker_completion_tap_cm), 0,
          'a completion message is taken under a row lock, not read with a visibility timeout: read_ct stays 0');
SELECT is((SELECT read_ct FROM pgmq.a_tasker_dispatch_tap_cm), 1,
          'a dispatch message is read with the lease as its visibility timeout, as before: read_ct 1');

-- 'delete': nothing more reaches the archives; the task still completes with its full history.
SELECT set_config('tasker.consumed_messages', 'delete', true) \g /dev/null
SELECT is(pg_temp.one_round(), 1, 'delete: the completion call consumed one message');
SELECT is(pg_temp.counts(), 'dispatch 0/1, completion 0/1',
          'delete: the queues are empty and the archives hold only what was archived before');
SELECT is((SELECT state FROM tasker.tasks WHERE task_uuid = :'t1'), 'complete', 'delete: the task completed');
SELECT is((SELECT array_agg(x.to_state ORDER BY x.ordinal) FROM tasker.workflow_step_transitions x
           JOIN tasker.workflow_steps s USING (workflow_step_uuid) WHERE s.task_uuid = :'t1' AND s.name = 'b'),
          ARRAY['pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration', 'complete'],
          'delete: the step''s history is whole in its transition rows');

-- Stale messages are consumed the same way: a duplicate dispatch message is dropped by the claim.
SELECT task_uuid AS t2 FROM tasker.create_task('{"name": "cm", "namespace": "tap_cm"}') \gset
SELECT count(*) FROM tasker.send_messages('tasker_dispatch_tap_cm', 'tap_cm',
  ARRAY(SELECT tasker.step_message(s.task_uuid, s.workflow_step_uuid, s.attempt_no + 1, NULL)
        FROM tasker.workflow_steps s WHERE s.task_uuid = :'t2' AND s.name = 'a')) \g /dev/null
SELECT is((SELECT count(*)::integer FROM tasker.tasker_claim_and_execute_step('tap_cm', 100, 300, 'w-cm')), 1,
          'delete: the claim takes the step once');
SELECT is(pg_temp.counts(), 'dispatch 1/1, completion 0/1',
          'delete: the duplicate is gone without an archive row, the claimed step''s message waits for its hand-back');

-- Any other value is an error where a message would be consumed, not a silent choice.
SELECT set_config('tasker.consumed_messages', 'delet', true) \g /dev/null
SELECT throws_ok($$SELECT tasker.consume_messages('tasker_dispatch_tap_cm',
                     ARRAY(SELECT msg_id FROM pgmq.q_tasker_dispatch_tap_cm))$$,
                 'TK400', 'tasker.consumed_messages must be archive or delete (got ''delet'')',
                 'an unknown tasker.consumed_messages value is refused with TK400, naming it');

-- The relay's archive (tasker.archive_messages) is kept whatever the setting: the sweep reads it.
SELECT set_config('tasker.consumed_messages', 'delete', true) \g /dev/null
SELECT is(tasker.archive_messages('tasker_dispatch_tap_cm', ARRAY(SELECT msg_id FROM pgmq.q_tasker_dispatch_tap_cm)), 1,
          'archive_messages moves a message under delete too');
SELECT is(pg_temp.counts(), 'dispatch 0/2, completion 0/1', 'archive_messages put it in the archive');

-- The audit tables are keyed by what reads them (migration 0063); their UUIDs stay filled in.
SELECT is((SELECT array_agg(pg_get_indexdef(i.indexrelid) ORDER BY c.relname)
           FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           WHERE i.indisprimary AND c.relname IN ('workflow_step_transitions', 'task_transitions', 'workflow_step_result_audit')),
          ARRAY['CREATE UNIQUE INDEX task_transitions_pkey ON tasker.task_transitions USING btree (task_uuid, ordinal)',
                'CREATE UNIQUE INDEX workflow_step_result_audit_pkey ON tasker.workflow_step_result_audit USING btree (workflow_step_uuid, attempt)',
                'CREATE UNIQUE INDEX workflow_step_transitions_pkey ON tasker.workflow_step_transitions USING btree (workflow_step_uuid, ordinal)'],
          'transitions are keyed by (owner, ordinal), result audits by (step, attempt)');
SELECT is((SELECT count(*) FILTER (WHERE workflow_step_transition_uuid IS NULL)
                  + count(*) - count(DISTINCT workflow_step_transition_uuid)
           FROM tasker.workflow_step_transitions x JOIN tasker.workflow_steps s USING (workflow_step_uuid)
           WHERE s.task_uuid IN (:'t1', :'t2')), 0::bigint,
          'every transition row still has its own UUID');

-- Their UUIDs are v7 (migration 0064): version 7, variant 10, and the time of the change in the
-- first 48 bits (milliseconds since 1970), so they still sort in the order rows were written.
SELECT is((SELECT count(*) FILTER (WHERE substr(u::text, 15, 1) <> '7' OR substr(u::text, 20, 1) NOT IN ('8', '9', 'a', 'b'))
           FROM (SELECT workflow_step_transition_uuid AS u FROM tasker.workflow_step_transitions
                 UNION ALL SELECT workflow_step_result_audit_uuid FROM tasker.workflow_step_result_audit
                 UNION ALL SELECT task_transition_uuid FROM tasker.task_transitions) z), 0::bigint,
          'audit UUIDs carry version 7 and the RFC 9562 variant');
SELECT ok((SELECT bool_and(abs(('x' || substr(replace(x.workflow_step_transition_uuid::text, '-', ''), 1, 12))::bit(48)::bigint
                               - (extract(epoch FROM x.created_at) * 1000)::bigint) < 60000)
           FROM tasker.workflow_step_transitions x JOIN tasker.workflow_steps s USING (workflow_step_uuid)
           WHERE s.task_uuid = :'t1'),
          'an audit UUID''s first 48 bits are the milliseconds of its row');

SELECT * FROM finish();
ROLLBACK;
