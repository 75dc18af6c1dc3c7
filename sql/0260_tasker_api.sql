-- 0260_tasker_api.sql — what the HTTP API (src/orchestratord/http_api.c) reads: each function returns one JSON
-- document ready to send, or NULL when the task, step, template or DLQ entry asked for does not
-- exist (the API answers 404). Writes go through the functions of 0210/0230 (register_task_template,
-- create_task, cancel_task, resolve_step, recover_task); only the DLQ update lives here (it may
-- recover the record's task through recover_task), and api_recover_task wraps recover_task's row
-- in a document.
--
-- Why these are not STABLE: POST /v1/tasks runs, in one statement,
--     SELECT … tasker.api_task_json(c.task_uuid, …) FROM tasker.create_task($1) c
-- and only a VOLATILE function takes a fresh snapshot that sees the rows create_task has just
-- inserted. They change nothing, except api_update_dlq and api_recover_task.
-- Why json and not jsonb: json keeps the keys in the order written here, which is the order a
-- person reading `curl` output expects (identity first, then state, then the rest).
-- Errors: TK400 (a filter or body field the HTTP layer let through is still wrong), TK409 (DLQ).

-- tasker.api_json_extend: the keys of object `extra` appended to object `base`, order kept (the
-- json type has no || and jsonb would reorder the keys).
CREATE OR REPLACE FUNCTION tasker.api_json_extend(p_base json, p_extra json) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN p_extra IS NULL OR p_extra::text ~ '^\{\s*\}$' THEN p_base
    WHEN p_base IS NULL OR p_base::text ~ '^\{\s*\}$' THEN p_extra
    ELSE (left(rtrim(p_base::text), -1) || ', ' || substr(ltrim(p_extra::text), 2))::json
  END
$$;

-- tasker.api_page_check: TK400 unless 1 <= page and 1 <= per_page <= 100 (the HTTP layer checks
-- first; this keeps the functions safe for direct callers).
CREATE OR REPLACE FUNCTION tasker.api_page_check(p_page integer, p_per_page integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p_page IS NULL OR p_page < 1 THEN
    RAISE EXCEPTION 'page must be an integer >= 1 (got %)', coalesce(p_page::text, 'null') USING ERRCODE = 'TK400';
  END IF;
  IF p_per_page IS NULL OR p_per_page NOT BETWEEN 1 AND 100 THEN
    RAISE EXCEPTION 'per_page must be an integer between 1 and 100 (got %)', coalesce(p_per_page::text, 'null')
      USING ERRCODE = 'TK400';
  END IF;
END $$;

CREATE OR REPLACE FUNCTION tasker.api_pagination(p_page integer, p_per_page integer, p_total bigint) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
  SELECT json_build_object('page', p_page, 'per_page', p_per_page, 'total_count', p_total,
                           'total_pages', ((p_total + p_per_page - 1) / p_per_page))
$$;

-- tasker.api_steps_json(task_uuid, step_uuids DEFAULT NULL): the steps of a task (all, or those
-- listed) with their readiness from get_step_readiness_status — the one definition — and the
-- human not_ready_reason, in template order. NULL when the task does not exist.
CREATE OR REPLACE FUNCTION tasker.api_steps_json(p_task_uuid uuid, p_step_uuids uuid[] DEFAULT NULL)
RETURNS json
LANGUAGE sql AS $$
  SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM tasker.tasks t WHERE t.task_uuid = p_task_uuid) THEN NULL
  ELSE (
    SELECT coalesce(json_agg(json_build_object(
             'workflow_step_uuid', s.workflow_step_uuid,
             'task_uuid', s.task_uuid,
             'name', s.name,
             'state', s.state,
             'ready_for_execution', r.ready_for_execution,
             'not_ready_reason', r.not_ready_reason,
             'dependencies_satisfied', r.dependencies_satisfied,
             'total_parents', r.total_parents,
             'completed_parents', r.completed_parents,
             'retry_eligible', r.retry_eligible,
             'retryable', s.retryable,
             'attempts', s.attempts,
             'attempt_no', s.attempt_no,
             'max_attempts', s.max_attempts,
             'next_retry_at', s.next_retry_at,
             'last_failure_at', r.last_failure_at,
             'last_attempted_at', s.last_attempted_at,
             'handler', n.handler_callable,
             'handler_method', n.handler_method,
             'step_type', n.step_type,
             'created_by', s.created_by,
             'failure_strategy', s.failure_strategy,
             'checkpoint', s.checkpoint,
             'checkpoint_at', s.checkpoint_at,
             'claimed_by', s.claimed_by,
             'lease_expires_at', s.lease_expires_at,
             'inputs', s.inputs,
             'results', s.results,
             'error', s.error,
             'last_execution_ms', s.last_execution_ms,
             'created_at', s.created_at,
             'updated_at', s.updated_at,
             'completed_at', s.completed_at)
           ORDER BY n.position, s.name, s.workflow_step_uuid), '[]'::json)
    FROM tasker.get_step_readiness_status(p_task_uuid, p_step_uuids) r
    JOIN tasker.workflow_steps s ON s.workflow_step_uuid = r.workflow_step_uuid
    JOIN tasker.named_steps n ON n.named_step_uuid = s.named_step_uuid)
  END
$$;

-- tasker.api_step_json(task_uuid, step_uuid): one step as in api_steps_json; NULL when the step
-- does not exist or belongs to another task.
CREATE OR REPLACE FUNCTION tasker.api_step_json(p_task_uuid uuid, p_step_uuid uuid) RETURNS json
LANGUAGE sql AS $$
  SELECT tasker.api_steps_json(p_task_uuid, ARRAY[p_step_uuid]) -> 0
$$;

-- tasker.api_task_json(task_uuid, with_context, with_steps): a task's fields (`status` repeats
-- `state` for tasker-core clients), then optionally `execution_context` (get_task_execution_context)
-- and `steps` (api_steps_json). NULL when the task does not exist.
CREATE OR REPLACE FUNCTION tasker.api_task_json(p_task_uuid uuid, p_with_context boolean DEFAULT true,
  p_with_steps boolean DEFAULT true)
