-- graph.sql — pgTAP tests of the DOT pictures (sql/0265_tasker_graph.sql, issue 11): escaping of
-- identifiers and labels, durations, a diamond task part-way, a decision task after its decision,
-- a batch of 1,000 workers folded into one node (and unfolded on request), a template's graph,
-- and NULL for what does not exist.
--
-- Runs in one transaction that is rolled back. now() is frozen inside it, so every transition of
-- the run has the same time; where a duration must show, the append-only trigger on
-- workflow_step_transitions is disabled for this transaction alone and a claim's time moved back.

BEGIN;
SET LOCAL client_min_messages = warning;
SET LOCAL jit = off;
SELECT plan(51);

-- ---------------------------------------------------------------------------------------------
-- Helpers (temporary): the worker side and the daemon side of one step's run, as in
-- dynamic_steps.sql.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.tpl(p_ns text, p_name text, p_steps jsonb) RETURNS uuid
LANGUAGE sql AS $$
  SELECT task_template_uuid FROM tasker.register_task_template(
    jsonb_build_object('name', p_name, 'namespace_name', p_ns, 'version', '1.0.0',
                       'identity_strategy', 'always_unique', 'steps', p_steps))
$$;
CREATE FUNCTION pg_temp.new_task(p_ns text, p_name text) RETURNS uuid
LANGUAGE sql AS $$
  SELECT task_uuid FROM tasker.create_task(jsonb_build_object('name', p_name, 'namespace', p_ns))
$$;
CREATE FUNCTION pg_temp.sid(p_task uuid, p_name text) RETURNS uuid
LANGUAGE sql STABLE AS $$ SELECT workflow_step_uuid FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.st(p_task uuid, p_name text) RETURNS text
LANGUAGE sql STABLE AS $$ SELECT state FROM tasker.workflow_steps WHERE task_uuid = p_task AND name = p_name $$;
CREATE FUNCTION pg_temp.run(p_ns text, p_task uuid, p_name text, p_result jsonb DEFAULT '{"ok": true}') RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  IF pg_temp.st(p_task, p_name) = 'enqueued' THEN
    PERFORM * FROM tasker.tasker_claim_and_execute_step(p_ns, 1000, 300, 'w1');
  END IF;
  IF pg_temp.st(p_task, p_name) <> 'in_progress' THEN
    RETURN p_name || ' is ' || coalesce(pg_temp.st(p_task, p_name), 'missing');
  END IF;
  PERFORM tasker.submit_step_result(pg_temp.sid(p_task, p_name),
    (SELECT attempt_no FROM tasker.workflow_steps WHERE workflow_step_uuid = pg_temp.sid(p_task, p_name)), true, p_result);
  PERFORM tasker.process_completions(p_ns, 10000, 30);
  RETURN pg_temp.st(p_task, p_name);
