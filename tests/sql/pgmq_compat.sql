-- pgmq_compat.sql — pgTAP tests of our PGMQ-1.5-compatible schema `pgmq`
-- (migrations/0002_pgmq_compat_schema.sql + sql/0100_pgmq_compat.sql).
--
-- Runs inside one transaction that is rolled back. Inside a transaction now() is frozen at its
-- start while clock_timestamp() moves on: enqueued_at/archived_at/scrape_time and metrics'
-- visibility use now(), vt and read visibility use clock_timestamp(). The tests rely on that (a
-- message sent here with no delay is readable at once but not "visible" to metrics()), and use
-- delay => <timestamp in the past> where they need a message visible to both.
-- Cross-session behaviour (skip-locked, NOTICE/WARNING texts, a real client) is tested by
-- tests/db/30_pgmq_js.sh.
-- If the real pgmq extension is installed instead of our schema, the file is skipped (psql \if).

BEGIN;
SET LOCAL client_min_messages = error;  -- NOTICE/WARNING texts are checked by tests/db/30_pgmq_js.sh

-- Our schema is installed only when the real extension is not (migrations 0001/0002).
SELECT NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pgmq') AS pgmq_compat \gset
\if :pgmq_compat
SELECT plan(171);

-- Times used to bracket vt values.
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS at;
CREATE FUNCTION pg_temp.cols(rel regclass) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                     || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END ORDER BY a.attnum)
    FROM pg_attribute a WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$$;
CREATE FUNCTION pg_temp.type_cols(typ regtype) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
    FROM pg_type t JOIN pg_attribute a ON a.attrelid = t.typrelid
    WHERE t.oid = typ AND a.attnum > 0 AND NOT a.attisdropped
$$;
CREATE FUNCTION pg_temp.indexes(tbl text) RETURNS text[] LANGUAGE sql AS $$
    SELECT array_agg(indexdef ORDER BY indexname) FROM pg_indexes
    WHERE schemaname = 'pgmq' AND tablename = tbl
$$;

-- ============================================================================================
-- 1. Schema objects: types, meta, function signatures, grants
-- ============================================================================================
SELECT has_schema('pgmq');
SELECT is(pg_temp.cols('pgmq.meta'),
          ARRAY['queue_name character varying not null', 'is_partitioned boolean not null',
                'is_unlogged boolean not null', 'created_at timestamp with time zone not null'],
          'pgmq.meta columns, types and order');
SELECT is(pg_temp.indexes('meta'),
          ARRAY['CREATE UNIQUE INDEX meta_queue_name_key ON pgmq.meta USING btree (queue_name)'],
          'pgmq.meta has a unique queue_name');
SELECT col_default_is('pgmq', 'meta', 'created_at', 'now()', 'meta.created_at defaults to now()');
SELECT is(pg_temp.type_cols('pgmq.message_record'),
          ARRAY['msg_id bigint', 'read_ct integer', 'enqueued_at timestamp with time zone',
                'vt timestamp with time zone', 'message jsonb', 'headers jsonb'],
          'message_record: PGMQ 1.5 column order (headers last, no last_read_at)');
SELECT is(pg_temp.type_cols('pgmq.queue_record'),
          ARRAY['queue_name character varying', 'is_partitioned boolean', 'is_unlogged boolean',
                'created_at timestamp with time zone'],
          'queue_record column order');
SELECT is(pg_temp.type_cols('pgmq.metrics_result'),
          ARRAY['queue_name text', 'queue_length bigint', 'newest_msg_age_sec integer',
                'oldest_msg_age_sec integer', 'total_messages bigint',
                'scrape_time timestamp with time zone', 'queue_visible_length bigint'],
          'metrics_result column order (queue_visible_length last)');

-- The public API: names, parameter names, defaults, return types, overload sets. Nothing more:
-- an extra read or set_vt overload would break pgmq-js's untyped calls.
SELECT set_eq(
    $$SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') -> ' || pg_get_function_result(p.oid)
      FROM pg_proc p WHERE p.pronamespace = 'pgmq'::regnamespace AND p.proname !~ '^_'$$,
    ARRAY[
      'acquire_queue_lock(queue_name text) -> void',
      'archive(queue_name text, msg_id bigint) -> boolean',
      'archive(queue_name text, msg_ids bigint[]) -> SETOF bigint',
      'convert_archive_partitioned(table_name text, partition_interval text DEFAULT ''10000''::text, retention_interval text DEFAULT ''100000''::text, leading_partition integer DEFAULT 10) -> void',
      'create(queue_name text) -> void',
      'create_non_partitioned(queue_name text) -> void',
      'create_partitioned(queue_name text, partition_interval text DEFAULT ''10000''::text, retention_interval text DEFAULT ''100000''::text) -> void',
      'create_unlogged(queue_name text) -> void',
      'delete(queue_name text, msg_id bigint) -> boolean',
      'delete(queue_name text, msg_ids bigint[]) -> SETOF bigint',
      'detach_archive(queue_name text) -> void',
      'drop_queue(queue_name text) -> boolean',
      'drop_queue(queue_name text, partitioned boolean) -> boolean',
      'format_table_name(queue_name text, prefix text) -> text',
      'list_queues() -> SETOF pgmq.queue_record',
      'metrics(queue_name text) -> pgmq.metrics_result',
      'metrics_all() -> SETOF pgmq.metrics_result',
      'pop(queue_name text) -> SETOF pgmq.message_record',
      'purge_queue(queue_name text) -> bigint',
      'read(queue_name text, vt integer, qty integer, conditional jsonb DEFAULT ''{}''::jsonb) -> SETOF pgmq.message_record',
      'read_with_poll(queue_name text, vt integer, qty integer, max_poll_seconds integer DEFAULT 5, poll_interval_ms integer DEFAULT 100, conditional jsonb DEFAULT ''{}''::jsonb) -> SETOF pgmq.message_record',
      'send(queue_name text, msg jsonb) -> SETOF bigint',
      'send(queue_name text, msg jsonb, delay integer) -> SETOF bigint',
      'send(queue_name text, msg jsonb, delay timestamp with time zone) -> SETOF bigint',
      'send(queue_name text, msg jsonb, headers jsonb) -> SETOF bigint',
      'send(queue_name text, msg jsonb, headers jsonb, delay integer) -> SETOF bigint',
      'send(queue_name text, msg jsonb, headers jsonb, delay timestamp with time zone) -> SETOF bigint',
      'send_batch(queue_name text, msgs jsonb[]) -> SETOF bigint',
      'send_batch(queue_name text, msgs jsonb[], delay integer) -> SETOF bigint',
      'send_batch(queue_name text, msgs jsonb[], delay timestamp with time zone) -> SETOF bigint',
      'send_batch(queue_name text, msgs jsonb[], headers jsonb[]) -> SETOF bigint',
      'send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer) -> SETOF bigint',
      'send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamp with time zone) -> SETOF bigint',
      'set_vt(queue_name text, msg_id bigint, vt integer) -> SETOF pgmq.message_record',
      'validate_queue_name(queue_name text) -> void'
    ],
    'public pgmq functions: exactly the PGMQ 1.5 signatures');

