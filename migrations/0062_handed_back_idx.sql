-- 0062_handed_back_idx.sql — the sweep's look for hand-backs whose completion pointer was lost
-- (messaging.backend = rabbitmq; tasker.recover_handed_back_steps): steps waiting for the
-- orchestrator, oldest first, without reading the rest of the table.
-- Forward-only: never edit this file once it has landed; add a new migration instead.
CREATE INDEX IF NOT EXISTS workflow_steps_handed_back_idx ON tasker.workflow_steps (updated_at)
  WHERE state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration');
