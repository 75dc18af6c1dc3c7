-- bench/templates.sql — the three task shapes of `make bench`, every step the `noop` handler.
-- psql variable ns: the namespace to register them in (the bench uses "bench" for measured work and
-- "bench_cold" for the scale point's idle backlog). identity_strategy always_unique: every
-- create_task call makes a new task, so drivers need no unique contexts.
--   bench_linear   a → b → c → d                      (4 steps, 3 edges)
--   bench_diamond  a → {b, c} → d                     (4 steps, 4 edges)
--   bench_fanout   root → m01…m50 → join              (52 steps, 100 edges)
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
