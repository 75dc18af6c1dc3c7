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
SELECT plan(174);

-- ---------------------------------------------------------------------------------------------
-- Helpers (temporary, gone with the transaction). Lookups are STABLE: a VOLATILE one in a WHERE
-- clause would run once per row scanned.
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
LANGUAGE sql STABLE AS $$ SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.st(p_task uuid, p_name text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT state FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.tst(p_task uuid) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT state FROM tasker.tasks WHERE task_uuid = p_task $$;
CREATE FUNCTION pg_temp.att(p_task uuid, p_name text) RETURNS integer
LANGUAGE sql STABLE AS $$ SELECT attempt_no FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
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

-- A chain of 2,000 steps: registration is one topological pass (0.2 to 1 s here; 3 to 8 s was seen
-- once in a session after many registrations). Before it was linear the cycle check alone ran for
-- minutes (issue 15; 50 s on an idle machine here): a 20 s statement timeout (20 times the usual
-- time now, 2.5 times the worst seen) turns that into a failure.
SELECT set_config('tasker.max_template_steps', '2000', true) \g /dev/null
SELECT set_config('statement_timeout', '20s', true) \g /dev/null
SELECT is((SELECT status FROM tasker.register_task_template(jsonb_build_object('name', 'chain', 'namespace_name', 'tap_dyn_reg',
             'steps', (SELECT jsonb_agg(pg_temp.s('s' || g, NULL, CASE WHEN g > 1 THEN ARRAY['s' || (g - 1)] ELSE '{}' END) ORDER BY g)
                       FROM generate_series(1, 2000) g)))),
          'created', 'a chain of 2,000 steps registers (within a 20 s statement timeout)');
SELECT set_config('statement_timeout', '0', true) \g /dev/null
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
-- The message must not carry the refused character itself (regression: JSON quoting leaves
-- direction overrides, C1 controls and DEL as they are).
SELECT pg_temp.reg_refused(pg_temp.x(pg_temp.s(E'a\u202eb\u0085c\u007fd')),
  'template x: step #1: name "a\u202eb\u0085c\u007fd" contains control or direction characters',
  'refused: a step name with a direction override, a C1 control and DEL; the message shows them escaped');
SELECT pg_temp.reg_refused(jsonb_build_object('name', E'evil\u2066x', 'namespace_name', 'tap_dyn_reg', 'steps', jsonb_build_array(pg_temp.s('a'))),
  'template "evil\u2066x": name contains control or direction characters',
  'refused: a template name with a direction isolate; the message shows it escaped');
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

-- =============================================================================================
-- 2. Decisions
-- =============================================================================================
SELECT pg_temp.tpl('tap_dyn_dec', 'approval', ARRAY[
  pg_temp.s('validate'), pg_temp.s('routing', 'decision', '{validate}'),
  pg_temp.s('auto_approve', NULL, '{routing}'), pg_temp.s('manager_approval', NULL, '{routing}'),
  pg_temp.s('finance_review', NULL, '{routing}'),
  pg_temp.s('finalize', 'deferred_convergence', '{auto_approve,manager_approval,finance_review}')]) \g /dev/null
-- A new approval task with validate done and routing running (claimed).
CREATE FUNCTION pg_temp.at_decision() RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE v uuid := pg_temp.new_task('tap_dyn_dec', 'approval');
BEGIN
  PERFORM pg_temp.run('tap_dyn_dec', v, 'validate');
  PERFORM pg_temp.claim('tap_dyn_dec');
  RETURN v;
END $$;
CREATE FUNCTION pg_temp.choose(VARIADIC p_names text[]) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('decision_point_outcome', jsonb_build_object('type', 'create_steps', 'step_names', to_jsonb(p_names)))
$$;

SELECT pg_temp.at_decision() AS d1 \gset
SELECT is(pg_temp.st(:'d1', 'routing'), 'in_progress', 'decision: routing runs once validate is complete');
SELECT pg_temp.ok(:'d1', 'routing', pg_temp.choose('manager_approval', 'finance_review')) \g /dev/null
SELECT is(pg_temp.steps(:'d1'), ARRAY['routing:enqueued_for_orchestration', 'validate:complete'],
          'decision: handed back, nothing is created before the orchestrator processes it');
SELECT is((SELECT row(messages, steps_completed, steps_enqueued)::text FROM tasker.process_completions('tap_dyn_dec', 100, 30)),
          '(1,1,2)', 'decision: the call (one transaction) that completes the decision creates and dispatches its 2 branches');
SELECT is(pg_temp.steps(:'d1'), ARRAY['finalize:pending', 'finance_review:enqueued', 'manager_approval:enqueued',
                                      'routing:complete', 'validate:complete'],
          'decision: completing it creates the chosen branches (dispatched) and finalize, and not auto_approve');
SELECT is((SELECT array_agg(DISTINCT created_by) FROM tasker.workflow_steps
           WHERE task_uuid = :'d1' AND name IN ('finalize', 'finance_review', 'manager_approval')),
          ARRAY[pg_temp.sid(:'d1', 'routing')], 'decision: the new steps record the decision that created them');
SELECT is(pg_temp.parents(:'d1', 'manager_approval'), ARRAY['routing'], 'decision: a branch''s edge comes from the decision');
SELECT is(pg_temp.parents(:'d1', 'finalize'), ARRAY['finance_review', 'manager_approval', 'routing'],
          'decision: finalize depends on the created branches and (gate) the decision, not on auto_approve');
SELECT is((SELECT unfinished_parents FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'d1', 'finalize')), 2,
          'decision: finalize waits for 2 unfinished parents');
SELECT is(pg_temp.step_trs(pg_temp.sid(:'d1', 'manager_approval')), ARRAY['>pending:create', 'pending>enqueued:enqueue'],
          'decision: a branch has its first transitions');
SELECT is(pg_temp.step_trs(pg_temp.sid(:'d1', 'finalize')), ARRAY['>pending:create'], 'decision: finalize has its first transition');
-- The same completion message again: stale, creates nothing twice.
SELECT pgmq.send('tasker_completion_tap_dyn_dec', a.message)
FROM pgmq.a_tasker_completion_tap_dyn_dec a WHERE a.message->>'step_uuid' = pg_temp.sid(:'d1', 'routing')::text \g /dev/null
SELECT is((SELECT row(messages, steps_completed, stale)::text FROM tasker.process_completions('tap_dyn_dec', 100, 30)), '(1,0,1)',
          'replay: the decision''s completion message sent again is stale');
