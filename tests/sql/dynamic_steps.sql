-- dynamic_steps.sql — pgTAP tests of dynamic workflows (issue 10, docs/dynamic-steps.md): step
-- types at registration (refusals, aliases, which steps exist with the task, gate edges, limits),
-- decisions and their outcomes, batch plans (workers, parallelism, failure strategies), checkpoints
-- and the readiness reasons of steps that wait behind a decision or a batch planner.
--
-- Runs in one transaction that is rolled back; every section uses its own namespace (tap_dyn_*).
-- As in tasker_api.sql, now() is frozen inside the transaction: where a backoff, a lease or
-- staleness must have passed, a plain UPDATE moves the timestamp (test-only: no state change).
-- Limits the daemon sets on its connections (tasker.max_decision_steps, tasker.max_batch_workers,
-- tasker.max_template_steps) are set here with set_config(…, true) and reset right after.

BEGIN;
SET LOCAL client_min_messages = warning;
SET LOCAL jit = off;
SELECT plan(40);

-- ---------------------------------------------------------------------------------------------
-- Helpers (temporary, gone with the transaction)
-- ---------------------------------------------------------------------------------------------
-- A step definition: name, type (NULL: none given), dependencies, more keys.
CREATE FUNCTION pg_temp.s(p_name text, p_type text DEFAULT NULL, p_deps text[] DEFAULT '{}', p_extra jsonb DEFAULT '{}')
RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_strip_nulls(jsonb_build_object('name', p_name, 'type', p_type,
                                              'handler', jsonb_build_object('callable', 'h_' || p_name),
                                              'dependencies', to_jsonb(p_deps))) || p_extra
$$;
-- Register a template (always_unique); returns its uuid.
CREATE FUNCTION pg_temp.tpl(p_ns text, p_name text, p_steps jsonb[]) RETURNS uuid
LANGUAGE sql AS $$
  SELECT task_template_uuid FROM tasker.register_task_template(
    jsonb_build_object('name', p_name, 'namespace_name', p_ns, 'identity_strategy', 'always_unique',
                       'steps', to_jsonb(p_steps)))
$$;
CREATE FUNCTION pg_temp.new_task(p_ns text, p_name text) RETURNS uuid
LANGUAGE sql AS $$
  SELECT task_uuid FROM tasker.create_task(jsonb_build_object('name', p_name, 'namespace', p_ns))
$$;
CREATE FUNCTION pg_temp.sid(p_task uuid, p_name text) RETURNS uuid
LANGUAGE sql AS $$ SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.st(p_task uuid, p_name text) RETURNS text
LANGUAGE sql AS $$ SELECT state FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.tst(p_task uuid) RETURNS text
LANGUAGE sql AS $$ SELECT state FROM tasker.tasks WHERE task_uuid = p_task $$;
CREATE FUNCTION pg_temp.att(p_task uuid, p_name text) RETURNS integer
LANGUAGE sql AS $$ SELECT attempt_no FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
-- The steps of a task as "name:state", in name order.
CREATE FUNCTION pg_temp.steps(p_task uuid) RETURNS text[]
LANGUAGE sql AS $$
  SELECT coalesce(array_agg(name || ':' || state ORDER BY name), '{}') FROM tasker.workflow_steps WHERE task_uuid = p_task
$$;
-- The parents of a step (by edge), in name order.
CREATE FUNCTION pg_temp.parents(p_task uuid, p_name text) RETURNS text[]
LANGUAGE sql AS $$
  SELECT coalesce(array_agg(p.name ORDER BY p.name), '{}')
  FROM tasker.workflow_step_edges e JOIN tasker.workflow_steps p ON p.workflow_step_uuid = e.from_step_uuid
  WHERE e.to_step_uuid = pg_temp.sid(p_task, p_name)
$$;
-- Claim everything visible in a namespace; returns the claimed step names (claim order).
CREATE TEMP TABLE claims AS SELECT * FROM tasker.tasker_claim_and_execute_step('tap_none', 1, 1) WITH NO DATA;
CREATE FUNCTION pg_temp.claim(p_ns text) RETURNS text[]
LANGUAGE sql AS $$
  WITH c AS (INSERT INTO claims SELECT * FROM tasker.tasker_claim_and_execute_step(p_ns, 1000, 300, 'w1') RETURNING *)
  SELECT coalesce(array_agg(step_name ORDER BY step_name), '{}') FROM c