RETURNS json
LANGUAGE sql AS $$
  SELECT tasker.api_json_extend(
    json_build_object(
      'task_uuid', t.task_uuid,
      'namespace', t.namespace,
      'name', tt.name,
      'version', tt.version,
      'state', t.state,
      'status', t.state,
      'priority', t.priority,
      'context', t.context,
      'initiator', t.initiator,
      'source_system', t.source_system,
      'reason', t.reason,
      'tags', t.tags,
      'correlation_id', t.correlation_id,
      'parent_correlation_id', t.parent_correlation_id,
      'idempotency_key', t.idempotency_key,
      'identity_hash', t.identity_hash,
      'requested_at', t.requested_at,
      'state_changed_at', t.state_changed_at,
      'completed_at', t.completed_at,
      'created_at', t.created_at,
      'updated_at', t.updated_at),
    CASE WHEN p_with_context AND p_with_steps THEN
           json_build_object('execution_context', (SELECT row_to_json(c)
                                                   FROM tasker.get_task_execution_context(t.task_uuid) c),
                             'steps', tasker.api_steps_json(t.task_uuid))
         WHEN p_with_context THEN
           json_build_object('execution_context', (SELECT row_to_json(c)
                                                   FROM tasker.get_task_execution_context(t.task_uuid) c))
         WHEN p_with_steps THEN
           json_build_object('steps', tasker.api_steps_json(t.task_uuid))
    END)
  FROM tasker.tasks t
  JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
  WHERE t.task_uuid = p_task_uuid
$$;

-- tasker.api_list_tasks(namespace, state, name, initiator, source_system, page, per_page): one page
-- of tasks, newest first, each with its execution context (no steps), and the pagination block.
-- NULL filters match everything; name is the template's name. TK400: unknown state, bad page.
CREATE OR REPLACE FUNCTION tasker.api_list_tasks(p_namespace text, p_state text, p_name text,
  p_initiator text, p_source_system text, p_page integer, p_per_page integer)
RETURNS json
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_total bigint;
  v_tasks json;
