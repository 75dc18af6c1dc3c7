-- 0030_scale_indexes.sql — indexes (and one cursor row) so that the poll and the sweep cost the same
-- with 1,000 or 100,000 unfinished tasks in the database (issue 6, docs/performance.md "Scale").
--
-- Every index here is partial: it holds only the rows a daemon pass looks for, so a state change
-- outside its predicate costs PostgreSQL only the predicate check. What each one costs:
--   * tasks_stale_idx, tasks_unfinished_created_idx: one index entry per unfinished task, written
--     when a task row changes while unfinished (a task changes a handful of times in its life, and
--     those updates are already non-HOT: tasks_unfinished_idx covers state and state_changed_at).
--   * workflow_steps_enqueued_cursor_idx replaces workflow_steps_enqueued_idx (same predicate, one
--     more key column), so a step entering `enqueued` still writes exactly one entry in it.
--   * sweep_cursor: one row, updated by the sweep (a HOT update every 30 s).
--   * workflow_steps_state_parents_stats: extended statistics, computed by ANALYZE only.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- The poll's ready-step candidates (enqueue_ready_steps): state = 'pending' and
-- unfinished_parents = 0 are strongly correlated (a pending step almost always waits for a
-- parent), but the planner multiplies their frequencies: 75,000 ready steps guessed where there
-- were none, at 100,000 unfinished tasks. With that guess the cached generic plan looked dear, so
-- every poll was planned afresh (0.3 ms), or worse, driven from the whole tasks table. These
-- statistics (ANALYZE only; nothing on writes) give the planner the joint frequency.
CREATE STATISTICS tasker.workflow_steps_state_parents_stats (mcv) ON state, unfinished_parents
  FROM tasker.workflow_steps;
ANALYZE tasker.workflow_steps;  -- now, not at the next autovacuum (samples at most 30,000 rows)

-- The sweep's stale-task candidates (detect_and_transition_stuck_tasks, section 4): unfinished
-- tasks whose state has not changed for a while, oldest first. Without it the sweep read every
-- task to find none.
CREATE INDEX tasks_stale_idx ON tasker.tasks (state_changed_at)
  WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');

-- ... and unfinished tasks past their maximum lifetime (the other half of section 4's test).
-- tasks_created_idx holds every task ever created, finished ones first; this one only the live.
CREATE INDEX tasks_unfinished_created_idx ON tasker.tasks (created_at)
  WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');

-- The sweep's look for dispatched steps whose message vanished (section 2) walks the enqueued steps
-- a window at a time, in (updated_at, workflow_step_uuid) order from where the last sweep stopped.
-- The step uuid makes the order total: one transaction enqueues many steps with the same
-- updated_at. The old index on updated_at alone served only that section.
CREATE INDEX workflow_steps_enqueued_cursor_idx ON tasker.workflow_steps (updated_at, workflow_step_uuid)
  WHERE state = 'enqueued';
DROP INDEX tasker.workflow_steps_enqueued_idx;

-- Where that walk stopped: the last (updated_at, workflow_step_uuid) it looked at; NULL = start
-- from the oldest. One row. Only the sweep (which holds the sweep's advisory lock) writes it.
CREATE TABLE tasker.sweep_cursor (
  singleton               boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  resend_after_updated_at timestamptz,
  resend_after_step_uuid  uuid
);
INSERT INTO tasker.sweep_cursor DEFAULT VALUES;
