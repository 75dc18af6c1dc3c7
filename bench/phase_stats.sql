-- bench/phase_stats.sql — the figures of one bench phase, read back from the audit trail.
-- psql variable tag: the `initiator` every task of the phase was created with. Prints one JSON
-- object (one line). Every timestamp used here is now() of some transaction, i.e. the moment that
-- transaction STARTED (docs/performance.md, "What each figure measures", gives the error this implies):
--   tasks.created_at                   create_task's transaction
--   transition → enqueued              the transaction that put the step in its dispatch queue
--                                      (create_task for roots, process_completions for the others)
--   transition → in_progress           the worker's claim
--   transition → enqueued_for_orchestration   the worker's hand-back (submit_step_results)
--   transition → complete              the process_completions call that completed the step
--   tasks.completed_at                 the process_completions call that finished the task
-- Cost: one pass over the phase's tasks, steps and transitions (each step's transitions reached
-- through workflow_step_transitions_step_idx), everything else from the per-step row built in that
-- pass. A 30,000-task phase takes seconds. (It took minutes while the per-task figures re-read the
-- phase's steps once per task: docs/performance.md, "The bench's own cost".)
\set ON_ERROR_STOP 1
WITH t AS MATERIALIZED (
  SELECT task_uuid, state, created_at, completed_at FROM tasker.tasks WHERE initiator = :'tag'
), per_step AS MATERIALIZED (
  -- One row per step of the phase: first enqueue / claim (attempt 1; the bench's handlers never
  -- fail), the last hand-back and the completion.
  -- LATERAL per step: an index range scan of that step's transitions, so the cost follows the
  -- phase's size and not the history the database holds (a join was planned as a scan of every
  -- phase's transitions).
  SELECT ws.workflow_step_uuid, ws.task_uuid, ws.state, x.*
  FROM t JOIN tasker.workflow_steps ws USING (task_uuid)
  CROSS JOIN LATERAL (
    SELECT min(x.created_at) FILTER (WHERE x.to_state = 'enqueued') AS enqueued_at,
           min(x.created_at) FILTER (WHERE x.to_state = 'in_progress') AS claimed_at,
           max(x.created_at) FILTER (WHERE x.to_state = 'enqueued_for_orchestration') AS handed_back_at,
           min(x.created_at) FILTER (WHERE x.to_state = 'complete') AS completed_at
    FROM tasker.workflow_step_transitions x WHERE x.workflow_step_uuid = ws.workflow_step_uuid) x
), overhead AS (
  -- Per non-root step: the hand-back of its LAST parent → the step in its dispatch queue.
  SELECT c.workflow_step_uuid, extract(epoch FROM c.enqueued_at - max(p.handed_back_at)) * 1000 AS ms
  FROM per_step c
  JOIN tasker.workflow_step_edges e ON e.to_step_uuid = c.workflow_step_uuid
  JOIN per_step p ON p.workflow_step_uuid = e.from_step_uuid
  GROUP BY c.workflow_step_uuid, c.enqueued_at
), step_times AS (
  SELECT extract(epoch FROM claimed_at - enqueued_at) * 1000 AS claim_wait_ms,
         extract(epoch FROM handed_back_at - claimed_at) * 1000 AS worker_ms
  FROM per_step
), task_times AS (
  SELECT extract(epoch FROM t.completed_at - t.created_at) * 1000 AS latency_ms,
         extract(epoch FROM t.completed_at - h.last_hand_back) * 1000 AS finalize_ms
  FROM t JOIN (SELECT task_uuid, max(handed_back_at) AS last_hand_back FROM per_step GROUP BY task_uuid) h USING (task_uuid)
  WHERE t.state = 'complete'
), gaps AS (
  -- The longest stretch in which no step of the phase completed (a stall shows up here).
  SELECT max(g) AS gap FROM (
    SELECT completed_at - lag(completed_at) OVER (ORDER BY completed_at) AS g
    FROM per_step WHERE completed_at IS NOT NULL) y
), win AS (
  SELECT (SELECT min(claimed_at) FROM per_step) AS first_claim,
         (SELECT max(completed_at) FROM t) AS last_done,
         (SELECT min(created_at) FROM t) AS first_created
), span AS (
  -- The timeline's bucket: 1 s, widened so that a long window has at most 300 buckets.
  SELECT greatest(1, ceil(extract(epoch FROM win.last_done - win.first_claim) / 300))::integer AS bucket,
         extract(epoch FROM win.last_done - win.first_claim) AS secs
  FROM win
), quarters AS (
  -- Steps completed in each quarter of the window, per second: a throughput that sinks from the
  -- first quarter to the last is a run slowing down (dead rows piling up, a checkpoint).
  SELECT array_agg(round((coalesce(n, 0) / nullif(span.secs / 4, 0))::numeric, 1) ORDER BY q) AS rates
  FROM span CROSS JOIN generate_series(0, 3) q
  LEFT JOIN (
    SELECT least(3, floor(4 * extract(epoch FROM p.completed_at - w.first_claim) / nullif(sp.secs, 0)))::integer AS qq,
           count(*) AS n
    FROM per_step p, win w, span sp
    WHERE p.completed_at IS NOT NULL
    GROUP BY 1) c ON c.qq = q
), timeline AS (
  -- Steps completed per bucket of the window, per second (the throughput chart of bench/charts).
  -- The last bucket is usually partial: it is divided by its real length.
  SELECT array_agg(round((coalesce(n, 0) / least(span.bucket, greatest(span.secs - b * span.bucket, 0.001)))::numeric, 1)
                   ORDER BY b) AS rates
  FROM span CROSS JOIN generate_series(0, greatest(ceil(span.secs / span.bucket)::integer - 1, 0)) b
  LEFT JOIN (
    SELECT least(floor(extract(epoch FROM p.completed_at - w.first_claim) / sp.bucket),
                 greatest(ceil(sp.secs / sp.bucket) - 1, 0))::integer AS bb, count(*) AS n
    FROM per_step p, win w, span sp
    WHERE p.completed_at >= w.first_claim
    GROUP BY 1) c ON c.bb = b
), pct AS (
  SELECT (SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms) FROM task_times) AS lat,
         (SELECT max(latency_ms) FROM task_times) AS lat_max,
         (SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY ms) FROM overhead) AS ovh,
         -- The overhead's distribution, for the chart: its 0th, 1st, …, 100th percentile.
         (SELECT percentile_cont((SELECT array_agg(i / 100.0) FROM generate_series(0, 100) i)) WITHIN GROUP (ORDER BY ms)
          FROM overhead) AS ovh_cdf,
         (SELECT max(ms) FROM overhead) AS ovh_max,
         (SELECT count(*) FROM overhead) AS ovh_n,
         (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY claim_wait_ms) FROM step_times) AS claim,
         (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY worker_ms) FROM step_times) AS worker,
         (SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY finalize_ms) FROM task_times) AS fin
)
SELECT /* bench */ json_build_object(
  'tasks', (SELECT count(*) FROM t),
  'tasks_complete', (SELECT count(*) FROM t WHERE state = 'complete'),
  'steps', (SELECT count(*) FROM per_step),
  'steps_complete', (SELECT count(*) FROM per_step WHERE state = 'complete'),
  'window_secs', round(span.secs::numeric, 3),
  'steps_per_sec', round(((SELECT count(*) FROM per_step) / nullif(span.secs, 0))::numeric, 1),
  'steps_per_sec_by_quarter', quarters.rates,
  'timeline_bucket_secs', span.bucket,
  'steps_per_sec_timeline', timeline.rates,
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
  'step_overhead_ms_cdf', (SELECT array_agg(round(v::numeric, 3) ORDER BY o) FROM unnest(pct.ovh_cdf) WITH ORDINALITY AS u(v, o)),
  'claim_wait_ms_p50', round(pct.claim[1]::numeric, 2),
  'claim_wait_ms_p99', round(pct.claim[2]::numeric, 2),
  'worker_ms_p50', round(pct.worker[1]::numeric, 2),
  'worker_ms_p99', round(pct.worker[2]::numeric, 2),
  'finalize_ms_p50', round(pct.fin[1]::numeric, 2),
  'finalize_ms_p99', round(pct.fin[2]::numeric, 2),
  'completion_gap_ms_max', round((extract(epoch FROM gaps.gap) * 1000)::numeric, 1))
FROM win, span, pct, gaps, quarters, timeline;
