-- tasker_api.sql — pgTAP tests of every tasker SQL function a user would notice (sql/02*.sql):
-- template registration, task creation, the worker protocol (claim, hand back, heartbeat), the
-- daemon's passes (process_completions, enqueue_ready_steps, the sweep), cancel, manual
-- resolution, readiness/execution context and backoff_delay.
--
-- Runs in one transaction that is rolled back; every section registers its own templates in its
-- own namespace (tap_api_*) so that queue contents and counts of one section never leak into the
-- next. Inside the transaction now() is frozen while clock_timestamp() moves on:
--   * next_retry_at = now() + backoff, so a backoff never passes by itself here. Where a test needs
--     it passed, it moves next_retry_at into the past with a plain UPDATE (test-only: no state
--     change, so no transition row; marked "TEST-ONLY" below).
--   * leases (clock_timestamp() + lease_secs) are expired the same way (UPDATE of lease_expires_at),
--     and staleness by back-dating state_changed_at / updated_at. Nothing here sleeps.
-- The advisory lock of the sweep is held by a second session through dblink (skipped when the
-- dblink extension is not installable).
-- Regression tests for bugs found while writing this file (all fixed in sql/ since):
--   * reset_for_retry reused attempt numbers, so the re-run's hand-back collided with the first
--     run's result-audit row (now: attempt_no, a fencing token that is never reset);
--   * submit_step_results decided statuses per step, not per (step, attempt) entry;
--   * create_task's "latest version" ordering cast '' to numeric for versions like '2.';
--   * the sweep's DLQ snapshot listed the steps after cancelling them (all "cancelled");
--   * enqueue_ready_steps raised 55000 when it found nothing to do.

BEGIN;
SET LOCAL client_min_messages = warning;
SELECT plan(344);

-- ---------------------------------------------------------------------------------------------
-- Helpers (temporary, gone with the transaction)
-- ---------------------------------------------------------------------------------------------
-- A step definition: name, dependencies, optional retry policy.
CREATE FUNCTION pg_temp.s(p_name text, p_deps text[] DEFAULT '{}', p_retry jsonb DEFAULT NULL) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_strip_nulls(jsonb_build_object('name', p_name, 'handler', jsonb_build_object('callable', 'h_' || p_name),
                                              'dependencies', to_jsonb(p_deps), 'retry', p_retry))
$$;
-- Register a template (always_unique unless p_extra says otherwise); returns its uuid.
CREATE FUNCTION pg_temp.tpl(p_ns text, p_name text, p_steps jsonb[], p_extra jsonb DEFAULT '{}') RETURNS uuid
LANGUAGE sql AS $$
  SELECT task_template_uuid FROM tasker.register_task_template(
    jsonb_build_object('name', p_name, 'namespace_name', p_ns, 'identity_strategy', 'always_unique',
                       'steps', to_jsonb(p_steps)) || p_extra)
$$;
CREATE FUNCTION pg_temp.new_task(p_ns text, p_name text, p_ctx jsonb DEFAULT '{}') RETURNS uuid
LANGUAGE sql AS $$
  SELECT task_uuid FROM tasker.create_task(jsonb_build_object('name', p_name, 'namespace', p_ns, 'context', p_ctx))
$$;
CREATE FUNCTION pg_temp.sid(p_task uuid, p_name text) RETURNS uuid
LANGUAGE sql AS $$ SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.st(p_task uuid, p_name text) RETURNS text
LANGUAGE sql AS $$ SELECT state FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.tst(p_task uuid) RETURNS text
LANGUAGE sql AS $$ SELECT state FROM tasker.tasks WHERE task_uuid = p_task $$;
-- The current attempt's number (attempt_no, the fencing token that messages and hand-backs carry).
CREATE FUNCTION pg_temp.att(p_task uuid, p_name text) RETURNS integer
LANGUAGE sql AS $$ SELECT attempt_no FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
-- Claim everything visible in a namespace; returns how many steps were claimed.
CREATE FUNCTION pg_temp.claim(p_ns text, p_qty integer DEFAULT 1000, p_worker text DEFAULT 'w1') RETURNS bigint
LANGUAGE sql AS $$ SELECT count(*) FROM tasker.tasker_claim_and_execute_step(p_ns, p_qty, 300, p_worker) $$;
-- Hand back the current attempt of a step.
CREATE FUNCTION pg_temp.ok(p_task uuid, p_name text, p_result jsonb DEFAULT '{"ok": true}') RETURNS text
LANGUAGE sql AS $$
  SELECT status FROM tasker.submit_step_result(pg_temp.sid(p_task, p_name), pg_temp.att(p_task, p_name), true, p_result)
$$;
CREATE FUNCTION pg_temp.fail(p_task uuid, p_name text, p_error jsonb DEFAULT '"boom"', p_retry_after integer DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
  SELECT status FROM tasker.submit_step_result(pg_temp.sid(p_task, p_name), pg_temp.att(p_task, p_name), false,
                                               NULL, p_error, NULL, NULL, p_retry_after)
$$;
CREATE FUNCTION pg_temp.pc(p_ns text) RETURNS integer
LANGUAGE sql AS $$ SELECT messages FROM tasker.process_completions(p_ns, 1000, 30) $$;
-- Messages of a queue table (q = live, a = archive).
CREATE FUNCTION pg_temp.qmsgs(p_queue text, p_kind text DEFAULT 'q') RETURNS SETOF jsonb
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT message FROM pgmq.%I ORDER BY msg_id', p_kind || '_' || p_queue);
END $$;
CREATE FUNCTION pg_temp.qn(p_queue text, p_kind text DEFAULT 'q') RETURNS bigint
LANGUAGE sql AS $$ SELECT count(*) FROM pg_temp.qmsgs(p_queue, p_kind) $$;
CREATE FUNCTION pg_temp.qhas(p_queue text, p_msg_id bigint, p_kind text DEFAULT 'q') RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE v boolean;
BEGIN
  EXECUTE format('SELECT EXISTS (SELECT 1 FROM pgmq.%I WHERE msg_id = $1)', p_kind || '_' || p_queue) INTO v USING p_msg_id;
  RETURN v;
END $$;
CREATE FUNCTION pg_temp.ntrans(p_step uuid) RETURNS bigint
LANGUAGE sql AS $$ SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = p_step $$;
-- The last transition of a step / task as "from>to:event".
CREATE FUNCTION pg_temp.last_tr(p_step uuid) RETURNS text
LANGUAGE sql AS $$
  SELECT coalesce(from_state, '') || '>' || to_state || ':' || event FROM tasker.workflow_step_transitions
  WHERE workflow_step_uuid = p_step ORDER BY ordinal DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.task_trs(p_task uuid) RETURNS text[]
LANGUAGE sql AS $$
  SELECT array_agg(coalesce(from_state, '') || '>' || to_state || ':' || event ORDER BY ordinal)
  FROM tasker.task_transitions WHERE task_uuid = p_task
$$;
CREATE FUNCTION pg_temp.step_trs(p_step uuid) RETURNS text[]
LANGUAGE sql AS $$
  SELECT array_agg(coalesce(from_state, '') || '>' || to_state || ':' || event ORDER BY ordinal)
  FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = p_step
$$;
-- Milliseconds of an interval.
CREATE FUNCTION pg_temp.ms(i interval) RETURNS numeric
LANGUAGE sql AS $$ SELECT round(extract(epoch FROM i) * 1000, 3) $$;

-- =============================================================================================
-- 1. register_task_template
-- =============================================================================================
CREATE TEMP TABLE t1 AS
SELECT * FROM tasker.register_task_template(jsonb_build_object(
  'name', 'diamond', 'namespace_name', 'tap_api_reg', 'description', 'a diamond',
  'steps', jsonb_build_array(
    jsonb_build_object('name', 'a', 'handler', jsonb_build_object('callable', 'h_a', 'initialization', '{"k": 1}'::jsonb)),
    pg_temp.s('b', '{a}', '{"max_attempts": 5, "backoff": "linear", "backoff_base_ms": 200, "max_backoff_ms": 9000, "retryable": false}'),
    pg_temp.s('c', '{a,a}') || '{"timeout_seconds": 60}',
    pg_temp.s('d', '{b,c}'))));
SELECT is((SELECT row(namespace, name, version, status)::text FROM t1), '(tap_api_reg,diamond,0.1.0,created)',
          'register: a new template is created, version defaults to 0.1.0');
SELECT is((SELECT count(*) FROM tasker.task_templates WHERE task_template_uuid = (SELECT task_template_uuid FROM t1)
             AND identity_strategy = 'strict' AND description = 'a diamond'), 1::bigint,
          'register: the template row is stored (identity_strategy defaults to strict)');
SELECT results_eq(
  $$SELECT name, position, handler_callable, handler_initialization, retryable, max_attempts, backoff, backoff_base_ms,
           max_backoff_ms, timeout_seconds, parent_count
    FROM tasker.named_steps WHERE task_template_uuid = (SELECT task_template_uuid FROM t1) ORDER BY position$$,
  $$VALUES ('a', 1, 'h_a', '{"k": 1}'::jsonb, true, 3, 'exponential', 1000, 30000, NULL::integer, 0),
           ('b', 2, 'h_b', '{}'::jsonb, false, 5, 'linear', 200, 9000, NULL, 1),
           ('c', 3, 'h_c', '{}'::jsonb, true, 3, 'exponential', 1000, 30000, 60, 1),
           ('d', 4, 'h_d', '{}'::jsonb, true, 3, 'exponential', 1000, 30000, NULL, 2)$$,
  'register: named steps with their retry policy, defaults, timeout and parent counts (a repeated dependency counts once)');
SELECT set_eq(
  $$SELECT p.name || '>' || c.name FROM tasker.named_step_edges e
    JOIN tasker.named_steps p ON p.named_step_uuid = e.from_named_step_uuid
    JOIN tasker.named_steps c ON c.named_step_uuid = e.to_named_step_uuid
    WHERE e.task_template_uuid = (SELECT task_template_uuid FROM t1)$$,
  ARRAY['a>b', 'a>c', 'b>d', 'c>d'],
  'register: named step edges parent > child');
SELECT set_eq($$SELECT queue_name::text FROM pgmq.meta WHERE queue_name::text LIKE '%tap_api_reg'$$,
              ARRAY['tasker_dispatch_tap_api_reg', 'tasker_completion_tap_api_reg'],
              'register: the namespace''s dispatch and completion queues exist in pgmq.meta');
SELECT is((SELECT count(*) FROM tasker.task_namespaces WHERE name = 'tap_api_reg'), 1::bigint,
          'register: the namespace row exists');
SELECT is((SELECT row(task_template_uuid, status)::text FROM tasker.register_task_template(
             (SELECT definition FROM tasker.task_templates WHERE task_template_uuid = (SELECT task_template_uuid FROM t1)))),
          row((SELECT task_template_uuid FROM t1), 'unchanged')::text,
          'register: the same template again is unchanged (same uuid)');
-- Same content, keys in another order: jsonb makes it the same document.
SELECT is((SELECT status FROM tasker.register_task_template(
             jsonb_build_object('steps', (SELECT definition->'steps' FROM tasker.task_templates
                                          WHERE task_template_uuid = (SELECT task_template_uuid FROM t1)),
                                'description', 'a diamond', 'namespace_name', 'tap_api_reg', 'name', 'diamond'))),
          'unchanged', 'register: key order does not matter');
CREATE TEMP TABLE t1u AS
SELECT * FROM tasker.register_task_template(jsonb_build_object(
  'name', 'diamond', 'namespace_name', 'tap_api_reg', 'steps', jsonb_build_array(pg_temp.s('only'))));
SELECT is((SELECT row(task_template_uuid, status)::text FROM t1u), row((SELECT task_template_uuid FROM t1), 'updated')::text,
          'register: a changed, unused version is updated in place');
SELECT is((SELECT array_agg(name) FROM tasker.named_steps WHERE task_template_uuid = (SELECT task_template_uuid FROM t1)),
          ARRAY['only'], 'register: an update replaces the named steps');
SELECT isnt((SELECT task_template_uuid FROM tasker.register_task_template(jsonb_build_object(
               'name', 'diamond', 'namespace_name', 'tap_api_reg', 'version', '2.0.0',
               'steps', jsonb_build_array(pg_temp.s('only'))))),
            (SELECT task_template_uuid FROM t1), 'register: a new version is a new template');
SELECT lives_ok($$SELECT pg_temp.new_task('tap_api_reg', 'diamond', '{"used": true}')$$, 'register: (a task uses 2.0.0)');
SELECT throws_ok($$SELECT * FROM tasker.register_task_template(jsonb_build_object('name', 'diamond',
                   'namespace_name', 'tap_api_reg', 'version', '2.0.0', 'steps', jsonb_build_array(pg_temp.s('other'))))$$,
                 'TK409', 'template tap_api_reg/diamond@2.0.0 is used by 1 task(s) and cannot change; register it under a new version',
                 'register: a version used by a task cannot change (TK409)');
SELECT is((SELECT status FROM tasker.register_task_template(jsonb_build_object('name', 'diamond',
             'namespace_name', 'tap_api_reg', 'version', '2.0.0', 'steps', jsonb_build_array(pg_temp.s('only'))))),
          'unchanged', 'register: re-registering a used version unchanged is fine');

-- Refusals: TK400 with a message naming the template and the step.
CREATE FUNCTION pg_temp.reg_refused(p_tpl jsonb, p_msg text, p_desc text) RETURNS text
LANGUAGE sql AS $$
  SELECT throws_ok(format('SELECT * FROM tasker.register_task_template(%L::jsonb)', p_tpl), 'TK400', p_msg, p_desc)
$$;
SELECT pg_temp.reg_refused('[]', 'a template must be a JSON object', 'refused: not an object');
SELECT pg_temp.reg_refused('{"namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}}]}',
  'template (unnamed): name is required (1 to 255 characters)', 'refused: missing name');
SELECT pg_temp.reg_refused('{"name": 5, "namespace_name": "tap_api_reg"}',
  'template: name must be a string (got 5)', 'refused: name not a string');
SELECT pg_temp.reg_refused('{"name": "x", "steps": [{"name": "a", "handler": {"callable": "h"}}]}',
  'template x: namespace_name is required', 'refused: missing namespace');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "Bad-NS", "steps": [{"name": "a", "handler": {"callable": "h"}}]}',
  'template x: namespace_name "Bad-NS" must match ^[a-z][a-z0-9_]{0,28}$', 'refused: bad namespace');