SELECT is((SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = :'d1'), 5::bigint, 'replay: no step is created twice');
SELECT is((SELECT unfinished_parents FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'d1', 'finalize')), 2,
          'replay: finalize still waits for 2 parents (no edges added twice)');
-- finalize waits for the created branches only, then runs.
SELECT is(pg_temp.run('tap_dyn_dec', :'d1', 'manager_approval'), 'complete', 'decision: manager_approval runs');
SELECT is(pg_temp.st(:'d1', 'finalize'), 'pending', 'decision: finalize still waits for finance_review');
SELECT is(pg_temp.run('tap_dyn_dec', :'d1', 'finance_review'), 'complete', 'decision: finance_review runs');
SELECT is(pg_temp.st(:'d1', 'finalize'), 'enqueued', 'decision: finalize is dispatched once the created branches are done');
SELECT is(pg_temp.claim('tap_dyn_dec'), ARRAY['finalize'], 'decision: finalize is claimed');
SELECT is((SELECT array_agg(k ORDER BY k) FROM claims c, jsonb_object_keys(c.dependency_results) k
           WHERE c.workflow_step_uuid = pg_temp.sid(:'d1', 'finalize')),
          ARRAY['finance_review', 'manager_approval', 'routing', 'validate'],
          'decision: finalize sees the results of the branches that ran (and its other ancestors)');
SELECT pg_temp.ok(:'d1', 'finalize') \g /dev/null
SELECT pg_temp.pc('tap_dyn_dec') \g /dev/null
SELECT is(pg_temp.tst(:'d1'), 'complete', 'decision: the task completes without the branch it did not choose');

-- no_branches: finalize is never created; the task completes.
SELECT pg_temp.at_decision() AS d2 \gset
SELECT pg_temp.ok(:'d2', 'routing', '{"decision_point_outcome": {"type": "no_branches"}}') \g /dev/null
SELECT pg_temp.pc('tap_dyn_dec') \g /dev/null
SELECT is(pg_temp.steps(:'d2'), ARRAY['routing:complete', 'validate:complete'], 'no_branches: no branch and no finalize is created');
SELECT is(pg_temp.tst(:'d2'), 'complete', 'no_branches: the task completes');

-- Invalid outcomes: the decision goes to error with the reason, nothing is created, the task is
-- blocked.
CREATE TEMP TABLE bad_decisions (seq serial, task uuid, outcome jsonb, reason text, max_steps text);
INSERT INTO bad_decisions (outcome, reason, max_steps) VALUES
  (pg_temp.choose('auto_approve', 'ceo_approval'),
   'the decision chose "ceo_approval", which is not one of its branches (auto_approve, manager_approval, finance_review)', NULL),
  (pg_temp.choose('auto_approve', 'auto_approve'), 'the decision chose "auto_approve" twice', NULL),
  (pg_temp.choose('auto_approve', 'manager_approval', 'finance_review'),
   'the decision chose 3 steps; at most 2 are allowed (decision_points.max_steps)', '2'),
  ('{"approved": true}',
   'a decision step must return decision_point_outcome: {"type": "create_steps", "step_names": [...]} or {"type": "no_branches"}', NULL),
  ('{"decision_point_outcome": {"type": "maybe"}}', 'decision_point_outcome.type must be create_steps or no_branches (got "maybe")', NULL),
  ('{"decision_point_outcome": {"type": "create_steps", "step_names": "auto_approve"}}',
   'decision_point_outcome.step_names must be an array of step names', NULL);
UPDATE bad_decisions SET task = pg_temp.at_decision();
CREATE FUNCTION pg_temp.hand_back_bad_decisions() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM bad_decisions ORDER BY seq LOOP
    PERFORM pg_temp.ok(r.task, 'routing', r.outcome);
    PERFORM set_config('tasker.max_decision_steps', coalesce(r.max_steps, ''), true);
    PERFORM pg_temp.pc('tap_dyn_dec');
  END LOOP;
  PERFORM set_config('tasker.max_decision_steps', '', true);
END $$;
SELECT pg_temp.hand_back_bad_decisions();
SELECT is(pg_temp.st(b.task, 'routing') || ' ' || (s.error->>'error_type') || ' ' || (s.error->>'retryable') || ': ' || (s.error->>'message'),
          'error invalid_outcome false: ' || b.reason, 'invalid outcome, step error: ' || b.reason)
FROM bad_decisions b JOIN tasker.workflow_steps s ON s.workflow_step_uuid = pg_temp.sid(b.task, 'routing') ORDER BY b.seq;
SELECT is(pg_temp.last_tr(pg_temp.sid(b.task, 'routing')), 'enqueued_for_orchestration>error:invalid_outcome ' || b.reason,
          'invalid outcome, transition event invalid_outcome with the reason: ' || b.reason)
FROM bad_decisions b ORDER BY b.seq;
SELECT is((SELECT string_agg(DISTINCT array_to_string(pg_temp.steps(b.task), ','), ' | ') FROM bad_decisions b),
          'routing:error,validate:complete', 'invalid outcomes create nothing');
SELECT is((SELECT string_agg(DISTINCT pg_temp.tst(b.task), ',') FROM bad_decisions b), 'blocked_by_failures',
          'invalid outcomes leave their tasks blocked_by_failures');
SELECT pg_temp.at_decision() AS d3 \gset
SELECT pg_temp.ok(:'d3', 'routing', pg_temp.choose('auto_approve', 'manager_approval', 'finance_review')) \g /dev/null
SELECT pg_temp.pc('tap_dyn_dec') \g /dev/null
SELECT is(pg_temp.st(:'d3', 'finalize') || ' ' || (SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = :'d3'), 'pending 6',
          'decision: all three branches chosen within the default limit are created');

-- complete_manually: acts on the outcome in the result; a bad one is refused.
SELECT b.task AS d_bad FROM bad_decisions b WHERE b.seq = 1 \gset
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, ''complete_manually'', %L)', :'d_bad',
                        pg_temp.sid(:'d_bad', 'routing'), pg_temp.choose('nope')),
                 'TK400', format('cannot complete decision step %s with this result: the decision chose "nope", which is not one of its branches (auto_approve, manager_approval, finance_review)',
                                 pg_temp.sid(:'d_bad', 'routing')),
                 'complete_manually of a decision with a bad outcome is refused (TK400)');
