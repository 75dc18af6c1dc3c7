-- 0201_tasker_states.sql — the task and step state machines: states and every legal edge (DESIGN §3).
--
-- This file is the one place the edges are listed. The triggers of 0205 refuse any state change
-- not listed here, and include/states.h mirrors the names (a unit test checks they agree).
-- Re-applied by migrate whenever it changes: rows are upserted, and edges no longer listed are
-- deleted (which fails, loudly, if history rows still use them).

INSERT INTO tasker.task_states (state, is_terminal, description) VALUES
  ('pending',                  false, 'created, nothing dispatched yet'),
  ('initializing',             false, 'being set up (exists only inside task creation)'),
  ('enqueuing_steps',          false, 'ready steps being dispatched (exists only inside a transaction)'),
  ('steps_in_process',         false, 'at least one step is dispatched, running or awaiting orchestration'),
  ('evaluating_results',       false, 'results being evaluated (exists only inside a transaction)'),
  ('waiting_for_dependencies', false, 'nothing in flight, no step ready, none waiting for retry'),
  ('waiting_for_retry',        false, 'nothing in flight; a failed step waits for its backoff'),
  ('blocked_by_failures',      false, 'a step is in error and nothing is in flight: waits for an operator'),
  ('complete',                 true,  'every step complete or resolved manually'),
  ('error',                    true,  'gave up: blocked too long, or stale (an operator may recover it)'),
  ('cancelled',                true,  'cancelled by a client or operator'),
  ('resolved_manually',        true,  'closed by an operator')
ON CONFLICT (state) DO UPDATE SET is_terminal = EXCLUDED.is_terminal, description = EXCLUDED.description;

INSERT INTO tasker.step_states (state, is_terminal, satisfies_dependencies, in_flight, description) VALUES
  ('pending',                             false, false, false, 'waiting for parents, or ready and not yet dispatched'),
  ('enqueued',                            false, false, true,  'a dispatch message for this attempt is in the queue'),
  ('in_progress',                         false, false, true,  'claimed by a worker under a lease'),
  ('enqueued_for_orchestration',          false, false, true,  'handed back as success; awaiting the orchestrator'),
  ('enqueued_as_error_for_orchestration', false, false, true,  'handed back as failure; awaiting the orchestrator'),
  ('waiting_for_retry',                   false, false, false, 'failed, will be retried once next_retry_at passes'),
  ('complete',                            true,  true,  false, 'succeeded'),
  ('error',                               false, false, false, 'failed for good (no attempts left, or not retryable); blocks its task'),
  ('cancelled',                           true,  false, false, 'cancelled with its task, or when its task was given up (recoverable then)'),
  ('resolved_manually',                   true,  true,  false, 'closed by an operator, or by a batch worker''s continue_on_failure strategy; satisfies its children')
ON CONFLICT (state) DO UPDATE SET is_terminal = EXCLUDED.is_terminal,
  satisfies_dependencies = EXCLUDED.satisfies_dependencies, in_flight = EXCLUDED.in_flight,
  description = EXCLUDED.description;

-- Task edges. The orchestrator re-evaluates a task as a whole (process_completions, poller, sweep,
-- operator actions) and moves it straight to the state its steps imply, so every non-terminal
-- state may move to each "evaluated" state; the event is named after the target.
CREATE TEMPORARY TABLE tasker_task_edges_wanted ON COMMIT DROP AS
SELECT * FROM (VALUES
  (NULL, 'pending', 'create'),
  (NULL, 'steps_in_process', 'create_and_enqueue'),
  ('pending', 'initializing', 'start'),
  ('initializing', 'enqueuing_steps', 'ready_steps_found'),
  ('enqueuing_steps', 'steps_in_process', 'steps_enqueued'),
  ('steps_in_process', 'evaluating_results', 'step_completed'),
  ('blocked_by_failures', 'error', 'give_up'),
  -- The one way out of a terminal state: an operator recovers a task the sweep gave up on
  -- (tasker.recover_task). The task passes through pending inside that transaction and is
  -- evaluated at once, like a new one.
  ('error', 'pending', 'recover')
) AS v(from_state, to_state, event)
UNION ALL
SELECT f.state, t.to_state, t.event
FROM tasker.task_states f
CROSS JOIN (VALUES
  ('steps_in_process', 'steps_in_flight'),
  ('waiting_for_retry', 'steps_awaiting_retry'),
  ('waiting_for_dependencies', 'no_steps_ready'),
  ('blocked_by_failures', 'permanent_failure'),
  ('complete', 'all_steps_complete'),
  ('cancelled', 'cancel'),
  ('resolved_manually', 'resolve_manually'),
  ('error', 'fail')
) AS t(to_state, event)
WHERE NOT f.is_terminal AND f.state <> t.to_state
  AND NOT (f.state = 'blocked_by_failures' AND t.to_state = 'error')
  AND NOT (f.state = 'pending' AND t.to_state = 'initializing')
  AND NOT (f.state = 'enqueuing_steps' AND t.to_state = 'steps_in_process')
  AND NOT (f.state = 'steps_in_process' AND t.to_state = 'evaluating_results');

