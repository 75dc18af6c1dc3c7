-- 0265_tasker_graph.sql — pictures of DAGs (issue 11): a task's steps, or a template's, as Graphviz
-- DOT text, each built in one statement. GET /v1/tasks/{uuid}/graph and
-- GET /v1/templates/{ns}/{name}/{version}/graph send it as it is; `taskerctl … visualize` renders it.
-- NULL when the task or template does not exist (the API answers 404).
--
-- Why DOT is built here and not in C: the rows are here, a 1,000-step task is one round trip, and
-- what the daemon sends stays a pass-through like every other document (sql/0260).
-- Escaping: every identifier and label goes through tasker.dot_string (quoted strings) or
-- tasker.dot_html (HTML-like labels). Step names cannot hold control characters (registration
-- refuses them) but the escaping does not rely on it: quotes, backslashes, newlines, <, >, & and
-- any control or direction character are escaped, and non-ASCII text passes as UTF-8 (DOT's
-- default charset).

-- tasker.graph_visible: p with the characters tasker.has_control_chars refuses (C0/C1 controls,
-- DEL, direction marks and overrides), except the newline, written as \uXXXX text: a label must
-- show them, not act on them (a DEL or U+202E would garble an SVG, and XML 1.0 forbids most C0).
CREATE OR REPLACE FUNCTION tasker.graph_visible(p text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN p !~ '[\x01-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]' THEN p
    ELSE (SELECT string_agg(CASE WHEN c ~ '[\x01-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]'
                                 THEN '\u' || lpad(to_hex(ascii(c)), 4, '0') ELSE c END, '' ORDER BY i)
          FROM regexp_split_to_table(p, '') WITH ORDINALITY AS x(c, i))
  END
$$;

-- tasker.dot_string: p as a DOT double-quoted string, for IDs and labels alike. Backslash and
-- quote are escaped (so no label escape such as \N or \G is ever taken from a name, and a name
-- ending in a backslash cannot swallow the closing quote); a newline becomes \n, a line break in
-- a label. NULL gives "".
CREATE OR REPLACE FUNCTION tasker.dot_string(p text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT '"' || replace(replace(replace(tasker.graph_visible(coalesce(p, '')), '\', '\\'), '"', '\"'), E'\n', '\n') || '"'
$$;

-- tasker.dot_html: p as text inside a Graphviz HTML-like label (& < > " escaped as entities, a
-- newline as <br/>). NULL gives ''.
CREATE OR REPLACE FUNCTION tasker.dot_html(p text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT replace(replace(replace(replace(replace(tasker.graph_visible(coalesce(p, '')),
           '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), E'\n', '<br/>')
$$;

-- tasker.graph_palette: the fill colour of each step state, in lifecycle order (the order of the
-- legend and of a folded batch's breakdown). docs/api.md shows it; tests/sql/graph.sql checks every
-- state of tasker.step_states has a colour.
CREATE OR REPLACE FUNCTION tasker.graph_palette()
RETURNS TABLE (state text, fill text, ord integer)
LANGUAGE sql IMMUTABLE AS $$
  VALUES ('pending',                             '#e9ecef', 1),   -- grey: not started
         ('waiting_for_retry',                   '#ffe8a1', 2),   -- amber: failed, will run again
         ('enqueued',                            '#cfe2ff', 3),   -- light blue: dispatched
         ('in_progress',                         '#8bb9fe', 4),   -- blue: running
         ('enqueued_for_orchestration',          '#c5b3f6', 5),   -- violet: handed back, success
         ('enqueued_as_error_for_orchestration', '#f7b787', 6),   -- orange: handed back, failure
         ('complete',                            '#a3cfbb', 7),   -- green
         ('resolved_manually',                   '#a6e3e9', 8),   -- teal: closed by an operator or a strategy
         ('error',                               '#f1aeb5', 9),   -- red: blocks the task
         ('cancelled',                           '#adb5bd', 10)   -- dark grey
$$;

-- tasker.graph_step_types: how each step type is drawn: its shape, and its fill in a template
-- graph (a task graph fills by state).
CREATE OR REPLACE FUNCTION tasker.graph_step_types()
RETURNS TABLE (step_type text, shape text, fill text, ord integer)
LANGUAGE sql IMMUTABLE AS $$
  VALUES ('standard',             'box',      '#f8f9fa', 1),
         ('decision',             'diamond',  '#fff3bf', 2),
         ('deferred_convergence', 'invhouse', '#e5dbff', 3),
         ('batchable',            'box3d',    '#d3f9d8', 4),
         ('batch_worker',         'folder',   '#c5f6fa', 5)
$$;

-- tasker.graph_duration: a duration in milliseconds as a person reads it: 840 ms, 12.3 s, 4m 05s,
-- 2h 07m, 3d 04h. NULL stays NULL.
CREATE OR REPLACE FUNCTION tasker.graph_duration(p_ms numeric) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
    WHEN p_ms IS NULL THEN NULL
    WHEN p_ms < 1000 THEN round(greatest(p_ms, 0)) || ' ms'
    WHEN p_ms < 60000 THEN to_char(trunc(p_ms / 1000, 1), 'FM990.0') || ' s'
    WHEN p_ms < 3600000 THEN floor(p_ms / 60000) || 'm ' || lpad(floor(p_ms / 1000 % 60)::text, 2, '0') || 's'
    WHEN p_ms < 86400000 THEN floor(p_ms / 3600000) || 'h ' || lpad(floor(p_ms / 60000 % 60)::text, 2, '0') || 'm'
    ELSE floor(p_ms / 86400000) || 'd ' || lpad(floor(p_ms / 3600000 % 24)::text, 2, '0') || 'h'
  END
$$;

-- tasker.graph_head: what both graphs start with: the digraph line, the title and legend (an
-- HTML-like table as the graph's label, so it never disturbs the layout) and the defaults.
CREATE OR REPLACE FUNCTION tasker.graph_head(p_id text, p_title text, p_subtitle text, p_legend_cells text[])
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT 'digraph ' || tasker.dot_string(p_id) || E' {\n'
    || '  graph [label=<<table border="0" cellborder="0" cellspacing="2" cellpadding="2">'
    || format('<tr><td align="left"><b>%s</b></td></tr>', tasker.dot_html(p_title))
    || format('<tr><td align="left"><font point-size="9">%s</font></td></tr>', tasker.dot_html(p_subtitle))
    -- the legend in a table of its own, so that its cells keep their own widths
    || CASE WHEN cardinality(p_legend_cells) > 0
            THEN '<tr><td align="left"><table border="0" cellborder="0" cellspacing="3" cellpadding="3"><tr>'
                 || array_to_string(p_legend_cells, '') || '</tr></table></td></tr>'
            ELSE '' END
    || E'</table>>, labelloc=t, labeljust=l, fontname="Helvetica", fontsize=11, rankdir=TB, nodesep=0.3, ranksep=0.45];\n'
    || E'  node [fontname="Helvetica", fontsize=10, margin="0.12,0.05", color="#495057", penwidth=1];\n'
    || E'  edge [color="#495057", arrowsize=0.7];\n'
$$;

-- tasker.graph_legend_cell: one legend entry: a cell filled with the colour, holding the text.
CREATE OR REPLACE FUNCTION tasker.graph_legend_cell(p_fill text, p_text text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT format('<td bgcolor="%s" border="1" color="#adb5bd"><font point-size="9">%s</font></td>', p_fill, tasker.dot_html(p_text))
$$;

-- tasker.api_task_graph_dot(task_uuid, fold DEFAULT 8): the task's DAG as it is now.
--   Nodes: one per step row (so decision branches and batch workers appear once created), shaped
--   by step type (tasker.graph_step_types), filled by state (tasker.graph_palette), labelled with
--   the name, then state · attempts/max_attempts · duration. The duration runs from the step's
--   first claim (its first transition into in_progress) to its last transition when it is
--   complete, error, cancelled or resolved_manually, else to now; none before its first claim.
--   Folding: the batch workers one batchable step created (same created_by and worker template)
--   become one node when there are more than `fold` of them (0: never fold): a folder labelled
--   with the template's name × count, the count per state and a bar of the same proportions.
--   Edges: from workflow_step_edges, once per pair of nodes; an edge that is a gate in the
--   template (named_step_edges.kind = 'gate') is dashed and grey.
--   The graph's label holds the title (template, task state), the task's id and the legend:
--   one cell per state present, with its count.
CREATE OR REPLACE FUNCTION tasker.api_task_graph_dot(p_task_uuid uuid, p_fold integer DEFAULT 8) RETURNS text
LANGUAGE sql AS $$
  WITH task AS (
    SELECT t.task_uuid, t.namespace, t.state, tt.name, tt.version
    FROM tasker.tasks t
    JOIN tasker.task_templates tt ON tt.task_template_uuid = t.task_template_uuid
    WHERE t.task_uuid = p_task_uuid),
  step AS (
    SELECT s.workflow_step_uuid, s.name, s.state, s.attempts, s.max_attempts, s.created_by, s.named_step_uuid,
           n.step_type, n.position, n.name AS template_step,
           x.started,
           CASE WHEN s.state IN ('complete', 'error', 'cancelled', 'resolved_manually') THEN x.last_change
                ELSE clock_timestamp() END AS ended
    FROM tasker.workflow_steps s
    JOIN tasker.named_steps n ON n.named_step_uuid = s.named_step_uuid
    CROSS JOIN LATERAL (SELECT min(x.created_at) FILTER (WHERE x.to_state = 'in_progress') AS started,
                               max(x.created_at) AS last_change
                        FROM tasker.workflow_step_transitions x
                        WHERE x.workflow_step_uuid = s.workflow_step_uuid) x
    WHERE s.task_uuid = p_task_uuid),
  fold AS (
    SELECT s.created_by, s.named_step_uuid
    FROM step s
    WHERE s.step_type = 'batch_worker' AND s.created_by IS NOT NULL AND p_fold > 0
    GROUP BY 1, 2
    HAVING count(*) > p_fold),
  placed AS (
    SELECT s.*, f.created_by IS NOT NULL AS folded,
           CASE WHEN f.created_by IS NULL THEN s.workflow_step_uuid::text
                ELSE s.created_by::text || '/' || s.template_step END AS node
    FROM step s
    LEFT JOIN fold f ON f.created_by = s.created_by AND f.named_step_uuid = s.named_step_uuid),
  plain AS (
    SELECT p.position, p.name AS sort_name,
           format('  %s [label=%s, shape=%s, style="%s", fillcolor="%s", tooltip=%s];',
                  tasker.dot_string(p.node),
                  tasker.dot_string(p.name || E'\n' || p.state || ' · ' || p.attempts || '/' || p.max_attempts
                                    || coalesce(' · ' || tasker.graph_duration(
                                         (extract(epoch FROM p.ended - p.started) * 1000)::numeric), '')),
                  ty.shape, CASE WHEN ty.shape = 'box' THEN 'rounded,filled' ELSE 'filled' END,
                  coalesce(pal.fill, '#ffffff'),
                  tasker.dot_string(p.step_type || ' step ' || p.name || ': ' || p.state || ' (step ' || p.workflow_step_uuid || ')'))
             AS line
    FROM placed p
    LEFT JOIN tasker.graph_step_types() ty ON ty.step_type = p.step_type
    LEFT JOIN tasker.graph_palette() pal ON pal.state = p.state
    WHERE NOT p.folded),
  folded_state AS (
    SELECT p.node, p.state, count(*) AS n, sum(count(*)) OVER (PARTITION BY p.node) AS total,
           coalesce(pal.ord, 99) AS ord, coalesce(pal.fill, '#ffffff') AS fill
    FROM placed p
    LEFT JOIN tasker.graph_palette() pal ON pal.state = p.state
    WHERE p.folded
    GROUP BY 1, 2, 5, 6),
  folded_kind AS (
    SELECT fs.node, count(*) AS cells,
           string_agg(fs.state || ' ' || fs.n, ' · ' ORDER BY fs.ord) AS breakdown,
           -- a bar 120 points wide; each state at least 3 so that one error among 1,000 shows
           string_agg(format('<td width="%s" height="7" bgcolor="%s"></td>', greatest(3, round(120.0 * fs.n / fs.total)), fs.fill),
                      '' ORDER BY fs.ord) AS bar
    FROM folded_state fs
    GROUP BY fs.node),
  folded_group AS (
    SELECT p.node, p.template_step, p.created_by, min(p.position) AS position, min(p.name) AS sort_name,
           count(*) AS n, sum(p.attempts) AS runs, min(p.started) AS started, max(p.ended) AS ended
    FROM placed p
    WHERE p.folded
    GROUP BY 1, 2, 3),
  folded AS (
    SELECT g.position, g.sort_name,
           format('  %s [shape=folder, style="filled", fillcolor="#ffffff", tooltip=%s, label=<<table border="0" cellborder="0" cellspacing="0" cellpadding="1">'
                  '<tr><td colspan="%s"><b>%s</b> × %s</td></tr>'
                  '<tr><td colspan="%s"><font point-size="9">%s</font></td></tr>'
                  '<tr><td colspan="%s"><font point-size="9">%s</font></td></tr><tr>%s</tr></table>>];',
                  tasker.dot_string(g.node),
                  tasker.dot_string(g.n || ' batch workers ' || g.template_step || ' created by step ' || g.created_by
                                    || ' (folded: more than ' || p_fold || '; ?fold=0 draws each)'),
                  k.cells, tasker.dot_html(g.template_step), g.n,
                  k.cells, tasker.dot_html(k.breakdown),
                  k.cells, tasker.dot_html(g.runs || ' runs'
                                           || coalesce(' · ' || tasker.graph_duration(
                                                (extract(epoch FROM g.ended - g.started) * 1000)::numeric), '')),
                  k.bar) AS line
    FROM folded_group g
    JOIN folded_kind k ON k.node = g.node),
  edge AS (
    SELECT DISTINCT pf.node AS src, pt.node AS dst, coalesce(ne.kind, 'declared') AS kind,
           pf.position AS src_pos, pt.position AS dst_pos
    FROM placed pt
    -- each step's parents through the child index (the aggregate keeps the planner from turning
    -- this into one scan of every edge of every task: workflow_step_edges has no task index)
    CROSS JOIN LATERAL (SELECT array_agg(e.from_step_uuid) AS parents
                        FROM tasker.workflow_step_edges e
                        WHERE e.to_step_uuid = pt.workflow_step_uuid) x
    CROSS JOIN LATERAL unnest(x.parents) AS par(step_uuid)
    JOIN placed pf ON pf.workflow_step_uuid = par.step_uuid
    LEFT JOIN tasker.named_step_edges ne ON ne.from_named_step_uuid = pf.named_step_uuid
                                        AND ne.to_named_step_uuid = pt.named_step_uuid),
  legend AS (
    SELECT coalesce(array_agg(tasker.graph_legend_cell(pal.fill, pal.state || ' ' || c.n) ORDER BY pal.ord), '{}') AS cells,
           coalesce(sum(c.n), 0) AS steps
    FROM (SELECT s.state, count(*) AS n FROM step s GROUP BY 1) c
    JOIN tasker.graph_palette() pal ON pal.state = c.state)
  SELECT tasker.graph_head('task ' || t.task_uuid,
                           t.namespace || '/' || t.name || '@' || t.version || ' — ' || t.state,
                           'task ' || t.task_uuid || ' · ' || l.steps || ' steps', l.cells)
    || coalesce((SELECT string_agg(x.line, E'\n' ORDER BY x.position, x.sort_name) || E'\n'
                 FROM (SELECT position, sort_name, line FROM plain
                       UNION ALL SELECT position, sort_name, line FROM folded) x), '')
    || coalesce((SELECT string_agg(format('  %s -> %s%s;', tasker.dot_string(e.src), tasker.dot_string(e.dst),
                                          CASE WHEN e.kind = 'gate' THEN ' [style=dashed, color="#868e96", tooltip="gate"]' ELSE '' END),
                                   E'\n' ORDER BY e.src_pos, e.dst_pos, e.src, e.dst) || E'\n'
                 FROM edge e), '')
    || E'}\n'
  FROM task t CROSS JOIN legend l
$$;

-- tasker.api_template_graph_dot(namespace, name, version): a template's steps and edges. Nodes
-- are the named steps (ID = the step's name), shaped and filled by step type
-- (tasker.graph_step_types), labelled with the name, the handler and the attempts allowed; a step
-- not created with the task (a decision's branch, a batch worker, what follows them) has a dashed
-- outline. Declared dependencies are solid edges, gate edges dashed. The legend names the types
-- present, with their shapes.
CREATE OR REPLACE FUNCTION tasker.api_template_graph_dot(p_namespace text, p_name text, p_version text) RETURNS text
LANGUAGE sql AS $$
  WITH tpl AS (
    SELECT tt.task_template_uuid, n.name AS namespace, tt.name, tt.version, tt.description
    FROM tasker.task_templates tt
    JOIN tasker.task_namespaces n ON n.task_namespace_uuid = tt.task_namespace_uuid
    WHERE n.name = p_namespace AND tt.name = p_name AND tt.version = p_version),
  step AS (
    SELECT s.*, ty.shape, ty.fill, ty.ord
    FROM tasker.named_steps s
    JOIN tpl ON tpl.task_template_uuid = s.task_template_uuid
    LEFT JOIN tasker.graph_step_types() ty ON ty.step_type = s.step_type),
  legend AS (
    SELECT coalesce(array_agg(tasker.graph_legend_cell(c.fill, c.step_type || ' (' || c.shape || ') ' || c.n) ORDER BY c.ord),
                    '{}') AS cells,
           coalesce(sum(c.n), 0) AS steps,
           bool_or(c.later) AS any_later
    FROM (SELECT s.step_type, s.shape, s.fill, s.ord, count(*) AS n, bool_or(NOT s.init_created) AS later
          FROM step s GROUP BY 1, 2, 3, 4) c)
  SELECT tasker.graph_head('template ' || t.namespace || '/' || t.name || '@' || t.version,
                           t.namespace || '/' || t.name || '@' || t.version,
                           coalesce(t.description || ' · ', '') || l.steps || ' steps'
                           || CASE WHEN l.any_later THEN ' · dashed outline: created at run time' ELSE '' END
                           || CASE WHEN EXISTS (SELECT 1 FROM tasker.named_step_edges e
                                                WHERE e.task_template_uuid = t.task_template_uuid AND e.kind = 'gate')
                                   THEN ' · dashed edge: gate' ELSE '' END,
                           l.cells)
    || coalesce((SELECT string_agg(format('  %s [label=%s, shape=%s, style="%s", fillcolor="%s", tooltip=%s];',
                                          tasker.dot_string(s.name),
                                          tasker.dot_string(s.name || E'\n' || s.handler_callable
                                                            || coalesce('.' || s.handler_method, '')
                                                            || ' · ' || s.max_attempts
                                                            || CASE WHEN s.max_attempts = 1 THEN ' attempt' ELSE ' attempts' END),
                                          coalesce(s.shape, 'box'),
                                          CASE WHEN coalesce(s.shape, 'box') = 'box' THEN 'rounded,' ELSE '' END
                                            || CASE WHEN s.init_created THEN 'filled' ELSE 'filled,dashed' END,
                                          coalesce(s.fill, '#ffffff'),
                                          tasker.dot_string(s.step_type || ' step ' || s.name
                                                            || coalesce(': ' || s.description, '')
                                                            || CASE WHEN s.init_created THEN '' ELSE ' (created at run time)' END)),
                                   E'\n' ORDER BY s.position) || E'\n'
                 FROM step s), '')
    || coalesce((SELECT string_agg(format('  %s -> %s%s;', tasker.dot_string(p.name), tasker.dot_string(c.name),
                                          CASE WHEN e.kind = 'gate' THEN ' [style=dashed, color="#868e96", tooltip="gate"]' ELSE '' END),
                                   E'\n' ORDER BY p.position, c.position) || E'\n'
                 FROM tasker.named_step_edges e
                 JOIN step p ON p.named_step_uuid = e.from_named_step_uuid
                 JOIN step c ON c.named_step_uuid = e.to_named_step_uuid
                 WHERE e.task_template_uuid = t.task_template_uuid), '')
    || E'}\n'
  FROM tpl t CROSS JOIN legend l
$$;