SELECT is(pg_temp.st(:'d_bad', 'routing'), 'error', 'the refused complete_manually changed nothing');
SELECT is((SELECT row(state, task_state, steps_enqueued)::text FROM tasker.resolve_step(:'d_bad', pg_temp.sid(:'d_bad', 'routing'),
             'complete_manually', pg_temp.choose('auto_approve'), 'routed by hand', 'op')),
          '(complete,steps_in_process,1)', 'complete_manually of a decision with an outcome: complete, the task moves on');
SELECT is(pg_temp.steps(:'d_bad'), ARRAY['auto_approve:enqueued', 'finalize:pending', 'routing:complete', 'validate:complete'],
          'complete_manually of a decision creates the chosen branch (dispatched) and finalize');

-- A branch shared by two decisions exists once, whether they choose it together or one after the
-- other, and waits for both. (Regression: each decision created its own row of it.)
SELECT pg_temp.tpl('tap_dyn_dec', 'shared', ARRAY[
  pg_temp.s('r'), pg_temp.s('d1', 'decision', '{r}'), pg_temp.s('d2', 'decision', '{r}'),
  pg_temp.s('x', NULL, '{d1,d2}'), pg_temp.s('y', NULL, '{d1}'), pg_temp.s('z', NULL, '{d2}')]) \g /dev/null
SELECT pg_temp.new_task('tap_dyn_dec', 'shared') AS sh1 \gset
SELECT pg_temp.run('tap_dyn_dec', :'sh1', 'r') \g /dev/null
SELECT pg_temp.claim('tap_dyn_dec') \g /dev/null
SELECT pg_temp.ok(:'sh1', 'd1', pg_temp.choose('x', 'y')) \g /dev/null
SELECT pg_temp.ok(:'sh1', 'd2', pg_temp.choose('x')) \g /dev/null
SELECT pg_temp.pc('tap_dyn_dec') \g /dev/null
SELECT is(pg_temp.steps(:'sh1'), ARRAY['d1:complete', 'd2:complete', 'r:complete', 'x:enqueued', 'y:enqueued'],
          'shared branch chosen by two decisions in one pass: created once');
SELECT is(pg_temp.parents(:'sh1', 'x'), ARRAY['d1', 'd2'], 'shared branch: its edges come from both decisions');
SELECT pg_temp.new_task('tap_dyn_dec', 'shared') AS sh2 \gset
SELECT pg_temp.run('tap_dyn_dec', :'sh2', 'r') \g /dev/null
SELECT pg_temp.claim('tap_dyn_dec') \g /dev/null
SELECT pg_temp.ok(:'sh2', 'd1', pg_temp.choose('x')) \g /dev/null
SELECT pg_temp.pc('tap_dyn_dec') \g /dev/null
SELECT is(pg_temp.steps(:'sh2'), ARRAY['d1:complete', 'd2:in_progress', 'r:complete', 'x:pending'],
          'shared branch chosen by the first decision: created, waiting for the other decision');
SELECT pg_temp.ok(:'sh2', 'd2', pg_temp.choose('x', 'z')) \g /dev/null
SELECT pg_temp.pc('tap_dyn_dec') \g /dev/null
SELECT is(pg_temp.steps(:'sh2'), ARRAY['d1:complete', 'd2:complete', 'r:complete', 'x:enqueued', 'z:enqueued'],
          'shared branch chosen again by the second decision: not created twice, and now dispatched');

-- =============================================================================================
-- 3. Batches
-- =============================================================================================
-- planner → process_batch (parallelism 4) → aggregate (deferred) → report, in namespace p_ns.
CREATE FUNCTION pg_temp.batch_tpl(p_ns text, p_name text, p_config jsonb, p_retry jsonb DEFAULT '{}') RETURNS uuid
LANGUAGE sql AS $$
  SELECT pg_temp.tpl(p_ns, p_name, ARRAY[
    pg_temp.s('planner', 'batchable', '{}', '{"handler": {"callable": "h_planner", "initialization": {"worker_template_name": "process_batch"}}}'),
    pg_temp.s('process_batch', 'batch_worker', '{planner}',
              jsonb_build_object('batch_config', p_config, 'retry', p_retry,
                                 'handler', '{"callable": "h_worker", "initialization": {"table": "orders"}}'::jsonb)),
    pg_temp.s('aggregate', 'deferred_convergence', '{process_batch}'),
    pg_temp.s('report', NULL, '{aggregate}')])
$$;
-- A plan of p_n batches of p_size rows: batch_id 001… (wider for more than 999), cursors [0, size),
-- [size, 2 size), …
CREATE FUNCTION pg_temp.plan_of(p_n integer, p_size integer DEFAULT 100) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('batch_processing_outcome', jsonb_build_object(
    'type', 'create_batches', 'worker_template_name', 'process_batch', 'total_items', p_n * p_size,
    'cursor_configs', (SELECT jsonb_agg(jsonb_build_object('batch_id', lpad(g::text, greatest(3, length(p_n::text)), '0'), 'start_cursor', (g - 1) * p_size,
                                                           'end_cursor', g * p_size, 'batch_size', p_size) ORDER BY g)
                       FROM generate_series(1, p_n) g)))
