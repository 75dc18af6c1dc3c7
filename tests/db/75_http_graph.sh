#!/usr/bin/env bash
# 75_http_graph.sh — the pictures end to end (issue 11): a daemon (API keys on) and a worker run a
# diamond whose names need escaping, a decision and a 1,000-worker batch; GET …/graph of each task
# and template answers DOT that `dot -Tsvg` renders without a warning into well-formed SVG
# (xmllint) holding every step's name; the batch is folded into a handful of nodes (and ?fold=0
# draws all 1,000); bad formats, folds, ids and permissions get their errors.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. tests/lib.sh
. tests/daemon_lib.sh

for tool in curl jq dot xmllint; do
  command -v "$tool" >/dev/null || { fail "$tool is needed (scripts/install-deps: graphviz libxml2-utils curl jq)"; finish; exit 1; }
done

NS=gph
url=$(fresh_db tasker_graph) || { fail "fresh database tasker_graph"; finish; exit 1; }
q() { psql_at "$url" "$1"; }

ADMIN=adm-0123456789abcdef0123
VIEWER=vwr-0123456789abcdef0123
DT_WEB=true dt_conf d1 "$url" >/dev/null
# API keys on: the viewer may read tasks but not templates.
sed -i "s|^    bind_address = \"127.0.0.1:0\"|&\n    auth {\n        enabled = true\n        api_keys = \"admin@$ADMIN:*\n                    viewer@$VIEWER:tasks:read\"\n    }|" "$DT_DIR/d1.conf"
dt_start_daemon d1 "$url"
dt_wait_ready d1 20 && ok "daemon ready" || { fail "daemon ready within 20 s"; dt_finish; exit 1; }
BASE=http://127.0.0.1:$(dt_http_port d1)

