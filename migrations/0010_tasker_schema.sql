-- 0010_tasker_schema.sql — the tasker schema: templates, tasks, steps, edges, audit, DLQ (DESIGN §3).
--
-- Current state is a column (`state`) on tasks and workflow_steps, changed only by a
-- compare-and-swap UPDATE (… WHERE state = <expected>). Statement-level triggers (sql/0205) check
-- every change against the allowed-transition tables below and append the transition rows, so no
-- code path can change a state without its audit row or along an illegal edge.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

CREATE SCHEMA IF NOT EXISTS tasker;

-- UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, random rest. PostgreSQL 15 has no native
-- generator. We start from a random v4 UUID, overwrite its first 6 bytes with the timestamp and
-- turn the version nibble from 0100 into 0111 (bits 52 and 53 in set_bit's numbering).
CREATE FUNCTION tasker.uuid_generate_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT encode(
           set_bit(set_bit(
             overlay(uuid_send(gen_random_uuid())
                     PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                     FROM 1 FOR 6),
             52, 1), 53, 1),
           'hex')::uuid
$$;

-- ---------------------------------------------------------------------------------------------
-- State machines: the only place the legal edges are listed. from_state NULL = creation.
-- The C enums mirror the state names; a unit test checks they agree with these tables.
CREATE TABLE tasker.task_states (
  state       text PRIMARY KEY,
  is_terminal boolean NOT NULL,
  description text NOT NULL
);

CREATE TABLE tasker.step_states (
  state                  text PRIMARY KEY,
  is_terminal            boolean NOT NULL,
  satisfies_dependencies boolean NOT NULL,
  in_flight              boolean NOT NULL,  -- dispatched or running or awaiting orchestration
  description            text NOT NULL
);

CREATE TABLE tasker.task_state_edges (
  from_state text REFERENCES tasker.task_states,
  to_state   text NOT NULL REFERENCES tasker.task_states,
  event      text NOT NULL,
  UNIQUE NULLS NOT DISTINCT (from_state, to_state)
);

CREATE TABLE tasker.step_state_edges (
  from_state text REFERENCES tasker.step_states,
  to_state   text NOT NULL REFERENCES tasker.step_states,
  event      text NOT NULL,
  UNIQUE NULLS NOT DISTINCT (from_state, to_state)
);

-- ---------------------------------------------------------------------------------------------
-- Templates
CREATE TABLE tasker.task_namespaces (
  task_namespace_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_generate_v7(),
  -- 29 chars at most so that tasker_completion_<name> fits PGMQ's 47-character queue-name limit.
  name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_]{0,28}$'),
  description text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tasker.task_templates (
  task_template_uuid  uuid PRIMARY KEY DEFAULT tasker.uuid_generate_v7(),
  task_namespace_uuid uuid NOT NULL REFERENCES tasker.task_namespaces,
  name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
  version             text NOT NULL CHECK (version ~ '^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$'),
  description         text,
  definition          jsonb NOT NULL,   -- the whole template as registered
  identity_strategy   text NOT NULL DEFAULT 'strict'
                        CHECK (identity_strategy IN ('strict', 'caller_provided', 'always_unique')),
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now(),
  UNIQUE (task_namespace_uuid, name, version)
);

CREATE TABLE tasker.named_steps (
  named_step_uuid        uuid PRIMARY KEY DEFAULT tasker.uuid_generate_v7(),
  task_template_uuid     uuid NOT NULL REFERENCES tasker.task_templates ON DELETE CASCADE,
  name                   text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
  position               integer NOT NULL,          -- order in the template's steps[]
  description            text,
  handler_callable       text NOT NULL CHECK (length(handler_callable) BETWEEN 1 AND 1024),
  handler_initialization jsonb NOT NULL DEFAULT '{}',
  step_type              text NOT NULL DEFAULT 'standard',
  retryable              boolean NOT NULL DEFAULT true,
  max_attempts           integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
  backoff                text NOT NULL DEFAULT 'exponential'
                           CHECK (backoff IN ('none', 'linear', 'exponential', 'fibonacci')),
  backoff_base_ms        integer NOT NULL DEFAULT 1000 CHECK (backoff_base_ms BETWEEN 100 AND 3600000),
  max_backoff_ms         integer NOT NULL DEFAULT 30000 CHECK (max_backoff_ms BETWEEN 1000 AND 3600000),
  timeout_seconds        integer CHECK (timeout_seconds > 0),
  parent_count           integer NOT NULL DEFAULT 0 CHECK (parent_count >= 0),
  UNIQUE (task_template_uuid, name)
);

CREATE TABLE tasker.named_step_edges (
  task_template_uuid   uuid NOT NULL REFERENCES tasker.task_templates ON DELETE CASCADE,
  from_named_step_uuid uuid NOT NULL REFERENCES tasker.named_steps ON DELETE CASCADE,
  to_named_step_uuid   uuid NOT NULL REFERENCES tasker.named_steps ON DELETE CASCADE,
  PRIMARY KEY (from_named_step_uuid, to_named_step_uuid),
  CHECK (from_named_step_uuid <> to_named_step_uuid)
);
CREATE INDEX named_step_edges_template_idx ON tasker.named_step_edges (task_template_uuid);

-- ---------------------------------------------------------------------------------------------
-- Runs
CREATE TABLE tasker.tasks (
  task_uuid             uuid PRIMARY KEY,
  task_template_uuid    uuid NOT NULL REFERENCES tasker.task_templates,
  namespace             text NOT NULL REFERENCES tasker.task_namespaces (name),  -- routing key
  state                 text NOT NULL REFERENCES tasker.task_states,
  state_changed_at      timestamptz NOT NULL DEFAULT now(),
  priority              integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -100 AND 100),
  context               jsonb NOT NULL DEFAULT '{}',
  initiator             text,
  source_system         text,
  reason                text,
  tags                  jsonb NOT NULL DEFAULT '[]',
  identity_hash         text NOT NULL,
  idempotency_key       text,
  correlation_id        uuid NOT NULL,
  parent_correlation_id uuid,
  requested_at          timestamptz NOT NULL DEFAULT now(),
  completed_at          timestamptz,
  last_swept_at         timestamptz,  -- when the sweep last re-evaluated it
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tasks_identity_hash_idx ON tasker.tasks (identity_hash);
CREATE INDEX tasks_template_idx ON tasker.tasks (task_template_uuid);
CREATE INDEX tasks_correlation_idx ON tasker.tasks (correlation_id);
CREATE INDEX tasks_created_idx ON tasker.tasks (created_at);
-- The sweep's candidates: unfinished tasks, least recently looked at first.
CREATE INDEX tasks_unfinished_idx ON tasker.tasks ((coalesce(last_swept_at, state_changed_at)))
  WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');

CREATE TABLE tasker.workflow_steps (
  workflow_step_uuid uuid PRIMARY KEY,
  task_uuid          uuid NOT NULL REFERENCES tasker.tasks,
  named_step_uuid    uuid NOT NULL REFERENCES tasker.named_steps,
  name               text NOT NULL,
  state              text NOT NULL REFERENCES tasker.step_states,
  attempts           integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),  -- runs started since creation or the last reset_for_retry
  max_attempts       integer NOT NULL CHECK (max_attempts >= 1),         -- counts the first
  -- The number of the current (or last) attempt, counting every run ever started and never
  -- reset: the fencing token. Messages, leases, hand-backs and audit rows name an attempt by it,
  -- so a late hand-back from before a reset_for_retry can never pass for the new run.
  attempt_no         integer NOT NULL DEFAULT 0 CHECK (attempt_no >= attempts),
  retryable          boolean NOT NULL,
  -- Parents not yet complete/resolved_manually: the hot-path form of "dependencies satisfied".
  -- get_step_readiness_status() recomputes it from the edges; a test checks both agree.
  unfinished_parents integer NOT NULL CHECK (unfinished_parents >= 0),
  next_retry_at      timestamptz,
  claimed_by         text,           -- worker id of the current/last attempt
  lease_expires_at   timestamptz,
  dispatch_msg_id    bigint,         -- message in tasker_dispatch_<ns> for the current attempt
  inputs             jsonb,
  results            jsonb,
  error              jsonb,
  retry_after_secs   integer,        -- the worker's hint with its last failure
  last_execution_ms  bigint,
  last_attempted_at  timestamptz,
  completed_at       timestamptz,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflow_steps_task_idx ON tasker.workflow_steps (task_uuid);
-- Poller: retries whose backoff passes, and ready steps that were never dispatched.
CREATE INDEX workflow_steps_retry_idx ON tasker.workflow_steps (next_retry_at)
  WHERE state = 'waiting_for_retry';
CREATE INDEX workflow_steps_pending_ready_idx ON tasker.workflow_steps (task_uuid)
  WHERE state = 'pending' AND unfinished_parents = 0;
-- Sweep: expired leases and dispatched steps whose message may be gone.
CREATE INDEX workflow_steps_lease_idx ON tasker.workflow_steps (lease_expires_at)
  WHERE state = 'in_progress';
CREATE INDEX workflow_steps_enqueued_idx ON tasker.workflow_steps (updated_at)
  WHERE state = 'enqueued';

CREATE TABLE tasker.workflow_step_edges (
  from_step_uuid uuid NOT NULL REFERENCES tasker.workflow_steps,  -- parent
  to_step_uuid   uuid NOT NULL REFERENCES tasker.workflow_steps,  -- child
  task_uuid      uuid NOT NULL REFERENCES tasker.tasks,
  PRIMARY KEY (from_step_uuid, to_step_uuid),
  CHECK (from_step_uuid <> to_step_uuid)
);
CREATE INDEX workflow_step_edges_child_idx ON tasker.workflow_step_edges (to_step_uuid);

-- ---------------------------------------------------------------------------------------------
-- Audit (append-only; written by the triggers in sql/0205, never by hand)
CREATE TABLE tasker.task_transitions (
  task_transition_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_generate_v7(),
  task_uuid            uuid NOT NULL REFERENCES tasker.tasks,
  from_state           text,
  to_state             text NOT NULL,
  event                text NOT NULL,
  metadata             jsonb NOT NULL DEFAULT '{}',
  processor            text,   -- who: daemon/processor id, operator, or database role
  ordinal              bigint GENERATED ALWAYS AS IDENTITY,  -- global order of transitions
  created_at           timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (from_state, to_state) REFERENCES tasker.task_state_edges (from_state, to_state)
);
CREATE INDEX task_transitions_task_idx ON tasker.task_transitions (task_uuid, ordinal);

CREATE TABLE tasker.workflow_step_transitions (
  workflow_step_transition_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_generate_v7(),
  workflow_step_uuid            uuid NOT NULL REFERENCES tasker.workflow_steps,
  task_uuid                     uuid NOT NULL,
  from_state                    text,
  to_state                      text NOT NULL,
  event                         text NOT NULL,
  attempt                       integer NOT NULL,
  metadata                      jsonb NOT NULL DEFAULT '{}',
  processor                     text,   -- who: worker id for worker-driven edges, else processor
  ordinal                       bigint GENERATED ALWAYS AS IDENTITY,
  created_at                    timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (from_state, to_state) REFERENCES tasker.step_state_edges (from_state, to_state)
);
CREATE INDEX workflow_step_transitions_step_idx ON tasker.workflow_step_transitions (workflow_step_uuid, ordinal);

CREATE TABLE tasker.workflow_step_result_audit (
  workflow_step_result_audit_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_generate_v7(),
  workflow_step_uuid              uuid NOT NULL REFERENCES tasker.workflow_steps,
  workflow_step_transition_uuid   uuid NOT NULL REFERENCES tasker.workflow_step_transitions,
  task_uuid                       uuid NOT NULL,
  attempt                         integer NOT NULL,
  worker_id                       text,
  success                         boolean NOT NULL,
  execution_time_ms               bigint,
  recorded_at                     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (workflow_step_uuid, attempt)
);

-- ---------------------------------------------------------------------------------------------
-- Dead-letter investigations: the task stays in tasks (usually in error); this tracks the case.
CREATE TABLE tasker.tasks_dlq (
  dlq_entry_uuid       uuid PRIMARY KEY DEFAULT tasker.uuid_generate_v7(),
  task_uuid            uuid NOT NULL REFERENCES tasker.tasks,
  original_state       text NOT NULL,
  dlq_reason           text NOT NULL CHECK (dlq_reason IN ('staleness_timeout', 'blocked_timeout',
                         'max_retries_exceeded', 'dependency_cycle_detected', 'worker_unavailable', 'manual_dlq')),
  dlq_timestamp        timestamptz NOT NULL DEFAULT now(),
  resolution_status    text NOT NULL DEFAULT 'pending' CHECK (resolution_status IN
                         ('pending', 'manually_resolved', 'permanently_failed', 'cancelled')),
  resolution_timestamp timestamptz,
  resolution_notes     text,
  resolved_by          text,
  task_snapshot        jsonb NOT NULL,
  metadata             jsonb NOT NULL DEFAULT '{}',
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tasks_dlq_one_open_idx ON tasker.tasks_dlq (task_uuid) WHERE resolution_status = 'pending';
CREATE INDEX tasks_dlq_status_idx ON tasker.tasks_dlq (resolution_status, dlq_timestamp);

-- Queue messages we could not act on (malformed, unknown step): archived, and recorded here.
CREATE TABLE tasker.rejected_messages (
  rejected_message_uuid uuid PRIMARY KEY DEFAULT tasker.uuid_generate_v7(),
  queue_name            text NOT NULL,
  msg_id                bigint NOT NULL,
  message               jsonb,
  reason                text NOT NULL,
  rejected_at           timestamptz NOT NULL DEFAULT now()
);