BEGIN
  PERFORM tasker.api_page_check(p_page, p_per_page);
  IF p_state IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tasker.task_states s WHERE s.state = p_state) THEN
    RAISE EXCEPTION 'unknown task state %', quote_literal(p_state) USING ERRCODE = 'TK400';
  END IF;
  SELECT count(*) INTO v_total
  FROM tasker.tasks t
  JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
  WHERE (p_namespace IS NULL OR t.namespace = p_namespace)
    AND (p_state IS NULL OR t.state = p_state)
    AND (p_name IS NULL OR tt.name = p_name)
    AND (p_initiator IS NULL OR t.initiator = p_initiator)
    AND (p_source_system IS NULL OR t.source_system = p_source_system);
  SELECT coalesce(json_agg(tasker.api_task_json(x.task_uuid, true, false) ORDER BY x.created_at DESC, x.task_uuid DESC),
                  '[]'::json)
  INTO v_tasks
  FROM (SELECT t.task_uuid, t.created_at
        FROM tasker.tasks t
        JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
        WHERE (p_namespace IS NULL OR t.namespace = p_namespace)
          AND (p_state IS NULL OR t.state = p_state)
          AND (p_name IS NULL OR tt.name = p_name)
          AND (p_initiator IS NULL OR t.initiator = p_initiator)
          AND (p_source_system IS NULL OR t.source_system = p_source_system)
        ORDER BY t.created_at DESC, t.task_uuid DESC
        LIMIT p_per_page OFFSET (p_page - 1)::bigint * p_per_page) x;
  RETURN json_build_object('tasks', v_tasks, 'pagination', tasker.api_pagination(p_page, p_per_page, v_total));
END $$;

-- tasker.api_step_audit_json(task_uuid, step_uuid): a step's history — every transition in order,
-- and every result handed back (result-audit rows, each with the result and error object of that
-- attempt, capped as tasker.audit_payload says, and the transition it caused). NULL when
-- the step does not exist or belongs to another task.
CREATE OR REPLACE FUNCTION tasker.api_step_audit_json(p_task_uuid uuid, p_step_uuid uuid) RETURNS json
LANGUAGE sql AS $$
  SELECT json_build_object(
    'workflow_step_uuid', s.workflow_step_uuid,
    'task_uuid', s.task_uuid,
    'name', s.name,
    'state', s.state,
    'transitions', (
      SELECT coalesce(json_agg(json_build_object(
               'workflow_step_transition_uuid', x.workflow_step_transition_uuid,
               'from_state', x.from_state,
               'to_state', x.to_state,
               'event', x.event,
               'attempt', x.attempt,
               'processor', x.processor,
               'metadata', x.metadata,
               'created_at', x.created_at) ORDER BY x.ordinal), '[]'::json)
      FROM tasker.workflow_step_transitions x
      WHERE x.workflow_step_uuid = s.workflow_step_uuid),
    'results', (
      SELECT coalesce(json_agg(json_build_object(
               'workflow_step_result_audit_uuid', a.workflow_step_result_audit_uuid,
               'attempt', a.attempt,
               'worker_id', a.worker_id,
               'success', a.success,
               'execution_time_ms', a.execution_time_ms,
               'result', a.result,
               'error', a.error,
               'recorded_at', a.recorded_at,
               'workflow_step_transition_uuid', a.workflow_step_transition_uuid,
               'to_state', x.to_state,
               'metadata', x.metadata) ORDER BY a.recorded_at, a.attempt), '[]'::json)
      FROM tasker.workflow_step_result_audit a
      -- By the step first: the transitions' key is (step, ordinal); their UUID has no index.
      JOIN tasker.workflow_step_transitions x ON x.workflow_step_uuid = a.workflow_step_uuid
                                             AND x.workflow_step_transition_uuid = a.workflow_step_transition_uuid
      WHERE a.workflow_step_uuid = s.workflow_step_uuid))
  FROM tasker.workflow_steps s
  WHERE s.workflow_step_uuid = p_step_uuid AND s.task_uuid = p_task_uuid
$$;

-- tasker.api_template_summary(task_template_uuid): the list form of a template.
CREATE OR REPLACE FUNCTION tasker.api_template_summary(p_template_uuid uuid) RETURNS json
LANGUAGE sql AS $$
  SELECT json_build_object(
    'task_template_uuid', tt.task_template_uuid,
    'namespace', n.name,
    'name', tt.name,
    'version', tt.version,
    'description', tt.description,
    'identity_strategy', tt.identity_strategy,
    'step_count', (SELECT count(*) FROM tasker.named_steps s WHERE s.task_template_uuid = tt.task_template_uuid),
    'created_at', tt.created_at,
    'updated_at', tt.updated_at)
  FROM tasker.task_templates tt
  JOIN tasker.task_namespaces n ON n.task_namespace_uuid = tt.task_namespace_uuid
  WHERE tt.task_template_uuid = p_template_uuid
$$;