-- pgmq-js 1.3.1 sends these with untyped ($n of type unknown) parameters: each must resolve to
-- exactly one function.
PREPARE pj_read AS SELECT * FROM pgmq.read($1, $2, $3);
PREPARE pj_set_vt AS SELECT * FROM pgmq.set_vt($1, $2, $3);
PREPARE pj_pop AS SELECT * FROM pgmq.pop($1);
PREPARE pj_send AS SELECT * FROM pgmq.send($1::text, $2::jsonb, $3::integer);
PREPARE pj_send_batch AS SELECT * FROM pgmq.send_batch($1::text, $2::jsonb[], $3::integer);
PREPARE pj_archive AS SELECT pgmq.archive($1, $2::bigint);
PREPARE pj_archive_b AS SELECT pgmq.archive($1, $2::bigint[]);
PREPARE pj_delete AS SELECT pgmq.delete($1, $2::bigint);
PREPARE pj_delete_b AS SELECT pgmq.delete($1, $2::bigint[]);
PREPARE pj_misc AS SELECT pgmq.create($1), pgmq.create_unlogged($1), pgmq.drop_queue($1),
                          pgmq.purge_queue($1), pgmq.detach_archive($1);
PREPARE pj_metrics AS SELECT * FROM pgmq.metrics($1);
SELECT set_eq(
    $$SELECT name || ' ' || parameter_types::text FROM pg_prepared_statements WHERE name LIKE 'pj\_%'$$,
    ARRAY['pj_read {text,integer,integer}', 'pj_set_vt {text,bigint,integer}', 'pj_pop {text}',
          'pj_send {text,jsonb,integer}', 'pj_send_batch {text,jsonb[],integer}',
          'pj_archive {text,bigint}', 'pj_archive_b {text,bigint[]}',
          'pj_delete {text,bigint}', 'pj_delete_b {text,bigint[]}', 'pj_misc {text}',
          'pj_metrics {text}'],
    'pgmq-js 1.3.1 statements with untyped parameters resolve to one function each');
DEALLOCATE ALL;

SELECT ok(has_schema_privilege('pg_monitor', 'pgmq', 'USAGE'), 'pg_monitor may use schema pgmq');
SELECT ok(has_table_privilege('pg_monitor', 'pgmq.meta', 'SELECT'), 'pg_monitor may read pgmq.meta');

-- ============================================================================================
-- 2. Names: format_table_name, validate_queue_name
-- ============================================================================================
SELECT is(pgmq.format_table_name('MyQueue', 'q'), 'q_myqueue', 'format_table_name lowercases prefix_name');
SELECT is(pgmq.format_table_name(queue_name => 'a-b.c d', prefix => 'a'), 'a_a-b.c d',
          'format_table_name allows single hyphens, dots and spaces (named notation)');
SELECT throws_ok($$SELECT pgmq.format_table_name('a$b', 'q')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'format_table_name rejects $');
SELECT throws_ok($$SELECT pgmq.format_table_name('a;b', 'q')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'format_table_name rejects ;');
SELECT throws_ok($$SELECT pgmq.format_table_name('a--b', 'q')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'format_table_name rejects --');
SELECT throws_ok($$SELECT pgmq.format_table_name('a''b', 'q')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'format_table_name rejects a quote');
SELECT throws_ok($$SELECT pgmq.delete('abc where false; create table pgmq_injected (a int); --', 1::bigint)$$,
                 'P0001', 'queue name contains invalid characters: $, ;, --, or \''',
                 'an injection attempt through delete() is refused');
SELECT throws_ok($$SELECT * FROM pgmq.send('x''); DROP TABLE pgmq.meta; --', '{}'::jsonb)$$,
                 'P0001', 'queue name contains invalid characters: $, ;, --, or \''',
                 'an injection attempt through send() is refused');
SELECT throws_ok($$SELECT pgmq.create('q$1')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'create() refuses invalid characters');
SELECT hasnt_table('public', 'pgmq_injected', 'no injected table appeared');
SELECT has_table('pgmq', 'meta', 'pgmq.meta survived');
SELECT lives_ok($$SELECT pgmq.validate_queue_name(repeat('a', 47))$$, 'a 47-character name is valid');
SELECT throws_ok($$SELECT pgmq.validate_queue_name(repeat('a', 48))$$, 'P0001',
                 'queue name is too long, maximum length is 48 characters', 'a 48-character name is too long');
SELECT throws_ok($$SELECT pgmq.create(repeat('b', 48))$$, 'P0001',
                 'queue name is too long, maximum length is 48 characters', 'create() refuses a 48-character name');
SELECT throws_ok($$SELECT pgmq.create(repeat('é', 24))$$, 'P0001',
                 'queue name is too long, maximum length is 48 characters',
                 'create() refuses a name of more than 47 bytes (24 two-byte characters)');

-- ============================================================================================
-- 3. create / create_non_partitioned / create_unlogged / create_partitioned: layout
-- ============================================================================================
SELECT lives_ok($$SELECT pgmq.create(queue_name => 'tq')$$, 'create(queue_name => tq)');
SELECT is(pg_temp.cols('pgmq.q_tq'),
          ARRAY['msg_id bigint not null', 'read_ct integer not null',
                'enqueued_at timestamp with time zone not null', 'vt timestamp with time zone not null',
                'message jsonb', 'headers jsonb'],
          'q_tq: columns, types, order');
