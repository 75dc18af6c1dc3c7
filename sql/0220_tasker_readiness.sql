-- 0220_tasker_readiness.sql — the one definition of step readiness, and a task's execution context.
--
-- get_step_readiness_status() walks the edges (the authoritative DAG); the hot paths use the
-- unfinished_parents counter through tasker.step_is_ready() instead, and a randomized test
-- (tests/sql/readiness_agreement.sql) checks that the two agree.

-- tasker.batch_line: the batch workers of these tasks that are ready but for their batch's
-- parallelism, each with its place in its batch's line (name order, so batch_id order), the
-- batch's parallelism and how many of it are in flight, and whether it goes now: at most
-- parallelism workers of one batch (same created_by) in flight at once. The one definition of the
-- rule: advance_tasks dispatches the workers that go, get_step_readiness_status explains the rest.
-- Static workflows have no such rows: one probe of workflow_steps_batch_waiting_idx per task.
CREATE OR REPLACE FUNCTION tasker.batch_line(p_task_uuids uuid[])
RETURNS TABLE (workflow_step_uuid uuid, task_uuid uuid, attempt_no integer, place bigint, parallelism integer,
               busy bigint, goes boolean)
LANGUAGE sql STABLE AS $$
  SELECT w.workflow_step_uuid, w.task_uuid, w.attempt_no, w.place, w.batch_parallelism, b.busy,
         w.place <= w.batch_parallelism - b.busy
  FROM (SELECT s.task_uuid, s.workflow_step_uuid, s.attempt_no, s.created_by, s.batch_parallelism,
               row_number() OVER (PARTITION BY s.created_by ORDER BY s.name) AS place
        FROM tasker.workflow_steps s
        WHERE s.task_uuid = ANY (p_task_uuids) AND s.batch_parallelism IS NOT NULL
          AND s.state IN ('pending', 'waiting_for_retry')
          AND tasker.step_is_ready(s.state, s.unfinished_parents, s.attempts, s.retryable, s.max_attempts,
                                   s.next_retry_at)) w
  -- Busy siblings, counted once per batch (workflow_steps_batch_busy_idx: in-flight workers only).
  CROSS JOIN LATERAL (
    SELECT count(*) AS busy FROM tasker.workflow_steps f
    WHERE f.created_by = w.created_by AND f.batch_parallelism IS NOT NULL
      AND f.state IN ('enqueued', 'in_progress', 'enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')) b
$$;

CREATE OR REPLACE FUNCTION tasker.get_step_readiness_status(input_task_uuid uuid, step_uuids uuid[] DEFAULT NULL)
RETURNS TABLE (
  workflow_step_uuid     uuid,
  task_uuid              uuid,
  named_step_uuid        uuid,
  name                   text,
  current_state          text,
  dependencies_satisfied boolean,
  retry_eligible         boolean,
  ready_for_execution    boolean,
  last_failure_at        timestamptz,
  next_retry_at          timestamptz,
  total_parents          integer,
  completed_parents      integer,
  attempts               integer,
  max_attempts           integer,
  last_attempted_at      timestamptz,
  not_ready_reason       text)