$$;
CREATE FUNCTION pg_temp.ok(p_task uuid, p_name text, p_result jsonb DEFAULT '{"ok": true}') RETURNS text
LANGUAGE sql AS $$
  SELECT status FROM tasker.submit_step_result(pg_temp.sid(p_task, p_name), pg_temp.att(p_task, p_name), true, p_result)
$$;
CREATE FUNCTION pg_temp.fail(p_task uuid, p_name text, p_error jsonb DEFAULT '"boom"') RETURNS text
LANGUAGE sql AS $$
  SELECT status FROM tasker.submit_step_result(pg_temp.sid(p_task, p_name), pg_temp.att(p_task, p_name), false, NULL, p_error)
$$;
CREATE FUNCTION pg_temp.pc(p_ns text) RETURNS integer
LANGUAGE sql AS $$ SELECT messages FROM tasker.process_completions(p_ns, 10000, 30) $$;
-- Claim (if needed), hand back and process one step: the worker side and the daemon side of a run.
CREATE FUNCTION pg_temp.run(p_ns text, p_task uuid, p_name text, p_result jsonb DEFAULT '{"ok": true}') RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  IF pg_temp.st(p_task, p_name) = 'enqueued' THEN
    PERFORM pg_temp.claim(p_ns);
  END IF;
  IF pg_temp.st(p_task, p_name) <> 'in_progress' THEN
    RETURN p_name || ' is ' || coalesce(pg_temp.st(p_task, p_name), 'missing');
  END IF;
  PERFORM pg_temp.ok(p_task, p_name, p_result);
  PERFORM pg_temp.pc(p_ns);
  RETURN pg_temp.st(p_task, p_name);
END $$;
CREATE FUNCTION pg_temp.step_trs(p_step uuid) RETURNS text[]
LANGUAGE sql AS $$
  SELECT array_agg(coalesce(from_state, '') || '>' || to_state || ':' || event ORDER BY ordinal)
  FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = p_step
$$;
CREATE FUNCTION pg_temp.last_tr(p_step uuid) RETURNS text
LANGUAGE sql AS $$
  SELECT coalesce(from_state, '') || '>' || to_state || ':' || event || coalesce(' ' || (metadata->>'error'), '')
  FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = p_step ORDER BY ordinal DESC LIMIT 1
$$;
CREATE FUNCTION pg_temp.reg_refused(p_tpl jsonb, p_msg text, p_desc text) RETURNS text
LANGUAGE sql AS $$
  SELECT throws_ok(format('SELECT * FROM tasker.register_task_template(%L::jsonb)', p_tpl), 'TK400', p_msg, p_desc)
$$;
-- A template x in tap_dyn_reg with these steps.
CREATE FUNCTION pg_temp.x(VARIADIC p_steps jsonb[]) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('name', 'x', 'namespace_name', 'tap_dyn_reg', 'steps', to_jsonb(p_steps))
$$;
-- A template's named steps as "name:type:init_created:init_parent_count", in position order, and
-- its edges as "parent>child:kind".
CREATE FUNCTION pg_temp.named(p_tpl uuid) RETURNS text[]
LANGUAGE sql AS $$
  SELECT array_agg(name || ':' || step_type || ':' || CASE WHEN init_created THEN 'init:' || init_parent_count ELSE 'later' END
                   ORDER BY position)
  FROM tasker.named_steps WHERE task_template_uuid = p_tpl
$$;
CREATE FUNCTION pg_temp.named_edges(p_tpl uuid) RETURNS text[]
LANGUAGE sql AS $$
  SELECT array_agg(p.name || '>' || c.name || ':' || e.kind ORDER BY p.position, c.position)
  FROM tasker.named_step_edges e
  JOIN tasker.named_steps p ON p.named_step_uuid = e.from_named_step_uuid
  JOIN tasker.named_steps c ON c.named_step_uuid = e.to_named_step_uuid
  WHERE e.task_template_uuid = p_tpl
$$;

-- =============================================================================================
-- 1. Registration
-- =============================================================================================
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('a', 'fancy')),
  'template x: step a: unknown step type "fancy" (standard, decision, deferred_convergence, batchable or batch_worker)',
  'refused: unknown step type, named');

-- First in the file: registration's cost should not depend on what the session did before, but
-- it does (see the note at the end of the report to the lead); the assertion is that it registers.
SELECT set_config('tasker.max_template_steps', '2000', true) \g /dev/null
SELECT is((SELECT status FROM tasker.register_task_template(jsonb_build_object('name', 'chain', 'namespace_name', 'tap_dyn_reg',
             'steps', (SELECT jsonb_agg(pg_temp.s('s' || g, NULL, CASE WHEN g > 1 THEN ARRAY['s' || (g - 1)] ELSE '{}' END) ORDER BY g)
                       FROM generate_series(1, 2000) g)))),
          'created', 'a chain of 2,000 steps registers');
