-- bench/phase_stats.sql — the figures of one bench phase, read back from the audit trail.
-- psql variable tag: the `initiator` every task of the phase was created with. Prints one JSON
-- object (one line). Every timestamp used here is now() of some transaction, i.e. the moment that
-- transaction STARTED (docs/performance.md, "What each figure measures", gives the error this implies):
--   tasks.created_at                   create_task's transaction
--   transition → enqueued              the transaction that put the step in its dispatch queue
--                                      (create_task for roots, process_completions for the others)
--   transition → in_progress           the worker's claim
--   transition → enqueued_for_orchestration   the worker's hand-back (submit_step_results)
--   tasks.completed_at                 the process_completions call that finished the task
\set ON_ERROR_STOP 1
WITH t AS (
  SELECT task_uuid, state, created_at, completed_at FROM tasker.tasks WHERE initiator = :'tag'
), s AS (
  SELECT ws.workflow_step_uuid, ws.task_uuid, ws.state FROM tasker.workflow_steps ws JOIN t USING (task_uuid)
), per_step AS (
  -- First enqueue / claim (attempt 1; the bench's handlers never fail) and the last hand-back.
  SELECT x.workflow_step_uuid,
         min(x.created_at) FILTER (WHERE x.to_state = 'enqueued') AS enqueued_at,
         min(x.created_at) FILTER (WHERE x.to_state = 'in_progress') AS claimed_at,
         max(x.created_at) FILTER (WHERE x.to_state = 'enqueued_for_orchestration') AS handed_back_at
  FROM tasker.workflow_step_transitions x JOIN s USING (workflow_step_uuid)
  GROUP BY x.workflow_step_uuid
), overhead AS (
  -- Per non-root step: the hand-back of its LAST parent → the step in its dispatch queue.
  SELECT c.workflow_step_uuid, extract(epoch FROM c.enqueued_at - max(p.handed_back_at)) * 1000 AS ms
  FROM tasker.workflow_step_edges e
  JOIN per_step c ON c.workflow_step_uuid = e.to_step_uuid
  JOIN per_step p ON p.workflow_step_uuid = e.from_step_uuid
  GROUP BY c.workflow_step_uuid, c.enqueued_at
), step_times AS (
  SELECT extract(epoch FROM claimed_at - enqueued_at) * 1000 AS claim_wait_ms,
         extract(epoch FROM handed_back_at - claimed_at) * 1000 AS worker_ms
  FROM per_step
), task_times AS (
  SELECT extract(epoch FROM t.completed_at - t.created_at) * 1000 AS latency_ms,
         extract(epoch FROM t.completed_at - (SELECT max(p.handed_back_at) FROM s JOIN per_step p USING (workflow_step_uuid)
                                               WHERE s.task_uuid = t.task_uuid)) * 1000 AS finalize_ms
  FROM t WHERE t.state = 'complete'
), gaps AS (
  -- The longest stretch in which no step of the phase completed (a stall shows up here).
  SELECT max(g) AS gap FROM (
    SELECT x.created_at - lag(x.created_at) OVER (ORDER BY x.created_at) AS g
    FROM tasker.workflow_step_transitions x JOIN s USING (workflow_step_uuid)
    WHERE x.to_state = 'complete') y
), win AS (
  SELECT (SELECT min(claimed_at) FROM per_step) AS first_claim,
         (SELECT max(completed_at) FROM t) AS last_done,
         (SELECT min(created_at) FROM t) AS first_created
), quarters AS (
  -- Steps completed in each quarter of the window, per second: a throughput that sinks from the
  -- first quarter to the last is a run slowing down (dead rows piling up, a checkpoint).
  SELECT array_agg(round((coalesce(n, 0) / nullif(extract(epoch FROM win.last_done - win.first_claim) / 4, 0))::numeric, 1) ORDER BY q) AS rates
  FROM win CROSS JOIN generate_series(0, 3) q
  LEFT JOIN (
    SELECT least(3, floor(4 * extract(epoch FROM x.created_at - w.first_claim)
                          / nullif(extract(epoch FROM w.last_done - w.first_claim), 0)))::integer AS qq, count(*) AS n
    FROM tasker.workflow_step_transitions x JOIN s USING (workflow_step_uuid), win w
    WHERE x.to_state = 'complete'
    GROUP BY 1) c ON c.qq = q
), pct AS (
  SELECT (SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) FROM task_times) AS lat,
         (SELECT max(latency_ms) FROM task_times) AS lat_max,
         (SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms) FROM overhead) AS ovh,
         (SELECT max(ms) FROM overhead) AS ovh_max,
         (SELECT count(*) FROM overhead) AS ovh_n,
         (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY claim_wait_ms) FROM step_times) AS claim,
         (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY worker_ms) FROM step_times) AS worker,
         (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY finalize_ms) FROM task_times) AS fin
)
SELECT /* bench */ json_build_object(
  'tasks', (SELECT count(*) FROM t),
  'tasks_complete', (SELECT count(*) FROM t WHERE state = 'complete'),
  'steps', (SELECT count(*) FROM s),
  'steps_complete', (SELECT count(*) FROM s WHERE state = 'complete'),
  'window_secs', round(extract(epoch FROM win.last_done - win.first_claim)::numeric, 3),
  'steps_per_sec', round(((SELECT count(*) FROM s) / nullif(extract(epoch FROM win.last_done - win.first_claim), 0))::numeric, 1),
  'steps_per_sec_by_quarter', quarters.rates,
  'created_to_done_secs', round(extract(epoch FROM win.last_done - win.first_created)::numeric, 3),
  'task_latency_ms_p50', round(pct.lat[1]::numeric, 2),
  'task_latency_ms_p95', round(pct.lat[2]::numeric, 2),
  'task_latency_ms_p99', round(pct.lat[3]::numeric, 2),
  'task_latency_ms_max', round(pct.lat_max::numeric, 2),
  'step_overhead_ms_p50', round(pct.ovh[1]::numeric, 2),
  'step_overhead_ms_p95', round(pct.ovh[2]::numeric, 2),
  'step_overhead_ms_p99', round(pct.ovh[3]::numeric, 2),
  'step_overhead_ms_max', round(pct.ovh_max::numeric, 2),
  'step_overhead_samples', pct.ovh_n,
  'claim_wait_ms_p50', round(pct.claim[1]::numeric, 2),
  'claim_wait_ms_p99', round(pct.claim[2]::numeric, 2),
  'worker_ms_p50', round(pct.worker[1]::numeric, 2),
  'worker_ms_p99', round(pct.worker[2]::numeric, 2),
  'finalize_ms_p50', round(pct.fin[1]::numeric, 2),
  'finalize_ms_p99', round(pct.fin[2]::numeric, 2),
  'completion_gap_ms_max', round((extract(epoch FROM gaps.gap) * 1000)::numeric, 1))
FROM win, pct, gaps, quarters;
