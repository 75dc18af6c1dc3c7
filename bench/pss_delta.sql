-- bench/pss_delta.sql — what pg_stat_statements counted between two snapshots of it
-- (bench.pss_<from> and bench.pss_<to>, taken by bench/run), grouped by who issues the statement.
-- psql variables from, to. Prints one JSON object: {class: {calls, total_ms, mean_ms, rows}}.
-- Classes: the daemon's process_completions, enqueue_ready_steps, sweep and relay (messaging.backend =
-- rabbitmq: reading the outbox, archiving what the broker confirmed); the workers' claim (either kind),
-- hand_back and heartbeat; create_task (the light-load driver); bench (this harness: its queries
-- carry the comment /* bench */); other (everything else: the daemon's namespace refresh and
-- pings, LISTEN, worker session set-up).
\set ON_ERROR_STOP 1
WITH d AS (
  SELECT b.query, b.calls - coalesce(a.calls, 0) AS calls, b.total_exec_time - coalesce(a.total_exec_time, 0) AS ms,
         b.rows - coalesce(a.rows, 0) AS rows
  FROM bench.:"to" b LEFT JOIN bench.:"from" a USING (queryid)
), c AS (
  SELECT CASE WHEN query LIKE '%/* bench */%' THEN 'bench'
              WHEN query LIKE '%tasker.process_completions(%' THEN 'process_completions'
              WHEN query LIKE '%tasker.enqueue_ready_steps(%' THEN 'enqueue_ready_steps'
              WHEN query LIKE '%detect_and_transition_stuck_tasks(%' THEN 'sweep'
              WHEN query LIKE '%tasker_claim_and_execute_step(%' OR query LIKE '%claim_dispatched_steps(%' THEN 'claim'
              WHEN query LIKE '%relay_read_dispatch(%' OR query LIKE '%relay_archive_dispatch(%' THEN 'relay'
              WHEN query LIKE '%submit_step_result%' THEN 'hand_back'
              WHEN query LIKE '%heartbeat_step(%' THEN 'heartbeat'
              WHEN query LIKE '%create_task(%' THEN 'create_task'
              ELSE 'other' END AS class,
         calls, ms, rows
  FROM d WHERE calls > 0
)
SELECT /* bench */ coalesce(json_object_agg(class, json_build_object(
         'calls', calls, 'total_ms', round(ms::numeric, 1),
         'mean_ms', round((ms / nullif(calls, 0))::numeric, 3), 'rows', rows)), '{}')
FROM (SELECT class, sum(calls) AS calls, sum(ms) AS ms, sum(rows) AS rows FROM c GROUP BY class) g;
