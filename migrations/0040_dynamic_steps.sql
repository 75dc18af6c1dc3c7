-- 0040_dynamic_steps.sql — the columns and indexes dynamic workflows need (issue 10, DESIGN §12):
-- step types on templates, gate edges, steps created at run time by a decision or a batch plan,
-- batch parallelism and failure strategies on the rows they govern, checkpoints, and tasker-core's
-- looser retry bounds.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

-- Templates ----------------------------------------------------------------------------------
ALTER TABLE tasker.named_steps
  ADD COLUMN handler_method    text,
  ADD COLUMN handler_resolver  text,
  -- batch_worker steps: {batch_size, parallelism, cursor_field, failure_strategy, checkpoint_interval}
  ADD COLUMN batch_config      jsonb,
  -- Created with the task (true), or later by a decision or a batch plan (false).
  ADD COLUMN init_created      boolean NOT NULL DEFAULT true,
  -- Edges (declared and gate) from steps created with the task: unfinished_parents at creation.
  ADD COLUMN init_parent_count integer NOT NULL DEFAULT 0 CHECK (init_parent_count >= 0);
UPDATE tasker.named_steps SET init_parent_count = parent_count;
ALTER TABLE tasker.named_steps
  ADD CONSTRAINT named_steps_step_type_check
    CHECK (step_type IN ('standard', 'decision', 'deferred_convergence', 'batchable', 'batch_worker'));

-- tasker-core accepts backoff_base_ms 50 and max_backoff_ms 200; so do we (0 = no wait).
ALTER TABLE tasker.named_steps DROP CONSTRAINT named_steps_backoff_base_ms_check;
ALTER TABLE tasker.named_steps DROP CONSTRAINT named_steps_max_backoff_ms_check;
ALTER TABLE tasker.named_steps
  ADD CONSTRAINT named_steps_backoff_base_ms_check CHECK (backoff_base_ms BETWEEN 0 AND 3600000),
  ADD CONSTRAINT named_steps_max_backoff_ms_check CHECK (max_backoff_ms BETWEEN 0 AND 3600000);

-- A gate edge makes a deferred_convergence step wait for a decision or batchable step whose
-- outcome may still create one of its declared parents (docs/dynamic-steps.md). Declared edges are
-- the template's dependencies.
ALTER TABLE tasker.named_step_edges
  ADD COLUMN kind text NOT NULL DEFAULT 'declared' CHECK (kind IN ('declared', 'gate'));

-- Runs ---------------------------------------------------------------------------------------
ALTER TABLE tasker.workflow_steps
  -- The decision or batchable step whose outcome created this one (NULL: created with the task).
  ADD COLUMN created_by        uuid,
  -- batch_worker rows: at most this many of one batch (same created_by) in flight at once.
  ADD COLUMN batch_parallelism integer CHECK (batch_parallelism >= 1),
  -- batch_worker rows: continue_on_failure | fail_fast | isolate.
  ADD COLUMN failure_strategy  text CHECK (failure_strategy IN ('continue_on_failure', 'fail_fast', 'isolate')),
  -- The last progress a worker recorded (tasker.checkpoint_step); kept across retries and resets.
  ADD COLUMN checkpoint        jsonb,
  ADD COLUMN checkpoint_at     timestamptz;

-- "Does this task already have a row of named step X?" (dynamic creation) and "the steps of this
-- task" (everything else) from one index: it replaces workflow_steps_task_idx.
CREATE INDEX workflow_steps_task_named_idx ON tasker.workflow_steps (task_uuid, named_step_uuid);
DROP INDEX tasker.workflow_steps_task_idx;

-- The poll's never-dispatched ready steps, without batch workers held back by their batch's
-- parallelism (those are dispatched when a sibling finishes, and the sweep re-evaluates quiet
-- tasks). Held workers in the old index could fill every poll's LIMIT with one task's rows.
CREATE INDEX workflow_steps_pending_ready2_idx ON tasker.workflow_steps (task_uuid)
  WHERE state = 'pending' AND unfinished_parents = 0 AND batch_parallelism IS NULL;
DROP INDEX tasker.workflow_steps_pending_ready_idx;

-- advance_tasks' batch branch: a task's dispatchable batch workers, probed per task; empty for
-- static workflows, so they pay one index probe per task for it.
CREATE INDEX workflow_steps_batch_waiting_idx ON tasker.workflow_steps (task_uuid, created_by)
  WHERE batch_parallelism IS NOT NULL AND state IN ('pending', 'waiting_for_retry');
-- … and how many workers of a batch are in flight (at most its parallelism).
CREATE INDEX workflow_steps_batch_busy_idx ON tasker.workflow_steps (created_by)
  WHERE batch_parallelism IS NOT NULL
    AND state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration');
