-- 0050_result_audit_payloads.sql — the result audit keeps what each attempt handed back (issue 15
-- §6): the result object and the error object, as they were at the hand-back, so a success that a
-- later attempt overwrote in workflow_steps is still in the step's history. Written by the audit
-- trigger (sql/0205); each capped at 64 KiB of JSON text: a larger one is stored as
-- {"truncated": true, "bytes": N} (N = its size as JSON text), see docs/operations.md.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
ALTER TABLE tasker.workflow_step_result_audit
  ADD COLUMN result jsonb,
  ADD COLUMN error  jsonb;
