-- 0063_audit_natural_keys.sql — the audit tables keyed by what they are looked up by (issue 14).
--
-- Every state change of a step writes a transition row, so the hot path inserts about five of them
-- per step, plus one result-audit row. Each of those tables had two indexes: a primary key on its
-- random-tailed UUID (looked up by nothing) and an index by (step, ordinal) or (step, attempt),
-- which every reader uses. The natural key becomes the primary key and the UUID index goes: one
-- index insert fewer per audit row, about 5 of the 57 WAL records a step wrote
-- (docs/performance.md, "Round three"). The UUID columns stay, NOT NULL with their UUIDv7
-- defaults, so the API still names each row as before; `ordinal` is an identity, so
-- (step, ordinal) is unique by construction.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
-- On a big history this rebuilds one index per table, under the table's lock, once.

ALTER TABLE tasker.workflow_step_transitions DROP CONSTRAINT workflow_step_transitions_pkey;
ALTER TABLE tasker.workflow_step_transitions ALTER COLUMN workflow_step_transition_uuid SET NOT NULL;
ALTER TABLE tasker.workflow_step_transitions
  ADD CONSTRAINT workflow_step_transitions_pkey PRIMARY KEY (workflow_step_uuid, ordinal);
DROP INDEX tasker.workflow_step_transitions_step_idx;

ALTER TABLE tasker.task_transitions DROP CONSTRAINT task_transitions_pkey;
ALTER TABLE tasker.task_transitions ALTER COLUMN task_transition_uuid SET NOT NULL;
ALTER TABLE tasker.task_transitions ADD CONSTRAINT task_transitions_pkey PRIMARY KEY (task_uuid, ordinal);
DROP INDEX tasker.task_transitions_task_idx;

ALTER TABLE tasker.workflow_step_result_audit DROP CONSTRAINT workflow_step_result_audit_pkey;
ALTER TABLE tasker.workflow_step_result_audit
  DROP CONSTRAINT workflow_step_result_audit_workflow_step_uuid_attempt_key;
ALTER TABLE tasker.workflow_step_result_audit ALTER COLUMN workflow_step_result_audit_uuid SET NOT NULL;
ALTER TABLE tasker.workflow_step_result_audit
  ADD CONSTRAINT workflow_step_result_audit_pkey PRIMARY KEY (workflow_step_uuid, attempt);