SELECT is((SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'pgmq.q_tq'::regclass AND attname = 'msg_id'),
          'a', 'q_tq.msg_id is GENERATED ALWAYS AS IDENTITY');
SELECT col_default_is('pgmq', 'q_tq', 'read_ct', '0', 'q_tq.read_ct defaults to 0');
SELECT col_default_is('pgmq', 'q_tq', 'enqueued_at', 'now()', 'q_tq.enqueued_at defaults to now()');
SELECT is(pg_get_serial_sequence('pgmq.q_tq', 'msg_id'), 'pgmq.q_tq_msg_id_seq', 'identity sequence is q_tq_msg_id_seq');
SELECT is(pg_temp.indexes('q_tq'),
          ARRAY['CREATE UNIQUE INDEX q_tq_pkey ON pgmq.q_tq USING btree (msg_id)',
                'CREATE INDEX q_tq_vt_idx ON pgmq.q_tq USING btree (vt)'],
          'q_tq indexes: q_tq_pkey, q_tq_vt_idx');
SELECT is(pg_temp.cols('pgmq.a_tq'),
          ARRAY['msg_id bigint not null', 'read_ct integer not null',
                'enqueued_at timestamp with time zone not null',
                'archived_at timestamp with time zone not null', 'vt timestamp with time zone not null',
                'message jsonb', 'headers jsonb'],
          'a_tq: columns, types, order (archived_at 4th)');
SELECT is((SELECT attidentity::text FROM pg_attribute WHERE attrelid = 'pgmq.a_tq'::regclass AND attname = 'msg_id'),
          '', 'a_tq.msg_id is not an identity (ids are copied)');
SELECT col_default_is('pgmq', 'a_tq', 'archived_at', 'now()', 'a_tq.archived_at defaults to now()');
SELECT is(pg_temp.indexes('a_tq'),
          ARRAY['CREATE UNIQUE INDEX a_tq_pkey ON pgmq.a_tq USING btree (msg_id)',
                'CREATE INDEX archived_at_idx_tq ON pgmq.a_tq USING btree (archived_at)'],
          'a_tq indexes: a_tq_pkey, archived_at_idx_tq');
SELECT results_eq($$SELECT queue_name::text, is_partitioned, is_unlogged, created_at = now() FROM pgmq.meta WHERE queue_name = 'tq'$$,
                  $$VALUES ('tq', false, false, true)$$, 'meta row for tq');
SELECT ok(has_table_privilege('pg_monitor', 'pgmq.q_tq', 'SELECT')
          AND has_table_privilege('pg_monitor', 'pgmq.a_tq', 'SELECT')
          AND has_sequence_privilege('pg_monitor', 'pgmq.q_tq_msg_id_seq', 'SELECT'),
          'pg_monitor may read new queue tables and the sequence (default privileges)');
SELECT lives_ok($$SELECT pgmq.create('tq')$$, 'create() again is not an error (idempotent)');
SELECT is((SELECT count(*)::int FROM pgmq.meta WHERE queue_name = 'tq'), 1, 'still one meta row after a repeated create');
SELECT is(pg_temp.indexes('q_tq') || pg_temp.indexes('a_tq'),
          ARRAY['CREATE UNIQUE INDEX q_tq_pkey ON pgmq.q_tq USING btree (msg_id)',
                'CREATE INDEX q_tq_vt_idx ON pgmq.q_tq USING btree (vt)',
                'CREATE UNIQUE INDEX a_tq_pkey ON pgmq.a_tq USING btree (msg_id)',
                'CREATE INDEX archived_at_idx_tq ON pgmq.a_tq USING btree (archived_at)'],
          'no duplicate indexes after a repeated create');

SELECT lives_ok($$SELECT pgmq.create_non_partitioned(queue_name => 'tnp')$$, 'create_non_partitioned(queue_name =>)');
SELECT results_eq($$SELECT is_partitioned, is_unlogged, (SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.q_tnp'::regclass)
                    FROM pgmq.meta WHERE queue_name = 'tnp'$$,
                  $$VALUES (false, false, 'p')$$, 'create_non_partitioned: logged table, meta (false, false)');
SELECT lives_ok($$SELECT pgmq.create_unlogged(queue_name => 'tu')$$, 'create_unlogged(queue_name =>)');
SELECT results_eq($$SELECT is_partitioned, is_unlogged,
                           (SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.q_tu'::regclass),
                           (SELECT relpersistence::text FROM pg_class WHERE oid = 'pgmq.a_tu'::regclass)
                    FROM pgmq.meta WHERE queue_name = 'tu'$$,
                  $$VALUES (false, true, 'u', 'p')$$, 'create_unlogged: q_ unlogged, archive logged, meta (false, true)');
SELECT lives_ok($$SELECT pgmq.create_unlogged('tu')$$, 'create_unlogged() again is not an error');

SELECT lives_ok($$SELECT pgmq.create('MixedCase')$$, 'create(MixedCase)');
SELECT ok(to_regclass('pgmq.q_mixedcase') IS NOT NULL AND to_regclass('pgmq.a_mixedcase') IS NOT NULL,
          'MixedCase: tables use the lowercased name');
SELECT ok(EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'pgmq' AND indexname = 'archived_at_idx_MixedCase'),
          'MixedCase: archive index is named after the name as given');
SELECT ok(EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'MixedCase'), 'MixedCase: meta keeps the case');
SELECT lives_ok($$SELECT pgmq.create('has space.dot-x')$$, 'create() accepts spaces, dots and single hyphens');
SELECT ok(to_regclass('pgmq."q_has space.dot-x"') IS NOT NULL, 'table "q_has space.dot-x" exists');
SELECT lives_ok($$SELECT pgmq.create(repeat('L', 47))$$, 'create() accepts a 47-character name');
SELECT ok(to_regclass(format('pgmq.%I', 'q_' || repeat('l', 47))) IS NOT NULL
          AND to_regclass(format('pgmq.%I', 'q_' || repeat('l', 47) || '_msg_id_seq')) IS NOT NULL
          AND EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'archived_at_idx_' || repeat('L', 47)),
          '47-character name: table, sequence and the 63-character archive index name are intact');