$$;
-- A new task of p_tpl with its planner claimed.
CREATE FUNCTION pg_temp.at_planner(p_ns text, p_tpl text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE v uuid := pg_temp.new_task(p_ns, p_tpl);
BEGIN
  PERFORM pg_temp.claim(p_ns);
  RETURN v;
END $$;
-- Workers of a task in flight (dispatched, running or handed back).
CREATE FUNCTION pg_temp.in_flight(p_task uuid) RETURNS integer
LANGUAGE sql AS $$
  SELECT count(*)::integer FROM tasker.workflow_steps
  WHERE task_uuid = p_task AND batch_parallelism IS NOT NULL
    AND state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
$$;
SELECT pg_temp.batch_tpl('tap_dyn_bat', 'batch', '{"batch_size": 100, "parallelism": 4}') \g /dev/null

SELECT pg_temp.at_planner('tap_dyn_bat', 'batch') AS b1 \gset
SELECT pg_temp.ok(:'b1', 'planner', pg_temp.plan_of(10)) \g /dev/null
SELECT is((SELECT steps_enqueued FROM tasker.process_completions('tap_dyn_bat', 100, 30)), 4,
          'batch: processing the plan dispatches 4 workers (parallelism 4)');
SELECT is((SELECT array_agg(name ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = :'b1' AND name LIKE 'process_batch%'),
          (SELECT array_agg('process_batch_' || lpad(g::text, 3, '0') ORDER BY g) FROM generate_series(1, 10) g),
          'batch: 1,000 rows in batches of 100 make 10 workers process_batch_001..010');
SELECT is((SELECT array_agg(name ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = :'b1' AND state = 'enqueued'),
          ARRAY['process_batch_001', 'process_batch_002', 'process_batch_003', 'process_batch_004'],
          'batch: the first 4 in name order are dispatched, the rest wait');
SELECT is((SELECT inputs FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'b1', 'process_batch_003')),
          '{"table": "orders", "cursor": {"batch_id": "003", "start_cursor": 200, "end_cursor": 300, "batch_size": 100},
            "batch_metadata": {"cursor_field": "id", "failure_strategy": "continue_on_failure", "checkpoint_interval": 0},
            "is_no_op": false, "__template_step_name": "process_batch"}'::jsonb,
          'batch: a worker''s inputs: its template''s initialization, its cursor, batch metadata, is_no_op, template name');
SELECT is((SELECT row(batch_parallelism, failure_strategy, created_by = pg_temp.sid(:'b1', 'planner'))::text
           FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'b1', 'process_batch_010')),
          '(4,continue_on_failure,t)', 'batch: workers carry their parallelism, failure strategy and creating planner');
SELECT is(pg_temp.parents(:'b1', 'process_batch_007'), ARRAY['planner'], 'batch: a worker''s edge comes from the planner');
SELECT is((SELECT count(*) || ' parents, ' || min(s.unfinished_parents) || ' unfinished'
           FROM tasker.workflow_step_edges e JOIN tasker.workflow_steps s ON s.workflow_step_uuid = e.to_step_uuid
           WHERE e.to_step_uuid = pg_temp.sid(:'b1', 'aggregate')),
          '11 parents, 10 unfinished', 'batch: aggregate depends on the 10 workers (and, as a gate, the planner)');
SELECT is(pg_temp.st(:'b1', 'report') || ' ' || array_to_string(pg_temp.parents(:'b1', 'report'), ','), 'pending aggregate',
          'batch: report exists, waiting for aggregate');

-- Rounds: claim what is dispatched, ask the poller for more, finish the two lowest-named running
-- workers, process. In flight must never exceed 4.
CREATE TEMP TABLE rounds (round integer, in_flight_after_claim integer, in_flight_after_poll integer, finished text[],
                          aggregate text);
CREATE FUNCTION pg_temp.batch_rounds(p_task uuid) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  v_done text[];
  v_claimed integer;
  v_polled integer;
BEGIN
  FOR r IN 1 .. 20 LOOP
    EXIT WHEN NOT EXISTS (SELECT 1 FROM tasker.workflow_steps WHERE task_uuid = p_task AND batch_parallelism IS NOT NULL
                                                                AND state NOT IN ('complete', 'resolved_manually'));
    PERFORM pg_temp.claim('tap_dyn_bat');
    v_claimed := pg_temp.in_flight(p_task);
    PERFORM tasker.enqueue_ready_steps(100);
    v_polled := pg_temp.in_flight(p_task);
    SELECT array_agg(name ORDER BY name) INTO v_done
    FROM (SELECT name FROM tasker.workflow_steps WHERE task_uuid = p_task AND state = 'in_progress' AND batch_parallelism IS NOT NULL
          ORDER BY name LIMIT 2) x;
    PERFORM pg_temp.ok(p_task, d, jsonb_build_object('processed', 100, 'batch', d)) FROM unnest(v_done) d;
    PERFORM pg_temp.pc('tap_dyn_bat');
    INSERT INTO rounds VALUES (r, v_claimed, v_polled, v_done, pg_temp.st(p_task, 'aggregate'));
  END LOOP;
END $$;
SELECT pg_temp.batch_rounds(:'b1') \g /dev/null
SELECT is((SELECT array_agg(in_flight_after_claim ORDER BY round) FROM rounds), ARRAY[4, 4, 4, 4, 2],
          'batch: at each round exactly min(4, workers left) are in flight');
SELECT is((SELECT max(greatest(in_flight_after_claim, in_flight_after_poll)) FROM rounds), 4,
          'batch: never more than 4 in flight, even after the poller ran');
SELECT is((SELECT array_agg(f ORDER BY round, f) FROM rounds, unnest(finished) f),
          (SELECT array_agg('process_batch_' || lpad(g::text, 3, '0') ORDER BY g) FROM generate_series(1, 10) g),
          'batch: the workers are dispatched as siblings finish, in name order');
SELECT is((SELECT array_agg(aggregate ORDER BY round) FROM rounds), ARRAY['pending', 'pending', 'pending', 'pending', 'enqueued'],
          'batch: aggregate waits until every worker is done, then is dispatched');
SELECT is(pg_temp.claim('tap_dyn_bat'), ARRAY['aggregate'], 'batch: aggregate is claimed');
SELECT is((SELECT jsonb_object_agg(k, v) FILTER (WHERE k LIKE 'process_batch_%') FROM claims c, jsonb_each(c.dependency_results) x(k, v)
           WHERE c.workflow_step_uuid = pg_temp.sid(:'b1', 'aggregate')),
          (SELECT jsonb_object_agg('process_batch_' || lpad(g::text, 3, '0'),
                                   jsonb_build_object('processed', 100, 'batch', 'process_batch_' || lpad(g::text, 3, '0')))
           FROM generate_series(1, 10) g),
          'batch: aggregate sees every worker''s result in dependency_results');
SELECT pg_temp.ok(:'b1', 'aggregate', '{"total": 1000}') \g /dev/null
SELECT pg_temp.pc('tap_dyn_bat') \g /dev/null
SELECT is(pg_temp.run('tap_dyn_bat', :'b1', 'report'), 'complete', 'batch: report runs after aggregate');
SELECT is(pg_temp.tst(:'b1'), 'complete', 'batch: the task completes');
SELECT is((SELECT count(*) FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = pg_temp.sid(:'b1', 'aggregate')
             AND to_state = 'in_progress'), 1::bigint, 'batch: aggregate ran once');

