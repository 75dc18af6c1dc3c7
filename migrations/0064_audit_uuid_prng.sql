-- 0064_audit_uuid_prng.sql — cheaper UUIDv7s for the audit rows (issue 14, round three).
--
-- tasker.uuid_generate_v7() takes its random bits from gen_random_uuid(), i.e. from OpenSSL's
-- strong random source: about 3 µs a call on the 2-core machine, 4–5 µs with the byte surgery,
-- and a step writes about six audit rows (its transitions, its result audit, its share of the
-- task's transitions). The audit rows' UUIDs are names for the API to show, not secrets and
-- since migration 0063 not keys; PostgreSQL's per-session PRNG (random(), seeded from the strong
-- source when the session starts) is random enough for them at a third of the cost. Tasks, steps
-- and everything else keep the strong generator.
-- Layout as RFC 9562: 48 bits of Unix milliseconds, version 7, 12 random bits, variant 10,
-- 62 random bits.
-- Forward-only: never edit this file once it has landed; add a new migration instead.

CREATE FUNCTION tasker.uuid_generate_v7_prng() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
  SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
          || '7' || lpad(to_hex(floor(random() * 4096)::integer), 3, '0')
          || to_hex(8 + floor(random() * 4)::integer) || lpad(to_hex(floor(random() * 4096)::integer), 3, '0')
          || lpad(to_hex(floor(random() * 281474976710656)::bigint), 12, '0'))::uuid
$$;

ALTER TABLE tasker.workflow_step_transitions
  ALTER COLUMN workflow_step_transition_uuid SET DEFAULT tasker.uuid_generate_v7_prng();
ALTER TABLE tasker.task_transitions
  ALTER COLUMN task_transition_uuid SET DEFAULT tasker.uuid_generate_v7_prng();
ALTER TABLE tasker.workflow_step_result_audit
  ALTER COLUMN workflow_step_result_audit_uuid SET DEFAULT tasker.uuid_generate_v7_prng();