# req KEY METHOD PATH [BODY]: sets STATUS, BODY (also in $DT_DIR/body) and CTYPE. (Few processes
# per request: on a loaded machine each one costs a good part of a second.)
req() {
  local key=$1 method=$2 path=$3 data=()
  [ $# -ge 4 ] && data=(--data-binary "$4" -H 'Content-Type: application/json')
  read -r STATUS CTYPE < <(curl -sS -o "$DT_DIR/body" -w '%{http_code} %{content_type}\n' -X "$method" \
                              -H "X-API-Key: $key" "${data[@]}" "$BASE$path")
  BODY=$(<"$DT_DIR/body")
}
j() { printf '%s' "$BODY" | jq -r "$1" 2>/dev/null; }
# expect STATUS CODE DESCRIPTION: a JSON error with this code (CODE "-": any body).
expect() {
  if [ "$STATUS" = "$1" ] && { [ "$2" = - ] || [ "$(j .error.code)" = "$2" ]; }; then ok "$3 → $1 $2"; else
    fail "$3: want $1 $2, got $STATUS $(head -c 300 <<<"$BODY")"; fi
}

# render NAME PATH WHAT: GET PATH as DOT; dot -Tsvg renders it without a warning; the SVG is
# well-formed; leaves $DT_DIR/NAME.dot, NAME.svg and NAME.c14n.svg (canonical XML: characters,
# not references, with only & < > escaped in text).
render() {
  local name=$1 path=$2 what=$3
  req "$ADMIN" GET "$path"
  cp "$DT_DIR/body" "$DT_DIR/$name.dot"
  if [ "$STATUS" = 200 ] && [ "$CTYPE" = "text/vnd.graphviz; charset=utf-8" ] && head -n 1 "$DT_DIR/$name.dot" | grep -q '^digraph "'; then
    ok "$what: 200 text/vnd.graphviz, a digraph"
  else
    fail "$what: got $STATUS '$CTYPE' $(head -c 200 "$DT_DIR/$name.dot")"
  fi
  if dot -Tsvg "$DT_DIR/$name.dot" -o "$DT_DIR/$name.svg" 2>"$DT_DIR/$name.err" && [ ! -s "$DT_DIR/$name.err" ]; then
    ok "$what: dot -Tsvg accepts it, no warning"
  else
    fail "$what: dot -Tsvg: $(head -c 400 "$DT_DIR/$name.err")"
  fi
  if xmllint --noout "$DT_DIR/$name.svg" 2>"$DT_DIR/$name.xerr"; then ok "$what: xmllint: the SVG is well-formed"; else
    fail "$what: xmllint: $(head -c 400 "$DT_DIR/$name.xerr")"; fi
  xmllint --c14n "$DT_DIR/$name.svg" >"$DT_DIR/$name.c14n.svg" 2>/dev/null
}
# has_names NAME WHAT NAMES…: every name is the text of a <text> element of NAME's SVG (one pass:
# 1,003 names are checked at once).
has_names() {
  local name=$1 what=$2 missing
  shift 2
  grep -o '>[^<]*</text>' "$DT_DIR/$name.c14n.svg" | sed -e 's/^>//' -e 's|</text>$||' >"$DT_DIR/$name.texts"
  missing=$(printf '%s\n' "$@" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' | grep -vxFf "$DT_DIR/$name.texts")
  if [ -z "$missing" ]; then ok "$what: the SVG holds every step's name ($#)"; else
    fail "$what: names missing from the SVG: $(head -c 300 <<<"$missing")"; fi
}
svg_nodes() { grep -c 'class="node"' "$DT_DIR/$1.svg"; }

# ---- templates: a diamond with names that need escaping, a decision, a batch ---------------------
A='start' B='left "Größe"' C='right <&> \ ok' D='join'
req "$ADMIN" POST /v1/templates "$(jq -nc --arg ns "$NS" --arg a "$A" --arg b "$B" --arg c "$C" --arg d "$D" '
  {name: "diamond", namespace_name: $ns, version: "1.0.0", steps: [
    {name: $a, handler: {callable: "noop"}},
    {name: $b, dependencies: [$a], handler: {callable: "noop"}},
    {name: $c, dependencies: [$a], handler: {callable: "noop"}},
    {name: $d, dependencies: [$b, $c], handler: {callable: "echo"}}]}')"
expect 201 - "register the diamond"
req "$ADMIN" POST /v1/templates "$(jq -nc --arg ns "$NS" '
  {name: "approval", namespace_name: $ns, version: "1.0.0", steps: [
    {name: "validate", handler: {callable: "noop"}},
    {name: "route", type: "decision", dependencies: ["validate"], handler: {callable: "decision", initialization: {
       rules: [{path: "amount", lt: 1000, choose: ["auto_approve"]}], default: ["manager_approval", "finance_review"]}}},
    {name: "auto_approve", dependencies: ["route"], handler: {callable: "noop"}},
    {name: "manager_approval", dependencies: ["route"], handler: {callable: "noop"}},
    {name: "finance_review", dependencies: ["route"], handler: {callable: "noop"}},
    {name: "finalize", type: "deferred_convergence", dependencies: ["auto_approve", "manager_approval", "finance_review"],
     handler: {callable: "noop"}}]}')"
expect 201 - "register the decision template"
req "$ADMIN" POST /v1/templates "$(jq -nc --arg ns "$NS" '
  {name: "rows", namespace_name: $ns, version: "1.0.0", steps: [
    {name: "plan", type: "batchable", handler: {callable: "batch_plan", initialization: {
       total_items_path: "rows", batch_size: 1, max_workers: 1000, worker_template_name: "work"}}},
    {name: "work", type: "batch_worker", dependencies: ["plan"], handler: {callable: "noop"},
     batch_config: {parallelism: 1000}},
    {name: "total", type: "deferred_convergence", dependencies: ["work"], handler: {callable: "noop"}},
    {name: "report", dependencies: ["total"], handler: {callable: "noop"}}]}')"
expect 201 - "register the batch template"

# ---- the three tasks, run by a worker -------------------------------------------------------------
dt_start_worker w1 "$url" "$NS" --concurrency 100 --batch 100 --poll-ms 100
task() { req "$ADMIN" POST /v1/tasks "$1"; [ "$STATUS" = 201 ] || fail "create: $STATUS $BODY"; j .task_uuid; }
T_DIAMOND=$(task "{\"name\": \"diamond\", \"namespace\": \"$NS\"}")
T_DECISION=$(task "{\"name\": \"approval\", \"namespace\": \"$NS\", \"context\": {\"amount\": 2500}}")
T_BATCH=$(task "{\"name\": \"rows\", \"namespace\": \"$NS\", \"context\": {\"rows\": 1000}}")
if dt_wait_done "$url" 45; then ok "the three tasks are finished within 45 s"; else fail "tasks finished ($(dt_states "$url"))"; fi
is "$(q "SELECT string_agg(state, ',' ORDER BY created_at) FROM tasker.tasks")" complete,complete,complete "all three complete"
is "$(q "SELECT count(*) FROM tasker.workflow_steps WHERE task_uuid = '$T_BATCH'")" 1003 \
  "the batch task has 1,003 steps (plan, 1,000 workers, total, report)"

# ---- task graphs ------------------------------------------------------------------------------------
names() { mapfile -t NAMES < <(q "SELECT name FROM tasker.workflow_steps WHERE task_uuid = '$1' $2 ORDER BY name"); }

render diamond "/v1/tasks/$T_DIAMOND/graph" "diamond task"
names "$T_DIAMOND" ""
has_names diamond "diamond task" "${NAMES[@]}"
is "$(svg_nodes diamond)" 4 "diamond task: four nodes"
head -n 1 "$DT_DIR/diamond.dot" | grep -qxF "digraph \"task $T_DIAMOND\" {" \
  && ok "diamond task: the digraph is named after the task" || fail "diamond task: digraph name"
grep -qF 'label="left \"Größe\"\ncomplete · 1/3' "$DT_DIR/diamond.dot" && grep -qF 'label="right <&> \\ ok\ncomplete · 1/3' "$DT_DIR/diamond.dot" \
  && ok "diamond task: labels escape quotes and backslashes, keep UTF-8, show state and attempts" \
  || fail "diamond task: labels: $(grep -F 'left' "$DT_DIR/diamond.dot" | head -c 300)"
is "$(grep -c 'fillcolor="#a3cfbb"' "$DT_DIR/diamond.dot")" 4 "diamond task: every node is filled green (complete)"

render decision "/v1/tasks/$T_DECISION/graph?format=dot" "decision task"
names "$T_DECISION" ""
has_names decision "decision task" "${NAMES[@]}"
is "$(IFS=,; echo "${NAMES[*]}")" "finalize,finance_review,manager_approval,route,validate" \
  "decision task: the branches the decision chose exist, auto_approve does not"
is "$(grep -c '>auto_approve</text>' "$DT_DIR/decision.c14n.svg")" 0 "decision task: the unchosen branch is not drawn"
is "$(grep -c 'stroke-dasharray' "$DT_DIR/decision.svg")" 1 "decision task: one dashed edge (the gate route → finalize)"
grep -q '<polygon[^>]*fill="#a3cfbb"' "$DT_DIR/decision.svg" && ok "decision task: the SVG carries the state colours" \
  || fail "decision task: no green polygon in the SVG"

render batch "/v1/tasks/$T_BATCH/graph" "batch task"
has_names batch "batch task" plan total report work
nodes=$(svg_nodes batch)
[ "$nodes" -le 5 ] && ok "batch task: 1,000 workers folded: $nodes nodes" || fail "batch task: $nodes nodes, want at most 5"
grep -qF '> × 1000</text>' "$DT_DIR/batch.c14n.svg" && grep -qF '>complete 1000</text>' "$DT_DIR/batch.c14n.svg" \
  && ok "batch task: the folded node says × 1000 and complete 1000" || fail "batch task: folded label"
[ "$(wc -c <"$DT_DIR/batch.dot")" -lt 10000 ] && ok "batch task: the folded DOT is small ($(wc -c <"$DT_DIR/batch.dot") bytes)" \
  || fail "batch task: folded DOT is $(wc -c <"$DT_DIR/batch.dot") bytes"
render batch_all "/v1/tasks/$T_BATCH/graph?fold=0" "batch task, fold=0"
names "$T_BATCH" ""
has_names batch_all "batch task, fold=0" "${NAMES[@]}"
is "$(svg_nodes batch_all)" 1003 "batch task, fold=0: 1,003 nodes"
req "$ADMIN" GET "/v1/tasks/$T_BATCH/graph?fold=1000"
is "$(grep -c '^  "[^"]*" \[' "$DT_DIR/body")" 1003 "batch task, fold=1000: a batch of exactly 1,000 is not folded"

# ---- template graphs ---------------------------------------------------------------------------------
render t_diamond "/v1/templates/$NS/diamond/1.0.0/graph" "diamond template"
has_names t_diamond "diamond template" "$A" "$B" "$C" "$D"
render t_approval "/v1/templates/$NS/approval/1.0.0/graph" "decision template"
has_names t_approval "decision template" validate route auto_approve manager_approval finance_review finalize
grep -q '"route" \[.*shape=diamond' "$DT_DIR/t_approval.dot" && grep -q '"finalize" \[.*style="filled,dashed"' "$DT_DIR/t_approval.dot" \
  && ok "decision template: the decision is a diamond; a step created at run time has a dashed outline" \
  || fail "decision template: shapes"
render t_rows "/v1/templates/$NS/rows/1.0.0/graph" "batch template"
has_names t_rows "batch template" plan work total report
grep -q '"plan" \[.*shape=box3d' "$DT_DIR/t_rows.dot" && grep -q '"work" \[.*shape=folder' "$DT_DIR/t_rows.dot" \
  && ok "batch template: batchable is a box3d, batch_worker a folder" || fail "batch template: shapes"

# ---- refusals -------------------------------------------------------------------------------------------
req "$ADMIN" GET "/v1/tasks/$T_DIAMOND/graph?format=svg"
expect 400 invalid_request "?format=svg"
case "$(j .error.message)" in *"taskerctl task visualize"*) ok "… and the message names taskerctl task visualize" ;;
  *) fail "format message: $(j .error.message)" ;; esac
req "$ADMIN" GET "/v1/templates/$NS/rows/1.0.0/graph?format=png"
expect 400 invalid_request "template ?format=png"
case "$(j .error.message)" in *"taskerctl template visualize"*) ok "… and the message names taskerctl template visualize" ;;
  *) fail "format message: $(j .error.message)" ;; esac