-- no_batches: one placeholder worker, a no-op; the rest runs and the task completes.
SELECT pg_temp.at_planner('tap_dyn_bat', 'batch') AS b2 \gset
SELECT pg_temp.ok(:'b2', 'planner', '{"batch_processing_outcome": {"type": "no_batches"}}') \g /dev/null
SELECT pg_temp.pc('tap_dyn_bat') \g /dev/null
SELECT is(pg_temp.steps(:'b2'), ARRAY['aggregate:pending', 'planner:complete', 'process_batch_000:enqueued', 'report:pending'],
          'no_batches: one placeholder worker process_batch_000');
SELECT is((SELECT inputs->'cursor' || jsonb_build_object('is_no_op', inputs->'is_no_op')
           FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'b2', 'process_batch_000')),
          '{"batch_id": "000", "start_cursor": 0, "end_cursor": 0, "batch_size": 0, "is_no_op": true}'::jsonb,
          'no_batches: the placeholder has cursor 0→0 and is_no_op true');
SELECT pg_temp.run('tap_dyn_bat', :'b2', 'process_batch_000') \g /dev/null
SELECT pg_temp.run('tap_dyn_bat', :'b2', 'aggregate') \g /dev/null
SELECT pg_temp.run('tap_dyn_bat', :'b2', 'report') \g /dev/null
SELECT is(pg_temp.tst(:'b2'), 'complete', 'no_batches: the task completes');
SELECT pg_temp.at_planner('tap_dyn_bat', 'batch') AS b3 \gset
SELECT pg_temp.ok(:'b3', 'planner', '{"batch_processing_outcome": "no_batches"}') \g /dev/null
SELECT pg_temp.pc('tap_dyn_bat') \g /dev/null
SELECT is((SELECT inputs->'is_no_op' FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'b3', 'process_batch_000')),
          'true'::jsonb, 'no_batches as the bare string "no_batches" works the same');

-- Invalid plans: the planner goes to error with the reason, nothing is created, the task is blocked.
CREATE FUNCTION pg_temp.cfgs(VARIADIC p_cfgs jsonb[]) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('batch_processing_outcome', jsonb_build_object('type', 'create_batches', 'cursor_configs', to_jsonb(p_cfgs)))
$$;
CREATE TEMP TABLE bad_plans (seq serial, task uuid, outcome jsonb, reason text, max_workers text);
INSERT INTO bad_plans (outcome, reason, max_workers) VALUES
  (pg_temp.cfgs('{"batch_id": "001", "start_cursor": 0, "end_cursor": 100}', '{"batch_id": "002", "start_cursor": 50, "end_cursor": 150}'),
   'batch 002 [50, 150) overlaps batch 001, which ends at 100', NULL),
  (pg_temp.cfgs('{"batch_id": "001", "start_cursor": -10, "end_cursor": 100}'), 'cursor_configs[0]: start_cursor is negative', NULL),
  (pg_temp.cfgs('{"batch_id": "001", "start_cursor": 0, "end_cursor": 100}', '{"batch_id": "002", "start_cursor": 300, "end_cursor": 200}'),
   'cursor_configs[1]: end_cursor is before start_cursor', NULL),
  (pg_temp.cfgs('{"batch_id": "001", "start_cursor": 0, "end_cursor": 100}', '{"batch_id": "001", "start_cursor": 100, "end_cursor": 200}'),
   'batch_id "001" appears twice', NULL),
  (pg_temp.plan_of(4), 'the plan asks for 4 batch workers; at most 3 are allowed (batch_processing.max_workers)', '3'),
  ('{"batch_processing_outcome": {"type": "create_batches", "cursor_configs": []}}',
   'batch_processing_outcome.cursor_configs must be a non-empty array (return {"type": "no_batches"} for none)', NULL),
  (jsonb_set(pg_temp.plan_of(2), '{batch_processing_outcome,worker_template_name}', '"report"'),
   'worker_template_name "report" is not a batch_worker step of this batchable step', NULL),
  (pg_temp.cfgs('{"batch_id": "../x", "start_cursor": 0, "end_cursor": 100}'),
   'cursor_configs[0]: batch_id must be 1 to 64 letters, digits, dots, dashes or underscores', NULL),
  ('{"rows": 1000}',
   'a batchable step must return batch_processing_outcome: {"type": "create_batches", "cursor_configs": [...], ...} or {"type": "no_batches"}', NULL);
UPDATE bad_plans SET task = pg_temp.at_planner('tap_dyn_bat', 'batch');
CREATE FUNCTION pg_temp.hand_back_bad_plans() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM bad_plans ORDER BY seq LOOP
    PERFORM pg_temp.ok(r.task, 'planner', r.outcome);
    PERFORM set_config('tasker.max_batch_workers', coalesce(r.max_workers, ''), true);
    PERFORM pg_temp.pc('tap_dyn_bat');
  END LOOP;
  PERFORM set_config('tasker.max_batch_workers', '', true);
END $$;
SELECT pg_temp.hand_back_bad_plans();
SELECT is(pg_temp.st(b.task, 'planner') || ' ' || (s.error->>'error_type') || ' ' || (s.error->>'retryable') || ': ' || (s.error->>'message'),
          'error invalid_outcome false: ' || b.reason, 'invalid plan, step error: ' || b.reason)
FROM bad_plans b JOIN tasker.workflow_steps s ON s.workflow_step_uuid = pg_temp.sid(b.task, 'planner') ORDER BY b.seq;
SELECT is(pg_temp.last_tr(pg_temp.sid(b.task, 'planner')), 'enqueued_for_orchestration>error:invalid_outcome ' || b.reason,
          'invalid plan, transition event invalid_outcome with the reason: ' || b.reason)
FROM bad_plans b ORDER BY b.seq;
SELECT is((SELECT string_agg(DISTINCT array_to_string(pg_temp.steps(b.task), ','), ' | ') FROM bad_plans b),
          'planner:error', 'invalid plans create nothing');
SELECT is((SELECT string_agg(DISTINCT pg_temp.tst(b.task), ',') FROM bad_plans b), 'blocked_by_failures',
          'invalid plans leave their tasks blocked_by_failures');