-- Step edges, each with the event that causes it.
CREATE TEMPORARY TABLE tasker_step_edges_wanted ON COMMIT DROP AS
SELECT * FROM (VALUES
  (NULL, 'pending', 'create'),
  (NULL, 'enqueued', 'create_and_enqueue'),
  ('pending', 'enqueued', 'enqueue'),
  ('waiting_for_retry', 'enqueued', 'retry'),
  ('waiting_for_retry', 'pending', 'retry_ready'),
  ('enqueued', 'in_progress', 'claim'),
  ('in_progress', 'enqueued_for_orchestration', 'hand_back_success'),
  ('in_progress', 'enqueued_as_error_for_orchestration', 'hand_back_failure'),
  ('in_progress', 'waiting_for_retry', 'lease_expired'),
  ('in_progress', 'error', 'lease_expired'),
  ('enqueued_for_orchestration', 'complete', 'complete'),
  ('enqueued_as_error_for_orchestration', 'waiting_for_retry', 'wait_for_retry'),
  ('enqueued_as_error_for_orchestration', 'error', 'fail'),
  -- A decision or batch outcome the orchestrator refuses (docs/dynamic-steps.md).
  ('enqueued_for_orchestration', 'error', 'invalid_outcome'),
  -- A batch worker's last failure under failure_strategy continue_on_failure: it stops blocking
  -- its convergence step (an operator's resolve_manually on this edge names its own event).
  ('enqueued_as_error_for_orchestration', 'resolved_manually', 'continue_on_failure'),
  ('in_progress', 'resolved_manually', 'continue_on_failure'),   -- … its last lease expired
  ('error', 'pending', 'reset_for_retry'),            -- tasker.recover_task names it 'recover'
  -- A step cancelled when its task was given up (the sweep's DLQ move) runs again when an operator
  -- recovers the task (tasker.recover_task): the one edge out of a terminal step state.
  ('cancelled', 'pending', 'recover')
) AS v(from_state, to_state, event)
UNION ALL
-- Operator and cancellation edges from every unfinished state.
SELECT f.state, t.to_state, t.event
FROM tasker.step_states f
CROSS JOIN (VALUES ('cancelled', 'cancel'), ('resolved_manually', 'resolve_manually'),
                   ('complete', 'complete_manually')) AS t(to_state, event)
WHERE NOT f.is_terminal
  AND NOT (f.state = 'enqueued_for_orchestration' AND t.to_state = 'complete')
  AND NOT (f.state IN ('enqueued_as_error_for_orchestration', 'in_progress') AND t.to_state = 'resolved_manually');

INSERT INTO tasker.task_state_edges (from_state, to_state, event)
SELECT from_state, to_state, event FROM tasker_task_edges_wanted
ON CONFLICT (from_state, to_state) DO UPDATE SET event = EXCLUDED.event;
DELETE FROM tasker.task_state_edges e
WHERE NOT EXISTS (SELECT 1 FROM tasker_task_edges_wanted w
                  WHERE w.from_state IS NOT DISTINCT FROM e.from_state AND w.to_state = e.to_state);

INSERT INTO tasker.step_state_edges (from_state, to_state, event)
SELECT from_state, to_state, event FROM tasker_step_edges_wanted
ON CONFLICT (from_state, to_state) DO UPDATE SET event = EXCLUDED.event;
DELETE FROM tasker.step_state_edges e
WHERE NOT EXISTS (SELECT 1 FROM tasker_step_edges_wanted w
                  WHERE w.from_state IS NOT DISTINCT FROM e.from_state AND w.to_state = e.to_state);