-- tasker.api_list_templates(namespace, page, per_page): one page of templates ordered by namespace,
-- name, version; NULL namespace lists all.
CREATE OR REPLACE FUNCTION tasker.api_list_templates(p_namespace text, p_page integer, p_per_page integer)
RETURNS json
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_total bigint;
  v_items json;
BEGIN
  PERFORM tasker.api_page_check(p_page, p_per_page);
  SELECT count(*) INTO v_total
  FROM tasker.task_templates tt
  JOIN tasker.task_namespaces n ON n.task_namespace_uuid = tt.task_namespace_uuid
  WHERE p_namespace IS NULL OR n.name = p_namespace;
  SELECT coalesce(json_agg(tasker.api_template_summary(x.task_template_uuid) ORDER BY x.ns, x.name, x.version),
                  '[]'::json)
  INTO v_items
  FROM (SELECT tt.task_template_uuid, n.name AS ns, tt.name, tt.version
        FROM tasker.task_templates tt
        JOIN tasker.task_namespaces n ON n.task_namespace_uuid = tt.task_namespace_uuid
        WHERE p_namespace IS NULL OR n.name = p_namespace
        ORDER BY n.name, tt.name, tt.version
        LIMIT p_per_page OFFSET (p_page - 1)::bigint * p_per_page) x;
  RETURN json_build_object('templates', v_items, 'pagination', tasker.api_pagination(p_page, p_per_page, v_total));
END $$;

-- tasker.api_template_json(namespace, name, version): one template — the list fields, its steps as
-- stored (defaults applied), and the definition as registered. NULL when it does not exist.
CREATE OR REPLACE FUNCTION tasker.api_template_json(p_namespace text, p_name text, p_version text) RETURNS json
LANGUAGE sql AS $$
  SELECT tasker.api_json_extend(tasker.api_template_summary(tt.task_template_uuid), json_build_object(
    'steps', (
      SELECT coalesce(json_agg(json_build_object(
               'name', s.name,
               'description', s.description,
               'type', s.step_type,
               'handler', json_strip_nulls(json_build_object('callable', s.handler_callable, 'method', s.handler_method,
                                                             'resolver', s.handler_resolver,
                                                             'initialization', s.handler_initialization)),
               'dependencies', (SELECT coalesce(json_agg(p.name ORDER BY p.position), '[]'::json)
                                FROM tasker.named_step_edges e
                                JOIN tasker.named_steps p ON p.named_step_uuid = e.from_named_step_uuid
                                WHERE e.to_named_step_uuid = s.named_step_uuid AND e.kind = 'declared'),
               -- decision or batchable steps this one also waits for (docs/dynamic-steps.md)
               'gates', (SELECT coalesce(json_agg(p.name ORDER BY p.position), '[]'::json)
                         FROM tasker.named_step_edges e
                         JOIN tasker.named_steps p ON p.named_step_uuid = e.from_named_step_uuid
                         WHERE e.to_named_step_uuid = s.named_step_uuid AND e.kind = 'gate'),
               'created_with_task', s.init_created,
               'batch_config', s.batch_config,
               'retry', json_build_object('retryable', s.retryable, 'max_attempts', s.max_attempts,
                                          'backoff', s.backoff, 'backoff_base_ms', s.backoff_base_ms,
                                          'max_backoff_ms', s.max_backoff_ms),
               'timeout_seconds', s.timeout_seconds) ORDER BY s.position), '[]'::json)
      FROM tasker.named_steps s
      WHERE s.task_template_uuid = tt.task_template_uuid),
    'definition', tt.definition))
  FROM tasker.task_templates tt
  JOIN tasker.task_namespaces n ON n.task_namespace_uuid = tt.task_namespace_uuid
  WHERE n.name = p_namespace AND tt.name = p_name AND tt.version = p_version
$$;

-- tasker.api_dlq_json(dlq_entry_uuid): one DLQ record, with the task's state now.
CREATE OR REPLACE FUNCTION tasker.api_dlq_json(p_dlq_uuid uuid) RETURNS json
LANGUAGE sql AS $$
  SELECT json_build_object(
    'dlq_entry_uuid', d.dlq_entry_uuid,
    'task_uuid', d.task_uuid,
    'namespace', t.namespace,
    'task_state', t.state,
    'original_state', d.original_state,
    'dlq_reason', d.dlq_reason,
    'dlq_timestamp', d.dlq_timestamp,
    'resolution_status', d.resolution_status,
    'resolution_timestamp', d.resolution_timestamp,
    'resolution_notes', d.resolution_notes,
    'resolved_by', d.resolved_by,
    'task_snapshot', d.task_snapshot,
    'metadata', d.metadata,
    'created_at', d.created_at,
    'updated_at', d.updated_at)
  FROM tasker.tasks_dlq d
  JOIN tasker.tasks t ON t.task_uuid = d.task_uuid
  WHERE d.dlq_entry_uuid = p_dlq_uuid