req "$ADMIN" GET "/v1/tasks/$T_BATCH/graph?fold=many"; expect 400 invalid_request "?fold=many"
req "$ADMIN" GET "/v1/templates/$NS/rows/1.0.0/graph?fold=2"; expect 400 invalid_request "?fold on a template"
req "$ADMIN" GET "/v1/tasks/$T_BATCH/graph?colour=red"; expect 400 invalid_request "an unknown parameter"
req "$ADMIN" GET "/v1/tasks/01234567-89ab-7def-8123-456789abcdef/graph"; expect 404 not_found "an unknown task"
case "$CTYPE" in application/json*) ok "… answered in JSON" ;; *) fail "404 content type $CTYPE" ;; esac
req "$ADMIN" GET "/v1/tasks/nope/graph"; expect 400 invalid_uuid "a task id that is not a UUID"
req "$ADMIN" GET "/v1/templates/$NS/rows/9.9.9/graph"; expect 404 not_found "an unknown template version"
req "$ADMIN" POST "/v1/tasks/$T_BATCH/graph" '{}'; expect 405 method_not_allowed "POST to a graph"
req "$VIEWER" GET "/v1/tasks/$T_DIAMOND/graph"; expect 200 - "tasks:read may draw a task"
req "$VIEWER" GET "/v1/templates/$NS/rows/1.0.0/graph"; expect 403 forbidden "tasks:read may not draw a template (templates:read)"
req "" GET "/v1/tasks/$T_DIAMOND/graph"; expect 401 unauthorized "no key"

dt_stop w1 TERM 15
dt_stop d1 TERM 15
is "$DT_RC" 0 "daemon: SIGTERM → exit 0"
is "$(grep -Ec '^[0-9TZ:.-]+ error ' "${DT_LOG[d1]}")" 0 "no error lines in the daemon's log"
dt_finish