SELECT pg_temp.reg_refused(jsonb_build_object('name', 'x', 'namespace_name', 'n' || repeat('x', 29),
                             'steps', jsonb_build_array(pg_temp.s('a'))),
  format('template x: namespace_name %s must match ^[a-z][a-z0-9_]{0,28}$', to_json('n' || repeat('x', 29))),
  'refused: namespace of 30 characters (queue names would pass PGMQ''s limit)');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "version": ".1", "steps": [{"name": "a", "handler": {"callable": "h"}}]}',
  'template x: version ".1" is not a valid version string', 'refused: bad version');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "identity_strategy": "fuzzy", "steps": [{"name": "a", "handler": {"callable": "h"}}]}',
  'template x: identity_strategy must be strict, caller_provided or always_unique (got fuzzy)', 'refused: bad identity strategy');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "lifecycle": [], "steps": [{"name": "a", "handler": {"callable": "h"}}]}',
  'template x: lifecycle must be an object', 'refused: lifecycle not an object');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": []}',
  'template x: steps must be a non-empty array', 'refused: no steps');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": ["a"]}',
  'template x: step #1: must be an object', 'refused: a step that is not an object');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"handler": {"callable": "h"}}]}',
  'template x: step #1: name is required (a string of 1 to 128 characters)', 'refused: a step without a name');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}}, {"name": "a", "handler": {"callable": "h"}}]}',
  'template x: step a: duplicate step name', 'refused: duplicate step name');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {}}]}',
  'template x: step a: handler.callable is required (a non-empty string)', 'refused: a step without handler.callable');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}}, {"name": "b", "handler": {"callable": "h"}, "dependencies": ["zz"]}]}',
  'template x: step b depends on unknown step zz', 'refused: unknown dependency');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "depends_on": ["a"]}]}',
  'template x: step a: depends on itself', 'refused: self-dependency (depends_on alias)');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "dependencies": ["c"]}, {"name": "b", "handler": {"callable": "h"}, "dependencies": ["a"]}, {"name": "c", "handler": {"callable": "h"}, "dependencies": ["b"]}]}',
  'template x: dependency cycle: a -> c -> b -> a (each step depends on the next)', 'refused: a 3-cycle, the message names its steps');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "z", "handler": {"callable": "h"}, "dependencies": ["a"]}, {"name": "a", "handler": {"callable": "h"}, "dependencies": ["b"]}, {"name": "b", "handler": {"callable": "h"}, "dependencies": ["a"]}, {"name": "r", "handler": {"callable": "h"}}]}',
  'template x: dependency cycle: a -> b -> a (each step depends on the next)', 'refused: a cycle below a dependent step names only the cycle');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "dependencies": "b"}]}',
  'template x: step a: dependencies must be an array of step names', 'refused: dependencies not an array');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"max_attempts": -1}}]}',
  'template x: step a: retry: max_attempts must be an integer between 0 and 100 (got -1)', 'refused: max_attempts -1 (0, as in tasker-core, means one run)');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"max_attempts": 101}}]}',
  'template x: step a: retry: max_attempts must be an integer between 0 and 100 (got 101)', 'refused: max_attempts 101');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"max_attempts": "3"}}]}',
  'template x: step a: retry: max_attempts must be an integer between 0 and 100 (got "3")', 'refused: max_attempts as a string');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"max_attempts": 2.5}}]}',
  'template x: step a: retry: max_attempts must be an integer between 0 and 100 (got 2.5)', 'refused: max_attempts not an integer');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"backoff_base_ms": -1}}]}',
  'template x: step a: retry: backoff_base_ms must be an integer between 0 and 3600000 (got -1)', 'refused: backoff_base_ms negative');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"max_backoff_ms": 3600001}}]}',
  'template x: step a: retry: max_backoff_ms must be an integer between 0 and 3600000 (got 3600001)', 'refused: max_backoff_ms over an hour');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"backoff": "quadratic"}}]}',
  'template x: step a: retry.backoff must be none, linear, exponential or fibonacci (got "quadratic")', 'refused: unknown backoff');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"retryable": "yes"}}]}',
  'template x: step a: retry.retryable must be true or false', 'refused: retryable not a boolean');
SELECT task_template_uuid AS nullretry FROM tasker.register_task_template(
  '{"name": "nullretry", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": {"retryable": null}}]}') \gset
SELECT is((SELECT n.retryable FROM tasker.named_steps n WHERE n.task_template_uuid = :'nullretry'),
          true, 'retry.retryable null means the default (true), like every other optional field');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "retry": 5}]}',
  'template x: step a: retry must be an object', 'refused: retry not an object');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "type": "fancy"}]}',
  'template x: step a: unknown step type "fancy" (standard, decision, deferred_convergence, batchable or batch_worker)',
  'refused: unknown step type');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "step_type": "batchable"}]}',
  'template x: step a: a batchable step needs a batch_worker step that depends on it',
  'refused: a batchable step without workers (step_type alias)');
SELECT pg_temp.reg_refused('{"name": "x", "namespace_name": "tap_api_reg", "steps": [{"name": "a", "handler": {"callable": "h"}, "timeout_seconds": 0}]}',
  'template x: step a: timeout_seconds must be an integer between 1 and 604800 (got 0)', 'refused: timeout_seconds 0');
SELECT is((SELECT count(*) FROM tasker.task_templates WHERE name = 'x'), 0::bigint, 'refused templates store nothing');

-- =============================================================================================
-- 2. create_task
-- =============================================================================================
SELECT pg_temp.tpl('tap_api_ct', 'diamond', ARRAY[pg_temp.s('a'), pg_temp.s('b', '{a}'), pg_temp.s('c', '{a}'),
                                                  pg_temp.s('d', '{b,c}', '{"max_attempts": 7, "retryable": false}')],
                   '{"identity_strategy": "strict"}');
CREATE TEMP TABLE ct AS SELECT * FROM tasker.create_task('{"name": "diamond", "namespace": "tap_api_ct", "context": {"x": 1, "y": [1, 2]}}');
SELECT is((SELECT row(created, state, steps_enqueued)::text FROM ct), '(t,steps_in_process,1)',
          'create_task: created, the task is steps_in_process, one root dispatched');
SELECT is((SELECT identity_hash FROM ct),
          encode(sha256(convert_to((SELECT task_template_uuid FROM tasker.task_templates WHERE name = 'diamond'
                                      AND task_namespace_uuid = (SELECT task_namespace_uuid FROM tasker.task_namespaces WHERE name = 'tap_api_ct'))::text
                                   || ':context:' || '{"x": 1, "y": [1, 2]}'::jsonb::text, 'UTF8')), 'hex'),
          'create_task: strict identity = sha256(template uuid :context: canonical context)');
SELECT is((SELECT row(t.namespace, t.state, t.priority, t.context, t.initiator, t.source_system, t.reason, t.tags,
                      t.requested_at = now(), t.completed_at IS NULL, t.correlation_id IS NOT NULL, t.idempotency_key IS NULL)::text
           FROM tasker.tasks t WHERE t.task_uuid = (SELECT task_uuid FROM ct)),
          row('tap_api_ct', 'steps_in_process', 0, '{"x": 1, "y": [1, 2]}'::jsonb, 'system', 'tasker', 'Task requested',
              '[]'::jsonb, true, true, true, true)::text,
          'create_task: the task row with its defaults');
SELECT results_eq(
  $$SELECT s.name, s.state, s.attempts, s.max_attempts, s.retryable, s.unfinished_parents, s.dispatch_msg_id IS NOT NULL,
           s.next_retry_at IS NULL AND s.lease_expires_at IS NULL AND s.claimed_by IS NULL
    FROM tasker.workflow_steps s JOIN tasker.named_steps n USING (named_step_uuid)
    WHERE s.task_uuid = (SELECT task_uuid FROM ct) ORDER BY n.position$$,
  $$VALUES ('a', 'enqueued', 0, 3, true, 0, true, true), ('b', 'pending', 0, 3, true, 1, false, true),
           ('c', 'pending', 0, 3, true, 1, false, true), ('d', 'pending', 0, 7, false, 2, false, true)$$,
  'create_task: the root is enqueued, the others pending with their unfinished-parent counts and retry policy');
SELECT is(ARRAY(SELECT pg_temp.qmsgs('tasker_dispatch_tap_api_ct')),
          ARRAY[jsonb_build_object('task_uuid', (SELECT task_uuid FROM ct), 'step_uuid', pg_temp.sid((SELECT task_uuid FROM ct), 'a'),
                                   'attempt', 1, 'correlation_id', (SELECT correlation_id FROM tasker.tasks WHERE task_uuid = (SELECT task_uuid FROM ct)))],
          'create_task: exactly one dispatch message, {task_uuid, step_uuid, attempt 1, correlation_id}, for the root');
SELECT ok(pg_temp.qhas('tasker_dispatch_tap_api_ct', (SELECT dispatch_msg_id FROM tasker.workflow_steps
                                                      WHERE workflow_step_uuid = pg_temp.sid((SELECT task_uuid FROM ct), 'a'))),
          'create_task: the root step records its dispatch msg_id');
SELECT is(pg_temp.qn('tasker_completion_tap_api_ct'), 0::bigint, 'create_task: nothing in the completion queue');
SELECT set_eq(
  $$SELECT p.name || '>' || c.name FROM tasker.workflow_step_edges e
    JOIN tasker.workflow_steps p ON p.workflow_step_uuid = e.from_step_uuid
    JOIN tasker.workflow_steps c ON c.workflow_step_uuid = e.to_step_uuid
    WHERE e.task_uuid = (SELECT task_uuid FROM ct)$$,
  ARRAY['a>b', 'a>c', 'b>d', 'c>d'], 'create_task: the step edges');
SELECT is(pg_temp.task_trs((SELECT task_uuid FROM ct)), ARRAY['>steps_in_process:create_and_enqueue'],
          'create_task: one task transition (creation)');
SELECT results_eq(
  $$SELECT s.name, t.from_state, t.to_state, t.event, t.attempt, t.metadata
    FROM tasker.workflow_step_transitions t JOIN tasker.workflow_steps s USING (workflow_step_uuid)
    WHERE s.task_uuid = (SELECT task_uuid FROM ct) ORDER BY s.name$$,
  format($$VALUES ('a', NULL::text, 'enqueued', 'create_and_enqueue', 0, '{"msg_id": %s}'::jsonb),
                  ('b', NULL, 'pending', 'create', 0, '{}'), ('c', NULL, 'pending', 'create', 0, '{}'),
                  ('d', NULL, 'pending', 'create', 0, '{}')$$,
         (SELECT dispatch_msg_id FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid((SELECT task_uuid FROM ct), 'a'))),
  'create_task: one creation transition per step (the root''s carries its msg_id)');

-- Duplicates (strict identity: same template and context, whatever the key order).
CREATE TEMP TABLE counts0 AS
SELECT (SELECT count(*) FROM tasker.tasks) AS tasks, (SELECT count(*) FROM tasker.workflow_steps) AS steps,
       (SELECT count(*) FROM tasker.task_transitions) + (SELECT count(*) FROM tasker.workflow_step_transitions) AS trs,
       pg_temp.qn('tasker_dispatch_tap_api_ct') AS msgs;
SELECT is((SELECT row(task_uuid, created, state, steps_enqueued, identity_hash)::text
           FROM tasker.create_task('{"name": "diamond", "namespace": "tap_api_ct", "context": {"y": [1, 2], "x": 1}}')),
          (SELECT row(task_uuid, false, state, 0, identity_hash)::text FROM ct),
          'create_task: a duplicate returns created = false with the same task uuid');
SELECT is((SELECT row((SELECT count(*) FROM tasker.tasks), (SELECT count(*) FROM tasker.workflow_steps),
                      (SELECT count(*) FROM tasker.task_transitions) + (SELECT count(*) FROM tasker.workflow_step_transitions),
                      pg_temp.qn('tasker_dispatch_tap_api_ct'))::text),
          (SELECT row(tasks, steps, trs, msgs)::text FROM counts0),
          'create_task: a duplicate creates no task, step, transition or message');
SELECT isnt((SELECT task_uuid FROM tasker.create_task('{"name": "diamond", "namespace": "tap_api_ct", "context": {"x": 2}}')),
            (SELECT task_uuid FROM ct), 'create_task: strict identity: another context is another task');
-- always_unique
SELECT pg_temp.tpl('tap_api_ct', 'uniq', ARRAY[pg_temp.s('a')]) \g /dev/null
SELECT is((SELECT count(DISTINCT task_uuid) FROM (
             SELECT task_uuid FROM tasker.create_task('{"name": "uniq", "namespace": "tap_api_ct"}')
             UNION ALL SELECT task_uuid FROM tasker.create_task('{"name": "uniq", "namespace": "tap_api_ct"}')) x), 2::bigint,
          'create_task: always_unique makes a new task for the same request');
CREATE TEMP TABLE ik1 AS SELECT * FROM tasker.create_task('{"name": "uniq", "namespace": "tap_api_ct", "idempotency_key": "k-1"}');
CREATE TEMP TABLE ik2 AS SELECT * FROM tasker.create_task('{"name": "uniq", "namespace": "tap_api_ct", "idempotency_key": "k-1", "context": {"other": 1}}');
SELECT is((SELECT row(ik1.created, ik2.created, ik1.task_uuid = ik2.task_uuid)::text FROM ik1, ik2), '(t,f,t)',
          'create_task: an idempotency_key dedups even under always_unique (same uuid, created = false)');
-- caller_provided
SELECT pg_temp.tpl('tap_api_ct', 'caller', ARRAY[pg_temp.s('a')], '{"identity_strategy": "caller_provided"}') \g /dev/null
SELECT throws_ok($$SELECT * FROM tasker.create_task('{"name": "caller", "namespace": "tap_api_ct"}')$$, 'TK400',
                 'template tap_api_ct/caller@0.1.0 uses identity_strategy caller_provided: the request needs an idempotency_key',
                 'create_task: caller_provided without idempotency_key is refused');
CREATE TEMP TABLE ck AS SELECT * FROM tasker.create_task('{"name": "caller", "namespace": "tap_api_ct", "idempotency_key": "order-42", "context": {"a": 1}}');
SELECT is((SELECT identity_hash FROM ck),
          encode(sha256(convert_to((SELECT task_template_uuid FROM tasker.task_templates WHERE name = 'caller')::text || ':key:order-42', 'UTF8')), 'hex'),
          'create_task: key identity = sha256(template uuid :key: key)');
SELECT is((SELECT row(task_uuid, created)::text FROM tasker.create_task('{"name": "caller", "namespace": "tap_api_ct", "idempotency_key": "order-42", "context": {"a": 2}}')),
          (SELECT row(task_uuid, false)::text FROM ck), 'create_task: caller_provided: same key, other context is a duplicate');
SELECT is((SELECT idempotency_key FROM tasker.tasks WHERE task_uuid = (SELECT task_uuid FROM ck)), 'order-42',
          'create_task: the idempotency key is stored');
SELECT is((SELECT row(created)::text FROM tasker.create_task('{"name": "diamond", "namespace": "tap_api_ct", "context": {"x": 1, "y": [1, 2]}, "idempotency_key": "fresh"}')),
          '(t)', 'create_task: an idempotency_key replaces the strict context identity');
-- Request fields.
CREATE TEMP TABLE cf AS SELECT * FROM tasker.create_task(
  '{"name": "uniq", "namespace": "tap_api_ct", "priority": -7, "tags": ["t1", "t2"], "initiator": "alice",
    "source_system": "crm", "reason": "because", "correlation_id": "11111111-2222-4333-8444-555555555555",
    "parent_correlation_id": "66666666-7777-4888-9999-000000000000", "requested_at": "2020-01-02T03:04:05Z"}');
SELECT is((SELECT row(priority, tags, initiator, source_system, reason, correlation_id, parent_correlation_id, requested_at)::text
           FROM tasker.tasks WHERE task_uuid = (SELECT task_uuid FROM cf)),
          row(-7, '["t1", "t2"]'::jsonb, 'alice', 'crm', 'because', '11111111-2222-4333-8444-555555555555'::uuid,
              '66666666-7777-4888-9999-000000000000'::uuid, '2020-01-02T03:04:05Z'::timestamptz)::text,
          'create_task: request fields are stored');
SELECT is((SELECT (m->>'correlation_id') FROM pg_temp.qmsgs('tasker_dispatch_tap_api_ct') m
           WHERE m->>'task_uuid' = (SELECT task_uuid FROM cf)::text), '11111111-2222-4333-8444-555555555555',
          'create_task: the dispatch message carries the caller''s correlation_id');
-- Unknown template, malformed requests.
SELECT throws_ok($$SELECT * FROM tasker.create_task('{"name": "nosuch", "namespace": "tap_api_ct"}')$$, 'TK404',
                 'unknown template tap_api_ct/nosuch@latest', 'create_task: unknown template → TK404');
SELECT throws_ok($$SELECT * FROM tasker.create_task('{"name": "uniq", "namespace": "tap_api_ct", "version": "9.9.9"}')$$, 'TK404',
                 'unknown template tap_api_ct/uniq@9.9.9', 'create_task: unknown version → TK404');
SELECT throws_ok($$SELECT * FROM tasker.create_task('{"name": "uniq", "namespace": "tap_api_nons"}')$$, 'TK404',
                 'unknown template tap_api_nons/uniq@latest', 'create_task: unknown namespace → TK404');