$$;

-- tasker.api_list_dlq(resolution_status, page, per_page): one page of DLQ records, newest first;
-- NULL status lists all. TK400: unknown status, bad page.
CREATE OR REPLACE FUNCTION tasker.api_list_dlq(p_resolution_status text, p_page integer, p_per_page integer)
RETURNS json
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_total bigint;
  v_items json;
BEGIN
  PERFORM tasker.api_page_check(p_page, p_per_page);
  IF p_resolution_status IS NOT NULL
     AND p_resolution_status NOT IN ('pending', 'manually_resolved', 'permanently_failed', 'cancelled') THEN
    RAISE EXCEPTION 'unknown resolution_status %: use pending, manually_resolved, permanently_failed or cancelled',
      quote_literal(p_resolution_status) USING ERRCODE = 'TK400';
  END IF;
  SELECT count(*) INTO v_total FROM tasker.tasks_dlq d
  WHERE p_resolution_status IS NULL OR d.resolution_status = p_resolution_status;
  SELECT coalesce(json_agg(tasker.api_dlq_json(x.dlq_entry_uuid) ORDER BY x.dlq_timestamp DESC, x.dlq_entry_uuid DESC),
                  '[]'::json)
  INTO v_items
  FROM (SELECT d.dlq_entry_uuid, d.dlq_timestamp FROM tasker.tasks_dlq d
        WHERE p_resolution_status IS NULL OR d.resolution_status = p_resolution_status
        ORDER BY d.dlq_timestamp DESC, d.dlq_entry_uuid DESC
        LIMIT p_per_page OFFSET (p_page - 1)::bigint * p_per_page) x;
  RETURN json_build_object('entries', v_items, 'pagination', tasker.api_pagination(p_page, p_per_page, v_total));
END $$;

