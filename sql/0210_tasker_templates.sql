-- 0210_tasker_templates.sql — template registration: validate a task template (tasker-core's keys),
-- refuse bad ones with a message naming the step, store it, and create its namespace's queues.

-- tasker.template_error: raise TK400 with a message prefixed by the template's name.
CREATE OR REPLACE FUNCTION tasker.template_error(p_template text, p_message text) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  -- A name that is refused for its control characters must not carry them into the message.
  RAISE EXCEPTION 'template %: %',
    CASE WHEN p_template IS NULL THEN '(unnamed)' WHEN tasker.has_control_chars(p_template) THEN tasker.quoted_name(p_template)
         ELSE p_template END, p_message USING ERRCODE = 'TK400';
END $$;

-- tasker.json_int: an integer field of a JSON object within bounds, its default when absent;
-- TK400 naming the field otherwise.
CREATE OR REPLACE FUNCTION tasker.json_int(p_obj jsonb, p_key text, p_default integer,
                                           p_min integer, p_max integer, p_where text)
RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
#variable_conflict use_column
DECLARE
  v jsonb := p_obj -> p_key;
  n integer;
BEGIN
  IF v IS NULL OR v = 'null'::jsonb THEN
    RETURN p_default;
  END IF;
  n := tasker.int_or_null(v);
  IF n IS NULL OR n < p_min OR n > p_max THEN
    RAISE EXCEPTION '%: % must be an integer between % and % (got %)', p_where, p_key, p_min, p_max, v
      USING ERRCODE = 'TK400';
  END IF;
  RETURN n;
END $$;

CREATE OR REPLACE FUNCTION tasker.json_text(p_obj jsonb, p_key text, p_default text, p_where text)
RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
#variable_conflict use_column
DECLARE
  v jsonb := p_obj -> p_key;
BEGIN
  IF v IS NULL OR v = 'null'::jsonb THEN
    RETURN p_default;
  END IF;
  IF jsonb_typeof(v) <> 'string' THEN
    RAISE EXCEPTION '%: % must be a string (got %)', p_where, p_key, v USING ERRCODE = 'TK400';
  END IF;
  RETURN v #>> '{}';
END $$;

-- tasker.ensure_namespace: create a namespace and its two queues if they do not exist yet. Queue
-- creation is DDL, so it happens here, at registration, never on the hot path (DESIGN §4).
CREATE OR REPLACE FUNCTION tasker.ensure_namespace(p_namespace text, p_description text DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_uuid uuid;
BEGIN
  IF p_namespace IS NULL OR p_namespace !~ '^[a-z][a-z0-9_]{0,28}$' THEN
    RAISE EXCEPTION 'invalid namespace %: must match ^[a-z][a-z0-9_]{0,28}$ (lower case, at most 29 characters)',
      quote_nullable(p_namespace) USING ERRCODE = 'TK400';
  END IF;
  SELECT task_namespace_uuid INTO v_uuid FROM tasker.task_namespaces WHERE name = p_namespace;
  IF FOUND THEN
    RETURN v_uuid;
  END IF;
  -- Serialize concurrent first registrations of the same namespace.
  PERFORM pg_advisory_xact_lock(hashtext('tasker.namespace.' || p_namespace));
  INSERT INTO tasker.task_namespaces (name, description) VALUES (p_namespace, p_description)
  ON CONFLICT (name) DO NOTHING;
  SELECT task_namespace_uuid INTO v_uuid FROM tasker.task_namespaces WHERE name = p_namespace;
  PERFORM pgmq.create(tasker.dispatch_queue(p_namespace));
  PERFORM pgmq.create(tasker.completion_queue(p_namespace));
  PERFORM tasker.queue_accessors(tasker.dispatch_queue(p_namespace));
  PERFORM tasker.queue_accessors(tasker.completion_queue(p_namespace));
  RETURN v_uuid;
END $$;

-- tasker.step_type_of: a step's type as written (key `type` or `step_type`; tasker-core's guides
-- also say `deferred` and `decision_point`), normalized; NULL when it names no type we know.
CREATE OR REPLACE FUNCTION tasker.step_type_of(p_step jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE coalesce(p_step->>'type', p_step->>'step_type', 'standard')
           WHEN 'standard' THEN 'standard'
           WHEN 'decision' THEN 'decision'
           WHEN 'decision_point' THEN 'decision'
           WHEN 'deferred_convergence' THEN 'deferred_convergence'
           WHEN 'deferred' THEN 'deferred_convergence'
           WHEN 'batchable' THEN 'batchable'
           WHEN 'batch_worker' THEN 'batch_worker'
         END
$$;

-- tasker.register_task_template(template jsonb): validate and store a template.
-- Keys (tasker-core's): name, namespace_name, version (default '0.1.0'), description,
-- identity_strategy (strict | caller_provided | always_unique), lifecycle{…}, steps[{name,
-- description, handler{callable, method, resolver, initialization}, type (alias step_type:
-- standard | decision | deferred_convergence | batchable | batch_worker), dependencies[] (alias
-- depends_on), retry{retryable, max_attempts, backoff, backoff_base_ms, max_backoff_ms},
-- timeout_seconds, batch_config{batch_size, parallelism, cursor_field, failure_strategy,
-- checkpoint_interval}}]. Other keys are stored with the template and not acted on
-- (docs/dynamic-steps.md lists them).
-- Cost is linear in steps + dependencies (one topological pass), and a template has at most
-- tasker.max_template_steps steps (the daemon's templates.max_steps; default 1000).
-- Returns the template's uuid and status: created | unchanged | updated. A version already used
-- by tasks cannot change (TK409: register a new version); an unused one is replaced.
CREATE OR REPLACE FUNCTION tasker.register_task_template(p_template jsonb)
RETURNS TABLE (task_template_uuid uuid, namespace text, name text, version text, status text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_name text;
  v_ns text;
  v_version text;
  v_strategy text;
  v_step jsonb;
  v_where text;
  v_steps jsonb[] := '{}';
  v_deps text[];
  v_dep text;
  v_retry jsonb;
  v_batch jsonb;
  v_type text;
  v_max_attempts integer;
  v_ns_uuid uuid;
  v_existing record;
  v_tpl_uuid uuid;
  v_n integer;
  v_max integer := tasker.setting_int('max_template_steps', 1000, 1, 100000);
  -- The topological pass, over step positions 1..n: edges sorted by parent (e_to), each parent's
  -- first edge (v_first), in-degrees, a queue, and what each step learns from its parents.
  v_names text[];
  v_types text[];
  e_from integer[];
  e_to integer[];
  v_first integer[];
  v_indeg integer[];
  v_queue integer[];
  v_head integer := 1;
  v_init boolean[];
  v_any_init boolean[];
  v_all_init boolean[];
  v_dec_parent boolean[];
  v_batchable_parents integer[];
  v_worker_children integer[];
  i integer;
  j integer;
  c integer;
  v_cycle text[];
BEGIN
  IF p_template IS NULL OR jsonb_typeof(p_template) <> 'object' THEN
    RAISE EXCEPTION 'a template must be a JSON object' USING ERRCODE = 'TK400';
  END IF;
  v_name := tasker.json_text(p_template, 'name', NULL, 'template');
  IF v_name IS NULL OR length(v_name) NOT BETWEEN 1 AND 255 THEN
    PERFORM tasker.template_error(v_name, 'name is required (1 to 255 characters)');
  END IF;
  IF tasker.has_control_chars(v_name) THEN
    RAISE EXCEPTION 'template %: name contains control or direction characters', tasker.quoted_name(v_name) USING ERRCODE = 'TK400';
  END IF;
  v_ns := tasker.json_text(p_template, 'namespace_name', NULL, 'template ' || v_name);
  IF v_ns IS NULL THEN
    PERFORM tasker.template_error(v_name, 'namespace_name is required');
  END IF;
  IF v_ns !~ '^[a-z][a-z0-9_]{0,28}$' THEN
    PERFORM tasker.template_error(v_name, format('namespace_name %s must match ^[a-z][a-z0-9_]{0,28}$', tasker.quoted_name(v_ns)));
  END IF;
  v_version := tasker.json_text(p_template, 'version', '0.1.0', 'template ' || v_name);
  IF v_version !~ '^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$' THEN
    PERFORM tasker.template_error(v_name, format('version %s is not a valid version string', tasker.quoted_name(v_version)));
  END IF;
  v_strategy := tasker.json_text(p_template, 'identity_strategy', 'strict', 'template ' || v_name);
  IF v_strategy NOT IN ('strict', 'caller_provided', 'always_unique') THEN
    PERFORM tasker.template_error(v_name, format('identity_strategy must be strict, caller_provided or always_unique (got %s)', v_strategy));
  END IF;
  IF p_template ? 'lifecycle' AND jsonb_typeof(p_template->'lifecycle') NOT IN ('object', 'null') THEN
    PERFORM tasker.template_error(v_name, 'lifecycle must be an object');
  END IF;
  IF jsonb_typeof(p_template->'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(p_template->'steps') = 0 THEN
    PERFORM tasker.template_error(v_name, 'steps must be a non-empty array');
  END IF;
  IF jsonb_array_length(p_template->'steps') > v_max THEN
    PERFORM tasker.template_error(v_name, format('%s steps: a template may have at most %s (templates.max_steps)',
                                                 jsonb_array_length(p_template->'steps'), v_max));
  END IF;

  -- Each step: shape, defaults, bounds. Normalized steps collect in v_steps (position = index).
  i := 0;
  FOR v_step IN SELECT value FROM jsonb_array_elements(p_template->'steps') LOOP
    i := i + 1;
    v_where := format('template %s: step #%s', v_name, i);
    IF jsonb_typeof(v_step) <> 'object' THEN
      RAISE EXCEPTION '%: must be an object', v_where USING ERRCODE = 'TK400';
    END IF;
    IF jsonb_typeof(v_step->'name') IS DISTINCT FROM 'string' OR length(v_step->>'name') NOT BETWEEN 1 AND 128 THEN
      RAISE EXCEPTION '%: name is required (a string of 1 to 128 characters)', v_where USING ERRCODE = 'TK400';
    END IF;
    IF tasker.has_control_chars(v_step->>'name') THEN
      RAISE EXCEPTION '%: name % contains control or direction characters', v_where, tasker.quoted_name(v_step->>'name')
        USING ERRCODE = 'TK400';
    END IF;
    v_where := format('template %s: step %s', v_name, v_step->>'name');
    IF jsonb_typeof(v_step->'handler') IS DISTINCT FROM 'object'
       OR jsonb_typeof(v_step->'handler'->'callable') IS DISTINCT FROM 'string'
       OR length(v_step->'handler'->>'callable') NOT BETWEEN 1 AND 1024 THEN
      RAISE EXCEPTION '%: handler.callable is required (a non-empty string)', v_where USING ERRCODE = 'TK400';
    END IF;
    IF v_step->'handler' ? 'initialization' AND v_step->'handler'->'initialization' <> 'null'::jsonb
       AND jsonb_typeof(v_step->'handler'->'initialization') <> 'object' THEN
      RAISE EXCEPTION '%: handler.initialization must be an object', v_where USING ERRCODE = 'TK400';
    END IF;
    v_type := tasker.step_type_of(v_step);
    IF v_type IS NULL THEN
      RAISE EXCEPTION '%: unknown step type % (standard, decision, deferred_convergence, batchable or batch_worker)',
        v_where, coalesce(v_step->'type', v_step->'step_type') USING ERRCODE = 'TK400';
    END IF;
    v_deps := '{}';
    IF coalesce(v_step->'dependencies', v_step->'depends_on') IS NOT NULL
       AND coalesce(v_step->'dependencies', v_step->'depends_on') <> 'null'::jsonb THEN
      IF jsonb_typeof(coalesce(v_step->'dependencies', v_step->'depends_on')) <> 'array' THEN
        RAISE EXCEPTION '%: dependencies must be an array of step names', v_where USING ERRCODE = 'TK400';
      END IF;
      FOR v_dep IN SELECT d #>> '{}' FROM jsonb_array_elements(coalesce(v_step->'dependencies', v_step->'depends_on')) AS d LOOP
        IF v_dep IS NULL THEN
          RAISE EXCEPTION '%: dependencies must be step names', v_where USING ERRCODE = 'TK400';
        END IF;
        IF v_dep = v_step->>'name' THEN
          RAISE EXCEPTION '%: depends on itself', v_where USING ERRCODE = 'TK400';
        END IF;
        v_deps := v_deps || v_dep;
      END LOOP;
    END IF;
    v_retry := coalesce(nullif(v_step->'retry', 'null'::jsonb), '{}'::jsonb);
    IF jsonb_typeof(v_retry) <> 'object' THEN
      RAISE EXCEPTION '%: retry must be an object', v_where USING ERRCODE = 'TK400';
    END IF;
    IF v_retry ? 'retryable' AND jsonb_typeof(v_retry->'retryable') NOT IN ('boolean', 'null') THEN
      RAISE EXCEPTION '%: retry.retryable must be true or false', v_where USING ERRCODE = 'TK400';
    END IF;
    IF coalesce(v_retry->>'backoff', 'exponential') NOT IN ('none', 'linear', 'exponential', 'fibonacci') THEN
      RAISE EXCEPTION '%: retry.backoff must be none, linear, exponential or fibonacci (got %)', v_where, v_retry->'backoff'
        USING ERRCODE = 'TK400';
    END IF;
    -- max_attempts counts the first run; tasker-core's 0 means one run and no retry, as 1 does.
    v_max_attempts := greatest(1, tasker.json_int(v_retry, 'max_attempts', 3, 0, 100, v_where || ': retry'));
    v_batch := NULL;
    IF v_type = 'batch_worker' THEN
      v_batch := coalesce(nullif(v_step->'batch_config', 'null'::jsonb), '{}'::jsonb);
      IF jsonb_typeof(v_batch) <> 'object' THEN
        RAISE EXCEPTION '%: batch_config must be an object', v_where USING ERRCODE = 'TK400';
      END IF;
      IF coalesce(v_batch->>'failure_strategy', 'continue_on_failure') NOT IN ('continue_on_failure', 'fail_fast', 'isolate') THEN
        RAISE EXCEPTION '%: batch_config.failure_strategy must be continue_on_failure, fail_fast or isolate (got %)',
          v_where, v_batch->'failure_strategy' USING ERRCODE = 'TK400';
      END IF;
      -- tasker-core's builder defaults where the template leaves a key out.
      v_batch := jsonb_build_object(
        'batch_size', tasker.json_int(v_batch, 'batch_size', 1000, 1, 100000, v_where || ': batch_config'),
        'parallelism', tasker.json_int(v_batch, 'parallelism', 10, 1, 1000, v_where || ': batch_config'),
        'cursor_field', tasker.json_text(v_batch, 'cursor_field', 'id', v_where || ': batch_config'),
        'failure_strategy', coalesce(v_batch->>'failure_strategy', 'continue_on_failure'),
        'checkpoint_interval', tasker.json_int(v_batch, 'checkpoint_interval', 0, 0, 100000000, v_where || ': batch_config'));
    ELSIF v_step ? 'batch_config' AND v_step->'batch_config' <> 'null'::jsonb THEN
      RAISE EXCEPTION '%: batch_config belongs on a batch_worker step (this one is %)', v_where, v_type USING ERRCODE = 'TK400';
    END IF;
    v_steps := v_steps || jsonb_build_object(
      'name', v_step->>'name',
      'position', i,
      'type', v_type,
      'description', v_step->>'description',
      'callable', v_step->'handler'->>'callable',
      'method', tasker.json_text(v_step->'handler', 'method', NULL, v_where || ': handler'),
      'resolver', tasker.json_text(v_step->'handler', 'resolver', NULL, v_where || ': handler'),
      'initialization', coalesce(nullif(v_step->'handler'->'initialization', 'null'::jsonb), '{}'::jsonb),
      'dependencies', to_jsonb(v_deps),
      'batch_config', v_batch,
      'retryable', coalesce((v_retry->>'retryable')::boolean, true),
      'max_attempts', v_max_attempts,
      'backoff', coalesce(v_retry->>'backoff', 'exponential'),
      'backoff_base_ms', tasker.json_int(v_retry, 'backoff_base_ms', 1000, 0, 3600000, v_where || ': retry'),
      'max_backoff_ms', tasker.json_int(v_retry, 'max_backoff_ms', 30000, 0, 3600000, v_where || ': retry'),
      'timeout_seconds', tasker.json_int(v_step, 'timeout_seconds', NULL, 1, 86400 * 7, v_where));
  END LOOP;

  -- Names unique; every dependency names a step; edges as (parent position, child position),
  -- a dependency listed twice counted once. All hash joins: linear.
  SELECT s->>'name' INTO v_dep FROM unnest(v_steps) AS s GROUP BY s->>'name' HAVING count(*) > 1 LIMIT 1;
  IF FOUND THEN
    PERFORM tasker.template_error(v_name, format('step %s: duplicate step name', v_dep));
  END IF;
  SELECT s->>'name', d INTO v_where, v_dep
  FROM unnest(v_steps) AS s CROSS JOIN jsonb_array_elements_text(s->'dependencies') AS d
  WHERE NOT EXISTS (SELECT 1 FROM unnest(v_steps) AS p WHERE p->>'name' = d)
  LIMIT 1;
  IF FOUND THEN
    PERFORM tasker.template_error(v_name, format('step %s depends on unknown step %s', v_where, v_dep));
  END IF;
  SELECT array_agg(s->>'name' ORDER BY (s->>'position')::integer), array_agg(s->>'type' ORDER BY (s->>'position')::integer)
  INTO v_names, v_types FROM unnest(v_steps) AS s;
  v_n := cardinality(v_names);
  SELECT coalesce(array_agg(e.p ORDER BY e.p, e.c), '{}'), coalesce(array_agg(e.c ORDER BY e.p, e.c), '{}')
  INTO e_from, e_to
  FROM (SELECT DISTINCT (p->>'position')::integer AS p, (s->>'position')::integer AS c
        FROM unnest(v_steps) AS s
        CROSS JOIN jsonb_array_elements_text(s->'dependencies') AS d
        JOIN unnest(v_steps) AS p ON p->>'name' = d) e;
  -- v_first[i]: index in e_to of step i's first child edge (edges are sorted by parent);
  -- v_first[n+1] closes the last range. In-degrees by counting.
  v_first := array_fill(0, ARRAY[v_n + 1]);
  v_indeg := array_fill(0, ARRAY[v_n]);
  FOR j IN 1 .. cardinality(e_to) LOOP
    v_first[e_from[j] + 1] := v_first[e_from[j] + 1] + 1;
    v_indeg[e_to[j]] := v_indeg[e_to[j]] + 1;
  END LOOP;
  v_first[1] := 1;
  FOR i IN 2 .. v_n + 1 LOOP
    v_first[i] := v_first[i] + v_first[i - 1];
  END LOOP;
  v_init := array_fill(NULL::boolean, ARRAY[v_n]);
  v_any_init := array_fill(false, ARRAY[v_n]);
  v_all_init := array_fill(true, ARRAY[v_n]);
  v_dec_parent := array_fill(false, ARRAY[v_n]);
  v_batchable_parents := array_fill(0, ARRAY[v_n]);
  v_worker_children := array_fill(0, ARRAY[v_n]);
  v_queue := ARRAY(SELECT g FROM generate_series(1, v_n) AS g WHERE v_indeg[g] = 0);

  -- Kahn's algorithm: a step leaves the queue after all its parents, so what it learns from them
  -- is final when it does. Whether a step is created with the task (DESIGN §12):
  --   batch_worker: never (its batchable parent's plan creates it);
  --   a declared child of a decision: never (the decision chooses it);
  --   deferred_convergence: when at least one declared parent is;
  --   anything else: when every declared parent is (a root always is).
  WHILE v_head <= cardinality(v_queue) LOOP
    i := v_queue[v_head];
    v_head := v_head + 1;
    v_init[i] := CASE WHEN v_types[i] = 'batch_worker' OR v_dec_parent[i] THEN false
                      WHEN v_types[i] = 'deferred_convergence' THEN v_any_init[i]
                      ELSE v_all_init[i] END;
    FOR j IN v_first[i] .. v_first[i + 1] - 1 LOOP
      c := e_to[j];
      v_any_init[c] := v_any_init[c] OR v_init[i];
      v_all_init[c] := v_all_init[c] AND v_init[i];
      v_dec_parent[c] := v_dec_parent[c] OR v_types[i] = 'decision';
      IF v_types[i] = 'batchable' THEN v_batchable_parents[c] := v_batchable_parents[c] + 1; END IF;
      IF v_types[c] = 'batch_worker' THEN v_worker_children[i] := v_worker_children[i] + 1; END IF;
      v_indeg[c] := v_indeg[c] - 1;
      IF v_indeg[c] = 0 THEN v_queue := v_queue || c; END IF;
    END LOOP;
  END LOOP;
  IF cardinality(v_queue) < v_n THEN
    -- Name one cycle: from a step left over, follow dependencies among the left-over steps (each
    -- has one, or it would have left) until a step repeats.
    SELECT min(g) INTO i FROM generate_series(1, v_n) AS g WHERE v_indeg[g] > 0;
    v_cycle := ARRAY[v_names[i]];
    LOOP
      SELECT p INTO j FROM (SELECT (p->>'position')::integer AS p, p->>'name' AS pn
                            FROM unnest(v_steps) AS s
                            CROSS JOIN jsonb_array_elements_text(s->'dependencies') AS d
                            JOIN unnest(v_steps) AS p ON p->>'name' = d
                            WHERE (s->>'position')::integer = i) x
      WHERE v_indeg[x.p] > 0 ORDER BY x.pn LIMIT 1;
      i := j;
      EXIT WHEN v_names[i] = ANY (v_cycle);
      v_cycle := v_cycle || v_names[i];
    END LOOP;
    v_cycle := v_cycle[array_position(v_cycle, v_names[i]):] || v_names[i];
    PERFORM tasker.template_error(v_name, format('dependency cycle: %s (each step depends on the next)',
                                                 array_to_string(v_cycle, ' -> ')));
  END IF;

  -- How the dynamic types must be wired; each refusal names the step.
  FOR i IN 1 .. v_n LOOP
    v_step := v_steps[i];
    IF v_types[i] = 'batch_worker' AND v_batchable_parents[i] <> 1 THEN
      PERFORM tasker.template_error(v_name, format('step %s: a batch_worker needs exactly one batchable step among its dependencies (it has %s)',
                                                   v_names[i], v_batchable_parents[i]));
    ELSIF v_types[i] = 'batchable' AND v_worker_children[i] = 0 THEN
      PERFORM tasker.template_error(v_name, format('step %s: a batchable step needs a batch_worker step that depends on it', v_names[i]));
    ELSIF v_types[i] = 'batchable' AND v_step->'initialization' ? 'worker_template_name'
          AND NOT EXISTS (SELECT 1 FROM unnest(v_steps) AS w
                          WHERE w->>'name' = v_step->'initialization'->>'worker_template_name'
                            AND w->>'type' = 'batch_worker' AND w->'dependencies' ? v_names[i]) THEN
      PERFORM tasker.template_error(v_name, format('step %s: worker_template_name %s is not a batch_worker step that depends on it',
                                                   v_names[i], v_step->'initialization'->'worker_template_name'));
    ELSIF v_types[i] = 'decision' AND v_first[i + 1] = v_first[i] THEN
      PERFORM tasker.template_error(v_name, format('step %s: a decision step needs at least one step that depends on it (its branches)', v_names[i]));
    ELSIF v_types[i] = 'deferred_convergence' AND jsonb_array_length(v_step->'dependencies') = 0 THEN
      PERFORM tasker.template_error(v_name, format('step %s: a deferred_convergence step needs dependencies (the steps it may converge)', v_names[i]));
    END IF;
  END LOOP;

  -- Store. Same (namespace, name, version) again: unchanged if identical; replaced if no task
  -- uses it yet; refused otherwise (a running task's steps must keep meaning what they meant).
  v_ns_uuid := tasker.ensure_namespace(v_ns);
  SELECT t.task_template_uuid, t.definition INTO v_existing
  FROM tasker.task_templates t
  WHERE t.task_namespace_uuid = v_ns_uuid AND t.name = v_name AND t.version = v_version
  FOR UPDATE;
  IF FOUND THEN
    IF v_existing.definition = p_template THEN
      RETURN QUERY SELECT v_existing.task_template_uuid, v_ns, v_name, v_version, 'unchanged'::text;
      RETURN;
    END IF;
    SELECT count(*) INTO v_n FROM tasker.tasks t WHERE t.task_template_uuid = v_existing.task_template_uuid;
    IF v_n > 0 THEN
      RAISE EXCEPTION 'template %/%@% is used by % task(s) and cannot change; register it under a new version',
        v_ns, v_name, v_version, v_n USING ERRCODE = 'TK409';
    END IF;
    DELETE FROM tasker.named_steps n WHERE n.task_template_uuid = v_existing.task_template_uuid;
    UPDATE tasker.task_templates t
    SET definition = p_template, description = p_template->>'description', identity_strategy = v_strategy,
        updated_at = now()
    WHERE t.task_template_uuid = v_existing.task_template_uuid;
    v_tpl_uuid := v_existing.task_template_uuid;
  ELSE
    INSERT INTO tasker.task_templates (task_namespace_uuid, name, version, description, definition, identity_strategy)
    VALUES (v_ns_uuid, v_name, v_version, p_template->>'description', p_template, v_strategy)
    RETURNING task_templates.task_template_uuid INTO v_tpl_uuid;
  END IF;

  INSERT INTO tasker.named_steps (task_template_uuid, name, position, description, handler_callable,
    handler_method, handler_resolver, handler_initialization, step_type, batch_config, init_created,
    retryable, max_attempts, backoff, backoff_base_ms, max_backoff_ms, timeout_seconds, parent_count)
  SELECT v_tpl_uuid, s->>'name', (s->>'position')::integer, s->>'description', s->>'callable',
         s->>'method', s->>'resolver', s->'initialization', s->>'type', nullif(s->'batch_config', 'null'::jsonb),
         v_init[(s->>'position')::integer],
         (s->>'retryable')::boolean, (s->>'max_attempts')::integer, s->>'backoff',
         (s->>'backoff_base_ms')::integer, (s->>'max_backoff_ms')::integer, (s->>'timeout_seconds')::integer,
         (SELECT count(DISTINCT d) FROM jsonb_array_elements_text(s->'dependencies') AS d)
  FROM unnest(v_steps) AS s;

  INSERT INTO tasker.named_step_edges (task_template_uuid, from_named_step_uuid, to_named_step_uuid, kind)
  SELECT DISTINCT v_tpl_uuid, p.named_step_uuid, c.named_step_uuid, 'declared'
  FROM unnest(v_steps) AS s
  CROSS JOIN jsonb_array_elements_text(s->'dependencies') AS d
  JOIN tasker.named_steps c ON c.task_template_uuid = v_tpl_uuid AND c.name = s->>'name'
  JOIN tasker.named_steps p ON p.task_template_uuid = v_tpl_uuid AND p.name = d;

  -- Gate edges: a step that may be created before all its declared parents exist — a
  -- deferred_convergence step, or a decision's branch with other parents — waits for every
  -- decision or batchable step upstream of a declared parent created at run time, since that
  -- step's outcome may still create it (a parent created later is added to it then; see
  -- tasker.create_dynamic_steps). Static templates skip the walk.
  IF 'decision' = ANY (v_types) OR 'batchable' = ANY (v_types) THEN
    INSERT INTO tasker.named_step_edges (task_template_uuid, from_named_step_uuid, to_named_step_uuid, kind)
    WITH RECURSIVE up(target, step) AS (
      SELECT e.to_named_step_uuid, e.from_named_step_uuid
      FROM tasker.named_step_edges e
      JOIN tasker.named_steps t ON t.named_step_uuid = e.to_named_step_uuid
      JOIN tasker.named_steps p ON p.named_step_uuid = e.from_named_step_uuid AND NOT p.init_created
      WHERE e.task_template_uuid = v_tpl_uuid
        AND (t.step_type = 'deferred_convergence'
             OR (t.parent_count > 1
                 AND EXISTS (SELECT 1 FROM tasker.named_step_edges d
                             JOIN tasker.named_steps dp ON dp.named_step_uuid = d.from_named_step_uuid
                             WHERE d.to_named_step_uuid = t.named_step_uuid AND dp.step_type = 'decision')))
      UNION
      SELECT u.target, e.from_named_step_uuid
      FROM up u JOIN tasker.named_step_edges e ON e.to_named_step_uuid = u.step
    )
    SELECT v_tpl_uuid, u.step, u.target, 'gate'
    FROM up u JOIN tasker.named_steps g ON g.named_step_uuid = u.step AND g.step_type IN ('decision', 'batchable')
    ON CONFLICT (from_named_step_uuid, to_named_step_uuid) DO NOTHING;
  END IF;

  -- unfinished_parents of the steps created with the task: their edges from steps created with it.
  UPDATE tasker.named_steps n
  SET init_parent_count = x.cnt
  FROM (SELECT e.to_named_step_uuid AS step, count(*)::integer AS cnt
        FROM tasker.named_step_edges e
        JOIN tasker.named_steps p ON p.named_step_uuid = e.from_named_step_uuid AND p.init_created
        WHERE e.task_template_uuid = v_tpl_uuid
        GROUP BY 1) x
  WHERE n.named_step_uuid = x.step;

  RETURN QUERY SELECT v_tpl_uuid, v_ns, v_name, v_version,
    CASE WHEN v_existing.task_template_uuid IS NULL THEN 'created' ELSE 'updated' END;
END $$;