SELECT is((SELECT count(*) || ' steps, last ' || max(n.init_parent_count) FILTER (WHERE n.name = 's2000')
           FROM tasker.named_steps n JOIN tasker.task_templates t USING (task_template_uuid) WHERE t.name = 'chain'),
          '2000 steps, last 1', 'the chain''s steps are stored, each with its one parent');
SELECT set_config('tasker.max_template_steps', '', true) \g /dev/null

-- Refusals: TK400, the message names the step.
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('w', 'batch_worker')),
  'template x: step w: a batch_worker needs exactly one batchable step among its dependencies (it has 0)',
  'refused: a batch_worker without a batchable parent');
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('b1', 'batchable'), pg_temp.s('b2', 'batchable'),
                                     pg_temp.s('w', 'batch_worker', '{b1,b2}')),
  'template x: step w: a batch_worker needs exactly one batchable step among its dependencies (it has 2)',
  'refused: a batch_worker with two batchable parents');
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('b', 'batchable'), pg_temp.s('c', NULL, '{b}')),
  'template x: step b: a batchable step needs a batch_worker step that depends on it',
  'refused: a batchable step without a batch_worker child');
SELECT pg_temp.reg_refused(pg_temp.x(
    pg_temp.s('b', 'batchable', '{}', '{"handler": {"callable": "h", "initialization": {"worker_template_name": "other"}}}'),
    pg_temp.s('w', 'batch_worker', '{b}'), pg_temp.s('other', NULL, '{b}')),
  'template x: step b: worker_template_name "other" is not a batch_worker step that depends on it',
  'refused: a batchable step whose worker_template_name is not one of its batch_worker children');
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('a'), pg_temp.s('d', 'decision', '{a}')),
  'template x: step d: a decision step needs at least one step that depends on it (its branches)',
  'refused: a decision without branches');
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('a'), pg_temp.s('f', 'deferred_convergence')),
  'template x: step f: a deferred_convergence step needs dependencies (the steps it may converge)',
  'refused: a deferred_convergence step without dependencies');
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('a', NULL, '{}', '{"batch_config": {"batch_size": 5}}')),
  'template x: step a: batch_config belongs on a batch_worker step (this one is standard)',
  'refused: batch_config on a standard step');
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('b', 'batchable'), pg_temp.s('w', 'batch_worker', '{b}', jsonb_build_object('batch_config', c.cfg))),
                           c.msg, 'refused: batch_config ' || c.cfg::text)
FROM (VALUES
  ('{"batch_size": 0}'::jsonb, 'template x: step w: batch_config: batch_size must be an integer between 1 and 100000 (got 0)'),
  ('{"batch_size": 100001}', 'template x: step w: batch_config: batch_size must be an integer between 1 and 100000 (got 100001)'),
  ('{"parallelism": 0}', 'template x: step w: batch_config: parallelism must be an integer between 1 and 1000 (got 0)'),
  ('{"parallelism": 1001}', 'template x: step w: batch_config: parallelism must be an integer between 1 and 1000 (got 1001)'),
  ('{"failure_strategy": "ignore"}', 'template x: step w: batch_config.failure_strategy must be continue_on_failure, fail_fast or isolate (got "ignore")'),
  ('{"checkpoint_interval": -1}', 'template x: step w: batch_config: checkpoint_interval must be an integer between 0 and 100000000 (got -1)'),
  ('{"checkpoint_interval": 100000001}', 'template x: step w: batch_config: checkpoint_interval must be an integer between 0 and 100000000 (got 100000001)'),
  ('"big"', 'template x: step w: batch_config must be an object')) AS c(cfg, msg);
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('a'), pg_temp.s('d', 'decision', '{a,f}'), pg_temp.s('f', 'deferred', '{d}')),
  'template x: dependency cycle: d -> f -> d (each step depends on the next)',
  'refused: a cycle through a decision and a deferred step, named');
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s(E'a\nb')),
  'template x: step #1: name "a\nb" contains control or direction characters', 'refused: a step name with a control character');