-- tasker.api_step_list(body, what): body.steps as uuid[] — NULL when absent or null (= every step
-- the operation concerns); TK400 unless it is a non-empty array of UUID strings.
CREATE OR REPLACE FUNCTION tasker.api_step_list(p_body jsonb, p_what text) RETURNS uuid[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  v jsonb := nullif(p_body->'steps', 'null'::jsonb);
BEGIN
  IF v IS NULL THEN
    RETURN NULL;
  END IF;
  IF jsonb_typeof(v) <> 'array' OR jsonb_array_length(v) = 0
     OR EXISTS (SELECT 1 FROM jsonb_array_elements(v) AS x
                WHERE jsonb_typeof(x) <> 'string' OR tasker.uuid_or_null(x #>> '{}') IS NULL) THEN
    RAISE EXCEPTION '%: steps must be a non-empty array of step UUIDs (omit it for every step in error or cancelled)',
      p_what USING ERRCODE = 'TK400';
  END IF;
  RETURN ARRAY(SELECT (x #>> '{}')::uuid FROM jsonb_array_elements(v) AS x);
END $$;

-- tasker.api_recover_task(task_uuid, body jsonb, actor, claimed_operator): POST
-- /v1/tasks/{uuid}/recover. body = {steps?, reason?} (NULL = {}); recover_task's row as a
-- document, with the task as it is now (its execution context, without steps).
CREATE OR REPLACE FUNCTION tasker.api_recover_task(p_task_uuid uuid, p_body jsonb, p_actor text,
  p_claimed_operator text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_body jsonb := coalesce(p_body, '{}'::jsonb);
  r record;
BEGIN
  IF jsonb_typeof(v_body) <> 'object' THEN
    RAISE EXCEPTION 'a recovery request must be a JSON object' USING ERRCODE = 'TK400';
  END IF;
  SELECT * INTO r FROM tasker.recover_task(p_task_uuid, tasker.api_step_list(v_body, 'recover'),
    tasker.json_text(v_body, 'reason', NULL, 'recover'), p_actor, p_claimed_operator);
  RETURN json_build_object(
    'task_uuid', r.task_uuid,
    'previous_state', r.previous_state,
    'state', r.state,
    'steps_recovered', r.steps_recovered,
    'steps_enqueued', r.steps_enqueued,
    'recovered_steps', r.recovered_steps,
    'dlq_entry_uuid', r.dlq_entry_uuid,
    'task', tasker.api_task_json(r.task_uuid, true, false));
END $$;

-- tasker.api_dlq_stats(): GET /v1/dlq/stats — the DLQ at a glance: entries by resolution status,
-- by reason (each with its counts per status and its oldest and newest entry), and the oldest
-- entry still open (pending), with its age; null when none is open.
CREATE OR REPLACE FUNCTION tasker.api_dlq_stats() RETURNS json
LANGUAGE sql AS $$
  SELECT json_build_object(
    'total', c.total,
    'by_status', json_build_object('pending', c.pending, 'manually_resolved', c.manually_resolved,
                                   'permanently_failed', c.permanently_failed, 'cancelled', c.cancelled),
    'by_reason', (SELECT coalesce(json_agg(json_build_object(
                           'dlq_reason', g.dlq_reason,
                           'total', g.total,
                           'pending', g.pending,
                           'manually_resolved', g.manually_resolved,
                           'permanently_failed', g.permanently_failed,
                           'cancelled', g.cancelled,
                           'oldest_entry', g.oldest_entry,
                           'newest_entry', g.newest_entry) ORDER BY g.total DESC, g.dlq_reason), '[]'::json)
                  FROM (SELECT d.dlq_reason, count(*) AS total,
                               count(*) FILTER (WHERE d.resolution_status = 'pending') AS pending,
                               count(*) FILTER (WHERE d.resolution_status = 'manually_resolved') AS manually_resolved,
                               count(*) FILTER (WHERE d.resolution_status = 'permanently_failed') AS permanently_failed,
                               count(*) FILTER (WHERE d.resolution_status = 'cancelled') AS cancelled,
                               min(d.dlq_timestamp) AS oldest_entry, max(d.dlq_timestamp) AS newest_entry
                        FROM tasker.tasks_dlq d GROUP BY d.dlq_reason) g),
    'oldest_open', (SELECT json_build_object(
                             'dlq_entry_uuid', d.dlq_entry_uuid,
                             'task_uuid', d.task_uuid,
                             'dlq_reason', d.dlq_reason,
                             'dlq_timestamp', d.dlq_timestamp,
                             'age_seconds', floor(extract(epoch FROM clock_timestamp() - d.dlq_timestamp))::bigint)
                    FROM tasker.tasks_dlq d
                    WHERE d.resolution_status = 'pending'
                    ORDER BY d.dlq_timestamp, d.dlq_entry_uuid
                    LIMIT 1))
  FROM (SELECT count(*) AS total,
               count(*) FILTER (WHERE d.resolution_status = 'pending') AS pending,
               count(*) FILTER (WHERE d.resolution_status = 'manually_resolved') AS manually_resolved,
               count(*) FILTER (WHERE d.resolution_status = 'permanently_failed') AS permanently_failed,
               count(*) FILTER (WHERE d.resolution_status = 'cancelled') AS cancelled
        FROM tasker.tasks_dlq d) c
$$;

-- tasker.api_update_dlq(dlq_entry_uuid, update jsonb, actor): an operator's notes on an
-- investigation, and optionally the recovery of its task. update = {resolution_status?,
-- resolution_notes?, resolved_by?, metadata?, recover?, steps?}: a new status (any of pending,
-- manually_resolved, permanently_failed, cancelled) stamps resolution_timestamp (cleared again for
-- pending); metadata (an object) is merged into the record's; resolved_by defaults to actor when
-- the status changes. recover: true recovers the task in place first (tasker.recover_task: the
-- steps listed in steps, else every step in error or cancelled; resolution_notes is its reason,
-- resolved_by its claimed operator) and the record becomes manually_resolved (another status with
-- recover is refused). Returns the record, or NULL when it does not exist. TK400 malformed update;
-- TK409 reopening while the task has another open record, or a recovery recover_task refuses.
CREATE OR REPLACE FUNCTION tasker.api_update_dlq(p_dlq_uuid uuid, p_update jsonb, p_actor text DEFAULT NULL)
RETURNS json
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_old record;
  v_status text;
  v_notes text;
  v_by text;
  v_meta jsonb;
  v_recover boolean := false;
  v_steps uuid[];
  v_task uuid;
BEGIN
  IF p_update IS NULL OR jsonb_typeof(p_update) <> 'object' THEN
    RAISE EXCEPTION 'a DLQ update must be a JSON object' USING ERRCODE = 'TK400';
  END IF;
  IF NOT (p_update ?| ARRAY['resolution_status', 'resolution_notes', 'resolved_by', 'metadata', 'recover']) THEN
    RAISE EXCEPTION 'nothing to update: give resolution_status, resolution_notes, resolved_by, metadata or recover'
      USING ERRCODE = 'TK400';
  END IF;
  v_status := tasker.json_text(p_update, 'resolution_status', NULL, 'DLQ update');
  v_notes := tasker.json_text(p_update, 'resolution_notes', NULL, 'DLQ update');
  v_by := tasker.json_text(p_update, 'resolved_by', NULL, 'DLQ update');
  IF v_status IS NOT NULL AND v_status NOT IN ('pending', 'manually_resolved', 'permanently_failed', 'cancelled') THEN
    RAISE EXCEPTION 'DLQ update: resolution_status must be pending, manually_resolved, permanently_failed or '
                    'cancelled (got %)', quote_literal(v_status) USING ERRCODE = 'TK400';
  END IF;
  v_meta := nullif(p_update->'metadata', 'null'::jsonb);
  IF v_meta IS NOT NULL AND jsonb_typeof(v_meta) <> 'object' THEN
    RAISE EXCEPTION 'DLQ update: metadata must be a JSON object' USING ERRCODE = 'TK400';
  END IF;
  IF p_update ? 'recover' AND p_update->'recover' <> 'null'::jsonb THEN
    IF jsonb_typeof(p_update->'recover') <> 'boolean' THEN
      RAISE EXCEPTION 'DLQ update: recover must be true or false' USING ERRCODE = 'TK400';
    END IF;
    v_recover := (p_update->'recover')::text::boolean;
  END IF;
  v_steps := tasker.api_step_list(p_update, 'DLQ update');
  IF v_steps IS NOT NULL AND NOT v_recover THEN
    RAISE EXCEPTION 'DLQ update: steps goes with recover: true' USING ERRCODE = 'TK400';
  END IF;
  IF v_recover AND coalesce(v_status, 'manually_resolved') <> 'manually_resolved' THEN
    RAISE EXCEPTION 'DLQ update: a recovered task''s record becomes manually_resolved (got resolution_status %)',
      quote_literal(v_status) USING ERRCODE = 'TK400';
  END IF;

  IF v_recover THEN
    -- Task lock first, then the record: the sweep's order (it locks the task, then inserts).
    SELECT d.task_uuid INTO v_task FROM tasker.tasks_dlq d WHERE d.dlq_entry_uuid = p_dlq_uuid;
    IF NOT FOUND THEN
      RETURN NULL;
    END IF;
    PERFORM tasker.lock_tasks(ARRAY[v_task]);
  END IF;
  SELECT d.* INTO v_old FROM tasker.tasks_dlq d WHERE d.dlq_entry_uuid = p_dlq_uuid FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF v_recover THEN
    PERFORM tasker.recover_task(v_old.task_uuid, v_steps, v_notes, p_actor, v_by);
    v_status := 'manually_resolved';
    -- recover_task resolved the task's open record (this one, unless it was closed already).
    SELECT d.* INTO v_old FROM tasker.tasks_dlq d WHERE d.dlq_entry_uuid = p_dlq_uuid;
  END IF;
  BEGIN
    UPDATE tasker.tasks_dlq d
    SET resolution_status = coalesce(v_status, d.resolution_status),
        resolution_timestamp = CASE WHEN v_status IS NULL OR v_status = d.resolution_status THEN d.resolution_timestamp
                                    WHEN v_status = 'pending' THEN NULL
                                    ELSE now() END,
        resolution_notes = coalesce(v_notes, d.resolution_notes),
        resolved_by = coalesce(v_by, CASE WHEN v_status IS NOT NULL AND v_status <> d.resolution_status
                                          THEN p_actor END, d.resolved_by),
        metadata = d.metadata || coalesce(v_meta, '{}'::jsonb),
        updated_at = now()
    WHERE d.dlq_entry_uuid = p_dlq_uuid;
  EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'task % already has an open (pending) DLQ record; resolve that one first', v_old.task_uuid
      USING ERRCODE = 'TK409';
  END;
  RETURN tasker.api_dlq_json(p_dlq_uuid);
END $$;