SELECT throws_ok($$SELECT pgmq.create_partitioned('tp')$$, 'P0001', 'pg_partman is required for partitioned queues',
                 'create_partitioned without pg_partman');
SELECT throws_ok($$SELECT pgmq.create_partitioned(queue_name => 'tp', partition_interval => '1 day', retention_interval => '7 days')$$,
                 'P0001', 'pg_partman is required for partitioned queues', 'create_partitioned (named notation)');
SELECT throws_ok($$SELECT pgmq.create_partitioned(repeat('p', 48))$$, 'P0001',
                 'queue name is too long, maximum length is 48 characters', 'create_partitioned validates the name first');
SELECT ok(to_regclass('pgmq.q_tp') IS NULL AND NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'tp'),
          'create_partitioned left nothing behind');
SELECT throws_ok($$SELECT pgmq.convert_archive_partitioned(table_name => 'tq')$$, 'P0001',
                 'pg_partman is required for partitioned queues', 'convert_archive_partitioned without pg_partman');
SELECT lives_ok($$SELECT pgmq.convert_archive_partitioned('nosuch', '10000', '100000', 10)$$,
                'convert_archive_partitioned of a missing archive only notices');
SELECT ok(pgmq._extension_exists('plpgsql') AND NOT pgmq._extension_exists('pg_partman'), '_extension_exists');

SELECT lives_ok($$SELECT pgmq.acquire_queue_lock(queue_name => 'lockq')$$, 'acquire_queue_lock');
SELECT ok(EXISTS (SELECT 1 FROM pg_locks
                  WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND objsubid = 1
                    AND ((classid::bigint << 32) | objid::bigint) = hashtext('pgmq.queue_lockq')::bigint),
          'acquire_queue_lock holds the advisory lock hashtext(''pgmq.queue_'' || name) until the transaction ends');

-- ============================================================================================
-- 4. send: all six overloads, named and positional
-- ============================================================================================
SELECT pgmq.create('sq') \g /dev/null
SELECT results_eq($$SELECT send FROM pgmq.send(queue_name => 'sq', msg => '{"n": 1}')$$, ARRAY[1::bigint],
                  'send(queue_name, msg): first id is 1, result column is "send"');
SELECT results_eq($$SELECT message, headers, read_ct, enqueued_at = now(), vt > (SELECT at FROM t0) AND vt <= clock_timestamp()
                    FROM pgmq.q_sq WHERE msg_id = 1$$,
                  $$VALUES ('{"n": 1}'::jsonb, NULL::jsonb, 0, true, true)$$,
                  'send: stored body, no headers, read_ct 0, enqueued_at now(), vt = clock_timestamp()');
SELECT results_eq($$SELECT * FROM pgmq.send(queue_name => 'sq', msg => '{"n": 2}', headers => '{"h": 2}')$$,
                  ARRAY[2::bigint], 'send(queue_name, msg, headers)');
SELECT is((SELECT headers FROM pgmq.q_sq WHERE msg_id = 2), '{"h": 2}'::jsonb, 'send stores headers');
UPDATE t0 SET at = clock_timestamp();
SELECT results_eq($$SELECT * FROM pgmq.send(queue_name => 'sq', msg => '{"n": 3}', delay => 10)$$,
                  ARRAY[3::bigint], 'send(queue_name, msg, delay integer)');
SELECT ok((SELECT vt BETWEEN (SELECT at FROM t0) + interval '10 s' AND clock_timestamp() + interval '10 s'
           FROM pgmq.q_sq WHERE msg_id = 3), 'integer delay: vt = clock_timestamp() + delay seconds');
SELECT results_eq($$SELECT * FROM pgmq.send(queue_name => 'sq', msg => '{"n": 4}', delay => '2031-01-02 03:04:05+00'::timestamptz)$$,
                  ARRAY[4::bigint], 'send(queue_name, msg, delay timestamptz)');
SELECT is((SELECT vt FROM pgmq.q_sq WHERE msg_id = 4), '2031-01-02 03:04:05+00'::timestamptz, 'timestamptz delay is the vt as given');
UPDATE t0 SET at = clock_timestamp();
SELECT results_eq($$SELECT * FROM pgmq.send(queue_name => 'sq', msg => '{"n": 5}', headers => '{"h": 5}', delay => 20)$$,
                  ARRAY[5::bigint], 'send(queue_name, msg, headers, delay integer)');
SELECT ok((SELECT headers = '{"h": 5}' AND vt BETWEEN (SELECT at FROM t0) + interval '20 s' AND clock_timestamp() + interval '20 s'
           FROM pgmq.q_sq WHERE msg_id = 5), 'headers + integer delay stored');
SELECT results_eq($$SELECT * FROM pgmq.send(queue_name => 'sq', msg => '{"n": 6}', headers => '{"h": 6}', delay => '2032-01-01 00:00:00+00'::timestamptz)$$,
                  ARRAY[6::bigint], 'send(queue_name, msg, headers, delay timestamptz)');
SELECT ok((SELECT headers = '{"h": 6}' AND vt = '2032-01-01 00:00:00+00' FROM pgmq.q_sq WHERE msg_id = 6),
          'headers + timestamptz delay stored');
SELECT results_eq($$SELECT pgmq.send('sq'::text, '{"n": 7}'::jsonb, 0::integer)$$, ARRAY[7::bigint],
                  'positional send(text, jsonb, integer) as pgmq-js calls it');
SELECT results_eq($$SELECT * FROM pgmq.send('sq', NULL::jsonb)$$, ARRAY[8::bigint], 'a NULL message is allowed');
SELECT throws_ok($$SELECT * FROM pgmq.send('nosuch', '{}'::jsonb)$$, '42P01',
                 'relation "pgmq.q_nosuch" does not exist', 'send to an unknown queue: plain relation error');

-- ============================================================================================
-- 5. send_batch: all six overloads, ids in array order
-- ============================================================================================
SELECT pgmq.create('bq') \g /dev/null
CREATE TEMP TABLE b1 AS
SELECT row_number() OVER () AS pos, send_batch AS id
FROM pgmq.send_batch(queue_name => 'bq', msgs => ARRAY['{"i": 1}', '{"i": 2}', '{"i": 3}', '{"i": 4}']::jsonb[]);
SELECT results_eq($$SELECT id FROM b1 ORDER BY pos$$, ARRAY[1, 2, 3, 4]::bigint[],
                  'send_batch(queue_name, msgs): ids returned in array order, column "send_batch"');