LANGUAGE sql STABLE AS $$
  WITH steps AS (
    SELECT s.*, ns.position, ns.step_type,
           coalesce(p.total, 0) AS n_parents,
           coalesce(p.done, 0) AS n_done,
           p.waiting_on
    FROM tasker.workflow_steps s
    JOIN tasker.named_steps ns ON ns.named_step_uuid = s.named_step_uuid
    LEFT JOIN LATERAL (
      SELECT count(*)::integer AS total,
             count(*) FILTER (WHERE ps.state IN ('complete', 'resolved_manually'))::integer AS done,
             -- A decision or batch planner upstream decides what else this step waits for.
             string_agg(CASE pn.step_type WHEN 'decision' THEN 'decision step '
                                          WHEN 'batchable' THEN 'batch planner ' ELSE '' END
                        || ps.name || ' (' || ps.state || ')', ', ' ORDER BY ps.name)
               FILTER (WHERE ps.state NOT IN ('complete', 'resolved_manually')) AS waiting_on
      FROM tasker.workflow_step_edges e
      JOIN tasker.workflow_steps ps ON ps.workflow_step_uuid = e.from_step_uuid
      JOIN tasker.named_steps pn ON pn.named_step_uuid = ps.named_step_uuid
      WHERE e.to_step_uuid = s.workflow_step_uuid
    ) p ON true
    WHERE s.task_uuid = input_task_uuid
      AND (step_uuids IS NULL OR s.workflow_step_uuid = ANY (step_uuids))
  ), judged AS (
    SELECT st.*,
           st.n_parents = st.n_done AS deps_ok,
           (st.attempts = 0 OR (st.retryable AND st.attempts < st.max_attempts)) AS eligible,
           (st.next_retry_at IS NULL OR st.next_retry_at <= now()) AS backoff_passed,
           coalesce(NOT b.goes, false) AS held, b.place, b.parallelism, b.busy
    FROM steps st
    -- batch workers held back by their batch's parallelism (the rule advance_tasks applies)
    LEFT JOIN tasker.batch_line(ARRAY[input_task_uuid]) b ON b.workflow_step_uuid = st.workflow_step_uuid
  )
  SELECT j.workflow_step_uuid, j.task_uuid, j.named_step_uuid, j.name, j.state,
         j.deps_ok, j.eligible,
         j.state IN ('pending', 'waiting_for_retry') AND j.deps_ok AND j.eligible AND j.backoff_passed AND NOT j.held,
         (SELECT max(t.created_at) FROM tasker.workflow_step_transitions t
          WHERE t.workflow_step_uuid = j.workflow_step_uuid
            AND t.to_state IN ('enqueued_as_error_for_orchestration', 'waiting_for_retry', 'error')),
         j.next_retry_at, j.n_parents, j.n_done, j.attempts, j.max_attempts, j.last_attempted_at,
         CASE
           WHEN j.state NOT IN ('pending', 'waiting_for_retry') THEN
             CASE j.state
               WHEN 'enqueued' THEN 'already dispatched: waiting for a worker to claim it'
               WHEN 'in_progress' THEN format('running on %s (attempt %s)', coalesce(j.claimed_by, 'a worker'), j.attempts)
               WHEN 'enqueued_for_orchestration' THEN 'finished; waiting for the orchestrator to record the result'
               WHEN 'enqueued_as_error_for_orchestration' THEN 'failed; waiting for the orchestrator to decide on a retry'
               WHEN 'complete' THEN 'already complete'
               WHEN 'resolved_manually' THEN 'resolved manually'
               WHEN 'cancelled' THEN 'cancelled'
               WHEN 'error' THEN format('failed for good after %s of %s attempt(s)%s; needs an operator (reset_for_retry, resolve_manually or complete_manually)',
                                        j.attempts, j.max_attempts, CASE WHEN NOT j.retryable THEN ', not retryable' ELSE '' END)
               ELSE 'in state ' || j.state
             END
           WHEN NOT j.deps_ok THEN
             format('%swaiting for %s of %s %sparent step(s): %s',
                    CASE WHEN j.step_type = 'deferred_convergence' THEN 'deferred: ' ELSE '' END,
                    j.n_parents - j.n_done, j.n_parents,
                    CASE WHEN j.step_type = 'deferred_convergence' THEN 'created ' ELSE '' END, j.waiting_on)
           WHEN NOT j.eligible THEN
             CASE WHEN NOT j.retryable THEN format('not retryable and already attempted %s time(s)', j.attempts)
                  ELSE format('no attempts left (%s of %s used)', j.attempts, j.max_attempts) END
           WHEN NOT j.backoff_passed THEN format('retry backoff: eligible again at %s', j.next_retry_at)
           WHEN j.held THEN format('batch parallelism: %s of at most %s workers of this batch in flight; %s waiting ahead of it',
                                   j.busy, j.parallelism, j.place - 1)
         END
  FROM judged j
  ORDER BY j.position, j.workflow_step_uuid
