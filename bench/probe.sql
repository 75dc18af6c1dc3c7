-- bench/probe.sql — the ceiling probe's set-up: DESIGN §11's minimal correct pipeline, against which
-- bench/run measures the daemon's steps/s. Per step exactly one compare-and-swap of a state column,
-- one audit row and one queue message (PGMQ's tables: inserted, read, deleted and archived); no
-- daemon, no worker, no DAG beyond a chain. psql variable tasks: how many 4-step chains to create.
-- Run in a migrated database of its own (pgmq.create makes the queue with our PGMQ layout).
-- Clients then each run `CALL bench_probe.drain(batch, 'name')` until the queue is empty.
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench_probe CASCADE;
CREATE SCHEMA bench_probe;
SELECT pgmq.create('bench_probe');

-- A step: uuid key like ours, a state column and an index a chain is walked by.
CREATE TABLE bench_probe.steps (
  step_uuid  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  task_id    integer NOT NULL,
  seq        integer NOT NULL,
  state      text NOT NULL DEFAULT 'pending',
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (task_id, seq)
);
-- The audit row: who moved which step from what to what, and when (a primary key and an index by step).
CREATE TABLE bench_probe.audit (
  audit_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  step_uuid  uuid NOT NULL,
  from_state text NOT NULL,
  to_state   text NOT NULL,
  processor  text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_step_idx ON bench_probe.audit (step_uuid);

INSERT INTO bench_probe.steps (task_id, seq) SELECT t, s FROM generate_series(1, :tasks) t, generate_series(1, 4) s;
-- The backlog: every chain's first step has its message.
INSERT INTO pgmq.q_bench_probe (vt, message)
SELECT clock_timestamp(), jsonb_build_object('step_uuid', step_uuid, 'task_id', task_id)
FROM bench_probe.steps WHERE seq = 1 ORDER BY task_id;

-- One round per transaction, committed durably: read a batch (skip-locked, invisible for 30 s, as
-- PGMQ's read), compare-and-swap each step pending → complete, one audit row each, archive the
-- batch's messages and send the next step's message of each chain. Runs until the queue is empty;
-- a round that finds every message taken by another client waits 2 ms and looks again.
-- (Static SQL: plans are cached per session. The clients set plan_cache_mode and random_page_cost
-- as our hot functions do.)
CREATE PROCEDURE bench_probe.drain(p_batch integer, p_processor text)
LANGUAGE plpgsql AS $$
DECLARE
  v_ids bigint[];
  v_steps uuid[];
BEGIN
  LOOP
    WITH picked AS (
      SELECT q.msg_id FROM pgmq.q_bench_probe q
      WHERE q.vt <= clock_timestamp() ORDER BY q.msg_id LIMIT p_batch FOR UPDATE SKIP LOCKED
    ), upd AS (
      UPDATE pgmq.q_bench_probe m SET vt = clock_timestamp() + interval '30 seconds', read_ct = m.read_ct + 1
      WHERE m.msg_id = ANY (ARRAY(SELECT picked.msg_id FROM picked))
      RETURNING m.msg_id, (m.message->>'step_uuid')::uuid AS step_uuid
    )
    SELECT array_agg(upd.msg_id), array_agg(upd.step_uuid) INTO v_ids, v_steps FROM upd;
    IF v_ids IS NULL THEN
      EXIT WHEN NOT EXISTS (SELECT 1 FROM pgmq.q_bench_probe);
      PERFORM pg_sleep(0.002);
      COMMIT;
      CONTINUE;
    END IF;
    WITH done AS (
      UPDATE bench_probe.steps s SET state = 'complete', updated_at = now()
      WHERE s.step_uuid = ANY (v_steps) AND s.state = 'pending'
      RETURNING s.step_uuid, s.task_id, s.seq
    ), audited AS (
      INSERT INTO bench_probe.audit (step_uuid, from_state, to_state, processor)
      SELECT done.step_uuid, 'pending', 'complete', p_processor FROM done
    ), gone AS (
      DELETE FROM pgmq.q_bench_probe m WHERE m.msg_id = ANY (v_ids)
      RETURNING m.msg_id, m.read_ct, m.enqueued_at, m.vt, m.message, m.headers
    ), archived AS (
      INSERT INTO pgmq.a_bench_probe (msg_id, read_ct, enqueued_at, vt, message, headers)
      SELECT gone.msg_id, gone.read_ct, gone.enqueued_at, gone.vt, gone.message, gone.headers FROM gone
    )
    INSERT INTO pgmq.q_bench_probe (vt, message)
    SELECT clock_timestamp(), jsonb_build_object('step_uuid', n.step_uuid, 'task_id', n.task_id)
    FROM done JOIN bench_probe.steps n ON n.task_id = done.task_id AND n.seq = done.seq + 1;
    COMMIT;
  END LOOP;
END $$;
ANALYZE;