SELECT is((SELECT count(*)::int FROM b1 JOIN pgmq.q_bq q ON q.msg_id = b1.id WHERE q.message = jsonb_build_object('i', b1.pos)),
          4, 'send_batch: the i-th id holds the i-th message');
SELECT ok((SELECT bool_and(headers IS NULL AND read_ct = 0 AND vt <= clock_timestamp()) FROM pgmq.q_bq), 'send_batch: no headers, visible now');
SELECT results_eq($$SELECT * FROM pgmq.send_batch(queue_name => 'bq', msgs => ARRAY['{"i": 5}', '{"i": 6}']::jsonb[],
                                                 headers => ARRAY['{"h": 5}', '{"h": 6}']::jsonb[])$$,
                  ARRAY[5, 6]::bigint[], 'send_batch(queue_name, msgs, headers)');
SELECT results_eq($$SELECT message, headers FROM pgmq.q_bq WHERE msg_id IN (5, 6) ORDER BY msg_id$$,
                  $$VALUES ('{"i": 5}'::jsonb, '{"h": 5}'::jsonb), ('{"i": 6}', '{"h": 6}')$$, 'send_batch pairs headers with messages');
UPDATE t0 SET at = clock_timestamp();
SELECT results_eq($$SELECT * FROM pgmq.send_batch(queue_name => 'bq', msgs => ARRAY['{"i": 7}', '{"i": 8}']::jsonb[], delay => 30)$$,
                  ARRAY[7, 8]::bigint[], 'send_batch(queue_name, msgs, delay integer)');
SELECT ok((SELECT bool_and(vt BETWEEN (SELECT at FROM t0) + interval '30 s' AND clock_timestamp() + interval '30 s')
           FROM pgmq.q_bq WHERE msg_id IN (7, 8)), 'send_batch integer delay');
SELECT results_eq($$SELECT * FROM pgmq.send_batch(queue_name => 'bq', msgs => ARRAY['{"i": 9}']::jsonb[], delay => '2033-03-03 00:00:00+00'::timestamptz)$$,
                  ARRAY[9]::bigint[], 'send_batch(queue_name, msgs, delay timestamptz)');
SELECT is((SELECT vt FROM pgmq.q_bq WHERE msg_id = 9), '2033-03-03 00:00:00+00'::timestamptz, 'send_batch timestamptz delay');
SELECT results_eq($$SELECT * FROM pgmq.send_batch(queue_name => 'bq', msgs => ARRAY['{"i": 10}', '{"i": 11}']::jsonb[],
                                                 headers => ARRAY['{"h": 10}', '{"h": 11}']::jsonb[], delay => 40)$$,
                  ARRAY[10, 11]::bigint[], 'send_batch(queue_name, msgs, headers, delay integer)');
SELECT ok((SELECT bool_and(headers IS NOT NULL AND vt > clock_timestamp() + interval '39 s') FROM pgmq.q_bq WHERE msg_id IN (10, 11)),
          'send_batch headers + integer delay');
SELECT results_eq($$SELECT * FROM pgmq.send_batch(queue_name => 'bq', msgs => ARRAY['{"i": 12}']::jsonb[],
                                                 headers => ARRAY['{"h": 12}']::jsonb[], delay => '2034-04-04 00:00:00+00'::timestamptz)$$,
                  ARRAY[12]::bigint[], 'send_batch(queue_name, msgs, headers, delay timestamptz)');
SELECT ok((SELECT headers = '{"h": 12}' AND vt = '2034-04-04 00:00:00+00' FROM pgmq.q_bq WHERE msg_id = 12),
          'send_batch headers + timestamptz delay');
SELECT results_eq($$SELECT * FROM pgmq.send_batch('bq'::text, ARRAY['{"i": 13}', '{"i": 14}']::jsonb[], 0::integer)$$,
                  ARRAY[13, 14]::bigint[], 'positional send_batch(text, jsonb[], integer) as pgmq-js calls it');
SELECT results_eq($$SELECT * FROM pgmq.send_batch('bq', ARRAY['{"i": 15}', '{"i": 16}']::jsonb[], ARRAY['{"h": 15}']::jsonb[])$$,
                  ARRAY[15, 16]::bigint[], 'send_batch with fewer headers than messages (1.5: padded)');
SELECT is((SELECT headers FROM pgmq.q_bq WHERE msg_id = 16), NULL::jsonb, 'missing headers are NULL');
SELECT is((SELECT count(*)::int FROM pgmq.send_batch('bq', ARRAY[]::jsonb[])), 0, 'send_batch of an empty array sends nothing');
SELECT results_eq(
    $$SELECT array_agg(id ORDER BY pos) = array_agg(id ORDER BY id)
      FROM (SELECT row_number() OVER () AS pos, b AS id
            FROM pgmq.send_batch('bq', (SELECT array_agg(jsonb_build_object('k', g) ORDER BY g) FROM generate_series(1, 200) g)) b) s$$,
    ARRAY[true], 'a 200-message batch comes back in ascending id order');
SELECT is((SELECT count(*)::int FROM pgmq.q_bq q WHERE q.message ? 'k' AND q.msg_id - (q.message->>'k')::int = 16),
          200, 'a 200-message batch: ids follow the array order');

-- ============================================================================================
-- 6. read: visibility, vt, read_ct, qty, order, conditional
-- ============================================================================================
SELECT pgmq.create('rq') \g /dev/null
SELECT * FROM pgmq.send_batch('rq', ARRAY['{"k": "a", "n": 1}', '{"k": "b", "n": 2}', '{"k": "a", "n": 3}']::jsonb[],
                              ARRAY['{"x": 1}']::jsonb[]) \g /dev/null
