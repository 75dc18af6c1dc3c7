-- 0020_audit_without_row_checks.sql — the audit tables lose their per-row foreign keys; the audit
-- triggers (sql/0205) check the same things once per statement instead.
--
-- Why: a foreign key is checked by one internal query per inserted row, and the referenced row is
-- locked FOR KEY SHARE (a heap write). Every step moves through four or five states, so these
-- checks were the largest single cost of a step at full load (about a quarter of PostgreSQL's CPU
-- per step, measured with pg_stat_statements in `make bench`). What they guarded is still guarded:
--   * (from_state, to_state) → *_state_edges: the audit trigger joins the changed rows to the edge
--     table and raises 23503 (foreign_key_violation, as before) naming the illegal move;
--   * workflow_steps.state / tasks.state → *_states: a state no edge leads to cannot be entered
--     (the same trigger), and CHECK constraints keep the column inside the state list;
--   * transition/audit row → step/task: those rows are written only by the triggers, from the very
--     row that changed, so the reference holds by construction. Retention deletes history first.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

ALTER TABLE tasker.workflow_step_transitions
  DROP CONSTRAINT IF EXISTS workflow_step_transitions_workflow_step_uuid_fkey,
  DROP CONSTRAINT IF EXISTS workflow_step_transitions_from_state_to_state_fkey;
ALTER TABLE tasker.workflow_step_result_audit
  DROP CONSTRAINT IF EXISTS workflow_step_result_audit_workflow_step_uuid_fkey,
  DROP CONSTRAINT IF EXISTS workflow_step_result_audit_workflow_step_transition_uuid_fkey;
ALTER TABLE tasker.task_transitions
  DROP CONSTRAINT IF EXISTS task_transitions_task_uuid_fkey,
  DROP CONSTRAINT IF EXISTS task_transitions_from_state_to_state_fkey;

-- The state columns: a CHECK against the same list instead of a per-change lookup. The lists are
-- the rows of tasker.step_states / tasker.task_states (migration 0010); tests/sql/state_machine.sql
-- checks they agree.
ALTER TABLE tasker.workflow_steps
  DROP CONSTRAINT IF EXISTS workflow_steps_state_fkey,
  ADD CONSTRAINT workflow_steps_state_check CHECK (state IN (
    'pending', 'enqueued', 'in_progress', 'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration',
    'waiting_for_retry', 'complete', 'error', 'cancelled', 'resolved_manually'));
ALTER TABLE tasker.tasks
  DROP CONSTRAINT IF EXISTS tasks_state_fkey,
  ADD CONSTRAINT tasks_state_check CHECK (state IN (
    'pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
    'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures', 'complete', 'error',
    'cancelled', 'resolved_manually'));
