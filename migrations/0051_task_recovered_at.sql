-- 0051_task_recovered_at.sql — when an operator last recovered a task (tasker.recover_task). The
-- sweep measures a task's maximum lifetime from then, not from its creation: a task given up on
-- after a day (blocked_timeout waits 24 hours by default) would otherwise be given up again by the
-- very next sweep after its recovery.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE tasker.tasks ADD COLUMN recovered_at timestamptz;

-- The sweep's "past its maximum lifetime" half reads unfinished tasks by lifetime start.
CREATE INDEX tasks_unfinished_lifetime_idx ON tasker.tasks ((coalesce(recovered_at, created_at)))
  WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');
DROP INDEX tasker.tasks_unfinished_created_idx;