SELECT * FROM pgmq.send('rq', '{"k": "late"}', 3600) \g /dev/null
UPDATE t0 SET at = clock_timestamp();
CREATE TEMP TABLE r1 AS SELECT * FROM pgmq.read(queue_name => 'rq', vt => 30, qty => 2);
SELECT results_eq($$SELECT msg_id, read_ct, message, headers FROM r1$$,
                  $$VALUES (1::bigint, 1, '{"k": "a", "n": 1}'::jsonb, '{"x": 1}'::jsonb), (2, 1, '{"k": "b", "n": 2}', NULL)$$,
                  'read(qty 2): the two oldest, ordered by msg_id, read_ct 1, with headers');
SELECT ok((SELECT bool_and(vt BETWEEN (SELECT at FROM t0) + interval '30 s' AND clock_timestamp() + interval '30 s') FROM r1),
          'read: returned vt = clock_timestamp() + vt seconds');
SELECT ok((SELECT bool_and(q.vt = r1.vt AND q.read_ct = 1) FROM r1 JOIN pgmq.q_rq q USING (msg_id)), 'read: vt and read_ct are stored');
SELECT ok((SELECT bool_and(r1.enqueued_at = now()) FROM r1), 'read: enqueued_at returned');
SELECT results_eq($$SELECT msg_id FROM pgmq.read('rq', 30, 10)$$, ARRAY[3::bigint],
                  'read skips invisible (read and delayed) messages');
SELECT is((SELECT count(*)::int FROM pgmq.read('rq', 30, 10)), 0, 'nothing visible: empty result');
SELECT results_eq($$SELECT msg_id, read_ct FROM pgmq.set_vt('rq', 2::bigint, 0)$$, $$VALUES (2::bigint, 1)$$,
                  'set_vt(…, 0) makes a message visible again (read_ct unchanged)');
SELECT results_eq($$SELECT msg_id, read_ct FROM pgmq.read('rq', 0, 5)$$, $$VALUES (2::bigint, 2)$$,
                  'read again: read_ct 2; vt 0 leaves it visible');
SELECT results_eq($$SELECT msg_id, read_ct FROM pgmq.read('rq', 30, 5)$$, $$VALUES (2::bigint, 3)$$,
                  'a vt 0 read left the message visible, but counted');
SELECT pgmq.set_vt('rq', id, 0) FROM unnest(ARRAY[1, 2, 3]::bigint[]) id \g /dev/null
SELECT results_eq($$SELECT msg_id FROM pgmq.read(queue_name => 'rq', vt => 30, qty => 10, conditional => '{"k": "a"}')$$,
                  ARRAY[1, 3]::bigint[], 'conditional: only messages containing {"k": "a"}');
SELECT pgmq.set_vt('rq', id, 0) FROM unnest(ARRAY[1, 3]::bigint[]) id \g /dev/null
SELECT results_eq($$SELECT msg_id FROM pgmq.read('rq', 30, 10, '{"n": 2}'::jsonb)$$, ARRAY[2::bigint], 'conditional (positional)');
SELECT pgmq.set_vt('rq', 2::bigint, 0) \g /dev/null
SELECT is((SELECT count(*)::int FROM pgmq.read('rq', 30, 10, '{"x": 1}'::jsonb)), 0, 'conditional looks at the body, not headers');
SELECT results_eq($$SELECT msg_id FROM pgmq.read('rq', 30, 10, NULL)$$, ARRAY[1, 2, 3]::bigint[], 'conditional NULL: no filter');
SELECT pgmq.set_vt('rq', id, 0) FROM unnest(ARRAY[1, 2, 3]::bigint[]) id \g /dev/null
SELECT results_eq($$SELECT msg_id FROM pgmq.read('rq', 30, 10, '{}')$$, ARRAY[1, 2, 3]::bigint[], 'conditional {}: no filter');
SELECT is((SELECT count(*)::int FROM pgmq.read('rq', 30, 0)), 0, 'qty 0 reads nothing');
SELECT throws_ok($$SELECT * FROM pgmq.read('nosuch', 30, 1)$$, '42P01', 'relation "pgmq.q_nosuch" does not exist',
                 'read of an unknown queue: plain relation error');

-- ============================================================================================
-- 7. read_with_poll
-- ============================================================================================
SELECT pgmq.create('pq') \g /dev/null
SELECT * FROM pgmq.send('pq', '{"p": 1}') \g /dev/null
SELECT * FROM pgmq.send('pq', '{"p": 2}') \g /dev/null
UPDATE t0 SET at = clock_timestamp();
SELECT results_eq($$SELECT msg_id, read_ct FROM pgmq.read_with_poll(queue_name => 'pq', vt => 30, qty => 5, max_poll_seconds => 2, poll_interval_ms => 50)$$,
                  $$VALUES (1::bigint, 1), (2, 1)$$, 'read_with_poll returns available messages');
SELECT ok(clock_timestamp() - (SELECT at FROM t0) < interval '1 s', 'read_with_poll returned at once (did not poll for 2 s)');
UPDATE t0 SET at = clock_timestamp();
SELECT is((SELECT count(*)::int FROM pgmq.read_with_poll('pq', 30, 5, 1, 50)), 0, 'read_with_poll on an empty queue: no rows');
SELECT ok(clock_timestamp() - (SELECT at FROM t0) BETWEEN interval '1 s' AND interval '5 s',
          'read_with_poll waited about max_poll_seconds');
SELECT pgmq.set_vt('pq', 2::bigint, 0) \g /dev/null
SELECT results_eq($$SELECT msg_id FROM pgmq.read_with_poll('pq', 30, 5, 0)$$, ARRAY[2::bigint],
                  'read_with_poll(max_poll_seconds 0, default interval) still reads once');
UPDATE t0 SET at = clock_timestamp();
SELECT is((SELECT count(*)::int FROM pgmq.read_with_poll('pq', 30, 5, 0, 100)), 0, 'max_poll_seconds 0 on an empty queue: no rows');
SELECT ok(clock_timestamp() - (SELECT at FROM t0) < interval '1 s', 'max_poll_seconds 0 does not wait');
SELECT * FROM pgmq.send_batch('pq', ARRAY['{"c": "no"}', '{"c": "yes"}']::jsonb[]) \g /dev/null
SELECT results_eq($$SELECT message FROM pgmq.read_with_poll(queue_name => 'pq', vt => 30, qty => 5, max_poll_seconds => 1,
                                                          poll_interval_ms => 10, conditional => '{"c": "yes"}')$$,
                  ARRAY['{"c": "yes"}'::jsonb], 'read_with_poll with conditional');