SELECT throws_like(format('SELECT * FROM tasker.register_task_template(%L::jsonb)', pg_temp.x(pg_temp.s(E'a\u202eb'))),
  'template x: step #1: name % contains control or direction characters', 'refused: a step name with a direction override');
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('a', NULL, '{}', '{"retry": {"max_attempts": 101}}')),
  'template x: step a: retry: max_attempts must be an integer between 0 and 100 (got 101)', 'refused: max_attempts 101');
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s('a', NULL, '{}', '{"retry": {"backoff_base_ms": 3600001}}')),
  'template x: step a: retry: backoff_base_ms must be an integer between 0 and 3600000 (got 3600001)', 'refused: backoff_base_ms over an hour');
SELECT is((SELECT count(*) FROM tasker.task_templates WHERE name = 'x'), 0::bigint, 'refused templates store nothing');

-- Aliases: step_type, decision_point, deferred, depends_on.
SELECT pg_temp.tpl('tap_dyn_reg', 'aliases', ARRAY[
  '{"name": "v", "handler": {"callable": "h"}}'::jsonb,
  '{"name": "d", "step_type": "decision_point", "handler": {"callable": "h"}, "depends_on": ["v"]}',
  '{"name": "a", "step_type": "standard", "handler": {"callable": "h"}, "depends_on": ["d"]}',
  '{"name": "f", "type": "deferred", "handler": {"callable": "h"}, "depends_on": ["a"]}']) AS aliases \gset
SELECT is(pg_temp.named(:'aliases'), ARRAY['v:standard:init:0', 'd:decision:init:1', 'a:standard:later',
                                           'f:deferred_convergence:later'],
          'aliases: step_type, decision_point → decision, deferred → deferred_convergence');
SELECT is(pg_temp.named_edges(:'aliases'), ARRAY['v>d:declared', 'd>a:declared', 'd>f:gate', 'a>f:declared'],
          'aliases: depends_on makes the edges');

-- Conditional approval: validate → routing (decision) → auto_approve | manager_approval |
-- finance_review → finalize (deferred).
SELECT pg_temp.tpl('tap_dyn_reg', 'approval', ARRAY[
  pg_temp.s('validate'), pg_temp.s('routing', 'decision', '{validate}'),
  pg_temp.s('auto_approve', NULL, '{routing}'), pg_temp.s('manager_approval', NULL, '{routing}'),
  pg_temp.s('finance_review', NULL, '{routing}'),
  pg_temp.s('finalize', 'deferred_convergence', '{auto_approve,manager_approval,finance_review}')]) AS approval \gset
SELECT is(pg_temp.named(:'approval'),
          ARRAY['validate:standard:init:0', 'routing:decision:init:1', 'auto_approve:standard:later',
                'manager_approval:standard:later', 'finance_review:standard:later',
                'finalize:deferred_convergence:later'],
          'approval: validate and routing exist with the task; the branches and finalize do not');
SELECT is(pg_temp.named_edges(:'approval'),
          ARRAY['validate>routing:declared', 'routing>auto_approve:declared', 'routing>manager_approval:declared',
                'routing>finance_review:declared', 'routing>finalize:gate', 'auto_approve>finalize:declared',
                'manager_approval>finalize:declared', 'finance_review>finalize:declared'],
          'approval: finalize has a gate edge from the decision that may create its parents');
SELECT is(pg_temp.steps(pg_temp.new_task('tap_dyn_reg', 'approval')), ARRAY['routing:pending', 'validate:enqueued'],
          'approval: a new task has only validate (dispatched) and routing');

-- Batch: planner → batch_worker (parallelism 4) → aggregate (deferred) → report.
SELECT pg_temp.tpl('tap_dyn_reg', 'batch', ARRAY[
  pg_temp.s('planner', 'batchable'),
  pg_temp.s('process_batch', 'batch_worker', '{planner}', '{"batch_config": {"batch_size": 100, "parallelism": 4}}'),
  pg_temp.s('aggregate', 'deferred_convergence', '{process_batch}'),
  pg_temp.s('report', NULL, '{aggregate}')]) AS batch \gset
SELECT is(pg_temp.named(:'batch'),
          ARRAY['planner:batchable:init:0', 'process_batch:batch_worker:later',
                'aggregate:deferred_convergence:later', 'report:standard:later'],
          'batch: only the planner exists with the task');
SELECT is(pg_temp.named_edges(:'batch'),
          ARRAY['planner>process_batch:declared', 'planner>aggregate:gate', 'process_batch>aggregate:declared',
                'aggregate>report:declared'],
          'batch: aggregate has a gate edge from the planner');
