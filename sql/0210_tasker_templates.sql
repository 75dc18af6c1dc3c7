-- 0210_tasker_templates.sql — template registration: validate a task template (tasker-core's keys),
-- refuse bad ones with a message naming the step, store it, and create its namespace's queues.

-- tasker.template_error: raise TK400 with a message prefixed by the template's name.
CREATE OR REPLACE FUNCTION tasker.template_error(p_template text, p_message text) RETURNS void
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
  RAISE EXCEPTION 'template %: %', coalesce(p_template, '(unnamed)'), p_message USING ERRCODE = 'TK400';
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

-- tasker.register_task_template(template jsonb): validate and store a template.
-- Keys (tasker-core's): name, namespace_name, version (default '0.1.0'), description,
-- identity_strategy (strict | caller_provided | always_unique), lifecycle{…}, steps[{name,
-- description, handler{callable, initialization}, type, dependencies[] (alias depends_on),
-- retry{retryable, max_attempts, backoff, backoff_base_ms, max_backoff_ms}, timeout_seconds}].
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
  v_names text[] := '{}';
  v_steps jsonb[] := '{}';
  v_deps text[];
  v_dep text;
  v_retry jsonb;
  v_ns_uuid uuid;
  v_existing record;
  v_tpl_uuid uuid;
  v_remaining text[];
  v_cycle text;
  v_n integer;
  i integer;
BEGIN
  IF p_template IS NULL OR jsonb_typeof(p_template) <> 'object' THEN
    RAISE EXCEPTION 'a template must be a JSON object' USING ERRCODE = 'TK400';
  END IF;
  v_name := tasker.json_text(p_template, 'name', NULL, 'template');
  IF v_name IS NULL OR length(v_name) NOT BETWEEN 1 AND 255 THEN
    PERFORM tasker.template_error(v_name, 'name is required (1 to 255 characters)');
  END IF;
  v_ns := tasker.json_text(p_template, 'namespace_name', NULL, 'template ' || v_name);
  IF v_ns IS NULL THEN
    PERFORM tasker.template_error(v_name, 'namespace_name is required');
  END IF;
  IF v_ns !~ '^[a-z][a-z0-9_]{0,28}$' THEN
    PERFORM tasker.template_error(v_name, format('namespace_name %s must match ^[a-z][a-z0-9_]{0,28}$', quote_literal(v_ns)));
  END IF;
  v_version := tasker.json_text(p_template, 'version', '0.1.0', 'template ' || v_name);
  IF v_version !~ '^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$' THEN
    PERFORM tasker.template_error(v_name, format('version %s is not a valid version string', quote_literal(v_version)));
  END IF;
  v_strategy := tasker.json_text(p_template, 'identity_strategy', 'strict', 'template ' || v_name);
  IF v_strategy NOT IN ('strict', 'caller_provided', 'always_unique') THEN
    PERFORM tasker.template_error(v_name, format('identity_strategy must be strict, caller_provided or always_unique (got %s)', v_strategy));
  END IF;
  IF p_template ? 'lifecycle' AND jsonb_typeof(p_template->'lifecycle') <> 'object' THEN
    PERFORM tasker.template_error(v_name, 'lifecycle must be an object');
  END IF;
  IF jsonb_typeof(p_template->'steps') IS DISTINCT FROM 'array' OR jsonb_array_length(p_template->'steps') = 0 THEN
    PERFORM tasker.template_error(v_name, 'steps must be a non-empty array');
  END IF;

  -- Each step: shape, defaults, bounds. Normalized steps collect in v_steps.
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
    v_where := format('template %s: step %s', v_name, v_step->>'name');
    IF (v_step->>'name') = ANY (v_names) THEN
      RAISE EXCEPTION '%: duplicate step name', v_where USING ERRCODE = 'TK400';
    END IF;
    v_names := v_names || (v_step->>'name');
    IF jsonb_typeof(v_step->'handler') IS DISTINCT FROM 'object'
       OR jsonb_typeof(v_step->'handler'->'callable') IS DISTINCT FROM 'string'
       OR length(v_step->'handler'->>'callable') NOT BETWEEN 1 AND 1024 THEN
      RAISE EXCEPTION '%: handler.callable is required (a non-empty string)', v_where USING ERRCODE = 'TK400';
    END IF;
    IF v_step->'handler' ? 'initialization' AND v_step->'handler'->'initialization' <> 'null'::jsonb
       AND jsonb_typeof(v_step->'handler'->'initialization') <> 'object' THEN
      RAISE EXCEPTION '%: handler.initialization must be an object', v_where USING ERRCODE = 'TK400';
    END IF;
    IF coalesce(v_step->>'type', v_step->>'step_type', 'standard') <> 'standard' THEN
      RAISE EXCEPTION '%: step type % is not supported (only standard steps; decision and batch steps need dynamic step creation)',
        v_where, coalesce(v_step->>'type', v_step->>'step_type') USING ERRCODE = 'TK400';
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
        IF NOT v_dep = ANY (v_deps) THEN
          v_deps := v_deps || v_dep;
        END IF;
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
    v_steps := v_steps || jsonb_build_object(
      'name', v_step->>'name',
      'position', i,
      'description', v_step->>'description',
      'callable', v_step->'handler'->>'callable',
      'initialization', coalesce(nullif(v_step->'handler'->'initialization', 'null'::jsonb), '{}'::jsonb),
      'dependencies', to_jsonb(v_deps),
      'retryable', coalesce((v_retry->>'retryable')::boolean, true),
      'max_attempts', tasker.json_int(v_retry, 'max_attempts', 3, 1, 100, v_where || ': retry'),
      'backoff', coalesce(v_retry->>'backoff', 'exponential'),
      'backoff_base_ms', tasker.json_int(v_retry, 'backoff_base_ms', 1000, 100, 3600000, v_where || ': retry'),
      'max_backoff_ms', tasker.json_int(v_retry, 'max_backoff_ms', 30000, 1000, 3600000, v_where || ': retry'),
      'timeout_seconds', tasker.json_int(v_step, 'timeout_seconds', NULL, 1, 86400 * 7, v_where));
  END LOOP;

  -- Every dependency names a step of this template.
  SELECT s->>'name', d #>> '{}' INTO v_cycle, v_dep
  FROM unnest(v_steps) AS s, jsonb_array_elements(s->'dependencies') AS d
  WHERE NOT (d #>> '{}') = ANY (v_names)
  LIMIT 1;
  IF FOUND THEN
    PERFORM tasker.template_error(v_name, format('step %s depends on unknown step %s', v_cycle, v_dep));
  END IF;

  -- Acyclic: peel off steps whose dependencies are all peeled (Kahn); what remains holds a cycle.
  v_remaining := v_names;
  LOOP
    SELECT array_agg(s->>'name') INTO v_deps
    FROM unnest(v_steps) AS s
    WHERE (s->>'name') = ANY (v_remaining)
      AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(s->'dependencies') AS d WHERE d = ANY (v_remaining));
    EXIT WHEN v_deps IS NULL;
    v_remaining := ARRAY(SELECT r FROM unnest(v_remaining) AS r WHERE NOT r = ANY (v_deps));
  END LOOP;
  IF cardinality(v_remaining) > 0 THEN
    -- Name one cycle: walk dependencies inside the remainder until a step repeats.
    v_deps := ARRAY[v_remaining[1]];
    LOOP
      SELECT d INTO v_dep
      FROM unnest(v_steps) AS s, jsonb_array_elements_text(s->'dependencies') AS d
      WHERE s->>'name' = v_deps[cardinality(v_deps)] AND d = ANY (v_remaining)
      ORDER BY d LIMIT 1;
      EXIT WHEN v_dep = ANY (v_deps);
      v_deps := v_deps || v_dep;
    END LOOP;
    v_deps := v_deps[array_position(v_deps, v_dep):] || v_dep;
    PERFORM tasker.template_error(v_name, format('dependency cycle: %s (each step depends on the next)',
                                                 array_to_string(v_deps, ' -> ')));
  END IF;

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
    handler_initialization, retryable, max_attempts, backoff, backoff_base_ms, max_backoff_ms,
    timeout_seconds, parent_count)
  SELECT v_tpl_uuid, s->>'name', (s->>'position')::integer, s->>'description', s->>'callable',
         s->'initialization', (s->>'retryable')::boolean, (s->>'max_attempts')::integer, s->>'backoff',
         (s->>'backoff_base_ms')::integer, (s->>'max_backoff_ms')::integer, (s->>'timeout_seconds')::integer,
         jsonb_array_length(s->'dependencies')
  FROM unnest(v_steps) AS s;

  INSERT INTO tasker.named_step_edges (task_template_uuid, from_named_step_uuid, to_named_step_uuid)
  SELECT v_tpl_uuid, p.named_step_uuid, c.named_step_uuid
  FROM unnest(v_steps) AS s
  CROSS JOIN jsonb_array_elements_text(s->'dependencies') AS d
  JOIN tasker.named_steps c ON c.task_template_uuid = v_tpl_uuid AND c.name = s->>'name'
  JOIN tasker.named_steps p ON p.task_template_uuid = v_tpl_uuid AND p.name = d;

  RETURN QUERY SELECT v_tpl_uuid, v_ns, v_name, v_version,
    CASE WHEN v_existing.task_template_uuid IS NULL THEN 'created' ELSE 'updated' END;
END $$;
