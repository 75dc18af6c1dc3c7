-- 0065_error_steps_idx.sql — steps in error, by task (issue 14, round three): every completion
-- call asks, for each task it touches, whether a step of it is in error (then nothing new is
-- dispatched: tasker.tasks_blocked_by_error). Without this index that question read every row
-- version of every step of the task; with it, a probe of an index that holds only the steps in
-- error, which are few and leave it when an operator resolves them.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
CREATE INDEX IF NOT EXISTS workflow_steps_error_idx ON tasker.workflow_steps (task_uuid) WHERE state = 'error';