$$;

-- get_task_execution_context(task_uuid): step counts by class and what the task is waiting for.
-- execution_status, first match wins: blocked_by_failures (a step in error), has_ready_steps,
-- processing (something dispatched or running), all_complete, waiting_for_dependencies.
CREATE OR REPLACE FUNCTION tasker.get_task_execution_context(input_task_uuid uuid)
RETURNS TABLE (
  task_uuid             uuid,
  task_template_uuid    uuid,
  status                text,
  total_steps           integer,
  pending_steps         integer,
  enqueued_steps        integer,
  in_progress_steps     integer,
  waiting_for_retry_steps integer,
  completed_steps       integer,
  failed_steps          integer,
  cancelled_steps       integer,
  ready_steps           integer,
  execution_status      text,
  recommended_action    text,
  completion_percentage numeric,
  health_status         text)
LANGUAGE sql STABLE AS $$
  WITH c AS (
    SELECT t.task_uuid, t.task_template_uuid, t.state,
           count(s.*)::integer AS total,
           count(*) FILTER (WHERE s.state = 'pending')::integer AS pending,
           count(*) FILTER (WHERE s.state IN ('enqueued', 'enqueued_for_orchestration',
                                              'enqueued_as_error_for_orchestration'))::integer AS enqueued,
           count(*) FILTER (WHERE s.state = 'in_progress')::integer AS in_progress,
           count(*) FILTER (WHERE s.state = 'waiting_for_retry')::integer AS retrying,
           count(*) FILTER (WHERE s.state IN ('complete', 'resolved_manually'))::integer AS done,
           count(*) FILTER (WHERE s.state = 'error')::integer AS failed,
           count(*) FILTER (WHERE s.state = 'cancelled')::integer AS cancelled,
           count(*) FILTER (WHERE s.batch_parallelism IS NULL
                              AND tasker.step_is_ready(s.state, s.unfinished_parents, s.attempts,
                                                       s.retryable, s.max_attempts, s.next_retry_at))::integer
           -- batch workers: per batch, as many as its parallelism lets go now
           + (SELECT count(*) FROM tasker.batch_line(ARRAY[input_task_uuid]) b WHERE b.goes)::integer AS ready
    FROM tasker.tasks t
    LEFT JOIN tasker.workflow_steps s ON s.task_uuid = t.task_uuid
    WHERE t.task_uuid = input_task_uuid
    GROUP BY t.task_uuid
  ), e AS (
    SELECT c.*,
           CASE WHEN c.failed > 0 THEN 'blocked_by_failures'
                WHEN c.ready > 0 THEN 'has_ready_steps'
                WHEN c.enqueued + c.in_progress > 0 THEN 'processing'
                WHEN c.total > 0 AND c.done = c.total THEN 'all_complete'
                ELSE 'waiting_for_dependencies' END AS exec_status
    FROM c
  )
  SELECT e.task_uuid, e.task_template_uuid, e.state, e.total, e.pending, e.enqueued, e.in_progress,
         e.retrying, e.done, e.failed, e.cancelled, e.ready, e.exec_status,
         CASE e.exec_status WHEN 'blocked_by_failures' THEN 'handle_failures'
                            WHEN 'has_ready_steps' THEN 'execute_ready_steps'
                            WHEN 'processing' THEN 'wait_for_completion'
                            WHEN 'all_complete' THEN 'finalize_task'
                            ELSE 'wait_for_dependencies' END,
         CASE WHEN e.total = 0 THEN 0 ELSE round(100.0 * e.done / e.total, 2) END,
         CASE WHEN e.failed > 0 THEN 'blocked'
              WHEN e.retrying > 0 THEN 'recovering'
              ELSE 'healthy' END
  FROM e
$$;