END $$;
-- The node lines of a graph (one per node, in the graph's order), and its edge lines.
CREATE FUNCTION pg_temp.nodes(p_dot text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(array_agg(m[1] ORDER BY i), '{}')
  FROM regexp_matches(p_dot, '^  ("(?:[^"\\]|\\.)*") \[', 'gn') WITH ORDINALITY AS x(m, i)
$$;
CREATE FUNCTION pg_temp.edges(p_dot text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
  SELECT coalesce(array_agg(m[1] ORDER BY i), '{}')
  FROM regexp_matches(p_dot, '^  ("(?:[^"\\]|\\.)*" -> "(?:[^"\\]|\\.)*"[^;\n]*);$', 'gn') WITH ORDINALITY AS x(m, i)
$$;
-- The line of the node with this ID (quoted as in the graph).
CREATE FUNCTION pg_temp.node_line(p_dot text, p_id text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT l FROM regexp_split_to_table(p_dot, E'\n') l WHERE starts_with(l, '  ' || tasker.dot_string(p_id) || ' [')
$$;

-- =============================================================================================
-- 1. Escaping, durations, the palette
-- =============================================================================================
SELECT is(tasker.dot_string('plain_name'), '"plain_name"', 'dot_string: a plain name is only quoted');
SELECT is(tasker.dot_string(E'say "hi"\\ok\\'), E'"say \\"hi\\"\\\\ok\\\\"',
          'dot_string: quotes and backslashes escaped (a trailing backslash cannot eat the closing quote)');
SELECT is(tasker.dot_string(E'two\nlines'), '"two\nlines"', 'dot_string: a newline becomes \n (a line break in a label)');
SELECT is(tasker.dot_string(E'tab\there\x7f\u202Eevil'), '"tab\\u0009here\\u007f\\u202eevil"',
          'dot_string: tab, DEL and a direction override are shown as \uXXXX text, never passed through');
SELECT is(tasker.dot_string('Größe ✓ 名前'), '"Größe ✓ 名前"', 'dot_string: non-ASCII text passes as UTF-8');
SELECT is(tasker.dot_string(NULL), '""', 'dot_string: NULL is the empty string');
SELECT is(tasker.dot_html(E'<b> & "q"\nnext'), '&lt;b&gt; &amp; &quot;q&quot;<br/>next',
          'dot_html: < > & " as entities, newline as <br/>');
SELECT is(tasker.dot_html(E'a\\N \x01'), 'a\N \u0001', 'dot_html: a backslash is plain text there; a control char is shown');

SELECT is(ARRAY[tasker.graph_duration(840), tasker.graph_duration(12345), tasker.graph_duration(245000),
                tasker.graph_duration(7620000), tasker.graph_duration(273600000)],
          ARRAY['840 ms', '12.3 s', '4m 05s', '2h 07m', '3d 04h'], 'graph_duration: ms, s, m s, h m, d h');
SELECT is((SELECT count(*) FROM tasker.step_states s LEFT JOIN tasker.graph_palette() p USING (state) WHERE p.fill IS NULL),
          0::bigint, 'every step state has a colour in the palette');
SELECT is((SELECT count(DISTINCT fill) FROM tasker.graph_palette()), (SELECT count(*) FROM tasker.step_states),
          'no two states share a colour');

-- =============================================================================================
-- 2. A diamond, part-way: a done (1.5 s), b and c enqueued, d pending
-- =============================================================================================
SELECT pg_temp.tpl('tap_graph', 'diamond', '[
  {"name": "a", "handler": {"callable": "noop"}},
  {"name": "b", "dependencies": ["a"], "handler": {"callable": "noop"}},
  {"name": "c", "dependencies": ["a"], "handler": {"callable": "noop"}},
  {"name": "d", "dependencies": ["b", "c"], "handler": {"callable": "echo"}, "retry": {"max_attempts": 5}}]') \g /dev/null
CREATE TEMP TABLE t_diamond AS SELECT pg_temp.new_task('tap_graph', 'diamond') AS id;
SELECT is(pg_temp.run('tap_graph', (SELECT id FROM t_diamond), 'a'), 'complete', 'diamond: a ran');
ALTER TABLE tasker.workflow_step_transitions DISABLE TRIGGER append_only;
UPDATE tasker.workflow_step_transitions SET created_at = created_at - interval '1.5 s'
WHERE workflow_step_uuid = pg_temp.sid((SELECT id FROM t_diamond), 'a') AND to_state = 'in_progress';
ALTER TABLE tasker.workflow_step_transitions ENABLE TRIGGER append_only;
CREATE TEMP TABLE g_diamond AS SELECT tasker.api_task_graph_dot(id) AS dot FROM t_diamond;

SELECT ok((SELECT starts_with(dot, 'digraph "task ' || (SELECT id FROM t_diamond) || E'" {\n') AND right(dot, 2) = E'}\n' FROM g_diamond),
          'diamond: a digraph named after the task, closed');
SELECT is(cardinality(pg_temp.nodes(dot)), 4, 'diamond: four nodes') FROM g_diamond;
SELECT is(pg_temp.nodes(dot),
          ARRAY(SELECT tasker.dot_string(pg_temp.sid((SELECT id FROM t_diamond), n)::text) FROM unnest(ARRAY['a', 'b', 'c', 'd']) n),
          'diamond: nodes are the steps, by step id, in template order') FROM g_diamond;
SELECT is(pg_temp.edges(dot), ARRAY(
            SELECT tasker.dot_string(pg_temp.sid((SELECT id FROM t_diamond), e[1])::text) || ' -> '
                   || tasker.dot_string(pg_temp.sid((SELECT id FROM t_diamond), e[2])::text)
            FROM (VALUES (1, ARRAY['a', 'b']), (2, ARRAY['a', 'c']), (3, ARRAY['b', 'd']), (4, ARRAY['c', 'd'])) v(i, e) ORDER BY i),
          'diamond: the four edges, solid') FROM g_diamond;
SELECT ok(position('label="a\ncomplete · 1/3 · 1.5 s", shape=box, style="rounded,filled", fillcolor="#a3cfbb"'
                   IN pg_temp.node_line(dot, pg_temp.sid((SELECT id FROM t_diamond), 'a')::text)) > 0,
          'diamond: a is green, labelled with its state, 1 of 3 attempts and its 1.5 s from claim to completion') FROM g_diamond;
SELECT ok(position('label="b\nenqueued · 0/3", shape=box, style="rounded,filled", fillcolor="#cfe2ff"'
                   IN pg_temp.node_line(dot, pg_temp.sid((SELECT id FROM t_diamond), 'b')::text)) > 0,
          'diamond: b is light blue (enqueued), no attempt yet, no duration') FROM g_diamond;
SELECT ok(position('label="d\npending · 0/5", shape=box, style="rounded,filled", fillcolor="#e9ecef"'
                   IN pg_temp.node_line(dot, pg_temp.sid((SELECT id FROM t_diamond), 'd')::text)) > 0,
          'diamond: d is grey (pending), with its own max_attempts') FROM g_diamond;
SELECT ok(position('<b>tap_graph/diamond@1.0.0 — steps_in_process</b>' IN dot) > 0, 'diamond: the title names template and task state') FROM g_diamond;
SELECT ok(dot ~ 'pending 1</font></td><td bgcolor="#cfe2ff"[^>]*><font point-size="9">enqueued 2</font></td><td bgcolor="#a3cfbb"[^>]*><font point-size="9">complete 1<',
          'diamond: the legend has a cell per state present, with counts, in lifecycle order') FROM g_diamond;

-- =============================================================================================
-- 3. A decision task after its decision chose two branches
-- =============================================================================================
SELECT pg_temp.tpl('tap_graph', 'approval', '[
  {"name": "validate", "handler": {"callable": "noop"}},
  {"name": "route", "type": "decision", "dependencies": ["validate"], "handler": {"callable": "decision"}},
  {"name": "auto_approve", "dependencies": ["route"], "handler": {"callable": "noop"}},
  {"name": "manager_approval", "dependencies": ["route"], "handler": {"callable": "noop"}},
  {"name": "finance_review", "dependencies": ["route"], "handler": {"callable": "noop"}},
  {"name": "finalize", "type": "deferred_convergence",
   "dependencies": ["auto_approve", "manager_approval", "finance_review"], "handler": {"callable": "echo"}}]') \g /dev/null
CREATE TEMP TABLE t_dec AS SELECT pg_temp.new_task('tap_graph', 'approval') AS id;
SELECT is(cardinality(pg_temp.nodes(tasker.api_task_graph_dot(id))), 2, 'decision: before it runs, two nodes (validate, route)') FROM t_dec;
SELECT is(pg_temp.run('tap_graph', id, 'validate'), 'complete', 'decision: validate ran') FROM t_dec;
SELECT is(pg_temp.run('tap_graph', id, 'route',
          '{"decision_point_outcome": {"type": "create_steps", "step_names": ["manager_approval", "finance_review"]}}'),
          'complete', 'decision: route chose manager_approval and finance_review') FROM t_dec;
CREATE TEMP TABLE g_dec AS SELECT id, tasker.api_task_graph_dot(id) AS dot FROM t_dec;
SELECT is(pg_temp.nodes(dot),
          ARRAY(SELECT tasker.dot_string(pg_temp.sid(id, n)::text)
                FROM unnest(ARRAY['validate', 'route', 'manager_approval', 'finance_review', 'finalize']) n),
          'decision: the branches it created and the convergence step appear; the unchosen branch does not') FROM g_dec;
SELECT ok(position('shape=diamond' IN pg_temp.node_line(dot, pg_temp.sid(id, 'route')::text)) > 0, 'decision: route is a diamond') FROM g_dec;
SELECT ok(position('shape=invhouse' IN pg_temp.node_line(dot, pg_temp.sid(id, 'finalize')::text)) > 0,
          'decision: the deferred convergence step is an invhouse') FROM g_dec;
SELECT is(cardinality(pg_temp.edges(dot)), 6, 'decision: 6 edges (validate→route, route→2 branches, 2 branches→finalize, the gate route→finalize)') FROM g_dec;
SELECT ok(tasker.dot_string(pg_temp.sid(id, 'route')::text) || ' -> ' || tasker.dot_string(pg_temp.sid(id, 'finalize')::text)
          || ' [style=dashed, color="#868e96", tooltip="gate"]' = ANY (pg_temp.edges(dot)),
          'decision: the gate edge route → finalize is dashed') FROM g_dec;
SELECT ok(tasker.dot_string(pg_temp.sid(id, 'route')::text) || ' -> ' || tasker.dot_string(pg_temp.sid(id, 'manager_approval')::text)
          = ANY (pg_temp.edges(dot)), 'decision: a branch edge is solid') FROM g_dec;

-- =============================================================================================
-- 4. A batch of 1,000 workers, folded into one node; and a batch of 3, not folded
-- =============================================================================================
SELECT pg_temp.tpl('tap_graph', 'rows', '[
  {"name": "plan", "type": "batchable", "handler": {"callable": "batch_plan", "initialization": {"worker_template_name": "work"}}},
  {"name": "work", "type": "batch_worker", "dependencies": ["plan"], "handler": {"callable": "batch_work"},
   "batch_config": {"parallelism": 4}},
  {"name": "total", "type": "deferred_convergence", "dependencies": ["work"], "handler": {"callable": "batch_aggregate"}},
  {"name": "report", "dependencies": ["total"], "handler": {"callable": "echo"}}]') \g /dev/null
CREATE FUNCTION pg_temp.plan(p_n integer) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT jsonb_build_object('batch_processing_outcome', jsonb_build_object('type', 'create_batches',
    'worker_template_name', 'work', 'cursor_configs',
    (SELECT jsonb_agg(jsonb_build_object('batch_id', lpad(g::text, 4, '0'), 'start_cursor', g * 10, 'end_cursor', g * 10 + 10))
     FROM generate_series(1, p_n) g)))
$$;
CREATE TEMP TABLE t_batch AS SELECT pg_temp.new_task('tap_graph', 'rows') AS id;
SELECT is(pg_temp.run('tap_graph', id, 'plan', pg_temp.plan(1000)), 'complete', 'batch: the plan created 1,000 workers') FROM t_batch;
SELECT is(pg_temp.run('tap_graph', id, 'work_0001'), 'complete', 'batch: one worker ran') FROM t_batch;
CREATE TEMP TABLE g_batch AS SELECT id, tasker.api_task_graph_dot(id) AS dot, tasker.api_task_graph_dot(id, 0) AS unfolded FROM t_batch;
SELECT is(pg_temp.nodes(dot),
          ARRAY[tasker.dot_string(pg_temp.sid(id, 'plan')::text), tasker.dot_string(pg_temp.sid(id, 'plan') || '/work'),
                tasker.dot_string(pg_temp.sid(id, 'total')::text), tasker.dot_string(pg_temp.sid(id, 'report')::text)],
          'batch: four nodes — the plan, its 1,000 workers as one, the convergence, the report') FROM g_batch;
SELECT ok(position('shape=folder' IN pg_temp.node_line(dot, pg_temp.sid(id, 'plan') || '/work')) > 0
          AND position('<b>work</b> × 1000' IN pg_temp.node_line(dot, pg_temp.sid(id, 'plan') || '/work')) > 0,
          'batch: the folded node is a folder labelled work × 1000') FROM g_batch;
SELECT ok(position('pending 995 · enqueued 1 · in_progress 3 · complete 1' IN pg_temp.node_line(dot, pg_temp.sid(id, 'plan') || '/work')) > 0,
          'batch: it breaks the workers down by state (parallelism 4: 4 claimed, 1 done, 1 more dispatched)') FROM g_batch;
SELECT is((SELECT array_agg(m[1] ORDER BY i) FROM regexp_matches(pg_temp.node_line(dot, pg_temp.sid(id, 'plan') || '/work'),
             '<td width="([0-9]+)" height="7" bgcolor="#[0-9a-f]+">', 'g') WITH ORDINALITY AS x(m, i)),
          ARRAY['119', '3', '3', '3'], 'batch: its bar gives each state its share, and at least 3 points') FROM g_batch;
SELECT is(pg_temp.edges(dot), ARRAY[
            tasker.dot_string(pg_temp.sid(id, 'plan')::text) || ' -> ' || tasker.dot_string(pg_temp.sid(id, 'plan') || '/work'),
            tasker.dot_string(pg_temp.sid(id, 'plan')::text) || ' -> ' || tasker.dot_string(pg_temp.sid(id, 'total')::text)
              || ' [style=dashed, color="#868e96", tooltip="gate"]',
            tasker.dot_string(pg_temp.sid(id, 'plan') || '/work') || ' -> ' || tasker.dot_string(pg_temp.sid(id, 'total')::text),
            tasker.dot_string(pg_temp.sid(id, 'total')::text) || ' -> ' || tasker.dot_string(pg_temp.sid(id, 'report')::text)],
          'batch: 2,000 worker edges become two, once each; the gate stays dashed') FROM g_batch;
SELECT ok(position('1003 steps' IN dot) > 0 AND position('>pending 997<' IN dot) > 0,
          'batch: the title counts every step row, folded or not') FROM g_batch;
SELECT is(cardinality(pg_temp.nodes(unfolded)), 1003, 'batch: fold 0 draws every worker') FROM g_batch;
SELECT is(cardinality(pg_temp.edges(unfolded)), 2002, 'batch: fold 0 draws every worker edge') FROM g_batch;
SELECT is(cardinality(pg_temp.nodes(tasker.api_task_graph_dot(id, 1000))), 1003, 'batch: fold 1000 keeps a batch of exactly 1,000 unfolded') FROM g_batch;
CREATE TEMP TABLE t_small AS SELECT pg_temp.new_task('tap_graph', 'rows') AS id;
SELECT is(pg_temp.run('tap_graph', id, 'plan', pg_temp.plan(3)), 'complete', 'small batch: 3 workers') FROM t_small;
SELECT is(cardinality(pg_temp.nodes(tasker.api_task_graph_dot(id))), 6, 'small batch: 3 workers are not folded (default fold 8)') FROM t_small;

-- =============================================================================================
-- 5. Names that need escaping, in a template graph and a task graph; the template graph's shapes
-- =============================================================================================
SELECT pg_temp.tpl('tap_graph', 'odd "names"', '[
  {"name": "a \"quoted\" \\ step", "handler": {"callable": "noop"}},
  {"name": "<b>größe & co</b>", "type": "decision", "dependencies": ["a \"quoted\" \\ step"], "handler": {"callable": "d"}},
  {"name": "branch", "dependencies": ["<b>größe & co</b>"], "handler": {"callable": "noop"}}]') \g /dev/null
-- Registration refuses control characters; a row changed behind its back must still be safe.
UPDATE tasker.named_steps SET name = E'new\nline' WHERE name = 'branch'
  AND task_template_uuid = (SELECT task_template_uuid FROM tasker.task_templates WHERE name = 'odd "names"');
CREATE TEMP TABLE g_odd AS SELECT tasker.api_template_graph_dot('tap_graph', 'odd "names"', '1.0.0') AS dot;
SELECT ok((SELECT starts_with(dot, E'digraph "template tap_graph/odd \\"names\\"@1.0.0" {\n') FROM g_odd),
          'odd names: the graph ID is escaped');
SELECT is(pg_temp.nodes(dot), ARRAY['"a \"quoted\" \\ step"', '"<b>größe & co</b>"', '"new\nline"'],
          'odd names: node IDs are the escaped names (quote, backslash, newline; UTF-8 kept)') FROM g_odd;
SELECT is(pg_temp.edges(dot), ARRAY['"a \"quoted\" \\ step" -> "<b>größe & co</b>"', '"<b>größe & co</b>" -> "new\nline"'],
          'odd names: edges name the escaped IDs') FROM g_odd;
SELECT ok(position('<b>tap_graph/odd &quot;names&quot;@1.0.0</b>' IN dot) > 0, 'odd names: the HTML title escapes the quote') FROM g_odd;
SELECT ok(position('label="<b>größe & co</b>\nd · 3 attempts", shape=diamond, style="filled", fillcolor="#fff3bf"' IN dot) > 0
          AND position('label="new\nline\nnoop · 3 attempts", shape=box, style="rounded,filled,dashed"' IN dot) > 0,
          'odd names: template nodes shaped and filled by type; a step created at run time has a dashed outline') FROM g_odd;
CREATE TEMP TABLE t_odd AS SELECT pg_temp.new_task('tap_graph', 'odd "names"') AS id;
SELECT ok(position('label="a \"quoted\" \\ step\nenqueued · 0/3"' IN tasker.api_task_graph_dot(id)) > 0,
          'odd names: a task graph label escapes the name too') FROM t_odd;

-- =============================================================================================
-- 6. What does not exist
-- =============================================================================================
SELECT is(tasker.api_task_graph_dot('00000000-0000-7000-8000-000000000000'), NULL, 'unknown task: NULL (404)');
SELECT is(tasker.api_template_graph_dot('tap_graph', 'diamond', '9.9.9'), NULL, 'unknown template version: NULL (404)');

SELECT * FROM finish();
ROLLBACK;
