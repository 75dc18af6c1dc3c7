-- 0270_tasker_rabbitmq.sql — messaging.backend = rabbitmq (issue 12): the dispatch relay's two
-- statements (read a batch of the PGMQ outbox, archive what the broker confirmed), the worker's
-- claim of steps whose dispatch messages came from RabbitMQ, the daemon's processing of completion
-- pointers consumed from RabbitMQ, and the sweep's recovery of hand-backs whose pointer was lost.
-- The dispatch queue tasker_dispatch_<ns> is the outbox (docs/architecture.md, "RabbitMQ").

-- tasker.relay_read_dispatch(vt, qty): up to qty visible messages of each namespace's dispatch
-- queue, oldest first, each made invisible for vt seconds (PGMQ's read: skip-locked, read_ct + 1),
-- so two daemons' relays split the work and a message whose confirm never came is read again once
-- its vt has passed. read_ct > 1 means the message was read before: a re-publish.
CREATE OR REPLACE FUNCTION tasker.relay_read_dispatch(p_vt integer, p_qty integer)
RETURNS TABLE (namespace text, msg_id bigint, read_ct integer, message jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  v_ns text;
BEGIN
  IF p_qty IS NULL OR p_qty NOT BETWEEN 1 AND 10000 OR p_vt IS NULL OR p_vt NOT BETWEEN 1 AND 86400 THEN
    RAISE EXCEPTION 'relay_read_dispatch: qty 1..10000 and vt 1..86400 (got %, %)', p_qty, p_vt USING ERRCODE = 'TK400';
  END IF;
  FOR v_ns IN SELECT n.name FROM tasker.task_namespaces n ORDER BY n.name LOOP
    RETURN QUERY EXECUTE format($q$
      WITH picked AS (
        SELECT q.msg_id FROM pgmq.%1$I q
        WHERE q.vt <= clock_timestamp()
        ORDER BY q.msg_id LIMIT $2
        FOR UPDATE SKIP LOCKED
      )
      UPDATE pgmq.%1$I m
      SET vt = clock_timestamp() + make_interval(secs => $1), read_ct = m.read_ct + 1
      WHERE m.msg_id = ANY (ARRAY(SELECT picked.msg_id FROM picked))
      RETURNING $3::text, m.msg_id, m.read_ct, m.message $q$, 'q_' || tasker.dispatch_queue(v_ns))
      USING p_vt, p_qty, v_ns;
  END LOOP;
END $$;

-- tasker.relay_archive_dispatch(namespaces, msg_ids): archive the messages the broker confirmed
-- (pairs namespaces[i], msg_ids[i]), as PGMQ mode's hand-back does: one statement per batch.
-- Returns how many were still there (a worker's claim may have archived one first).
CREATE OR REPLACE FUNCTION tasker.relay_archive_dispatch(p_namespaces text[], p_msg_ids bigint[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  r record;
  v_n integer := 0;
BEGIN
  FOR r IN
    SELECT u.ns, array_agg(u.id) AS ids FROM unnest(p_namespaces, p_msg_ids) AS u(ns, id)
    WHERE u.ns IN (SELECT n.name FROM tasker.task_namespaces n)
    GROUP BY u.ns
  LOOP
    v_n := v_n + tasker.archive_messages(tasker.dispatch_queue(r.ns), r.ids);
  END LOOP;
  RETURN v_n;
END $$;

-- tasker.delivery_arrays(deliveries): a JSON array of RabbitMQ deliveries, {"msg_id": <a number
-- naming the message, or 0>, "message": <the body: JSON, or a string when it was not JSON>} each,
-- as the parallel arrays the PGMQ paths read from a queue (NULLs when the array is empty).
CREATE OR REPLACE FUNCTION tasker.delivery_arrays(p_deliveries jsonb, OUT ids bigint[], OUT msgs jsonb[])
LANGUAGE sql IMMUTABLE AS $$
  SELECT array_agg(coalesce(CASE WHEN jsonb_typeof(d->'msg_id') = 'number' AND (d->>'msg_id') ~ '^[0-9]{1,18}$'
                                 THEN (d->>'msg_id')::bigint END, 0) ORDER BY n),
         array_agg(coalesce(d->'message', 'null'::jsonb) ORDER BY n)
  FROM jsonb_array_elements(p_deliveries) WITH ORDINALITY AS e(d, n)
$$;

-- tasker.check_deliveries(deliveries, max): TK400 unless deliveries is a JSON array of at most max
-- entries (the one check of both RabbitMQ entry points that take deliveries).
CREATE OR REPLACE FUNCTION tasker.check_deliveries(p_deliveries jsonb, p_max integer) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF p_deliveries IS NULL OR jsonb_typeof(p_deliveries) <> 'array' OR jsonb_array_length(p_deliveries) > p_max THEN
    RAISE EXCEPTION 'deliveries must be a JSON array of at most % entries', p_max USING ERRCODE = 'TK400';
  END IF;
END $$;

-- tasker.claim_dispatched_steps(namespace, deliveries, lease_secs, worker_id): the claim of
-- tasker_claim_and_execute_step for dispatch messages a worker received from RabbitMQ.
-- deliveries is a JSON array of {"msg_id": <the PGMQ msg_id the relay published it under, or 0>,
-- "message": <the body: the step message, or a string when it was not JSON>}. Fencing, returned
-- rows and the record of malformed messages are those of tasker.claim_messages.
CREATE OR REPLACE FUNCTION tasker.claim_dispatched_steps(p_namespace text, p_deliveries jsonb,
  p_lease_secs integer DEFAULT 30, p_worker_id text DEFAULT NULL)
RETURNS TABLE (msg_id bigint, task_uuid uuid, workflow_step_uuid uuid, attempt integer, step_name text,
  handler_callable text, handler_initialization jsonb, inputs jsonb, task_context jsonb,
  dependency_results jsonb, timeout_seconds integer, lease_expires_at timestamptz,
  correlation_id uuid, namespace text, task_name text,
  handler_method text, handler_resolver text, step_type text, checkpoint jsonb)
LANGUAGE plpgsql AS $$
DECLARE
  v_ids bigint[];
  v_msgs jsonb[];
BEGIN
  PERFORM tasker.check_namespace(p_namespace);
  PERFORM tasker.check_deliveries(p_deliveries, 1000);
  IF p_lease_secs IS NULL OR p_lease_secs NOT BETWEEN 1 AND 86400 THEN
    RAISE EXCEPTION 'lease_secs must be between 1 and 86400 (got %)', p_lease_secs USING ERRCODE = 'TK400';
  END IF;
  SELECT d.ids, d.msgs INTO v_ids, v_msgs FROM tasker.delivery_arrays(p_deliveries) d;
  IF v_ids IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY SELECT * FROM tasker.claim_messages(p_namespace, v_ids, v_msgs, p_lease_secs,
                                                   coalesce(nullif(p_worker_id, ''), 'worker-' || pg_backend_pid()));
END $$;

-- tasker.process_completion_pointers(namespace, deliveries): the completion pointers the daemon
-- consumed from RabbitMQ's tasker_completion_<namespace>, {"msg_id": <delivery tag>, "message":
-- <the pointer {"step_uuid", "attempt"}, or a string when it was not JSON>} each (tasker.delivery_arrays),
-- processed in one transaction by tasker.apply_completions: the same compare-and-swap, audit rows
-- and dispatch of children as tasker.process_completions. The daemon acks the deliveries once this
-- committed. A duplicate or stale pointer changes nothing (counted in `stale`); a malformed one is
-- recorded in tasker.rejected_messages (queue tasker_completion_<namespace>, msg_id = delivery tag).
CREATE OR REPLACE FUNCTION tasker.process_completion_pointers(p_namespace text, p_deliveries jsonb)
RETURNS TABLE (messages integer, steps_completed integer, steps_retrying integer, steps_failed integer,
  stale integer, rejected integer, steps_enqueued integer, tasks_completed integer, tasks_blocked integer,
  rejected_details jsonb, handback_latency_ms integer[])
LANGUAGE plpgsql AS $$
DECLARE
  v_ids bigint[];
  v_msgs jsonb[];
BEGIN
  PERFORM tasker.check_namespace(p_namespace);
  PERFORM tasker.check_deliveries(p_deliveries, 10000);
  SELECT d.ids, d.msgs INTO v_ids, v_msgs FROM tasker.delivery_arrays(p_deliveries) d;
  RETURN QUERY SELECT * FROM tasker.apply_completions(tasker.completion_queue(p_namespace), v_ids, v_msgs);
END $$;

-- tasker.recover_handed_back_steps(grace_secs, limit): hand-backs whose completion pointer never
-- reached the daemon (the worker died between its commit and its publish, or the broker lost the
-- message): up to `limit` steps that have waited in enqueued_for_orchestration or
-- enqueued_as_error_for_orchestration longer than grace_secs, oldest first, processed by
-- tasker.apply_completions exactly as their pointers would have been. PostgreSQL's state is the
-- truth; the pointer only makes it fast. A pointer that arrives later is stale and changes nothing.
-- Reads workflow_steps_handed_back_idx (migration 0062): a bounded range, whatever the table size.
CREATE OR REPLACE FUNCTION tasker.recover_handed_back_steps(p_grace_secs integer, p_limit integer DEFAULT 100)
RETURNS TABLE (messages integer, steps_completed integer, steps_retrying integer, steps_failed integer,
  stale integer, rejected integer, steps_enqueued integer, tasks_completed integer, tasks_blocked integer,
  rejected_details jsonb, handback_latency_ms integer[])
LANGUAGE plpgsql AS $$
DECLARE
  v_msgs jsonb[];
BEGIN
  IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 10000 OR p_grace_secs IS NULL OR p_grace_secs < 0 THEN
    RAISE EXCEPTION 'recover_handed_back_steps: grace_secs >= 0 and limit 1..10000 (got %, %)', p_grace_secs, p_limit
      USING ERRCODE = 'TK400';
  END IF;
  SELECT array_agg(jsonb_build_object('step_uuid', h.workflow_step_uuid, 'attempt', h.attempt_no) ORDER BY h.updated_at)
  INTO v_msgs
  FROM (SELECT s.workflow_step_uuid, s.attempt_no, s.updated_at
        FROM tasker.workflow_steps s
        WHERE s.state IN ('enqueued_for_orchestration', 'enqueued_as_error_for_orchestration')
          AND s.updated_at < now() - make_interval(secs => p_grace_secs)
        ORDER BY s.updated_at
        LIMIT p_limit) h;
  RETURN QUERY SELECT * FROM tasker.apply_completions('recover_handed_back_steps',
    ARRAY(SELECT i::bigint FROM generate_series(1, coalesce(cardinality(v_msgs), 0)) AS i), v_msgs);
END $$;