SELECT b.task AS p_bad FROM bad_plans b WHERE b.seq = 1 \gset
SELECT throws_ok(format('SELECT * FROM tasker.resolve_step(%L, %L, ''complete_manually'', %L)', :'p_bad',
                        pg_temp.sid(:'p_bad', 'planner'), pg_temp.cfgs('{"batch_id": "001", "start_cursor": 5, "end_cursor": 1}')),
                 'TK400', format('cannot complete batchable step %s with this result: cursor_configs[0]: end_cursor is before start_cursor',
                                 pg_temp.sid(:'p_bad', 'planner')),
                 'complete_manually of a planner with a bad plan is refused (TK400)');
SELECT is((SELECT row(state, task_state, steps_enqueued)::text FROM tasker.resolve_step(:'p_bad', pg_temp.sid(:'p_bad', 'planner'),
             'complete_manually', pg_temp.plan_of(2), 'planned by hand', 'op')),
          '(complete,steps_in_process,2)', 'complete_manually of a planner with a plan creates and dispatches its workers');

-- A plan of 10,000 workers: created by one process_completions call.
SELECT pg_temp.batch_tpl('tap_dyn_big', 'big', '{"batch_size": 10, "parallelism": 4}') \g /dev/null
SELECT pg_temp.at_planner('tap_dyn_big', 'big') AS big \gset
SELECT pg_temp.ok(:'big', 'planner', pg_temp.plan_of(10000, 10)) \g /dev/null
SELECT is((SELECT row(messages, steps_completed, steps_enqueued)::text FROM tasker.process_completions('tap_dyn_big', 100, 30)),
          '(1,1,4)', 'a plan of 10,000 workers: one process_completions call, 4 dispatched');
SELECT is((SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = :'big' AND name LIKE 'process_batch_%'), 10000::bigint,
          'a plan of 10,000 workers: all 10,000 exist');
SELECT is((SELECT unfinished_parents FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'big', 'aggregate')), 10000,
          'a plan of 10,000 workers: aggregate waits for all of them');

-- Failure strategies (parallelism 2, one attempt per worker, 4 batches).
SELECT pg_temp.batch_tpl('tap_dyn_fs', 'b_' || f, jsonb_build_object('parallelism', 2, 'failure_strategy', f), '{"max_attempts": 1}')
FROM unnest(ARRAY['fail_fast', 'isolate', 'continue_on_failure']) f \g /dev/null
CREATE FUNCTION pg_temp.fs_task(p_strategy text) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE v uuid := pg_temp.at_planner('tap_dyn_fs', 'b_' || p_strategy);
BEGIN
  PERFORM pg_temp.ok(v, 'planner', pg_temp.plan_of(4));
  PERFORM pg_temp.pc('tap_dyn_fs');
  PERFORM pg_temp.claim('tap_dyn_fs');
  PERFORM pg_temp.fail(v, 'process_batch_001');
  PERFORM pg_temp.pc('tap_dyn_fs');
  RETURN v;
END $$;
-- fail_fast
SELECT pg_temp.fs_task('fail_fast') AS ff \gset
SELECT is(pg_temp.steps(:'ff'), ARRAY['aggregate:pending', 'planner:complete', 'process_batch_001:error', 'process_batch_002:in_progress',
                                      'process_batch_003:pending', 'process_batch_004:pending', 'report:pending'],
          'fail_fast: the failed worker is in error and nothing new is dispatched');
SELECT is(pg_temp.tst(:'ff'), 'steps_in_process', 'fail_fast: the task waits for the worker in flight');
SELECT pg_temp.ok(:'ff', 'process_batch_002') \g /dev/null
SELECT pg_temp.pc('tap_dyn_fs') \g /dev/null
SELECT tasker.enqueue_ready_steps(100) \g /dev/null
SELECT is(pg_temp.st(:'ff', 'process_batch_003') || ' ' || pg_temp.tst(:'ff'), 'pending blocked_by_failures',
          'fail_fast: once the in-flight worker finishes the task is blocked_by_failures (the poller dispatches nothing)');
SELECT is((SELECT row(state, task_state, steps_enqueued)::text
           FROM tasker.resolve_step(:'ff', pg_temp.sid(:'ff', 'process_batch_001'), 'reset_for_retry', NULL, 'retry', 'op')),
          '(enqueued,steps_in_process,2)', 'fail_fast: reset_for_retry resumes: the worker and the next sibling are dispatched');
SELECT is((SELECT array_agg(name ORDER BY name) FROM tasker.workflow_steps WHERE task_uuid = :'ff' AND state = 'enqueued'),
          ARRAY['process_batch_001', 'process_batch_003'], 'fail_fast: after the reset, two in flight again');
-- isolate
SELECT pg_temp.fs_task('isolate') AS iso \gset
SELECT is(pg_temp.steps(:'iso'), ARRAY['aggregate:pending', 'planner:complete', 'process_batch_001:error', 'process_batch_002:in_progress',
                                       'process_batch_003:enqueued', 'process_batch_004:pending', 'report:pending'],
          'isolate: the failed worker is in error and its siblings keep being dispatched');
SELECT pg_temp.run('tap_dyn_fs', :'iso', n) FROM unnest(ARRAY['process_batch_002', 'process_batch_003', 'process_batch_004']) n \g /dev/null
SELECT is(pg_temp.steps(:'iso'), ARRAY['aggregate:pending', 'planner:complete', 'process_batch_001:error', 'process_batch_002:complete',
                                       'process_batch_003:complete', 'process_batch_004:complete', 'report:pending'],
          'isolate: every sibling ran; aggregate waits for the failed worker');
SELECT is(pg_temp.tst(:'iso'), 'blocked_by_failures', 'isolate: the task ends blocked_by_failures');
-- continue_on_failure
SELECT pg_temp.fs_task('continue_on_failure') AS cof \gset
SELECT is(pg_temp.st(:'cof', 'process_batch_001') || ' ' || pg_temp.last_tr(pg_temp.sid(:'cof', 'process_batch_001')),
          'resolved_manually enqueued_as_error_for_orchestration>resolved_manually:continue_on_failure',
          'continue_on_failure: the failed worker is resolved_manually, event continue_on_failure');
SELECT is((SELECT results FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'cof', 'process_batch_001')),
          '{"error": {"message": "boom"}, "failure_strategy": "continue_on_failure"}'::jsonb,
          'continue_on_failure: its results hold the error');
