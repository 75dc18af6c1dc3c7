# taskerctl(1) bash completion: groups, commands, options and the values of a few of them.
# Installed by `make install` as $(PREFIX)/share/bash-completion/completions/taskerctl.

_taskerctl() {
  local cur prev words cword
  _init_completion 2>/dev/null || { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
  local global="--url --api-key --output --help"
  local -A cmds=(
    [task]="create list get cancel steps step audit wait visualize"
    [step]="reset resolve complete"
    [template]="list get register validate visualize"
    [dlq]="list get update stats"
    [system]="health info"
    [config]="validate dump"
    [db]="migrate status"
  )
  local -A opts=(
    [task create]="--namespace --name --version --context --initiator --source-system --reason --tag --priority --idempotency-key --correlation-id --parent-correlation-id --quiet"
    [task list]="--namespace --state --name --initiator --source-system --page --per-page"
    [task cancel]="--reason --by"
    [task wait]="--timeout --interval"
    [task visualize]="--format --out"
    [step reset]="--reason --by"
    [step resolve]="--reason --by"
    [step complete]="--result --metadata --reason --by"
    [template list]="--namespace --page --per-page"
    [template visualize]="--format --out"
    [dlq list]="--status --page --per-page"
    [dlq update]="--status --notes --by --metadata --recover --step"
    [system health]="--live"
    [config validate]="--config --env"
    [config dump]="--config --env"
    [db migrate]="--database-url --verbose"
    [db status]="--database-url --verbose"
  )
  case $prev in
    --output) mapfile -t COMPREPLY < <(compgen -W "table json" -- "$cur"); return ;;
    --format|-f) mapfile -t COMPREPLY < <(compgen -W "svg png dot" -- "$cur"); return ;;
    --status) mapfile -t COMPREPLY < <(compgen -W "pending manually_resolved permanently_failed cancelled" -- "$cur"); return ;;
    --state) mapfile -t COMPREPLY < <(compgen -W "pending initializing enqueuing_steps steps_in_process evaluating_results waiting_for_dependencies waiting_for_retry blocked_by_failures complete error cancelled resolved_manually" -- "$cur"); return ;;
    --env|-e) mapfile -t COMPREPLY < <(compgen -W "test development production" -- "$cur"); return ;;
    --context|-c|--result|--metadata|--out|-o|--config) mapfile -t COMPREPLY < <(compgen -f -- "$cur"); return ;;
    --url|--api-key|--namespace|-n|--name|--version|--reason|--by|--notes|--timeout|--interval|--page|--per-page|--tag|--priority|--database-url) return ;;
  esac
  # The group and command are the first two words that are not options (or option values).
  local i group="" cmd=""
  for ((i = 1; i < cword; i++)); do
    case ${words[i]} in
      --url|--api-key|--output) ((i++)) ;;
      -*) ;;
      *) if [ -z "$group" ]; then group=${words[i]}; elif [ -z "$cmd" ]; then cmd=${words[i]}; fi ;;
    esac
  done
  if [ -z "$group" ]; then
    mapfile -t COMPREPLY < <(compgen -W "${!cmds[*]} $global --version" -- "$cur")
  elif [ -z "$cmd" ]; then
    mapfile -t COMPREPLY < <(compgen -W "${cmds[$group]:-}" -- "$cur")
  elif [[ $cur == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${opts[$group $cmd]:-} $global" -- "$cur")
  elif [ "$group" = template ] && { [ "$cmd" = register ] || [ "$cmd" = validate ]; }; then
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  fi
}
complete -F _taskerctl taskerctl
