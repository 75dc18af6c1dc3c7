#!/usr/bin/env bash
# 74_template_dir.sh — YAML templates end to end: a real daemon registers a template directory
# (good YAML, a tasker-core-style YAML file, anchors and merge keys, good JSON, a file with a YAML
# error, a template the database refuses) at start, TASKER_TEMPLATE_PATH winning over
# templates.path; the bad files are logged with file:line and skipped; a task created right after
# READY finds its template; SIGHUP after adding a new version registers it and leaves the rest
# unchanged; POST /v1/templates with Content-Type application/yaml; and every bad template of
# tests/templates/bad is refused by the database with the very message template_check gives.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

command -v curl >/dev/null && command -v jq >/dev/null || { echo "curl and jq are needed (scripts/install-deps)" >&2; exit 1; }

url=$(fresh_db tasker_tpldir) || { fail "fresh database tasker_tpldir"; finish; exit 1; }
q() { psql_at "$url" "$1"; }

dir=$DT_DIR/templates
mkdir -p "$dir/more" "$dir/.hidden"
cp tests/templates/good/approval_routing.yaml "$dir/"
cp tests/templates/good/pipeline_anchors.yml "$dir/more/"
cp tests/templates/good/fan_out.json "$dir/"
cp tests/templates/bad/cycle.yaml "$dir/more/cycle.yaml"
printf 'name: broken\nnamespace_name: yamltest\nname: again\n' >"$dir/broken.yaml"
printf 'not: [a template\n' >"$dir/.hidden/ignored.yaml"
echo "not a template" >"$dir/README.txt"

DT_WEB=true dt_conf d1 "$url" >/dev/null
# The file names a directory that does not exist: the environment variable must win.
printf 'templates {\n    path = "%s"\n}\n' "$DT_DIR/nowhere" >>"$DT_DIR/d1.conf"
DT_DAEMON_ENV="TASKER_TEMPLATE_PATH=$dir" dt_start_daemon d1 "$url"
dt_wait_ready d1 30 && ok "daemon ready" || { fail "daemon ready within 30 s"; dt_finish; exit 1; }
base="http://127.0.0.1:$(dt_http_port d1)"

# Right after READY: the directory is registered (READY waits for it) and a task can use it.
code=$(curl -s -o "$DT_DIR/task.json" -w '%{http_code}' -X POST "$base/v1/tasks" \
  -d '{"name": "fan_out", "namespace": "yamltest", "context": {"n": 1}}')
is "$code" 201 "a task created right after READY finds a template from the directory"
is "$(curl -s "$base/health/ready" | jq -r .checks.templates)" loaded "/health/ready says the templates are loaded"

summary="$dir: 3 registered, 0 unchanged, 2 refused"
dt_log d1 | grep -F "$summary" >/dev/null && ok "summary: $summary" \
  || fail "summary line '$summary' (got: $(dt_log d1 | grep 'registered,' | tail -n 1))"
dt_log d1 | grep -F "$dir/broken.yaml:3:1: duplicate key \"name\" (file skipped)" >/dev/null \
  && ok "the YAML error is logged with file:line:column" || fail "broken.yaml logged with file:line:column"
dt_log d1 | grep -F "$dir/more/cycle.yaml: refused: template cyc: dependency cycle: a -> b -> c -> a" >/dev/null \
  && ok "the template the database refuses is logged with its file and the reason" || fail "cycle.yaml refusal logged"
dt_log d1 | grep -E 'ignored.yaml|README' >/dev/null && fail "hidden and non-template files are skipped" \
  || ok "hidden directories and other extensions are not read"
is "$(q "SELECT string_agg(t.name || '@' || t.version, ' ' ORDER BY t.name) FROM tasker.task_templates t
         JOIN tasker.task_namespaces n USING (task_namespace_uuid) WHERE n.name = 'yamltest'")" \
   "approval_routing@1.0.0 fan_out@1.0.0 pipeline_anchors@2.0" "the good files are registered, the bad ones not"
# Aliases and the merge key reached the database: extract got the shared retry policy, load its alias.
is "$(q "SELECT string_agg(s.name || ':' || s.handler_callable || ':' || s.max_attempts || ':' || s.backoff, ' ' ORDER BY s.position)
         FROM tasker.named_steps s JOIN tasker.task_templates t USING (task_template_uuid) WHERE t.name = 'pipeline_anchors'")" \
   "extract:noop:4:linear transform:noop:4:linear load:echo:4:linear" "anchors, aliases and merge keys reach the stored steps"