SELECT throws_ok($$SELECT * FROM tasker.create_task('{"name": "uniq"}')$$, 'TK404',
                 'unknown template default/uniq@latest', 'create_task: the namespace defaults to "default"');
CREATE FUNCTION pg_temp.ct_refused(p_req jsonb, p_msg text, p_desc text) RETURNS text
LANGUAGE sql AS $$
  SELECT throws_ok(format('SELECT * FROM tasker.create_task(%L::jsonb)', p_req), 'TK400', p_msg, p_desc)
$$;
SELECT pg_temp.ct_refused('"x"', 'a task request must be a JSON object', 'create_task TK400: not an object');
SELECT pg_temp.ct_refused('{"namespace": "tap_api_ct"}', 'task request: name is required', 'create_task TK400: no name');
SELECT pg_temp.ct_refused('{"name": 3}', 'task request: name must be a string (got 3)', 'create_task TK400: name not a string');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "Tap"}', 'task request: invalid namespace ''Tap''', 'create_task TK400: bad namespace');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "context": [1]}', 'task request: context must be a JSON object', 'create_task TK400: context not an object');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "tags": "t"}', 'task request: tags must be an array of strings', 'create_task TK400: tags not an array');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "tags": {"a": 1}}', 'task request: tags must be an array of strings', 'create_task TK400: tags an object');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "tags": ["a", 1]}', 'task request: tags must be an array of strings', 'create_task TK400: a tag not a string');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "priority": 101}', 'task request: priority must be an integer between -100 and 100 (got 101)', 'create_task TK400: priority out of range');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "priority": "high"}', 'task request: priority must be an integer between -100 and 100 (got "high")', 'create_task TK400: priority not a number');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "correlation_id": "nope"}', 'task request: correlation_id must be a UUID', 'create_task TK400: bad correlation_id');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "parent_correlation_id": "nope"}', 'task request: parent_correlation_id must be a UUID', 'create_task TK400: bad parent_correlation_id');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "idempotency_key": ""}', 'task request: idempotency_key must be 1 to 255 characters', 'create_task TK400: empty idempotency_key');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "requested_at": "yesterday-ish"}', 'task request: requested_at must be a timestamp (got "yesterday-ish")', 'create_task TK400: bad requested_at');
SELECT pg_temp.ct_refused(jsonb_build_object('name', 'uniq', 'namespace', 'tap_api_ct', 'initiator', repeat('i', 256)), 'task request: initiator is longer than 255 characters', 'create_task TK400: initiator too long');
SELECT pg_temp.ct_refused('{"name": "uniq", "namespace": "tap_api_ct", "reason": 5}', 'task request: reason must be a string (got 5)', 'create_task TK400: reason not a string');
-- Latest version when version is omitted: highest numeric version, 1.10 > 1.9.
SELECT pg_temp.tpl('tap_api_ct', 'ver', ARRAY[pg_temp.s('v1_10')], '{"version": "1.10.0"}') \g /dev/null
SELECT pg_temp.tpl('tap_api_ct', 'ver', ARRAY[pg_temp.s('v1_9')], '{"version": "1.9.0"}') \g /dev/null
SELECT pg_temp.tpl('tap_api_ct', 'ver', ARRAY[pg_temp.s('v0_5')], '{"version": "0.5"}') \g /dev/null
-- (A statement does not see rows inserted by a function it calls: create, then look, in two.)
SELECT task_uuid AS ver_latest FROM tasker.create_task('{"name": "ver", "namespace": "tap_api_ct"}') \gset
SELECT task_uuid AS ver_19 FROM tasker.create_task('{"name": "ver", "namespace": "tap_api_ct", "version": "1.9.0"}') \gset
SELECT is((SELECT s.name FROM tasker.workflow_steps s WHERE s.task_uuid = :'ver_latest'),
          'v1_10', 'create_task: without a version the latest (1.10.0 over 1.9.0 and 0.5) is used');
SELECT is((SELECT s.name FROM tasker.workflow_steps s WHERE s.task_uuid = :'ver_19'),
          'v1_9', 'create_task: an explicit version is used');
-- Regression: a valid version string with an empty numeric part ('1..2', '2.') broke the "latest"
-- ordering with 22P02 for every create_task of that template name.
SELECT pg_temp.tpl('tap_api_ct', 'ver2', ARRAY[pg_temp.s('x')], '{"version": "1.0"}') \g /dev/null
SELECT pg_temp.tpl('tap_api_ct', 'ver2', ARRAY[pg_temp.s('y')], '{"version": "2."}') \g /dev/null
SELECT lives_ok($$SELECT * FROM tasker.create_task('{"name": "ver2", "namespace": "tap_api_ct"}')$$,
                'create_task: latest-version ordering copes with version "2." (registered as valid)');
SELECT lives_ok($$SELECT * FROM tasker.create_task('{"name": "ver2", "namespace": "tap_api_ct", "version": "1.0"}')$$,
                'create_task: an explicit version works even when a sibling version is "2."');

-- =============================================================================================
-- 3. tasker_claim_and_execute_step
-- =============================================================================================
SELECT pg_temp.tpl('tap_api_cl', 'chain', ARRAY[
  jsonb_build_object('name', 'a', 'handler', jsonb_build_object('callable', 'Mod::A', 'initialization', '{"url": "x"}'::jsonb),
                     'timeout_seconds', 45),
  pg_temp.s('b', '{a}'), pg_temp.s('c', '{b}')]);
SELECT pg_temp.tpl('tap_api_cl', 'fan', ARRAY[pg_temp.s('r1'), pg_temp.s('r2'), pg_temp.s('r3')]) \g /dev/null
SELECT pg_temp.new_task('tap_api_cl', 'chain', '{"order": 7}') AS cl \gset
CREATE TEMP TABLE clk0 AS SELECT clock_timestamp() AS at;
CREATE TEMP TABLE cl1 AS SELECT * FROM tasker.tasker_claim_and_execute_step('tap_api_cl', 10, 300, 'w-claim');
CREATE TEMP TABLE clk1 AS SELECT clock_timestamp() AS at;
SELECT is((SELECT count(*) FROM cl1), 1::bigint, 'claim: the one dispatched step is claimed');
SELECT is((SELECT row(msg_id, task_uuid, workflow_step_uuid, attempt, step_name, handler_callable, handler_initialization,
                      inputs, task_context, dependency_results, timeout_seconds, correlation_id, namespace, task_name)::text FROM cl1),
          (SELECT row(s.dispatch_msg_id, s.task_uuid, s.workflow_step_uuid, 1, 'a', 'Mod::A', '{"url": "x"}'::jsonb,
                      NULL::jsonb, '{"order": 7}'::jsonb, '{}'::jsonb, 45, t.correlation_id, 'tap_api_cl', 'chain')::text
           FROM tasker.workflow_steps s JOIN tasker.tasks t USING (task_uuid) WHERE s.workflow_step_uuid = pg_temp.sid(:'cl', 'a')),
          'claim: returns msg, step, attempt 1, handler, initialization, context, timeout, correlation, namespace, task name');
SELECT ok((SELECT lease_expires_at BETWEEN (SELECT at FROM clk0) + interval '300 s' AND (SELECT at FROM clk1) + interval '300 s' FROM cl1),
          'claim: the lease ends lease_secs from now (clock time)');
SELECT is((SELECT row(state, attempts, claimed_by, last_attempted_at = now(), lease_expires_at = (SELECT lease_expires_at FROM cl1))::text
           FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'cl', 'a')),
          '(in_progress,1,w-claim,t,t)', 'claim: the step is in_progress, attempts + 1, claimed by the worker, leased');
SELECT is((SELECT row(from_state, to_state, event, attempt, processor, metadata->'msg_id' = to_jsonb((SELECT msg_id FROM cl1)))::text
           FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = pg_temp.sid(:'cl', 'a') ORDER BY ordinal DESC LIMIT 1),
          '(enqueued,in_progress,claim,1,w-claim,t)', 'claim: one transition enqueued → in_progress (claim) by the worker');
SELECT ok(pg_temp.qhas('tasker_dispatch_tap_api_cl', (SELECT msg_id FROM cl1)), 'claim: the claimed message stays in the queue (invisible)');
SELECT is(pg_temp.claim('tap_api_cl'), 0::bigint, 'claim: an invisible message is not claimed twice');
-- qty
SELECT pg_temp.new_task('tap_api_cl', 'fan') AS fan \gset
SELECT is(pg_temp.claim('tap_api_cl', 2), 2::bigint, 'claim: qty 2 of 3 ready claims 2');
SELECT is(pg_temp.claim('tap_api_cl', 5), 1::bigint, 'claim: the rest afterwards');
SELECT is((SELECT array_agg(state ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = :'fan'),
          ARRAY['in_progress', 'in_progress', 'in_progress'], 'claim: all three fan steps running');
-- dependency_results: the results of every ancestor, transitively.
SELECT pg_temp.ok(:'cl', 'a', '{"a_out": 1}') \g /dev/null
SELECT pg_temp.pc('tap_api_cl') \g /dev/null
SELECT is((SELECT dependency_results FROM tasker.tasker_claim_and_execute_step('tap_api_cl', 10, 300, 'w-claim')),
          '{"a": {"a_out": 1}}'::jsonb, 'claim: dependency_results holds the parent''s results');
SELECT pg_temp.ok(:'cl', 'b', '{"b_out": 2}') \g /dev/null
SELECT pg_temp.pc('tap_api_cl') \g /dev/null
SELECT is((SELECT dependency_results FROM tasker.tasker_claim_and_execute_step('tap_api_cl', 10, 300, 'w-claim')),
          '{"a": {"a_out": 1}, "b": {"b_out": 2}}'::jsonb, 'claim: dependency_results includes grandparents');
-- Duplicate and stale messages are archived and skipped, not recorded as rejected.
SELECT pg_temp.new_task('tap_api_cl', 'chain') AS cl2 \gset
SELECT pgmq.send('tasker_dispatch_tap_api_cl', tasker.step_message(:'cl2', pg_temp.sid(:'cl2', 'a'), 1, gen_random_uuid())) AS dup_id \gset
SELECT pgmq.send('tasker_dispatch_tap_api_cl', tasker.step_message(:'cl2', pg_temp.sid(:'cl2', 'a'), 5, gen_random_uuid())) AS stale_id \gset
SELECT pgmq.send('tasker_dispatch_tap_api_cl', tasker.step_message(:'cl2', pg_temp.sid(:'cl2', 'b'), 1, gen_random_uuid())) AS pend_id \gset
CREATE TEMP TABLE rej0 AS SELECT count(*) AS n FROM tasker.rejected_messages;
SELECT is(pg_temp.claim('tap_api_cl'), 1::bigint, 'claim: original + duplicate + stale + wrong-state messages claim the step once');
SELECT is((SELECT row(state, attempts)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'cl2', 'a')),
          '(in_progress,1)', 'claim: the step ran once (attempts 1)');
SELECT is(pg_temp.qn('tasker_dispatch_tap_api_cl'), 5::bigint,
          'claim: only the claimed messages of running steps are left in the queue');
SELECT ok(pg_temp.qhas('tasker_dispatch_tap_api_cl', :stale_id, 'a') AND pg_temp.qhas('tasker_dispatch_tap_api_cl', :pend_id, 'a'),
          'claim: the stale-attempt message and the message of a pending step were archived');
SELECT is(pg_temp.st(:'cl2', 'b'), 'pending', 'claim: a message for a pending step does not claim it');
SELECT is((SELECT count(*) FROM tasker.rejected_messages) - (SELECT n FROM rej0), 0::bigint,
          'claim: stale and duplicate messages are not recorded as rejected');
-- Malformed messages: archived and recorded.
SELECT pgmq.send('tasker_dispatch_tap_api_cl', '"junk"') AS m1 \gset
SELECT pgmq.send('tasker_dispatch_tap_api_cl', '{"attempt": 1}') AS m2 \gset
SELECT pgmq.send('tasker_dispatch_tap_api_cl', '{"step_uuid": "not-a-uuid", "attempt": 1}') AS m3 \gset
SELECT pgmq.send('tasker_dispatch_tap_api_cl', jsonb_build_object('step_uuid', gen_random_uuid(), 'attempt', 'one')) AS m4 \gset
SELECT is(pg_temp.claim('tap_api_cl'), 0::bigint, 'claim: malformed messages claim nothing');
SELECT results_eq(
  format($$SELECT msg_id, queue_name, reason FROM tasker.rejected_messages WHERE msg_id IN (%s, %s, %s, %s) ORDER BY msg_id$$, :m1, :m2, :m3, :m4),
  format($$VALUES (%s::bigint, 'tasker_dispatch_tap_api_cl', 'message is not a JSON object'),
                  (%s, 'tasker_dispatch_tap_api_cl', 'step_uuid missing or not a UUID'),
                  (%s, 'tasker_dispatch_tap_api_cl', 'step_uuid missing or not a UUID'),
                  (%s, 'tasker_dispatch_tap_api_cl', 'attempt missing or not an integer')$$, :m1, :m2, :m3, :m4),
  'claim: malformed messages are recorded in tasker.rejected_messages with the reason');
SELECT ok(pg_temp.qhas('tasker_dispatch_tap_api_cl', :m1, 'a') AND pg_temp.qhas('tasker_dispatch_tap_api_cl', :m4, 'a')
          AND NOT pg_temp.qhas('tasker_dispatch_tap_api_cl', :m2),
          'claim: malformed messages are archived');
SELECT is((SELECT message FROM tasker.rejected_messages WHERE msg_id = :m1 AND queue_name = 'tasker_dispatch_tap_api_cl'), '"junk"'::jsonb,
          'claim: the rejected message body is kept');
SELECT pgmq.send('tasker_dispatch_tap_api_cl', jsonb_build_object('step_uuid', '00000000-0000-7000-8000-000000000001', 'attempt', 1)) AS m5 \gset
SELECT is(pg_temp.claim('tap_api_cl'), 0::bigint, 'claim: a message naming no existing step claims nothing');
SELECT is((SELECT reason FROM tasker.rejected_messages WHERE msg_id = :m5 AND queue_name = 'tasker_dispatch_tap_api_cl'),
          'unknown step 00000000-0000-7000-8000-000000000001', 'claim: a message naming no existing step is recorded as rejected');
-- The worker id defaults to worker-<backend pid>.
SELECT pg_temp.new_task('tap_api_cl', 'chain') AS cl3 \gset
SELECT workflow_step_uuid AS cl3a FROM tasker.tasker_claim_and_execute_step('tap_api_cl', 1, 300, '') \gset
SELECT is((SELECT claimed_by FROM tasker.workflow_steps WHERE workflow_step_uuid = :'cl3a'),
          'worker-' || pg_backend_pid(), 'claim: an empty worker id becomes worker-<pid>');
-- Argument errors.
SELECT throws_ok($$SELECT * FROM tasker.tasker_claim_and_execute_step('tap_api_cl', 0, 30, 'w')$$, 'TK400',
                 'qty must be between 1 and 1000 (got 0)', 'claim: qty 0 → TK400');
SELECT throws_ok($$SELECT * FROM tasker.tasker_claim_and_execute_step('tap_api_cl', 1001, 30, 'w')$$, 'TK400',
                 'qty must be between 1 and 1000 (got 1001)', 'claim: qty 1001 → TK400');
SELECT throws_ok($$SELECT * FROM tasker.tasker_claim_and_execute_step('tap_api_cl', NULL, 30, 'w')$$, 'TK400',
                 'qty must be between 1 and 1000 (got <NULL>)', 'claim: qty NULL → TK400');
SELECT throws_ok($$SELECT * FROM tasker.tasker_claim_and_execute_step('tap_api_cl', 1, 0, 'w')$$, 'TK400',
                 'lease_secs must be between 1 and 86400 (got 0)', 'claim: lease 0 → TK400');
SELECT throws_ok($$SELECT * FROM tasker.tasker_claim_and_execute_step('tap_api_cl', 1, 86401, 'w')$$, 'TK400',
                 'lease_secs must be between 1 and 86400 (got 86401)', 'claim: lease 86401 → TK400');
SELECT throws_ok($$SELECT * FROM tasker.tasker_claim_and_execute_step('Tap', 1, 30, 'w')$$, 'TK400',
                 'invalid namespace ''Tap'': must match ^[a-z][a-z0-9_]{0,28}$', 'claim: bad namespace → TK400');
SELECT throws_ok($$SELECT * FROM tasker.tasker_claim_and_execute_step(NULL, 1, 30, 'w')$$, 'TK400',
                 'invalid namespace NULL: must match ^[a-z][a-z0-9_]{0,28}$', 'claim: NULL namespace → TK400');
SELECT throws_ok($$SELECT * FROM tasker.tasker_claim_and_execute_step('tap_api_nosuch', 1, 30, 'w')$$, 'TK404',
                 'unknown namespace "tap_api_nosuch"', 'claim: unknown namespace → TK404');

-- =============================================================================================
-- 4. submit_step_results / submit_step_result / heartbeat_step
-- =============================================================================================
SELECT pg_temp.tpl('tap_api_sb', 'pair', ARRAY[pg_temp.s('a'), pg_temp.s('b'), pg_temp.s('c', '{a}')]) \g /dev/null
SELECT pg_temp.new_task('tap_api_sb', 'pair') AS sb \gset
SELECT pg_temp.claim('tap_api_sb', 10, 'w-sb') \g /dev/null
SELECT dispatch_msg_id AS sb_a_msg FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'sb', 'a') \gset
-- heartbeat while leased
CREATE TEMP TABLE hb0 AS SELECT clock_timestamp() AS at;
SELECT is(tasker.heartbeat_step(pg_temp.sid(:'sb', 'a'), 1, 900), true, 'heartbeat: true while the attempt holds its lease');
SELECT ok((SELECT lease_expires_at >= (SELECT at FROM hb0) + interval '900 s' FROM tasker.workflow_steps
           WHERE workflow_step_uuid = pg_temp.sid(:'sb', 'a')), 'heartbeat: the lease is extended');
SELECT ok((SELECT vt >= (SELECT at FROM hb0) + interval '900 s' FROM pgmq.q_tasker_dispatch_tap_api_sb WHERE msg_id = :sb_a_msg),
          'heartbeat: the dispatch message stays invisible as long');
SELECT is(tasker.heartbeat_step(pg_temp.sid(:'sb', 'a'), 2, 30), false, 'heartbeat: false for another attempt');
SELECT is(tasker.heartbeat_step(gen_random_uuid(), 1, 30), false, 'heartbeat: false for an unknown step');
SELECT throws_ok(format('SELECT tasker.heartbeat_step(%L, 1, 0)', pg_temp.sid(:'sb', 'a')), 'TK400',
                 'lease_secs must be between 1 and 86400 (got 0)', 'heartbeat: lease 0 → TK400');
-- accepted success
SELECT is((SELECT row(status, state)::text FROM tasker.submit_step_result(pg_temp.sid(:'sb', 'a'), 1, true, '{"n": 1}',
             NULL, 'w-other', 1234)), '(accepted,enqueued_for_orchestration)', 'submit: a success is accepted');
SELECT is((SELECT row(results, error, last_execution_ms, claimed_by, lease_expires_at)::text FROM tasker.workflow_steps
           WHERE workflow_step_uuid = pg_temp.sid(:'sb', 'a')),
          row('{"n": 1}'::jsonb, NULL::jsonb, 1234, 'w-other', NULL::timestamptz)::text,
          'submit: results, execution time and worker stored; lease cleared');
SELECT is(pg_temp.last_tr(pg_temp.sid(:'sb', 'a')), 'in_progress>enqueued_for_orchestration:hand_back_success',
          'submit: transition in_progress → enqueued_for_orchestration');
SELECT is(ARRAY(SELECT pg_temp.qmsgs('tasker_completion_tap_api_sb')),
          ARRAY[jsonb_build_object('task_uuid', :'sb', 'step_uuid', pg_temp.sid(:'sb', 'a'), 'attempt', 1,
                                   'correlation_id', (SELECT correlation_id FROM tasker.tasks WHERE task_uuid = :'sb'))],
          'submit: one completion message {task_uuid, step_uuid, attempt, correlation_id}');
SELECT ok(NOT pg_temp.qhas('tasker_dispatch_tap_api_sb', :sb_a_msg) AND pg_temp.qhas('tasker_dispatch_tap_api_sb', :sb_a_msg, 'a'),
          'submit: the dispatch message is archived');
SELECT is((SELECT row(a.attempt, a.worker_id, a.success, a.execution_time_ms, t.to_state)::text
           FROM tasker.workflow_step_result_audit a JOIN tasker.workflow_step_transitions t USING (workflow_step_transition_uuid)
           WHERE a.workflow_step_uuid = pg_temp.sid(:'sb', 'a')),
          '(1,w-other,t,1234,enqueued_for_orchestration)', 'submit: one result-audit row tied to the hand-back transition');
SELECT is(tasker.heartbeat_step(pg_temp.sid(:'sb', 'a'), 1, 30), false, 'heartbeat: false after the hand-back');
-- duplicate, stale, unknown_step, invalid
SELECT is((SELECT row(status, state)::text FROM tasker.submit_step_result(pg_temp.sid(:'sb', 'a'), 1, false, NULL, '"late"')),
          '(duplicate,enqueued_for_orchestration)', 'submit: the same attempt again is a duplicate and changes nothing');
SELECT is((SELECT count(*) FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = pg_temp.sid(:'sb', 'a')), 1::bigint,
          'submit: a duplicate writes no audit row');
SELECT is(pg_temp.qn('tasker_completion_tap_api_sb'), 1::bigint, 'submit: a duplicate sends no completion message');
SELECT is((SELECT row(status, state)::text FROM tasker.submit_step_result(pg_temp.sid(:'sb', 'b'), 2, true)),
          '(stale,in_progress)', 'submit: another attempt than the running one is stale');
SELECT is((SELECT row(status, state)::text FROM tasker.submit_step_result(gen_random_uuid(), 1, true)),
          '(unknown_step,)', 'submit: an unknown step says so');
SELECT results_eq(
  format($$SELECT status, state FROM tasker.submit_step_results('[{}, {"step_uuid": "nope", "attempt": 1, "success": true},
           {"step_uuid": %s, "attempt": 1, "success": "yes"}, {"step_uuid": %s, "attempt": "1", "success": true}]')$$,
         to_json(pg_temp.sid(:'sb', 'b')::text), to_json(pg_temp.sid(:'sb', 'b')::text)),
  $$VALUES ('invalid', NULL::text), ('invalid', NULL), ('invalid', 'in_progress'), ('invalid', 'in_progress')$$,
  'submit: malformed entries are invalid, per entry, in input order');
SELECT is(pg_temp.st(:'sb', 'b'), 'in_progress', 'submit: invalid entries change nothing');
SELECT throws_ok($$SELECT * FROM tasker.submit_step_results('{"step_uuid": 1}')$$, 'TK400',
                 'results must be a JSON array of result objects', 'submit: not an array → TK400');
-- failure with a string error and a retry_after hint
SELECT is((SELECT row(status, state)::text FROM tasker.submit_step_result(pg_temp.sid(:'sb', 'b'), 1, false, '{"partial": 1}',
             '"disk full"', NULL, 50, 12)), '(accepted,enqueued_as_error_for_orchestration)', 'submit: a failure is accepted');
SELECT is((SELECT row(error, results, retry_after_secs, last_execution_ms)::text FROM tasker.workflow_steps
           WHERE workflow_step_uuid = pg_temp.sid(:'sb', 'b')),
          row('{"message": "disk full"}'::jsonb, '{"partial": 1}'::jsonb, 12, 50)::text,
          'submit: a string error becomes {"message": …}; retry_after and results stored');
SELECT is((SELECT row(from_state, to_state, event, metadata->>'error', processor)::text FROM tasker.workflow_step_transitions
           WHERE workflow_step_uuid = pg_temp.sid(:'sb', 'b') ORDER BY ordinal DESC LIMIT 1),
          '(in_progress,enqueued_as_error_for_orchestration,hand_back_failure,"disk full",w-sb)',
          'submit: failure transition carries the error message and the worker');
SELECT is((SELECT row(success, worker_id)::text FROM tasker.workflow_step_result_audit WHERE workflow_step_uuid = pg_temp.sid(:'sb', 'b')),
          '(f,w-sb)', 'submit: failure audit row (success = false)');
-- A batch: statuses per entry, in input order.
SELECT pg_temp.new_task('tap_api_sb', 'pair') AS sb2 \gset
SELECT pg_temp.claim('tap_api_sb', 10, 'w-sb') \g /dev/null
SELECT results_eq(
  format($$SELECT workflow_step_uuid, attempt, status, state FROM tasker.submit_step_results(jsonb_build_array(
             jsonb_build_object('step_uuid', %L::uuid, 'attempt', 1, 'success', false, 'error', jsonb_build_object('message', 'x', 'code', 7)),
             jsonb_build_object('step_uuid', %L::uuid, 'attempt', 1, 'success', true),
             jsonb_build_object('step_uuid', %L::uuid, 'attempt', 1, 'success', false)))$$,
         pg_temp.sid(:'sb2', 'a'), pg_temp.sid(:'sb', 'a'), pg_temp.sid(:'sb2', 'b')),
  format($$VALUES (%L::uuid, 1, 'accepted', 'enqueued_as_error_for_orchestration'),
                  (%L::uuid, 1, 'duplicate', 'enqueued_for_orchestration'),
                  (%L::uuid, 1, 'accepted', 'enqueued_as_error_for_orchestration')$$,
         pg_temp.sid(:'sb2', 'a'), pg_temp.sid(:'sb', 'a'), pg_temp.sid(:'sb2', 'b')),
  'submit_step_results: a mixed batch, one status per entry in input order');
SELECT is((SELECT error FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'sb2', 'a')),
          '{"message": "x", "code": 7}'::jsonb, 'submit: an error object is kept as is');
SELECT is((SELECT error FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'sb2', 'b')),
          '{"message": "step failed (no error given)"}'::jsonb, 'submit: a failure without error gets a default message');
-- Regression: statuses were decided per step, not per (step, attempt) entry.
SELECT pg_temp.new_task('tap_api_sb', 'pair') AS sb3 \gset
SELECT pg_temp.claim('tap_api_sb', 10, 'w-sb') \g /dev/null
SELECT is(ARRAY(SELECT status FROM tasker.submit_step_results(jsonb_build_array(
             jsonb_build_object('step_uuid', pg_temp.sid(:'sb3', 'a'), 'attempt', 7, 'success', true),
             jsonb_build_object('step_uuid', pg_temp.sid(:'sb3', 'a'), 'attempt', 1, 'success', true)))),
          ARRAY['stale', 'accepted'], 'submit_step_results: a stale attempt next to the current one of the same step is stale');
SELECT is(ARRAY(SELECT status FROM tasker.submit_step_results(jsonb_build_array(
             jsonb_build_object('step_uuid', pg_temp.sid(:'sb3', 'b'), 'attempt', 1, 'success', false),
             jsonb_build_object('step_uuid', pg_temp.sid(:'sb3', 'b'), 'attempt', 1, 'success', true)))),
          ARRAY['accepted', 'duplicate'], 'submit_step_results: the second hand-back of one attempt in a batch is a duplicate');
SELECT is(pg_temp.st(:'sb3', 'b'), 'enqueued_as_error_for_orchestration', 'submit_step_results: … and the first one is the one applied');
SELECT pg_temp.new_task('tap_api_sb', 'pair') AS sb4 \gset
SELECT pg_temp.claim('tap_api_sb', 10, 'w-sb') \g /dev/null
SELECT is(ARRAY(SELECT status FROM tasker.submit_step_results(jsonb_build_array(
             jsonb_build_object('step_uuid', pg_temp.sid(:'sb4', 'a'), 'attempt', 1, 'success', 'yes'),
             jsonb_build_object('step_uuid', pg_temp.sid(:'sb4', 'a'), 'attempt', 1, 'success', true)))),
          ARRAY['invalid', 'accepted'], 'submit_step_results: an invalid entry does not shadow a valid one for the same attempt');

-- =============================================================================================
-- 5. process_completions
-- =============================================================================================
SELECT pg_temp.tpl('tap_api_pc', 'chain', ARRAY[pg_temp.s('a'), pg_temp.s('b', '{a}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_pc', 'fanin', ARRAY[pg_temp.s('a'), pg_temp.s('b'), pg_temp.s('c', '{a,b}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_pc', 'once', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 1}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_pc', 'retry', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 3, "backoff": "exponential", "backoff_base_ms": 1000}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_pc', 'noretry', ARRAY[pg_temp.s('a', '{}', '{"retryable": false, "max_attempts": 5}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_pc', 'sibling', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 1}'), pg_temp.s('b'), pg_temp.s('c', '{b}')]) \g /dev/null
-- One row per call, labelled (the result's columns as the function defines them; nothing runs here).
CREATE TEMP TABLE pcr AS SELECT ''::text AS label, p.* FROM tasker.process_completions('tap_api_pc') p WITH NO DATA;
-- empty queue
SELECT is((SELECT row(messages, steps_completed, steps_retrying, steps_failed, stale, rejected, steps_enqueued, tasks_completed,
                      tasks_blocked, rejected_details, handback_latency_ms)::text FROM tasker.process_completions('tap_api_pc') p),
          '(0,0,0,0,0,0,0,0,0,[],{})', 'process_completions: an empty queue gives zeros');
-- success → complete, child dispatched
SELECT pg_temp.new_task('tap_api_pc', 'chain') AS pc1 \gset
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pg_temp.ok(:'pc1', 'a', '{"v": 1}') \g /dev/null
INSERT INTO pcr SELECT 'chain-a', * FROM tasker.process_completions('tap_api_pc');
SELECT is((SELECT row(messages, steps_completed, steps_retrying, steps_failed, stale, rejected, steps_enqueued, tasks_completed, tasks_blocked)::text
           FROM pcr WHERE label = 'chain-a'), '(1,1,0,0,0,0,1,0,0)', 'process_completions: one success completes the step, dispatches the child');
SELECT is((SELECT row(state, completed_at = now(), next_retry_at)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'pc1', 'a')),
          '(complete,t,)', 'process_completions: the step is complete');
SELECT is(pg_temp.step_trs(pg_temp.sid(:'pc1', 'a')),
          ARRAY['>enqueued:create_and_enqueue', 'enqueued>in_progress:claim', 'in_progress>enqueued_for_orchestration:hand_back_success',
                'enqueued_for_orchestration>complete:complete'], 'process_completions: the step''s whole history');
SELECT is((SELECT row(state, unfinished_parents)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'pc1', 'b')),
          '(enqueued,0)', 'process_completions: the child is enqueued, its parent counted off');
SELECT is(pg_temp.last_tr(pg_temp.sid(:'pc1', 'b')), 'pending>enqueued:enqueue', 'process_completions: the child''s transition');
SELECT is((SELECT count(*) FROM pg_temp.qmsgs('tasker_dispatch_tap_api_pc') m WHERE m->>'step_uuid' = pg_temp.sid(:'pc1', 'b')::text
             AND (m->'attempt')::int = 1), 1::bigint, 'process_completions: one dispatch message for the child');
SELECT is(pg_temp.qn('tasker_completion_tap_api_pc'), 0::bigint, 'process_completions: the consumed message left the queue');
SELECT is(pg_temp.qn('tasker_completion_tap_api_pc', 'a'), 1::bigint, 'process_completions: … into the archive');
SELECT is(pg_temp.tst(:'pc1'), 'steps_in_process', 'process_completions: the task is still in process');
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pg_temp.ok(:'pc1', 'b') \g /dev/null
INSERT INTO pcr SELECT 'chain-b', * FROM tasker.process_completions('tap_api_pc');
SELECT is((SELECT row(steps_completed, steps_enqueued, tasks_completed)::text FROM pcr WHERE label = 'chain-b'), '(1,0,1)',
          'process_completions: the last step completes the task');
SELECT is((SELECT row(state, completed_at = now())::text FROM tasker.tasks WHERE task_uuid = :'pc1'), '(complete,t)',
          'process_completions: the task is complete, completed_at set');
SELECT is(pg_temp.task_trs(:'pc1'), ARRAY['>steps_in_process:create_and_enqueue', 'steps_in_process>complete:all_steps_complete'],
          'process_completions: the task''s transitions');
-- stale: the same completion message again
SELECT pgmq.send('tasker_completion_tap_api_pc', tasker.step_message(:'pc1', pg_temp.sid(:'pc1', 'b'), 1, gen_random_uuid())) \g /dev/null
SELECT is((SELECT row(messages, steps_completed, stale, rejected)::text FROM tasker.process_completions('tap_api_pc')), '(1,0,1,0)',
          'process_completions: a completion for a step already complete is stale');
SELECT is(pg_temp.qn('tasker_completion_tap_api_pc'), 0::bigint, 'process_completions: the stale message is archived');
-- fan-in: both parents complete in one batch → the child is dispatched once
SELECT pg_temp.new_task('tap_api_pc', 'fanin') AS pc2 \gset
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pg_temp.ok(:'pc2', 'a'), pg_temp.ok(:'pc2', 'b') \g /dev/null
INSERT INTO pcr SELECT 'fanin', * FROM tasker.process_completions('tap_api_pc');
SELECT is((SELECT row(messages, steps_completed, steps_enqueued)::text FROM pcr WHERE label = 'fanin'), '(2,2,1)',
          'process_completions: fan-in in one batch dispatches the child once');
SELECT is((SELECT row(cardinality(handback_latency_ms), (SELECT bool_and(l >= 0) FROM unnest(handback_latency_ms) l))::text
           FROM pcr WHERE label = 'fanin'), '(2,t)', 'process_completions: one hand-back latency (ms, >= 0) per step recorded');
SELECT is((SELECT row(state, unfinished_parents)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'pc2', 'c')),
          '(enqueued,0)', 'process_completions: fan-in child enqueued with no unfinished parents');
SELECT is((SELECT count(*) FROM pg_temp.qmsgs('tasker_dispatch_tap_api_pc') m WHERE m->>'step_uuid' = pg_temp.sid(:'pc2', 'c')::text), 1::bigint,
          'process_completions: exactly one dispatch message for the fan-in child');
-- fan-in over two batches
SELECT pg_temp.new_task('tap_api_pc', 'fanin') AS pc3 \gset
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pg_temp.ok(:'pc3', 'a') \g /dev/null
SELECT pg_temp.pc('tap_api_pc') \g /dev/null
SELECT is((SELECT row(state, unfinished_parents)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'pc3', 'c')),
          '(pending,1)', 'process_completions: with one parent left the child waits');
SELECT pg_temp.ok(:'pc3', 'b') \g /dev/null
SELECT pg_temp.pc('tap_api_pc') \g /dev/null
SELECT is(pg_temp.st(:'pc3', 'c'), 'enqueued', 'process_completions: the second parent releases the child');
-- retry with backoff
SELECT pg_temp.new_task('tap_api_pc', 'retry') AS pc4 \gset
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pg_temp.fail(:'pc4', 'a', '{"message": "flaky"}') \g /dev/null
INSERT INTO pcr SELECT 'retry', * FROM tasker.process_completions('tap_api_pc');
SELECT is((SELECT row(steps_retrying, steps_failed, steps_enqueued, tasks_blocked)::text FROM pcr WHERE label = 'retry'), '(1,0,0,0)',
          'process_completions: a retryable failure with attempts left retries');
SELECT is((SELECT row(state, attempts, error->>'message')::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'pc4', 'a')),
          '(waiting_for_retry,1,flaky)', 'process_completions: the step waits for its retry, error kept');
SELECT ok((SELECT pg_temp.ms(next_retry_at - now()) BETWEEN 850 AND 1150 FROM tasker.workflow_steps
           WHERE workflow_step_uuid = pg_temp.sid(:'pc4', 'a')), 'process_completions: next_retry_at = now + 1 s ± 15 %');
SELECT is((SELECT metadata->>'next_retry_at' IS NOT NULL FROM tasker.workflow_step_transitions
           WHERE workflow_step_uuid = pg_temp.sid(:'pc4', 'a') ORDER BY ordinal DESC LIMIT 1), true,
          'process_completions: the retry transition records next_retry_at');
SELECT is(pg_temp.tst(:'pc4'), 'waiting_for_retry', 'process_completions: nothing in flight → the task waits for the retry');
SELECT is(pg_temp.task_trs(:'pc4'), ARRAY['>steps_in_process:create_and_enqueue', 'steps_in_process>waiting_for_retry:steps_awaiting_retry'],
          'process_completions: the task transition to waiting_for_retry');
-- attempts exhausted → error; task blocked
SELECT pg_temp.new_task('tap_api_pc', 'once') AS pc5 \gset
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pg_temp.fail(:'pc5', 'a') \g /dev/null
INSERT INTO pcr SELECT 'once', * FROM tasker.process_completions('tap_api_pc');
SELECT is((SELECT row(steps_retrying, steps_failed, tasks_blocked)::text FROM pcr WHERE label = 'once'), '(0,1,1)',
          'process_completions: no attempts left → error, the task is blocked');
SELECT is((SELECT row(state, next_retry_at)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'pc5', 'a')),
          '(error,)', 'process_completions: the step is in error');
SELECT is(pg_temp.tst(:'pc5'), 'blocked_by_failures', 'process_completions: the task is blocked_by_failures');
-- error.retryable = false with attempts left → error
SELECT pg_temp.new_task('tap_api_pc', 'retry') AS pc6 \gset
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pg_temp.fail(:'pc6', 'a', '{"message": "bad input", "retryable": false}') \g /dev/null
SELECT pg_temp.pc('tap_api_pc') \g /dev/null
SELECT is(pg_temp.st(:'pc6', 'a'), 'error', 'process_completions: error.retryable = false fails at once');
-- a step that is not retryable
SELECT pg_temp.new_task('tap_api_pc', 'noretry') AS pc7 \gset
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pg_temp.fail(:'pc7', 'a') \g /dev/null
SELECT pg_temp.pc('tap_api_pc') \g /dev/null
SELECT is((SELECT row(state, attempts, max_attempts)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'pc7', 'a')),
          '(error,1,5)', 'process_completions: a non-retryable step fails after one attempt');
-- a step in error: in-flight siblings finish, nothing new starts, then the task is blocked
SELECT pg_temp.new_task('tap_api_pc', 'sibling') AS pc8 \gset
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pg_temp.fail(:'pc8', 'a') \g /dev/null
SELECT pg_temp.pc('tap_api_pc') \g /dev/null
SELECT is((SELECT row(pg_temp.st(:'pc8', 'a'), pg_temp.st(:'pc8', 'b'), pg_temp.tst(:'pc8'))::text),
          '(error,in_progress,steps_in_process)', 'process_completions: a failed step with a sibling in flight: the task stays in process');
SELECT pg_temp.ok(:'pc8', 'b') \g /dev/null
INSERT INTO pcr SELECT 'sibling', * FROM tasker.process_completions('tap_api_pc');
SELECT is((SELECT row(pg_temp.st(:'pc8', 'b'), pg_temp.st(:'pc8', 'c'), pg_temp.tst(:'pc8'))::text),
          '(complete,pending,blocked_by_failures)', 'process_completions: once a step is in error no child starts; the task is blocked');
SELECT is((SELECT row(steps_enqueued, tasks_blocked)::text FROM pcr WHERE label = 'sibling'), '(0,1)',
          'process_completions: … and says so in its counts');
-- malformed messages in a batch with a good one
SELECT pg_temp.new_task('tap_api_pc', 'chain') AS pc9 \gset
SELECT pg_temp.claim('tap_api_pc') \g /dev/null
SELECT pgmq.send('tasker_completion_tap_api_pc', '[1, 2]') AS r1 \gset
SELECT pgmq.send('tasker_completion_tap_api_pc', '{"attempt": 1}') AS r2 \gset
SELECT pg_temp.ok(:'pc9', 'a') \g /dev/null
SELECT gen_random_uuid() AS ghost \gset
SELECT pgmq.send('tasker_completion_tap_api_pc', jsonb_build_object('step_uuid', :'ghost', 'attempt', 1)) AS r3 \gset
SELECT pgmq.send('tasker_completion_tap_api_pc', jsonb_build_object('step_uuid', pg_temp.sid(:'pc9', 'a'), 'attempt', 1.5)) AS r4 \gset
INSERT INTO pcr SELECT 'malformed', * FROM tasker.process_completions('tap_api_pc');
SELECT is((SELECT row(messages, steps_completed, stale, rejected, steps_enqueued)::text FROM pcr WHERE label = 'malformed'), '(5,1,0,4,1)',
          'process_completions: malformed messages are rejected, the good one in the same batch is processed');
SELECT is((SELECT rejected_details FROM pcr WHERE label = 'malformed'),
          jsonb_build_array(jsonb_build_object('msg_id', :r1, 'reason', 'message is not a JSON object'),
                            jsonb_build_object('msg_id', :r2, 'reason', 'step_uuid missing or not a UUID'),
                            jsonb_build_object('msg_id', :r3, 'reason', 'unknown step ' || :'ghost'),
                            jsonb_build_object('msg_id', :r4, 'reason', 'attempt missing or not an integer')),
          'process_completions: rejected_details lists each rejected message and why');
SELECT is((SELECT count(*) FROM tasker.rejected_messages WHERE queue_name = 'tasker_completion_tap_api_pc' AND msg_id IN (:r1, :r2, :r3, :r4)),
          4::bigint, 'process_completions: rejected messages are recorded');
SELECT is(pg_temp.qn('tasker_completion_tap_api_pc'), 0::bigint, 'process_completions: every message read is archived');
SELECT is(pg_temp.st(:'pc9', 'b'), 'enqueued', 'process_completions: the good message''s child was dispatched');
-- argument errors
SELECT throws_ok($$SELECT * FROM tasker.process_completions('tap_api_pc', 0)$$, 'TK400', 'batch must be between 1 and 10000 (got 0)',
                 'process_completions: batch 0 → TK400');
SELECT throws_ok($$SELECT * FROM tasker.process_completions('Tap')$$, 'TK400', 'invalid namespace ''Tap'': must match ^[a-z][a-z0-9_]{0,28}$',
                 'process_completions: bad namespace → TK400');
SELECT throws_ok($$SELECT * FROM tasker.process_completions('tap_api_nosuch')$$, 'TK404', 'unknown namespace "tap_api_nosuch"',
                 'process_completions: unknown namespace → TK404');

-- =============================================================================================
-- 6. enqueue_ready_steps
-- =============================================================================================
-- Every open task so far is cancelled so that this section sees only its own (counts are global).
SELECT count(*) FROM (SELECT tasker.cancel_task(task_uuid) FROM tasker.tasks
                      WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')) x \g /dev/null
SELECT pg_temp.tpl('tap_api_eq', 'retry', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 3}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_eq', 'blocked', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 3}'), pg_temp.s('b', '{}', '{"max_attempts": 1}')]) \g /dev/null
SELECT pg_temp.new_task('tap_api_eq', 'retry') AS eq1 \gset
SELECT pg_temp.new_task('tap_api_eq', 'retry') AS eq2 \gset
SELECT pg_temp.new_task('tap_api_eq', 'blocked') AS eq3 \gset
SELECT pg_temp.claim('tap_api_eq') \g /dev/null
SELECT pg_temp.fail(:'eq1', 'a'), pg_temp.fail(:'eq2', 'a'), pg_temp.fail(:'eq3', 'a'), pg_temp.fail(:'eq3', 'b') \g /dev/null
SELECT pg_temp.pc('tap_api_eq') \g /dev/null
SELECT is((SELECT row(pg_temp.tst(:'eq1'), pg_temp.tst(:'eq3'), pg_temp.st(:'eq3', 'a'))::text),
          '(waiting_for_retry,blocked_by_failures,waiting_for_retry)', 'enqueue_ready_steps: (setup) two retrying tasks, one blocked');
-- Regression: the idle pass (no candidate task) once raised 55000 "record v_adv is not assigned
-- yet". pg_temp.eq returns an error as text instead of aborting the file.
CREATE FUNCTION pg_temp.eq(p_limit integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  SELECT * INTO r FROM tasker.enqueue_ready_steps(p_limit);
  RETURN row(r.steps_enqueued, r.tasks_touched, r.next_retry_at)::text;
EXCEPTION WHEN others THEN
  RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT is(pg_temp.eq(100), row(0, 0, (SELECT min(next_retry_at) FROM tasker.workflow_steps WHERE task_uuid IN (:'eq1', :'eq2', :'eq3')))::text,
          'enqueue_ready_steps: nothing past its backoff → nothing enqueued; next_retry_at = the earliest retry');
-- TEST-ONLY: move the backoff of eq1's step and of the blocked task's retrying step into the past.
UPDATE tasker.workflow_steps SET next_retry_at = now() - interval '1 second'
WHERE workflow_step_uuid IN (pg_temp.sid(:'eq1', 'a'), pg_temp.sid(:'eq3', 'a'));
SELECT is(pg_temp.eq(100), row(1, 1, (SELECT next_retry_at FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'eq2', 'a')))::text,
          'enqueue_ready_steps: the retry whose backoff passed is enqueued (a blocked task''s is not); next_retry_at = the next one');
SELECT is((SELECT row(state, attempts, next_retry_at IS NULL OR next_retry_at < now())::text FROM tasker.workflow_steps
           WHERE workflow_step_uuid = pg_temp.sid(:'eq1', 'a')), '(enqueued,1,t)', 'enqueue_ready_steps: the step is enqueued');
SELECT is(pg_temp.last_tr(pg_temp.sid(:'eq1', 'a')), 'waiting_for_retry>enqueued:retry', 'enqueue_ready_steps: transition event retry');
SELECT is((SELECT count(*) FROM pg_temp.qmsgs('tasker_dispatch_tap_api_eq') m
           WHERE m->>'step_uuid' = pg_temp.sid(:'eq1', 'a')::text AND (m->'attempt')::int = 2), 1::bigint,
          'enqueue_ready_steps: a dispatch message for attempt 2');
SELECT is(pg_temp.task_trs(:'eq1'), ARRAY['>steps_in_process:create_and_enqueue', 'steps_in_process>waiting_for_retry:steps_awaiting_retry',
                                         'waiting_for_retry>steps_in_process:steps_in_flight'],
          'enqueue_ready_steps: the task is back in process');
SELECT is(pg_temp.st(:'eq3', 'a'), 'waiting_for_retry', 'enqueue_ready_steps: a blocked task''s retry stays put');
SELECT is(pg_temp.eq(100), row(0, 0, (SELECT next_retry_at FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'eq2', 'a')))::text,
          'enqueue_ready_steps: a second pass finds nothing');
UPDATE tasker.workflow_steps SET next_retry_at = now() WHERE workflow_step_uuid = pg_temp.sid(:'eq2', 'a');  -- TEST-ONLY
SELECT throws_ok($$SELECT * FROM tasker.enqueue_ready_steps(0)$$, 'TK400', NULL,
                 'enqueue_ready_steps: a limit below 1 is refused as a bad request');
SELECT is(pg_temp.eq(1), '(1,1,)',
          'enqueue_ready_steps: next_retry_at = now() counts as passed');

-- =============================================================================================
-- 7. detect_and_transition_stuck_tasks
-- =============================================================================================
SELECT count(*) FROM (SELECT tasker.cancel_task(task_uuid) FROM tasker.tasks
                      WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually')) x \g /dev/null
SELECT pg_temp.tpl('tap_api_sw', 'one', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 2}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_sw', 'once', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 1}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_sw', 'short', ARRAY[pg_temp.s('a'), pg_temp.s('b', '{a}')], '{"lifecycle": {"max_steps_in_process_minutes": 5}}') \g /dev/null
CREATE FUNCTION pg_temp.sweep(p_dry boolean DEFAULT false) RETURNS SETOF record
LANGUAGE sql AS $$ SELECT * FROM tasker.detect_and_transition_stuck_tasks(100, p_dry) $$;
CREATE FUNCTION pg_temp.world() RETURNS text
LANGUAGE sql AS $$
  SELECT concat_ws('|', (SELECT string_agg(task_uuid || state || state_changed_at, ',' ORDER BY task_uuid) FROM tasker.tasks),
                   (SELECT string_agg(workflow_step_uuid || state || coalesce(dispatch_msg_id, 0) || coalesce(next_retry_at::text, ''), ',' ORDER BY workflow_step_uuid) FROM tasker.workflow_steps),
                   (SELECT count(*) FROM tasker.workflow_step_transitions), (SELECT count(*) FROM tasker.task_transitions),
                   (SELECT count(*) FROM tasker.tasks_dlq), pg_temp.qn('tasker_dispatch_tap_api_sw'))
$$;
SELECT pg_temp.new_task('tap_api_sw', 'one') AS sw1 \gset
SELECT pg_temp.new_task('tap_api_sw', 'once') AS sw2 \gset
SELECT pg_temp.claim('tap_api_sw', 10, 'w-lost') \g /dev/null
SELECT is((SELECT count(*) FROM tasker.detect_and_transition_stuck_tasks()), 0::bigint, 'sweep: nothing to do → no rows');
-- TEST-ONLY: expire both leases.
UPDATE tasker.workflow_steps SET lease_expires_at = clock_timestamp() - interval '1 second' WHERE task_uuid IN (:'sw1', :'sw2');
CREATE TEMP TABLE w0 AS SELECT pg_temp.world() AS w;
SELECT set_eq($$SELECT action, workflow_step_uuid FROM pg_temp.sweep(true) AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text)$$,
              format($$VALUES ('would_expire_lease', %L::uuid), ('would_expire_lease', %L::uuid)$$, pg_temp.sid(:'sw1', 'a'), pg_temp.sid(:'sw2', 'a')),
              'sweep dry run: reports the expired leases');
SELECT is(pg_temp.world(), (SELECT w FROM w0), 'sweep dry run: changes nothing');
CREATE TEMP TABLE sw AS SELECT * FROM pg_temp.sweep() AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text);
SELECT set_eq($$SELECT action, workflow_step_uuid, detail FROM sw$$,
              format($$VALUES ('lease_expired', %L::uuid, 'attempt 1 on w-lost: now waiting_for_retry'),
                              ('lease_expired', %L::uuid, 'attempt 1 on w-lost: now error')$$, pg_temp.sid(:'sw1', 'a'), pg_temp.sid(:'sw2', 'a')),
              'sweep: expired leases count as failed attempts (retry or error)');
SELECT is((SELECT row(state, lease_expires_at, next_retry_at > now(), error->>'error_type')::text FROM tasker.workflow_steps
           WHERE workflow_step_uuid = pg_temp.sid(:'sw1', 'a')), '(waiting_for_retry,,t,lease_expired)',
          'sweep: the step with attempts left waits for a retry');
SELECT is((SELECT row(from_state, to_state, event, metadata->>'reason')::text FROM tasker.workflow_step_transitions
           WHERE workflow_step_uuid = pg_temp.sid(:'sw1', 'a') ORDER BY ordinal DESC LIMIT 1),
          '(in_progress,waiting_for_retry,lease_expired,"lease expired")', 'sweep: lease_expired transition with its reason');
SELECT is((SELECT row(pg_temp.st(:'sw2', 'a'), pg_temp.tst(:'sw2'), pg_temp.tst(:'sw1'))::text),
          '(error,blocked_by_failures,waiting_for_retry)', 'sweep: the step out of attempts is in error, its task blocked');
SELECT is((SELECT status FROM tasker.submit_step_result(pg_temp.sid(:'sw1', 'a'), 1, true)), 'stale',
          'sweep: the late hand-back of the expired attempt is stale');
SELECT is((SELECT count(*) FROM pgmq.q_tasker_dispatch_tap_api_sw q
           WHERE q.message->>'step_uuid' IN (pg_temp.sid(:'sw1', 'a')::text, pg_temp.sid(:'sw2', 'a')::text)),
          0::bigint, 'sweep: the expired attempts'' dispatch messages are archived, not left to reappear');
SELECT throws_ok($$SELECT * FROM tasker.detect_and_transition_stuck_tasks(-1)$$, 'TK400', NULL,
                 'sweep: a batch size below 1 is refused as a bad request');
-- Missing dispatch message → re-sent.
SELECT pg_temp.new_task('tap_api_sw', 'one') AS sw3 \gset
SELECT dispatch_msg_id AS sw3_old FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'sw3', 'a') \gset
SELECT pgmq.delete('tasker_dispatch_tap_api_sw', :sw3_old::bigint) \g /dev/null
SELECT is((SELECT count(*) FROM pg_temp.sweep() AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text) WHERE action = 'resent'),
          0::bigint, 'sweep: a message missing for less than the grace period is not re-sent');
UPDATE tasker.workflow_steps SET updated_at = now() - interval '5 minutes' WHERE workflow_step_uuid = pg_temp.sid(:'sw3', 'a');  -- TEST-ONLY
SELECT is((SELECT array_agg(action) FROM pg_temp.sweep(true) AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text)
           WHERE workflow_step_uuid = pg_temp.sid(:'sw3', 'a')), ARRAY['would_resend'], 'sweep dry run: reports the missing message');
SELECT is((SELECT dispatch_msg_id FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'sw3', 'a')), :sw3_old::bigint,
          'sweep dry run: nothing re-sent');
CREATE TEMP TABLE sw3r AS SELECT * FROM pg_temp.sweep() AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text)
WHERE workflow_step_uuid = pg_temp.sid(:'sw3', 'a');
SELECT is((SELECT row(action, detail)::text FROM sw3r),
          (SELECT row('resent', format('dispatch message %s was missing; sent %s', :sw3_old, dispatch_msg_id))::text
           FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'sw3', 'a')),
          'sweep: the missing dispatch message is re-sent');
SELECT is((SELECT m FROM pg_temp.qmsgs('tasker_dispatch_tap_api_sw') m WHERE m->>'step_uuid' = pg_temp.sid(:'sw3', 'a')::text),
          tasker.step_message(:'sw3', pg_temp.sid(:'sw3', 'a'), 1, (SELECT correlation_id FROM tasker.tasks WHERE task_uuid = :'sw3')),
          'sweep: the new message is for the same attempt');
SELECT is(pg_temp.claim('tap_api_sw', 10, 'w2'), 1::bigint, 'sweep: the re-sent step can be claimed');
-- Under RabbitMQ the relay archives a dispatch message once the broker confirmed it; the daemon
-- passes how long ago (seconds) each namespace's broker queue was last seen with no ready message.
CREATE FUNCTION pg_temp.rmq_resends(p_step uuid, p_drained jsonb) RETURNS bigint
LANGUAGE sql AS $$
  SELECT count(*) FROM tasker.detect_and_transition_stuck_tasks(100, true, p_broker_drained => p_drained)
  WHERE action = 'would_resend' AND workflow_step_uuid = p_step $$;
SELECT pg_temp.new_task('tap_api_sw', 'one') AS sw5 \gset
SELECT pg_temp.new_task('tap_api_sw', 'one') AS sw6 \gset
SELECT pgmq.archive('tasker_dispatch_tap_api_sw', dispatch_msg_id) FROM tasker.workflow_steps
WHERE workflow_step_uuid = pg_temp.sid(:'sw5', 'a') \g /dev/null
SELECT pgmq.delete('tasker_dispatch_tap_api_sw', dispatch_msg_id) FROM tasker.workflow_steps
WHERE workflow_step_uuid = pg_temp.sid(:'sw6', 'a') \g /dev/null
UPDATE tasker.workflow_steps SET updated_at = now() - interval '5 minutes' WHERE task_uuid IN (:'sw5', :'sw6');  -- TEST-ONLY
UPDATE pgmq.a_tasker_dispatch_tap_api_sw SET archived_at = now() - interval '2 minutes'  -- TEST-ONLY: relayed 2 min ago
WHERE msg_id = (SELECT dispatch_msg_id FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'sw5', 'a'));
SELECT is(pg_temp.rmq_resends(pg_temp.sid(:'sw5', 'a'), NULL), 1::bigint,
          'sweep, PGMQ: a message archived without a claim is missing from its queue → re-sent');
SELECT is(pg_temp.rmq_resends(pg_temp.sid(:'sw5', 'a'), '{}'), 0::bigint,
          'sweep, RabbitMQ: a relayed message is not re-sent while nothing is known of its broker queue');
SELECT is(pg_temp.rmq_resends(pg_temp.sid(:'sw5', 'a'), '{"tap_api_sw": 300}'), 0::bigint,
          'sweep, RabbitMQ: … nor when the queue was last seen drained (5 min ago) before the message was relayed (2 min ago): it may wait behind a backlog');
SELECT is(pg_temp.rmq_resends(pg_temp.sid(:'sw5', 'a'), '{"tap_api_sw": 60}'), 1::bigint,
          'sweep, RabbitMQ: relayed (2 min ago), then the queue seen with no ready message (1 min ago), still unclaimed → re-sent');
SELECT is(pg_temp.rmq_resends(pg_temp.sid(:'sw6', 'a'), '{}'), 1::bigint,
          'sweep, RabbitMQ: a message in neither the outbox nor its archive (deleted by hand) → re-sent');
-- Stale task → error + one DLQ row.
SELECT pg_temp.new_task('tap_api_sw', 'one') AS sw4 \gset
-- TEST-ONLY: back-date the task and its steps (no state change, so no transition rows).
UPDATE tasker.tasks SET state_changed_at = now() - interval '2 hours' WHERE task_uuid = :'sw4';
UPDATE tasker.workflow_steps SET updated_at = now() - interval '2 hours' WHERE task_uuid = :'sw4';
CREATE TEMP TABLE w1 AS SELECT pg_temp.world() AS w;
SELECT is((SELECT array_agg(action) FROM pg_temp.sweep(true) AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text)
           WHERE task_uuid = :'sw4'), ARRAY['would_move_to_dlq'], 'sweep dry run: reports the stale task');
SELECT is(pg_temp.world(), (SELECT w FROM w1), 'sweep dry run: the stale task is left as it was');
CREATE TEMP TABLE sw4r AS SELECT * FROM pg_temp.sweep() AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text)
WHERE task_uuid = :'sw4';
SELECT is((SELECT array_agg(action || ': ' || detail) FROM sw4r),
          ARRAY['moved_to_dlq: steps_in_process without progress for 120 min (threshold 30), age 0.0 h'],
          'sweep: the stale task is moved to the DLQ');
SELECT is((SELECT row(state, completed_at = now())::text FROM tasker.tasks WHERE task_uuid = :'sw4'), '(error,t)', 'sweep: the stale task is in error');
SELECT is((SELECT row(from_state, to_state, event, metadata->>'reason')::text FROM tasker.task_transitions
           WHERE task_uuid = :'sw4' ORDER BY ordinal DESC LIMIT 1), '(steps_in_process,error,fail,staleness_timeout)',
          'sweep: the task transition to error says why');
SELECT is(pg_temp.st(:'sw4', 'a'), 'cancelled', 'sweep: its unfinished steps are cancelled');
SELECT is((SELECT count(*) FROM pg_temp.qmsgs('tasker_dispatch_tap_api_sw') m WHERE m->>'task_uuid' = :'sw4'), 0::bigint,
          'sweep: their dispatch messages are archived');
SELECT is((SELECT row(count(*), min(original_state), min(dlq_reason), min(resolution_status), min(task_snapshot->>'state'),
                      min(task_snapshot->>'task_name'), min(task_snapshot->>'threshold_minutes'))::text
           FROM tasker.tasks_dlq WHERE task_uuid = :'sw4'),
          '(1,steps_in_process,staleness_timeout,pending,steps_in_process,one,30)',
          'sweep: exactly one DLQ row with the original state, reason and a snapshot');
-- Regression: the snapshot's steps were taken after cancel_open_steps, so every step read
-- "cancelled" and the investigator could not see which step was stuck where.
SELECT is((SELECT task_snapshot->'steps' FROM tasker.tasks_dlq WHERE task_uuid = :'sw4'), '{"a": "enqueued"}'::jsonb,
          'sweep: the DLQ snapshot shows the steps as they were when the task was given up');
SELECT is((SELECT count(*) FROM pg_temp.sweep() AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text) WHERE task_uuid = :'sw4'),
          0::bigint, 'sweep: a second sweep leaves the errored task alone');
SELECT is((SELECT count(*) FROM tasker.tasks_dlq WHERE task_uuid = :'sw4'), 1::bigint, 'sweep: still one DLQ row');
-- Blocked past its timeout → error (give_up), reason blocked_timeout.
UPDATE tasker.tasks SET state_changed_at = now() - interval '25 hours', created_at = now() - interval '25 hours' WHERE task_uuid = :'sw2';  -- TEST-ONLY
UPDATE tasker.workflow_steps SET updated_at = now() - interval '25 hours' WHERE task_uuid = :'sw2';  -- TEST-ONLY
SELECT is((SELECT array_agg(action) FROM pg_temp.sweep() AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text)
           WHERE task_uuid = :'sw2'), ARRAY['moved_to_dlq'], 'sweep: a task blocked too long is given up');
SELECT is((SELECT row(t.state, tr.event, d.dlq_reason, d.original_state, pg_temp.st(:'sw2', 'a'))::text
           FROM tasker.tasks t JOIN tasker.tasks_dlq d USING (task_uuid)
           JOIN LATERAL (SELECT event FROM tasker.task_transitions x WHERE x.task_uuid = t.task_uuid ORDER BY ordinal DESC LIMIT 1) tr ON true
           WHERE t.task_uuid = :'sw2'), '(error,give_up,blocked_timeout,blocked_by_failures,error)',
          'sweep: blocked → error by give_up, DLQ reason blocked_timeout; the failed step keeps its error');
-- Template lifecycle overrides the default threshold.
SELECT pg_temp.new_task('tap_api_sw', 'short') AS sw5 \gset
SELECT pg_temp.new_task('tap_api_sw', 'one') AS sw6 \gset
UPDATE tasker.tasks SET state_changed_at = now() - interval '11 minutes' WHERE task_uuid IN (:'sw5', :'sw6');  -- TEST-ONLY
UPDATE tasker.workflow_steps SET updated_at = now() - interval '11 minutes' WHERE task_uuid IN (:'sw5', :'sw6');  -- TEST-ONLY
SELECT is((SELECT array_agg(task_uuid) FROM pg_temp.sweep() AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text)
           WHERE action = 'moved_to_dlq'), ARRAY[:'sw5'::uuid],
          'sweep: lifecycle.max_steps_in_process_minutes (5) overrides the default (30)');
-- Re-evaluation of a task whose state was left behind.
SELECT pg_temp.new_task('tap_api_sw', 'one') AS sw7 \gset
UPDATE tasker.tasks SET state = 'waiting_for_dependencies' WHERE task_uuid = :'sw7';  -- TEST-ONLY: a state left behind
UPDATE tasker.tasks SET state_changed_at = now() - interval '2 minutes' WHERE task_uuid = :'sw7';  -- TEST-ONLY
SELECT is((SELECT array_agg(action || ': ' || detail) FROM pg_temp.sweep() AS (action text, task_uuid uuid, workflow_step_uuid uuid, detail text)
           WHERE task_uuid = :'sw7'), ARRAY['reevaluated: waiting_for_dependencies -> steps_in_process'],
          'sweep: a quiet task in the wrong state is re-evaluated');
SELECT is((SELECT last_swept_at FROM tasker.tasks WHERE task_uuid = :'sw7'), now(), 'sweep: re-evaluation stamps last_swept_at');
-- The advisory lock: a sweep holds it for the rest of its transaction (ours has swept above), so
-- a second daemon's sweep, in another session (dblink), returns skipped_locked at once. The other
-- session must never *wait* for the lock (we hold it until ROLLBACK): it only calls the sweep.
SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'dblink') AS have_dblink \gset
\if :have_dblink
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('tap_sweeper', format('dbname=%s port=%s host=%s user=%s', current_database(), current_setting('port'),
                      split_part(current_setting('unix_socket_directories'), ',', 1), current_user)) \g /dev/null
SELECT is((SELECT array_agg(row(action, task_uuid, workflow_step_uuid, detail)::text)
           FROM dblink('tap_sweeper', 'SELECT * FROM tasker.detect_and_transition_stuck_tasks()')
                AS x(action text, task_uuid uuid, workflow_step_uuid uuid, detail text)),
          ARRAY['(skipped_locked,,,"another sweep is running")'],
          'sweep: while another transaction holds the sweep lock, a second sweep returns skipped_locked at once');
SELECT is((SELECT array_agg(action) FROM dblink('tap_sweeper', 'SELECT action FROM tasker.detect_and_transition_stuck_tasks(10, true)')
                AS x(action text)),
          ARRAY['skipped_locked'], 'sweep: … a dry run too');
SELECT dblink_disconnect('tap_sweeper') \g /dev/null
\else
SELECT skip('dblink is not installed: the advisory-lock test needs a second session', 2);
\endif

-- =============================================================================================
-- 8. cancel_task
-- =============================================================================================
SELECT pg_temp.tpl('tap_api_cx', 'wide', ARRAY[pg_temp.s('r1'), pg_temp.s('r2'), pg_temp.s('r3'), pg_temp.s('k', '{r1}'), pg_temp.s('z', '{k}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_cx', 'bad', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 1}'), pg_temp.s('b', '{a}')]) \g /dev/null
SELECT pg_temp.new_task('tap_api_cx', 'wide') AS cx \gset
SELECT pg_temp.claim('tap_api_cx', 10, 'w-cx') \g /dev/null
SELECT pg_temp.ok(:'cx', 'r1'), pg_temp.fail(:'cx', 'r3') \g /dev/null
SELECT pg_temp.pc('tap_api_cx') \g /dev/null
SELECT is((SELECT array_agg(state ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = :'cx'),
          ARRAY['enqueued', 'complete', 'in_progress', 'waiting_for_retry', 'pending'], 'cancel: (setup) k enqueued, r1 complete, r2 running, r3 retrying, z pending');
SELECT is((SELECT row(c.*)::text FROM tasker.cancel_task(:'cx', 'no longer needed', 'op-1') c),
          row(:'cx', 'steps_in_process', 'cancelled', 4)::text, 'cancel: returns previous state, cancelled, steps cancelled');
SELECT is((SELECT array_agg(state ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = :'cx'),
          ARRAY['cancelled', 'complete', 'cancelled', 'cancelled', 'cancelled'], 'cancel: unfinished steps are cancelled, finished ones stay');
SELECT is((SELECT count(*) FROM pg_temp.qmsgs('tasker_dispatch_tap_api_cx') m WHERE m->>'task_uuid' = :'cx'), 0::bigint,
          'cancel: the task''s dispatch messages are archived');
SELECT is((SELECT row(state, completed_at = now())::text FROM tasker.tasks WHERE task_uuid = :'cx'), '(cancelled,t)', 'cancel: the task is cancelled');
SELECT is((SELECT row(from_state, to_state, event, metadata->>'reason', processor)::text FROM tasker.task_transitions
           WHERE task_uuid = :'cx' ORDER BY ordinal DESC LIMIT 1), '(steps_in_process,cancelled,cancel,"no longer needed",op-1)',
          'cancel: the task transition records reason and actor');
SELECT is((SELECT array_agg(event || '/' || processor ORDER BY ordinal) FROM tasker.workflow_step_transitions
           WHERE task_uuid = :'cx' AND to_state = 'cancelled'), ARRAY['cancel/op-1', 'cancel/op-1', 'cancel/op-1', 'cancel/op-1'],
          'cancel: one cancel transition per cancelled step');
SELECT is((SELECT status FROM tasker.submit_step_result(pg_temp.sid(:'cx', 'r2'), 1, true)), 'stale', 'cancel: the running worker''s hand-back is stale');
SELECT is(tasker.heartbeat_step(pg_temp.sid(:'cx', 'r2'), 1, 30), false, 'cancel: the running worker''s heartbeat says stop');
SELECT is(pg_temp.claim('tap_api_cx'), 0::bigint, 'cancel: nothing of the task can be claimed');
SELECT throws_ok(format('SELECT * FROM tasker.cancel_task(%L)', :'cx'), 'TK409',
                 format('task %s is already cancelled and cannot be cancelled', :'cx'), 'cancel: a cancelled task → TK409');
SELECT throws_ok(format('SELECT * FROM tasker.cancel_task(%L)', :'pc1'), 'TK409',
                 format('task %s is already complete and cannot be cancelled', :'pc1'), 'cancel: a complete task → TK409');
SELECT gen_random_uuid() AS nosuch \gset
SELECT throws_ok(format('SELECT * FROM tasker.cancel_task(%L)', :'nosuch'), 'TK404', format('unknown task %s', :'nosuch'),
                 'cancel: an unknown task → TK404');
SELECT pg_temp.new_task('tap_api_cx', 'bad') AS cx2 \gset
SELECT pg_temp.claim('tap_api_cx') \g /dev/null
SELECT pg_temp.fail(:'cx2', 'a') \g /dev/null
SELECT pg_temp.pc('tap_api_cx') \g /dev/null
SELECT is((SELECT row(c.previous_state, c.steps_cancelled)::text FROM tasker.cancel_task(:'cx2', NULL, 'api:ops', 'ops-di') c),
          '(blocked_by_failures,1)', 'cancel: a blocked task can be cancelled');
SELECT is((SELECT row(processor, metadata->>'claimed_operator')::text FROM tasker.task_transitions
           WHERE task_uuid = :'cx2' ORDER BY ordinal DESC LIMIT 1), '(api:ops,ops-di)',
          'cancel: the actor is the processor, the claimed operator sits in metadata.claimed_operator');
SELECT is((SELECT array_agg(processor || '/' || (metadata->>'claimed_operator')) FROM tasker.workflow_step_transitions
           WHERE task_uuid = :'cx2' AND to_state = 'cancelled'), ARRAY['api:ops/ops-di'], 'cancel: so do the steps'' transitions');
SELECT is((SELECT array_agg(state ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = :'cx2'), ARRAY['error', 'cancelled'],
          'cancel: a step in error keeps its state');

-- =============================================================================================
-- 9. resolve_step
-- =============================================================================================
SELECT pg_temp.tpl('tap_api_rs', 'chain', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 1}'), pg_temp.s('b', '{a}'), pg_temp.s('c', '{b}')]) \g /dev/null
SELECT pg_temp.tpl('tap_api_rs', 'par', ARRAY[pg_temp.s('a'), pg_temp.s('b'), pg_temp.s('c', '{a,b}')]) \g /dev/null
-- resolve_manually an error step: the task moves on at once.
SELECT pg_temp.new_task('tap_api_rs', 'chain') AS rs1 \gset
SELECT pg_temp.claim('tap_api_rs') \g /dev/null
SELECT pg_temp.fail(:'rs1', 'a') \g /dev/null
SELECT pg_temp.pc('tap_api_rs') \g /dev/null
SELECT is(pg_temp.tst(:'rs1'), 'blocked_by_failures', 'resolve: (setup) the task is blocked');
SELECT is((SELECT row(r.workflow_step_uuid, r.previous_state, r.state, r.task_state, r.steps_enqueued)::text
           FROM tasker.resolve_step(:'rs1', pg_temp.sid(:'rs1', 'a'), 'resolve_manually', NULL, 'fixed by hand', 'op-2') r),
          row(pg_temp.sid(:'rs1', 'a'), 'error', 'resolved_manually', 'steps_in_process', 1)::text,
          'resolve_manually: error → resolved_manually, the child is dispatched, the task is in process again');
SELECT is((SELECT row(from_state, to_state, event, processor, metadata->>'reason')::text FROM tasker.workflow_step_transitions
           WHERE workflow_step_uuid = pg_temp.sid(:'rs1', 'a') ORDER BY ordinal DESC LIMIT 1),
          '(error,resolved_manually,resolve_manually,op-2,"fixed by hand")', 'resolve_manually: the transition records action, actor, reason');
SELECT is((SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = pg_temp.sid(:'rs1', 'a')
           AND metadata ? 'claimed_operator'), 0::bigint,
          'resolve_manually: the claimed operator of an earlier call in the transaction does not leak into it');
SELECT is(pg_temp.last_tr(pg_temp.sid(:'rs1', 'b')), 'pending>enqueued:enqueue', 'resolve_manually: the child''s dispatch is an ordinary enqueue');
SELECT is(pg_temp.task_trs(:'rs1'), ARRAY['>steps_in_process:create_and_enqueue', 'steps_in_process>blocked_by_failures:permanent_failure',
                                         'blocked_by_failures>steps_in_process:steps_in_flight'], 'resolve_manually: the task''s transitions');
-- complete_manually a running step: the worker's later hand-back is stale, its message archived.
SELECT pg_temp.claim('tap_api_rs', 10, 'w-rs') \g /dev/null
SELECT dispatch_msg_id AS rs1_b_msg FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'rs1', 'b') \gset
SELECT is((SELECT row(r.previous_state, r.state, r.task_state, r.steps_enqueued)::text
           FROM tasker.resolve_step(:'rs1', pg_temp.sid(:'rs1', 'b'), 'complete_manually', '{"manual": true}') r),
          '(in_progress,complete,steps_in_process,1)', 'complete_manually: in_progress → complete, the child is dispatched');
SELECT is((SELECT row(results, completed_at = now(), lease_expires_at)::text FROM tasker.workflow_steps
           WHERE workflow_step_uuid = pg_temp.sid(:'rs1', 'b')), '("{""manual"": true}",t,)', 'complete_manually: the given result is stored');
SELECT is(pg_temp.last_tr(pg_temp.sid(:'rs1', 'b')), 'in_progress>complete:complete_manually', 'complete_manually: transition event');
SELECT ok(NOT pg_temp.qhas('tasker_dispatch_tap_api_rs', :rs1_b_msg), 'complete_manually: the running attempt''s message is archived');
SELECT is((SELECT status FROM tasker.submit_step_result(pg_temp.sid(:'rs1', 'b'), 1, true)), 'stale', 'complete_manually: the worker''s hand-back is stale');
SELECT is((SELECT dependency_results FROM tasker.tasker_claim_and_execute_step('tap_api_rs', 10, 300, 'w-rs')),
          '{"a": null, "b": {"manual": true}}'::jsonb, 'complete_manually: the manual result reaches the children');
SELECT is((SELECT row(r.state, r.task_state)::text FROM tasker.resolve_step(:'rs1', pg_temp.sid(:'rs1', 'c'), 'complete_manually') r),
          '(complete,complete)', 'complete_manually: the last step completes the task at once');
SELECT is((SELECT results FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'rs1', 'c')), '{}'::jsonb,
          'complete_manually: without a result the results are {}');
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, %L)', :'rs1', pg_temp.sid(:'rs1', 'c'), 'resolve_manually'), 'TK409',
                 format('task %s is already complete; its steps can no longer change', :'rs1'), 'resolve: a finished task → TK409');
-- reset_for_retry: error → pending with a fresh budget (attempts back to 0) while attempt_no, the
-- fencing token, keeps counting; dispatched again at once.
SELECT pg_temp.new_task('tap_api_rs', 'chain') AS rs2 \gset
SELECT pg_temp.claim('tap_api_rs') \g /dev/null
SELECT pg_temp.fail(:'rs2', 'a') \g /dev/null
SELECT pg_temp.pc('tap_api_rs') \g /dev/null
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, %L)', :'rs2', pg_temp.sid(:'rs2', 'b'), 'reset_for_retry'), 'TK409',
                 format('only a step in error can be reset for retry (step %s is pending)', pg_temp.sid(:'rs2', 'b')),
                 'reset_for_retry: a step not in error → TK409');
SELECT is((SELECT row(r.previous_state, r.state, r.task_state, r.steps_enqueued)::text
           FROM tasker.resolve_step(:'rs2', pg_temp.sid(:'rs2', 'a'), 'reset_for_retry') r),
          '(error,enqueued,steps_in_process,1)', 'reset_for_retry: error → pending → dispatched at once; the task is in process');
SELECT is((SELECT row(attempts, attempt_no, error, next_retry_at)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'rs2', 'a')),
          '(0,1,,)', 'reset_for_retry: attempts back to 0 (attempt_no stays 1), error cleared');
SELECT is((SELECT array_agg(from_state || '>' || to_state || ':' || event ORDER BY ordinal) FROM tasker.workflow_step_transitions
           WHERE workflow_step_uuid = pg_temp.sid(:'rs2', 'a') AND ordinal > (SELECT max(ordinal) FROM tasker.workflow_step_transitions
                                                                          WHERE workflow_step_uuid = pg_temp.sid(:'rs2', 'a') AND to_state = 'error')),
          ARRAY['error>pending:reset_for_retry', 'pending>enqueued:enqueue'], 'reset_for_retry: transitions reset_for_retry then enqueue');
SELECT is((SELECT array_agg((m->'attempt')::int) FROM pg_temp.qmsgs('tasker_dispatch_tap_api_rs') m
           WHERE m->>'step_uuid' = pg_temp.sid(:'rs2', 'a')::text), ARRAY[2], 'reset_for_retry: the new dispatch message is for attempt 2');
SELECT is((SELECT array_agg(attempt) FROM tasker.tasker_claim_and_execute_step('tap_api_rs', 10, 300, 'w-rs')), ARRAY[2],
          'reset_for_retry: the step is claimed again, as attempt 2');
SELECT is((SELECT row(attempts, attempt_no, max_attempts)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'rs2', 'a')),
          '(1,2,1)', 'reset_for_retry: a fresh budget (attempts 1 of 1) under a new attempt number');
SELECT is((SELECT status FROM tasker.submit_step_result(pg_temp.sid(:'rs2', 'a'), 1, true)), 'duplicate',
          'reset_for_retry: a late hand-back of the first run cannot pass for the re-run');
SELECT is((SELECT row(status, state)::text FROM tasker.submit_step_result(pg_temp.sid(:'rs2', 'a'), 2, true, '{"second": true}')),
          '(accepted,enqueued_for_orchestration)', 'reset_for_retry: the re-run hands back its result');
SELECT is((SELECT array_agg(attempt || ':' || success ORDER BY attempt) FROM tasker.workflow_step_result_audit
           WHERE workflow_step_uuid = pg_temp.sid(:'rs2', 'a')), ARRAY['1:false', '2:true'],
          'reset_for_retry: one result-audit row per run, by attempt number');
-- Wrong states and bad input.
SELECT pg_temp.new_task('tap_api_rs', 'par') AS rs3 \gset
SELECT pg_temp.claim('tap_api_rs') \g /dev/null
SELECT pg_temp.ok(:'rs3', 'a') \g /dev/null
SELECT pg_temp.pc('tap_api_rs') \g /dev/null
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, %L)', :'rs3', pg_temp.sid(:'rs3', 'a'), 'resolve_manually'), 'TK409',
                 format('step %s is already complete', pg_temp.sid(:'rs3', 'a')), 'resolve_manually: a complete step → TK409');
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, %L)', :'rs3', pg_temp.sid(:'rs3', 'a'), 'delete'), 'TK400',
                 'unknown action ''delete'': use reset_for_retry, resolve_manually or complete_manually', 'resolve: unknown action → TK400');
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, NULL)', :'rs3', pg_temp.sid(:'rs3', 'a')), 'TK400',
                 'unknown action NULL: use reset_for_retry, resolve_manually or complete_manually', 'resolve: NULL action → TK400');
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, %L)', :'nosuch', pg_temp.sid(:'rs3', 'a'), 'resolve_manually'), 'TK404',
                 format('unknown task %s', :'nosuch'), 'resolve: unknown task → TK404');
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, %L)', :'rs3', pg_temp.sid(:'rs1', 'a'), 'resolve_manually'), 'TK404',
                 format('unknown step %s in task %s', pg_temp.sid(:'rs1', 'a'), :'rs3'), 'resolve: a step of another task → TK404');
-- resolve_manually a pending step whose parent still runs: it satisfies its child only if the other parent is done too.
SELECT is((SELECT row(r.previous_state, r.state, r.steps_enqueued)::text
           FROM tasker.resolve_step(:'rs3', pg_temp.sid(:'rs3', 'b'), 'resolve_manually') r), '(in_progress,resolved_manually,1)',
          'resolve_manually: a running step is resolved; with its sibling complete the child is dispatched');
SELECT is((SELECT row(state, unfinished_parents)::text FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'rs3', 'c')),
          '(enqueued,0)', 'resolve_manually: resolved_manually satisfies the child');

-- =============================================================================================
-- 10. get_step_readiness_status and get_task_execution_context
-- =============================================================================================
SELECT pg_temp.tpl('tap_api_rd', 'g', ARRAY[pg_temp.s('a', '{}', '{"max_attempts": 2}'), pg_temp.s('b'), pg_temp.s('c', '{a,b}'),
                                            pg_temp.s('d', '{}', '{"max_attempts": 1, "retryable": false}')]);
SELECT pg_temp.new_task('tap_api_rd', 'g') AS rd \gset
CREATE FUNCTION pg_temp.rdy(p_task uuid, p_name text) RETURNS text
LANGUAGE sql AS $$
  SELECT row(r.current_state, r.dependencies_satisfied, r.retry_eligible, r.ready_for_execution, r.total_parents,
             r.completed_parents, r.attempts, r.max_attempts, r.not_ready_reason)::text
  FROM tasker.get_step_readiness_status(p_task, ARRAY[pg_temp.sid(p_task, p_name)]) r
$$;
CREATE FUNCTION pg_temp.ctx(p_task uuid) RETURNS text
LANGUAGE sql AS $$
  SELECT row(c.status, c.total_steps, c.pending_steps, c.enqueued_steps, c.in_progress_steps, c.waiting_for_retry_steps,
             c.completed_steps, c.failed_steps, c.cancelled_steps, c.ready_steps, c.execution_status, c.recommended_action,
             c.completion_percentage, c.health_status)::text
  FROM tasker.get_task_execution_context(p_task) c
$$;
SELECT results_eq(format($$SELECT workflow_step_uuid, task_uuid, named_step_uuid, name FROM tasker.get_step_readiness_status(%L)$$, :'rd'),
                  format($$SELECT s.workflow_step_uuid, s.task_uuid, s.named_step_uuid, s.name FROM tasker.workflow_steps s
                           JOIN tasker.named_steps n USING (named_step_uuid) WHERE s.task_uuid = %L ORDER BY n.position$$, :'rd'),
                  'readiness: one row per step, in template order, with its identifiers');
SELECT is((SELECT count(*) FROM tasker.get_step_readiness_status(:'rd', ARRAY[pg_temp.sid(:'rd', 'b'), pg_temp.sid(:'rd', 'c')])), 2::bigint,
          'readiness: step_uuids limits the rows');
SELECT is(pg_temp.rdy(:'rd', 'a'), '(enqueued,t,t,f,0,0,0,2,"already dispatched: waiting for a worker to claim it")', 'readiness: enqueued');
SELECT is(pg_temp.rdy(:'rd', 'c'), '(pending,f,t,f,2,0,0,3,"waiting for 2 of 2 parent step(s): a (enqueued), b (enqueued)")',
          'readiness: pending with unfinished parents names them');
SELECT is(pg_temp.ctx(:'rd'), '(steps_in_process,4,1,3,0,0,0,0,0,0,processing,wait_for_completion,0.00,healthy)',
          'execution context: processing');
SELECT pg_temp.claim('tap_api_rd', 10, 'w-rd') \g /dev/null
SELECT is(pg_temp.rdy(:'rd', 'a'), '(in_progress,t,t,f,0,0,1,2,"running on w-rd (attempt 1)")', 'readiness: in_progress names the worker');
SELECT pg_temp.ok(:'rd', 'b'), pg_temp.fail(:'rd', 'a') \g /dev/null
SELECT is(pg_temp.rdy(:'rd', 'b'), '(enqueued_for_orchestration,t,t,f,0,0,1,3,"finished; waiting for the orchestrator to record the result")',
          'readiness: enqueued_for_orchestration');
SELECT is(pg_temp.rdy(:'rd', 'a'), '(enqueued_as_error_for_orchestration,t,t,f,0,0,1,2,"failed; waiting for the orchestrator to decide on a retry")',
          'readiness: enqueued_as_error_for_orchestration');
SELECT is((SELECT last_failure_at FROM tasker.get_step_readiness_status(:'rd', ARRAY[pg_temp.sid(:'rd', 'a')])), now(),
          'readiness: last_failure_at is the time of the last failure transition');
SELECT pg_temp.pc('tap_api_rd') \g /dev/null
SELECT is(pg_temp.rdy(:'rd', 'b'), '(complete,t,t,f,0,0,1,3,"already complete")', 'readiness: complete');
SELECT is(pg_temp.rdy(:'rd', 'a'),
          (SELECT format('(waiting_for_retry,t,t,f,0,0,1,2,"retry backoff: eligible again at %s")', next_retry_at)
           FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'rd', 'a')),
          'readiness: waiting_for_retry in backoff says until when');
SELECT is((SELECT next_retry_at FROM tasker.get_step_readiness_status(:'rd', ARRAY[pg_temp.sid(:'rd', 'a')])),
          (SELECT next_retry_at FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'rd', 'a')), 'readiness: next_retry_at');
SELECT is((SELECT last_attempted_at FROM tasker.get_step_readiness_status(:'rd', ARRAY[pg_temp.sid(:'rd', 'a')])), now(),
          'readiness: last_attempted_at');
SELECT is(pg_temp.rdy(:'rd', 'c'), '(pending,f,t,f,2,1,0,3,"waiting for 1 of 2 parent step(s): a (waiting_for_retry)")',
          'readiness: completed_parents counts the complete parent');
SELECT is(pg_temp.ctx(:'rd'), '(steps_in_process,4,1,0,1,1,1,0,0,0,processing,wait_for_completion,25.00,recovering)',
          'execution context: a step retrying → health recovering');
UPDATE tasker.workflow_steps SET next_retry_at = now() WHERE workflow_step_uuid = pg_temp.sid(:'rd', 'a');  -- TEST-ONLY: backoff passed
SELECT is(pg_temp.rdy(:'rd', 'a'), '(waiting_for_retry,t,t,t,0,0,1,2,)', 'readiness: ready → no reason');
SELECT is(pg_temp.ctx(:'rd'), '(steps_in_process,4,1,0,1,1,1,0,0,1,has_ready_steps,execute_ready_steps,25.00,recovering)',
          'execution context: has_ready_steps');
-- TEST-ONLY: policy columns changed by hand to reach the "not eligible" reasons.
UPDATE tasker.workflow_steps SET max_attempts = 1 WHERE workflow_step_uuid = pg_temp.sid(:'rd', 'a');
SELECT is(pg_temp.rdy(:'rd', 'a'), '(waiting_for_retry,t,f,f,0,0,1,1,"no attempts left (1 of 1 used)")', 'readiness: no attempts left');
UPDATE tasker.workflow_steps SET max_attempts = 2, retryable = false WHERE workflow_step_uuid = pg_temp.sid(:'rd', 'a');
SELECT is(pg_temp.rdy(:'rd', 'a'), '(waiting_for_retry,t,f,f,0,0,1,2,"not retryable and already attempted 1 time(s)")', 'readiness: not retryable');
UPDATE tasker.workflow_steps SET retryable = true WHERE workflow_step_uuid = pg_temp.sid(:'rd', 'a');
SELECT pg_temp.fail(:'rd', 'd') \g /dev/null
SELECT pg_temp.pc('tap_api_rd') \g /dev/null
SELECT is(pg_temp.rdy(:'rd', 'd'),
          '(error,t,f,f,0,0,1,1,"failed for good after 1 of 1 attempt(s), not retryable; needs an operator (reset_for_retry, resolve_manually or complete_manually)")',
          'readiness: error (not retryable) needs an operator');
SELECT is(pg_temp.ctx(:'rd'), '(blocked_by_failures,4,1,0,0,1,1,1,0,1,blocked_by_failures,handle_failures,25.00,blocked)',
          'execution context: blocked_by_failures wins over ready steps');
SELECT tasker.resolve_step(:'rd', pg_temp.sid(:'rd', 'd'), 'resolve_manually') \g /dev/null
SELECT is(pg_temp.rdy(:'rd', 'd'), '(resolved_manually,t,f,f,0,0,1,1,"resolved manually")', 'readiness: resolved manually');
-- the resolve dispatched a's retry; complete a and c
SELECT pg_temp.claim('tap_api_rd') \g /dev/null
SELECT pg_temp.ok(:'rd', 'a') \g /dev/null
SELECT pg_temp.pc('tap_api_rd') \g /dev/null
SELECT pg_temp.claim('tap_api_rd') \g /dev/null
SELECT pg_temp.ok(:'rd', 'c') \g /dev/null
SELECT pg_temp.pc('tap_api_rd') \g /dev/null
SELECT is(pg_temp.ctx(:'rd'), '(complete,4,0,0,0,0,4,0,0,0,all_complete,finalize_task,100.00,healthy)', 'execution context: all_complete');
-- error with retries left (retryable) names no "not retryable"; waiting_for_dependencies; cancelled.
SELECT pg_temp.new_task('tap_api_rd', 'g') AS rd2 \gset
SELECT pg_temp.claim('tap_api_rd') \g /dev/null
SELECT pg_temp.fail(:'rd2', 'a', '{"message": "no", "retryable": false}'), pg_temp.fail(:'rd2', 'b'), pg_temp.ok(:'rd2', 'd') \g /dev/null
SELECT pg_temp.pc('tap_api_rd') \g /dev/null
SELECT is(pg_temp.rdy(:'rd2', 'a'),
          '(error,t,t,f,0,0,1,2,"failed for good after 1 of 2 attempt(s); needs an operator (reset_for_retry, resolve_manually or complete_manually)")',
          'readiness: error (marked not retryable by the worker)');
SELECT tasker.resolve_step(:'rd2', pg_temp.sid(:'rd2', 'a'), 'resolve_manually') \g /dev/null
SELECT is(pg_temp.ctx(:'rd2'), '(waiting_for_retry,4,1,0,0,1,2,0,0,0,waiting_for_dependencies,wait_for_dependencies,50.00,recovering)',
          'execution context: waiting_for_dependencies (nothing ready, nothing in flight)');
SELECT tasker.cancel_task(:'rd2') \g /dev/null
SELECT is(pg_temp.rdy(:'rd2', 'c'), '(cancelled,f,t,f,2,1,0,3,cancelled)', 'readiness: cancelled');
SELECT is(pg_temp.ctx(:'rd2'), '(cancelled,4,0,0,0,0,2,0,2,0,waiting_for_dependencies,wait_for_dependencies,50.00,healthy)',
          'execution context: a cancelled task counts its cancelled steps');
SELECT is((SELECT count(*) FROM tasker.get_task_execution_context(gen_random_uuid())), 0::bigint, 'execution context: unknown task → no row');
SELECT is((SELECT count(*) FROM tasker.get_step_readiness_status(gen_random_uuid())), 0::bigint, 'readiness: unknown task → no rows');

-- =============================================================================================
-- 11. backoff_delay
-- =============================================================================================
SELECT is(tasker.backoff_delay('none', 1000, 30000, 3), interval '0', 'backoff none: 0 (jitter of nothing is nothing)');
SELECT is(ARRAY(SELECT pg_temp.ms(tasker.backoff_delay('linear', 1000, 30000, a, NULL, 0)) FROM generate_series(1, 4) a),
          ARRAY[1000, 2000, 3000, 4000]::numeric[], 'backoff linear: base × attempt');
SELECT is(ARRAY(SELECT pg_temp.ms(tasker.backoff_delay('exponential', 1000, 30000, a, NULL, 0)) FROM generate_series(1, 6) a),
          ARRAY[1000, 2000, 4000, 8000, 16000, 30000]::numeric[], 'backoff exponential: base × 2^(attempt-1), capped at max');
SELECT is(ARRAY(SELECT pg_temp.ms(tasker.backoff_delay('fibonacci', 500, 30000, a, NULL, 0)) FROM generate_series(1, 7) a),
          ARRAY[500, 500, 1000, 1500, 2500, 4000, 6500]::numeric[], 'backoff fibonacci: base × 1, 1, 2, 3, 5, 8, 13');
SELECT is(ARRAY[pg_temp.ms(tasker.backoff_delay('exponential', 1000, 30000, 0, NULL, 0)),
                pg_temp.ms(tasker.backoff_delay('linear', 1000, 30000, -3, NULL, 0))],
          ARRAY[1000, 1000]::numeric[], 'backoff: attempt < 1 counts as 1');
SELECT is(ARRAY[pg_temp.ms(tasker.backoff_delay('exponential', 1000, 5000, 1000, NULL, 0)),
                pg_temp.ms(tasker.backoff_delay('fibonacci', 1000, 5000, 1000, NULL, 0)),
                pg_temp.ms(tasker.backoff_delay('linear', 1000, 5000, 1000, NULL, 0))],
          ARRAY[5000, 5000, 5000]::numeric[], 'backoff: huge attempts stay at the cap');
SELECT is(pg_temp.ms(tasker.backoff_delay('bogus', 1000, 30000, 3, NULL, 0)), 4000::numeric, 'backoff: an unknown kind is exponential');
CREATE TEMP TABLE jit AS SELECT pg_temp.ms(tasker.backoff_delay('exponential', 1000, 30000, 2)) AS ms FROM generate_series(1, 500);
SELECT ok((SELECT min(ms) >= 1700 AND max(ms) <= 2300 FROM jit), 'backoff jitter: within ±15 % (500 samples)');
SELECT ok((SELECT min(ms) < 1850 AND max(ms) > 2150 AND count(DISTINCT ms) > 100 FROM jit), 'backoff jitter: actually spreads');
SELECT ok((SELECT min(ms) >= 4250 AND max(ms) <= 5000 FROM (SELECT pg_temp.ms(tasker.backoff_delay('exponential', 1000, 5000, 8)) AS ms
                                                         FROM generate_series(1, 200)) x),
          'backoff jitter: never above the cap');
SELECT ok((SELECT min(ms) >= 850 AND max(ms) <= 1150 FROM (SELECT pg_temp.ms(tasker.backoff_delay('linear', 1000, 30000, 1, NULL, 15)) AS ms
                                                        FROM generate_series(1, 200)) x), 'backoff jitter: linear within ±15 %');
SELECT is(ARRAY(SELECT tasker.backoff_delay('exponential', 1000, 30000, 1, 5) FROM generate_series(1, 20)),
          array_fill(interval '5 seconds', ARRAY[20]), 'backoff retry_after: exactly the hint, no jitter');
SELECT is(tasker.backoff_delay('exponential', 1000, 30000, 1, 100), interval '30 seconds', 'backoff retry_after: capped at max');
SELECT is(tasker.backoff_delay('exponential', 1000, 30000, 4, 0), interval '0', 'backoff retry_after 0: at once');
SELECT is(pg_temp.ms(tasker.backoff_delay('exponential', 1000, 30000, 3, -1, 0)), 4000::numeric, 'backoff retry_after < 0: ignored');

SELECT * FROM finish();
ROLLBACK;