-- ============================================================================================
-- 8. pop
-- ============================================================================================
SELECT pgmq.create('oq') \g /dev/null
SELECT * FROM pgmq.send_batch('oq', ARRAY['{"o": 1}', '{"o": 2}', '{"o": 3}']::jsonb[]) \g /dev/null
SELECT * FROM pgmq.read('oq', 30, 1) \g /dev/null
SELECT pgmq.set_vt('oq', 1::bigint, 0) \g /dev/null
SELECT pgmq.set_vt('oq', 2::bigint, 3600) \g /dev/null
SELECT results_eq($$SELECT msg_id, read_ct, message FROM pgmq.pop(queue_name => 'oq')$$,
                  $$VALUES (1::bigint, 1, '{"o": 1}'::jsonb)$$, 'pop: oldest visible message, read_ct as stored');
SELECT ok(NOT EXISTS (SELECT 1 FROM pgmq.q_oq WHERE msg_id = 1) AND NOT EXISTS (SELECT 1 FROM pgmq.a_oq),
          'pop deletes without archiving');
SELECT results_eq($$SELECT msg_id, read_ct FROM pgmq.pop('oq')$$, $$VALUES (3::bigint, 0)$$, 'pop skips invisible messages');
SELECT is((SELECT count(*)::int FROM pgmq.pop('oq')), 0, 'pop with nothing visible: empty');

-- ============================================================================================
-- 9. set_vt
-- ============================================================================================
UPDATE t0 SET at = clock_timestamp();
CREATE TEMP TABLE sv AS SELECT * FROM pgmq.set_vt(queue_name => 'oq', msg_id => 2, vt => 60);
SELECT results_eq($$SELECT msg_id, read_ct, message FROM sv$$, $$VALUES (2::bigint, 0, '{"o": 2}'::jsonb)$$,
                  'set_vt(queue_name =>, msg_id =>, vt =>) returns the message');
SELECT ok((SELECT vt BETWEEN (SELECT at FROM t0) + interval '60 s' AND clock_timestamp() + interval '60 s' FROM sv)
          AND (SELECT q.vt = sv.vt FROM pgmq.q_oq q, sv WHERE q.msg_id = 2),
          'set_vt: vt = clock_timestamp() + vt seconds, stored');
SELECT is((SELECT count(*)::int FROM pgmq.set_vt('oq', 999::bigint, 10)), 0, 'set_vt of a missing id: empty');

-- ============================================================================================
-- 10. archive and delete, single and array
-- ============================================================================================
SELECT pgmq.create('aq') \g /dev/null
SELECT * FROM pgmq.send_batch('aq', ARRAY['{"a": 1}', '{"a": 2}', '{"a": 3}', '{"a": 4}', '{"a": 5}', '{"a": 6}']::jsonb[],
                              ARRAY['{"h": 1}']::jsonb[]) \g /dev/null
SELECT * FROM pgmq.read('aq', 30, 1) \g /dev/null
CREATE TEMP TABLE before_archive AS SELECT * FROM pgmq.q_aq WHERE msg_id = 1;
SELECT is(pgmq.archive(queue_name => 'aq', msg_id => 1), true, 'archive(queue_name, msg_id) of an existing message: true');
SELECT results_eq($$SELECT msg_id, read_ct, enqueued_at, vt, message, headers, archived_at = now() FROM pgmq.a_aq$$,
                  $$SELECT msg_id, read_ct, enqueued_at, vt, message, headers, true FROM before_archive$$,
                  'archive copies every column and sets archived_at');
SELECT ok(NOT EXISTS (SELECT 1 FROM pgmq.q_aq WHERE msg_id = 1), 'archive removes the message from the queue');
SELECT is(pgmq.archive('aq', 1::bigint), false, 'archive of a missing id: false');
SELECT results_eq($$SELECT archive FROM pgmq.archive(queue_name => 'aq', msg_ids => ARRAY[2, 3, 99]) ORDER BY 1$$,
                  ARRAY[2, 3]::bigint[], 'archive(queue_name, msg_ids): the ids archived, missing ones skipped');
SELECT results_eq($$SELECT msg_id FROM pgmq.a_aq ORDER BY 1$$, ARRAY[1, 2, 3]::bigint[], 'archive table holds 1, 2, 3');
SELECT is((SELECT count(*)::int FROM pgmq.archive('aq', ARRAY[]::bigint[])), 0, 'archive of an empty array');
SELECT is(pgmq.delete(queue_name => 'aq', msg_id => 4), true, 'delete(queue_name, msg_id): true');
SELECT is(pgmq.delete('aq', 4::bigint), false, 'delete of a missing id: false');
SELECT results_eq($$SELECT "delete" FROM pgmq.delete(queue_name => 'aq', msg_ids => ARRAY[5, 6, 4, 100]) ORDER BY 1$$,
                  ARRAY[5, 6]::bigint[], 'delete(queue_name, msg_ids): the ids deleted, missing ones skipped');
SELECT ok(NOT EXISTS (SELECT 1 FROM pgmq.q_aq) AND (SELECT count(*) FROM pgmq.a_aq) = 3, 'delete does not archive');
SELECT results_eq($$SELECT pgmq.archive('aq'::text, ARRAY[7]::bigint[])$$, $$SELECT 1::bigint WHERE false$$,
                  'archive of ids that never existed returns no rows');

-- ============================================================================================
-- 11. metrics, metrics_all, list_queues
-- ============================================================================================
SELECT pgmq.create('mq') \g /dev/null
SELECT results_eq($$SELECT queue_name, queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, scrape_time = now(), queue_visible_length
                    FROM pgmq.metrics('mq')$$,
                  $$VALUES ('mq'::text, 0::bigint, NULL::int, NULL::int, 0::bigint, true, 0::bigint)$$,
                  'metrics of a new queue: zeros, NULL ages, total 0');