# The tasker-core-style file: its types, its ignored keys kept in the definition.
is "$(q "SELECT string_agg(s.name || ':' || s.step_type, ' ' ORDER BY s.position)
         FROM tasker.named_steps s JOIN tasker.task_templates t USING (task_template_uuid) WHERE t.name = 'approval_routing'")" \
   "validate_request:standard routing_decision:decision auto_approve:standard manager_approval:standard finalize_approval:deferred_convergence" \
   "the tasker-core-style YAML registers with its step types"
is "$(q "SELECT definition->'metadata'->>'documentation_url' IS NULL AND definition->'input_schema'->'properties'->'amount'->>'minimum' = '0.01'
           AND definition->'steps'->0->'retry'->>'limit' = '3'
         FROM tasker.task_templates WHERE name = 'approval_routing'")" t "its metadata, input_schema and retry.limit are stored as written"

# SIGHUP after adding a new version: it is registered, the others are unchanged.
sed -e 's/"version": "1.0.0"/"version": "1.1.0"/' tests/templates/good/fan_out.json >"$dir/more/fan_out_v2.json"
dt_log_skip d1
kill -HUP "${DT_PID[d1]}"
summary="$dir: 1 registered, 3 unchanged, 2 refused"
dt_wait_log d1 "registered, .* unchanged" 20 && dt_log d1 | grep -F "$summary" >/dev/null && ok "SIGHUP: $summary" \
  || fail "SIGHUP summary '$summary' (got: $(dt_log d1 | grep 'registered,' | tail -n 1))"
is "$(q "SELECT count(*) FROM tasker.task_templates WHERE name = 'fan_out' AND version = '1.1.0'")" 1 "the new version is stored"
dt_log d1 | grep -F "$dir/more/fan_out_v2.json: template yamltest/fan_out@1.1.0 created" >/dev/null \
  && ok "the new version's file is logged" || fail "fan_out_v2.json logged as created"

# POST /v1/templates as YAML.
yaml_post() { curl -s -o "$DT_DIR/post.json" -w '%{http_code}' -X POST "$base/v1/templates" -H "Content-Type: $1" --data-binary @"$2"; }
printf 'name: posted\nnamespace_name: yamltest\nversion: "1.0.0"\nsteps:\n  - {name: only, handler: {callable: noop}}\n' >"$DT_DIR/posted.yaml"
is "$(yaml_post application/yaml "$DT_DIR/posted.yaml")/$(jq -r .status "$DT_DIR/post.json")" 201/created "POST application/yaml: 201 created"
is "$(yaml_post 'text/yaml; charset=utf-8' "$DT_DIR/posted.yaml")/$(jq -r .status "$DT_DIR/post.json")" 200/unchanged \
   "the same YAML again (text/yaml): 200 unchanged"
is "$(yaml_post application/x-yaml "$dir/broken.yaml")/$(jq -r '.error.code + ": " + .error.message' "$DT_DIR/post.json")" \
   '400/invalid_template: invalid YAML: line 3, column 1: duplicate key "name"' "a YAML error: 400 invalid_template with line and column"
is "$(yaml_post application/json "$DT_DIR/posted.yaml")/$(jq -r .error.code "$DT_DIR/post.json")" 400/invalid_json \
   "YAML sent as application/json is still read as JSON"

# The database and template_check agree on every bad template (the unit test checks template_check).
agree=0 total=0
for f in tests/templates/bad/*; do
  total=$((total + 1))
  case "$f" in
    *.json) want=$(jq -r ._refused "$f"); code=$(yaml_post application/json "$f") ;;
    *) want=$(head -n 1 "$f" | sed 's/^# refused: //'); code=$(yaml_post application/yaml "$f") ;;
  esac
  got=$(jq -r '.error.code + ": " + .error.message' "$DT_DIR/post.json")
  if [ "$code/$got" = "400/invalid_template: $want" ]; then agree=$((agree + 1)); else echo "# $f: got $code $got; want $want"; fi
done
is "$agree/$total" "$total/$total" "the database refuses each bad template with template_check's message"

dt_stop d1
is "$DT_RC" 0 "SIGTERM: the daemon exits 0"
dt_finish