SELECT is((SELECT batch_config FROM tasker.named_steps WHERE task_template_uuid = :'batch' AND name = 'process_batch'),
          '{"batch_size": 100, "parallelism": 4, "cursor_field": "id", "failure_strategy": "continue_on_failure", "checkpoint_interval": 0}'::jsonb,
          'batch: batch_config stored with the defaults filled in (cursor_field id, continue_on_failure, checkpoint_interval 0)');
SELECT pg_temp.tpl('tap_dyn_reg', 'batch_defaults', ARRAY[pg_temp.s('p', 'batchable'), pg_temp.s('w', 'batch_worker', '{p}')])
  AS batch_defaults \gset
SELECT is((SELECT batch_config FROM tasker.named_steps WHERE task_template_uuid = :'batch_defaults' AND name = 'w'),
          '{"batch_size": 1000, "parallelism": 10, "cursor_field": "id", "failure_strategy": "continue_on_failure", "checkpoint_interval": 0}'::jsonb,
          'batch: no batch_config means batch_size 1000, parallelism 10');

-- Retry: max_attempts 0 is one run and no retry; tiny backoffs are accepted.
SELECT pg_temp.tpl('tap_dyn_reg', 'once', ARRAY[
  pg_temp.s('a', NULL, '{}', '{"retry": {"max_attempts": 0, "backoff_base_ms": 50, "max_backoff_ms": 200}}'),
  pg_temp.s('b', NULL, '{}', '{"retry": {"backoff_base_ms": 0, "max_backoff_ms": 0}}')]) AS once \gset
SELECT is((SELECT array_agg(max_attempts || '/' || backoff_base_ms || '/' || max_backoff_ms ORDER BY position)
           FROM tasker.named_steps WHERE task_template_uuid = :'once'),
          ARRAY['1/50/200', '3/0/0'], 'retry: max_attempts 0 is stored as 1; backoffs of 50/200 ms and 0 are accepted');
SELECT pg_temp.new_task('tap_dyn_reg', 'once') AS once_task \gset
SELECT pg_temp.claim('tap_dyn_reg') \g /dev/null
SELECT pg_temp.fail(:'once_task', 'a') \g /dev/null
SELECT pg_temp.pc('tap_dyn_reg') \g /dev/null
SELECT is(pg_temp.st(:'once_task', 'a') || ' after ' || (SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'once_task', 'a')),
          'error after 1', 'retry: a step with max_attempts 0 runs once and is not retried after a failure');

-- templates.max_steps.
SELECT set_config('tasker.max_template_steps', '5', true) \g /dev/null
SELECT pg_temp.reg_refused(pg_temp.x(VARIADIC (SELECT array_agg(pg_temp.s('s' || g)) FROM generate_series(1, 6) g)),
  'template x: 6 steps: a template may have at most 5 (templates.max_steps)', 'templates.max_steps 5: a 6-step template is refused');
SELECT lives_ok(format('SELECT * FROM tasker.register_task_template(%L::jsonb)',
                       pg_temp.x(VARIADIC (SELECT array_agg(pg_temp.s('s' || g)) FROM generate_series(1, 5) g))),
                'templates.max_steps 5: a 5-step template registers');
SELECT set_config('tasker.max_template_steps', '', true) \g /dev/null
SELECT pg_temp.reg_refused(pg_temp.x(VARIADIC (SELECT array_agg(pg_temp.s('s' || g)) FROM generate_series(1, 1001) g)),
  'template x: 1001 steps: a template may have at most 1000 (templates.max_steps)', 'templates.max_steps defaults to 1000');

-- handler.method and handler.resolver: stored, returned by the claim.
SELECT pg_temp.tpl('tap_dyn_h', 'handler', ARRAY[
  '{"name": "a", "handler": {"callable": "Orders::Handler", "method": "process_refund", "resolver": "class_constant"}}'::jsonb]) AS htpl \gset
SELECT is((SELECT handler_method || ' ' || handler_resolver FROM tasker.named_steps WHERE task_template_uuid = :'htpl'),
          'process_refund class_constant', 'handler.method and handler.resolver are stored');
SELECT pg_temp.new_task('tap_dyn_h', 'handler') \g /dev/null
SELECT is((SELECT row(handler_callable, handler_method, handler_resolver, step_type, checkpoint)::text
           FROM tasker.tasker_claim_and_execute_step('tap_dyn_h', 10, 30, 'w')),
          '(Orders::Handler,process_refund,class_constant,standard,)', 'the claim returns handler method, resolver, step type and (no) checkpoint');

SELECT * FROM finish();
ROLLBACK;