SELECT * FROM pgmq.send('mq', '{"m": 1}', now() - interval '1 minute') \g /dev/null
SELECT * FROM pgmq.send('mq', '{"m": 2}', now() - interval '1 minute') \g /dev/null
SELECT * FROM pgmq.send('mq', '{"m": 3}', 3600) \g /dev/null
SELECT * FROM pgmq.send('mq', '{"m": 4}') \g /dev/null
UPDATE pgmq.q_mq SET enqueued_at = now() - interval '100 seconds' WHERE msg_id = 1;
SELECT results_eq($$SELECT queue_name, queue_length, newest_msg_age_sec, oldest_msg_age_sec, total_messages, scrape_time = now(), queue_visible_length
                    FROM pgmq.metrics(queue_name => 'mq')$$,
                  $$VALUES ('mq'::text, 4::bigint, 0, 100, 4::bigint, true, 2::bigint)$$,
                  'metrics: length 4, ages 0/100 s, total 4, visible 2 (vt <= now(), so not the one sent now)');
SELECT pgmq.delete('mq', ARRAY[1, 2]::bigint[]) \g /dev/null
SELECT results_eq($$SELECT queue_length, total_messages FROM pgmq.metrics('mq')$$, $$VALUES (2::bigint, 4::bigint)$$,
                  'metrics: total_messages comes from the identity sequence, not the table');
SELECT is((SELECT queue_name FROM pgmq.metrics('MIXEDcase')), 'MIXEDcase', 'metrics: queue_name is the argument as passed');
SELECT throws_ok($$SELECT * FROM pgmq.metrics('nosuch')$$, '42P01', 'relation "pgmq.q_nosuch" does not exist',
                 'metrics of an unknown queue: plain relation error');
SELECT set_eq($$SELECT queue_name FROM pgmq.metrics_all()$$, $$SELECT queue_name::text FROM pgmq.meta$$,
              'metrics_all: one row per queue in meta');
SELECT results_eq($$SELECT queue_length, total_messages, queue_visible_length FROM pgmq.metrics_all() WHERE queue_name = 'mq'$$,
                  $$SELECT queue_length, total_messages, queue_visible_length FROM pgmq.metrics('mq')$$,
                  'metrics_all agrees with metrics');
SELECT set_eq($$SELECT queue_name::text, is_partitioned, is_unlogged, created_at FROM pgmq.list_queues()$$,
              $$SELECT queue_name::text, is_partitioned, is_unlogged, created_at FROM pgmq.meta$$,
              'list_queues returns every meta row');
SELECT ok((SELECT bool_or(q::text = '(tu,f,t,"' || now()::text || '")') FROM pgmq.list_queues() q),
          'list_queues() as one composite (as pgmq-js reads it): (name,is_partitioned,is_unlogged,created_at)');

-- ============================================================================================
-- 12. purge_queue, detach_archive, drop_queue
-- ============================================================================================
SELECT pgmq.create('uq') \g /dev/null
SELECT * FROM pgmq.send_batch('uq', ARRAY['{"u": 1}', '{"u": 2}', '{"u": 3}', '{"u": 4}']::jsonb[]) \g /dev/null
SELECT pgmq.archive('uq', 1::bigint) \g /dev/null
SELECT is(pgmq.purge_queue(queue_name => 'uq'), 3::bigint, 'purge_queue returns the number of messages removed');
SELECT ok(NOT EXISTS (SELECT 1 FROM pgmq.q_uq), 'purge_queue empties the queue');
SELECT is((SELECT count(*)::int FROM pgmq.a_uq), 1, 'purge_queue leaves the archive alone');
SELECT results_eq($$SELECT * FROM pgmq.send('uq', '{"u": 5}')$$, ARRAY[5::bigint], 'after purge the identity continues');
SELECT is((SELECT total_messages FROM pgmq.metrics('uq')), 5::bigint, 'after purge total_messages continues');
SELECT is(pgmq.purge_queue('uq'), 1::bigint, 'purge_queue again');
SELECT throws_ok($$SELECT pgmq.purge_queue('nosuch')$$, '42P01', 'relation "pgmq.q_nosuch" does not exist',
                 'purge_queue of an unknown queue');

SELECT lives_ok($$SELECT pgmq.detach_archive(queue_name => 'uq')$$, 'detach_archive is a no-op for a non-extension install');
SELECT ok(to_regclass('pgmq.a_uq') IS NOT NULL, 'detach_archive leaves the archive table');
SELECT throws_ok($$SELECT pgmq.detach_archive('a;b')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'detach_archive validates the name');

SELECT is(pgmq.drop_queue(queue_name => 'uq'), true, 'drop_queue(queue_name) of an existing queue: true');
SELECT ok(to_regclass('pgmq.q_uq') IS NULL AND to_regclass('pgmq.a_uq') IS NULL
          AND to_regclass('pgmq.q_uq_msg_id_seq') IS NULL
          AND NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'uq'),
          'drop_queue removes both tables, the sequence and the meta row');
SELECT is(pgmq.drop_queue('uq'), false, 'drop_queue of a missing queue: false');
SELECT is(pgmq.drop_queue(queue_name => 'tnp', partitioned => false), true, 'deprecated drop_queue(queue_name, partitioned): true');
SELECT ok(to_regclass('pgmq.q_tnp') IS NULL AND NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'tnp'),
          'deprecated drop_queue dropped the queue');
SELECT is(pgmq.drop_queue('tnp', true), true, 'deprecated drop_queue of a missing queue still returns true');
SELECT is(pgmq.drop_queue('MixedCase'), true, 'drop_queue of a mixed-case name');
SELECT ok(to_regclass('pgmq.q_mixedcase') IS NULL AND NOT EXISTS (SELECT 1 FROM pgmq.meta WHERE queue_name = 'MixedCase'),
          'mixed-case queue dropped');
SELECT throws_ok($$SELECT pgmq.drop_queue('x--y')$$, 'P0001',
                 'queue name contains invalid characters: $, ;, --, or \''', 'drop_queue validates the name');
SELECT lives_ok($$SELECT pgmq.create('tq')$$, 'create after other queues were dropped');
SELECT is(pgmq.drop_queue('tu'), true, 'drop an unlogged queue');

\else
SELECT plan(1);
SELECT skip('the pgmq extension is installed: tests/sql/pgmq_compat.sql covers the compat schema only', 1);
\endif

SELECT * FROM finish();
ROLLBACK;