SELECT pg_temp.run('tap_dyn_fs', :'cof', n) FROM unnest(ARRAY['process_batch_002', 'process_batch_003', 'process_batch_004']) n \g /dev/null
SELECT is(pg_temp.claim('tap_dyn_fs'), ARRAY['aggregate'], 'continue_on_failure: aggregate runs');
SELECT is((SELECT c.dependency_results->'process_batch_001' FROM claims c WHERE c.workflow_step_uuid = pg_temp.sid(:'cof', 'aggregate')),
          '{"error": {"message": "boom"}, "failure_strategy": "continue_on_failure"}'::jsonb,
          'continue_on_failure: aggregate sees the failed worker''s error among its dependency_results');
SELECT pg_temp.ok(:'cof', 'aggregate') \g /dev/null
SELECT pg_temp.pc('tap_dyn_fs') \g /dev/null
SELECT pg_temp.run('tap_dyn_fs', :'cof', 'report') \g /dev/null
SELECT is(pg_temp.tst(:'cof'), 'complete', 'continue_on_failure: the task completes');
-- … also when the last attempt is lost to an expired lease (the sweep), not handed back.
-- (Regression: the sweep put it in error, which stopped the batch and blocked the task.)
SELECT pg_temp.at_planner('tap_dyn_fs', 'b_continue_on_failure') AS cof2 \gset
SELECT pg_temp.ok(:'cof2', 'planner', pg_temp.plan_of(3)) \g /dev/null
SELECT pg_temp.pc('tap_dyn_fs') \g /dev/null
SELECT pg_temp.claim('tap_dyn_fs') \g /dev/null
UPDATE tasker.workflow_steps SET lease_expires_at = clock_timestamp() - interval '1 second'  -- TEST-ONLY: the worker vanished
WHERE workflow_step_uuid = pg_temp.sid(:'cof2', 'process_batch_001');
SELECT is((SELECT array_agg(action || ': ' || detail) FROM tasker.detect_and_transition_stuck_tasks(100) WHERE task_uuid = :'cof2'),
          ARRAY['lease_expired: attempt 1 on w1: now resolved_manually'],
          'continue_on_failure, lease expired on the last attempt: the sweep resolves the worker');
SELECT is(pg_temp.last_tr(pg_temp.sid(:'cof2', 'process_batch_001')), 'in_progress>resolved_manually:continue_on_failure',
          'continue_on_failure, lease expired: event continue_on_failure');
SELECT is((SELECT results->'error'->>'error_type' FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'cof2', 'process_batch_001')),
          'lease_expired', 'continue_on_failure, lease expired: its results hold the error');
SELECT is(pg_temp.st(:'cof2', 'process_batch_003') || ' ' || (SELECT unfinished_parents FROM tasker.workflow_steps
                                                               WHERE workflow_step_uuid = pg_temp.sid(:'cof2', 'aggregate')),
          'enqueued 2', 'continue_on_failure, lease expired: the next worker is dispatched, aggregate waits for the other two only');
SELECT pg_temp.run('tap_dyn_fs', :'cof2', n) FROM unnest(ARRAY['process_batch_002', 'process_batch_003', 'aggregate', 'report']) n \g /dev/null
SELECT is(pg_temp.tst(:'cof2'), 'complete', 'continue_on_failure, lease expired: the task completes');

-- =============================================================================================
-- 4. Checkpoints
-- =============================================================================================
SELECT pg_temp.tpl('tap_dyn_ckp', 'work', ARRAY[pg_temp.s('work', NULL, '{}', '{"retry": {"max_attempts": 3}}')]) \g /dev/null
CREATE FUNCTION pg_temp.ckp(p_task uuid, p_attempt integer, p_ckp jsonb, p_lease integer DEFAULT NULL) RETURNS boolean
LANGUAGE sql AS $$ SELECT tasker.checkpoint_step(pg_temp.sid(p_task, 'work'), p_attempt, p_ckp, p_lease) $$;
CREATE FUNCTION pg_temp.stored(p_task uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$ SELECT checkpoint FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(p_task, 'work') $$;
SELECT pg_temp.new_task('tap_dyn_ckp', 'work') AS c1 \gset
SELECT is(pg_temp.ckp(:'c1', 1, '{"cursor": 10}'), false, 'checkpoint: refused (false) while the step is only enqueued');
SELECT pg_temp.claim('tap_dyn_ckp') \g /dev/null
SELECT is(pg_temp.ckp(:'c1', 2, '{"cursor": 10}'), false, 'checkpoint: refused (false) for another attempt');
SELECT is(pg_temp.stored(:'c1'), NULL, 'checkpoint: a refused checkpoint stores nothing');
-- TEST-ONLY: the step last moved an hour ago.
UPDATE tasker.workflow_steps SET updated_at = now() - interval '1 hour' WHERE workflow_step_uuid = pg_temp.sid(:'c1', 'work');
SELECT is(pg_temp.ckp(:'c1', 1, '{"cursor": 420, "items_processed": 420}'), true, 'checkpoint: accepted for the running attempt');
SELECT is(pg_temp.stored(:'c1') - 'timestamp', '{"cursor": 420, "items_processed": 420, "attempt": 1}'::jsonb,
          'checkpoint: stored with the attempt');
SELECT ok((pg_temp.stored(:'c1')->>'timestamp')::timestamptz BETWEEN now() AND clock_timestamp()
          AND (SELECT checkpoint_at IS NOT NULL FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'c1', 'work')),
          'checkpoint: stored with its timestamp (and checkpoint_at)');
SELECT is((SELECT updated_at FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'c1', 'work')), now(),
          'checkpoint: moves the step''s updated_at (progress)');
SELECT cmp_ok((SELECT lease_expires_at FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'c1', 'work')),
              '<', clock_timestamp() + interval '600 seconds', 'checkpoint: without lease_secs the lease stays (claimed for 300 s)');
SELECT is(pg_temp.ckp(:'c1', 1, '{"cursor": 450}', 3600), true, 'checkpoint with lease_secs: accepted');
SELECT cmp_ok((SELECT lease_expires_at FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(:'c1', 'work')),
              '>', clock_timestamp() + interval '3000 seconds', 'checkpoint with lease_secs 3600: the lease is extended');
SELECT throws_ok(format('SELECT tasker.checkpoint_step(%L, 1, ''[1]'')', pg_temp.sid(:'c1', 'work')), 'TK400',
                 'checkpoint must be a JSON object (got array)', 'checkpoint: not an object is refused (TK400)');
