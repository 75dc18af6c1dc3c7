-- bench/templates.sql — the five task shapes of `make bench`: three static ones whose steps run the
-- `noop` handler, and two dynamic ones (issue 10) on tasker-worker's built-in decision and batch handlers.
-- psql variable ns: the namespace to register them in (the bench uses "bench" for measured work and
-- "bench_cold" for the scale point's idle backlog). identity_strategy always_unique: every
-- create_task call makes a new task, so drivers need no unique contexts.
--   bench_linear   a → b → c → d                      (4 steps, 3 edges)
--   bench_diamond  a → {b, c} → d                     (4 steps, 4 edges)
--   bench_fanout   root → m01…m50 → join              (52 steps, 100 edges)
--   bench_decision root → decide ⇒ {b1, b2} → join    (5 steps exist: decide chooses 2 of b1, b2, b3;
--                                                      join is deferred_convergence over the three)
--   bench_batch    plan ⇒ work_001…work_100 → join     (102 steps exist: batch_plan makes 100 batches of
--                                                      one item; join is deferred_convergence + batch_aggregate)
-- The decision's one rule reads context key `route`, which the bench never sets, so every run takes
-- the default: b1 and b2 (b3 is never created). Batch parallelism 1000 (the largest allowed): all 100
-- workers are dispatched at once, so the shape measures orchestration, not the throttle.
\set ON_ERROR_STOP 1
CREATE TEMP VIEW bench_tpl AS SELECT :'ns'::text AS ns, jsonb_build_object('callable', 'noop') AS h;
SELECT status FROM bench_tpl, tasker.register_task_template(jsonb_build_object(
  'name', 'bench_linear', 'namespace_name', ns, 'version', '1.0.0', 'identity_strategy', 'always_unique',
  'steps', jsonb_build_array(
    jsonb_build_object('name', 'a', 'handler', h),
    jsonb_build_object('name', 'b', 'handler', h, 'dependencies', jsonb_build_array('a')),
    jsonb_build_object('name', 'c', 'handler', h, 'dependencies', jsonb_build_array('b')),
    jsonb_build_object('name', 'd', 'handler', h, 'dependencies', jsonb_build_array('c')))));
SELECT status FROM bench_tpl, tasker.register_task_template(jsonb_build_object(
  'name', 'bench_diamond', 'namespace_name', ns, 'version', '1.0.0', 'identity_strategy', 'always_unique',
  'steps', jsonb_build_array(
    jsonb_build_object('name', 'a', 'handler', h),
    jsonb_build_object('name', 'b', 'handler', h, 'dependencies', jsonb_build_array('a')),
    jsonb_build_object('name', 'c', 'handler', h, 'dependencies', jsonb_build_array('a')),
    jsonb_build_object('name', 'd', 'handler', h, 'dependencies', jsonb_build_array('b', 'c')))));
SELECT status FROM bench_tpl, tasker.register_task_template(jsonb_build_object(
  'name', 'bench_fanout', 'namespace_name', ns, 'version', '1.0.0', 'identity_strategy', 'always_unique',
  'steps', jsonb_build_array(jsonb_build_object('name', 'root', 'handler', h))
    || (SELECT jsonb_agg(jsonb_build_object('name', format('m%s', lpad(i::text, 2, '0')), 'handler', h,
                         'dependencies', jsonb_build_array('root')) ORDER BY i)
        FROM generate_series(1, 50) i)
    || jsonb_build_array(jsonb_build_object('name', 'join', 'handler', h,
         'dependencies', (SELECT jsonb_agg(format('m%s', lpad(i::text, 2, '0')) ORDER BY i) FROM generate_series(1, 50) i)))));
SELECT status FROM bench_tpl, tasker.register_task_template(jsonb_build_object(
  'name', 'bench_decision', 'namespace_name', ns, 'version', '1.0.0', 'identity_strategy', 'always_unique',
  'steps', jsonb_build_array(
    jsonb_build_object('name', 'root', 'handler', h),
    jsonb_build_object('name', 'decide', 'type', 'decision', 'dependencies', jsonb_build_array('root'),
      'handler', jsonb_build_object('callable', 'decision', 'initialization', jsonb_build_object(
        'rules', jsonb_build_array(jsonb_build_object('path', 'route', 'eq', 'b2b3', 'choose', jsonb_build_array('b2', 'b3'))),
        'default', jsonb_build_array('b1', 'b2')))),
    jsonb_build_object('name', 'b1', 'handler', h, 'dependencies', jsonb_build_array('decide')),
    jsonb_build_object('name', 'b2', 'handler', h, 'dependencies', jsonb_build_array('decide')),
    jsonb_build_object('name', 'b3', 'handler', h, 'dependencies', jsonb_build_array('decide')),
    jsonb_build_object('name', 'join', 'type', 'deferred_convergence', 'handler', h,
      'dependencies', jsonb_build_array('b1', 'b2', 'b3')))));
SELECT status FROM bench_tpl, tasker.register_task_template(jsonb_build_object(
  'name', 'bench_batch', 'namespace_name', ns, 'version', '1.0.0', 'identity_strategy', 'always_unique',
  'steps', jsonb_build_array(
    jsonb_build_object('name', 'plan', 'type', 'batchable',
      'handler', jsonb_build_object('callable', 'batch_plan', 'initialization', jsonb_build_object(
        'total_items', 100, 'batch_size', 1, 'max_workers', 100, 'worker_template_name', 'work'))),
    jsonb_build_object('name', 'work', 'type', 'batch_worker', 'dependencies', jsonb_build_array('plan'),
      'handler', jsonb_build_object('callable', 'batch_work'),
      'batch_config', jsonb_build_object('batch_size', 1, 'parallelism', 1000, 'failure_strategy', 'continue_on_failure')),
    jsonb_build_object('name', 'join', 'type', 'deferred_convergence', 'dependencies', jsonb_build_array('work'),
      'handler', jsonb_build_object('callable', 'batch_aggregate', 'initialization', jsonb_build_object(
        'worker_template_name', 'work'))))));