-- A failure with attempts left, then the retry: the next claim returns the checkpoint.
SELECT pg_temp.fail(:'c1', 'work') \g /dev/null
SELECT pg_temp.pc('tap_dyn_ckp') \g /dev/null
SELECT is(pg_temp.st(:'c1', 'work') || ' ' || (pg_temp.stored(:'c1')->>'cursor'), 'waiting_for_retry 450',
          'checkpoint: kept when the attempt fails');
UPDATE tasker.workflow_steps SET next_retry_at = now() - interval '1 second' WHERE workflow_step_uuid = pg_temp.sid(:'c1', 'work');  -- TEST-ONLY
SELECT tasker.enqueue_ready_steps(100) \g /dev/null
SELECT is((SELECT checkpoint->>'cursor' || ' attempt ' || attempt FROM tasker.tasker_claim_and_execute_step('tap_dyn_ckp', 10, 300, 'w2')),
          '450 attempt 2', 'checkpoint: the retry''s claim returns it (resume from cursor 450)');
SELECT is(pg_temp.ckp(:'c1', 1, '{"cursor": 999}'), false, 'checkpoint: the old attempt can no longer write one');
SELECT is(pg_temp.ckp(:'c1', 2, '{"cursor": 700}'), true, 'checkpoint: the new attempt writes one');
SELECT pg_temp.fail(:'c1', 'work', '{"message": "fatal", "retryable": false}') \g /dev/null
SELECT pg_temp.pc('tap_dyn_ckp') \g /dev/null
SELECT is((SELECT row(state, task_state)::text FROM tasker.resolve_step(:'c1', pg_temp.sid(:'c1', 'work'), 'reset_for_retry', NULL, 'again', 'op')),
          '(enqueued,steps_in_process)', 'checkpoint: (the step failed for good and was reset for retry)');
SELECT is((SELECT checkpoint - 'timestamp' FROM tasker.tasker_claim_and_execute_step('tap_dyn_ckp', 10, 300, 'w3')),
          '{"cursor": 700, "attempt": 2}'::jsonb, 'checkpoint: survives reset_for_retry and is returned by the next claim');

-- Staleness: a checkpoint is progress. Two identical tasks, both running, both quiet for two hours
-- (TEST-ONLY back-dating); one checkpoints. The sweep (dry run) reports only the other as stale.
SELECT pg_temp.tpl('tap_dyn_stale', 'work', ARRAY[pg_temp.s('work')]) \g /dev/null
SELECT pg_temp.new_task('tap_dyn_stale', 'work') AS sa \gset
SELECT pg_temp.new_task('tap_dyn_stale', 'work') AS sb \gset
SELECT pg_temp.claim('tap_dyn_stale') \g /dev/null
UPDATE tasker.tasks SET state_changed_at = now() - interval '2 hours', updated_at = now() - interval '2 hours'
WHERE task_uuid IN (:'sa', :'sb');
UPDATE tasker.workflow_steps SET updated_at = now() - interval '2 hours' WHERE task_uuid IN (:'sa', :'sb');
SELECT is(tasker.checkpoint_step(pg_temp.sid(:'sa', 'work'), 1, '{"cursor": 5}'), true, 'staleness: task A checkpoints');
SELECT is((SELECT array_agg(CASE x.task_uuid WHEN :'sa' THEN 'A' ELSE 'B' END ORDER BY 1)
           FROM tasker.detect_and_transition_stuck_tasks(1000, true, 60, 30, 30, 1440, 24) x
           WHERE x.action = 'would_move_to_dlq' AND x.task_uuid IN (:'sa', :'sb')),
          ARRAY['B'], 'staleness: the task that checkpointed is not stale; the identical one without a checkpoint is');

-- =============================================================================================
-- 5. Readiness reasons
-- =============================================================================================
SELECT pg_temp.tpl('tap_dyn_rdy', 'gate', ARRAY[
  pg_temp.s('validate'), pg_temp.s('routing', 'decision', '{validate}'),
  pg_temp.s('a', NULL, '{routing}'), pg_temp.s('b', NULL, '{routing}'),
  pg_temp.s('finalize', 'deferred', '{validate,a,b}')]) \g /dev/null
CREATE FUNCTION pg_temp.why(p_task uuid, p_name text) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT not_ready_reason FROM tasker.get_step_readiness_status(p_task) WHERE name = p_name
$$;
SELECT pg_temp.new_task('tap_dyn_rdy', 'gate') AS r1 \gset
SELECT is(pg_temp.why(:'r1', 'finalize'),
          'deferred: waiting for 2 of 2 created parent step(s): decision step routing (pending), validate (enqueued)',
          'readiness: a deferred step created with the task waits for the decision step by name');
SELECT pg_temp.run('tap_dyn_rdy', :'r1', 'validate') \g /dev/null
SELECT is(pg_temp.why(:'r1', 'finalize'), 'deferred: waiting for 1 of 2 created parent step(s): decision step routing (enqueued)',
          'readiness: … then only for the decision');
SELECT pg_temp.run('tap_dyn_rdy', :'r1', 'routing', pg_temp.choose('a')) \g /dev/null
SELECT is(pg_temp.why(:'r1', 'finalize'), 'deferred: waiting for 1 of 3 created parent step(s): a (enqueued)',
          'readiness: once the branches exist, for the created ones');
SELECT pg_temp.run('tap_dyn_rdy', :'r1', 'a') \g /dev/null
SELECT is((SELECT row(current_state, ready_for_execution, total_parents, completed_parents)::text
           FROM tasker.get_step_readiness_status(:'r1') WHERE name = 'finalize'), '(enqueued,f,3,3)',
          'readiness: finalize is dispatched when the created branch is done');
SELECT pg_temp.tpl('tap_dyn_rdy', 'bgate', ARRAY[
  pg_temp.s('prep'), pg_temp.s('planner', 'batchable'), pg_temp.s('process_batch', 'batch_worker', '{planner}'),
  pg_temp.s('aggregate', 'deferred', '{prep,process_batch}')]) \g /dev/null
SELECT pg_temp.new_task('tap_dyn_rdy', 'bgate') AS r2 \gset
SELECT is(pg_temp.why(:'r2', 'aggregate'),
          'deferred: waiting for 2 of 2 created parent step(s): batch planner planner (enqueued), prep (enqueued)',
          'readiness: a deferred step waiting behind a batch planner names it');

SELECT * FROM finish();
ROLLBACK;
