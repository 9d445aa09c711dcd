# shellcheck shell=bash
#
# scripts/lib/docs_check.sh — run the documentation's own commands, as a new user would.
#
# Sourced by scripts/test.sh (after scripts/lib/services.sh). `docs_check` is one phase:
#
#   1. README.md: the first command (start a node), the quickstart's test upstream and every
#      quickstart step, extracted from README.md at test time and run verbatim except for the
#      ports (4444 and 3001 become free loopback ports), in a private directory under target/
#      (the node writes `poolgate.db` into its working directory and the token command reads it
#      from there). Each step's answer is asserted.
#   2. docs/operations.md: the runnable commands that need no cluster (pool sizing PUT, the
#      10% -> 50% -> 100% rollout, poolctl calls, the API backup export and the pool restore,
#      the health-check script, `poolgate-node migrate status|down|up`), against the same node.
#
# Which fenced block is which is marked in the Markdown with an HTML comment on the line before
# the fence (invisible when rendered): `<!-- ci: NAME -->`. A marked block that disappears, a
# changed step list or a command that stops working fails the phase, so the docs cannot rot.
# Everything started here runs in its own process group and is stopped on return, also on
# failure.

# _docs_md_block FILE NAME — print the fenced block that follows `<!-- ci: NAME -->` in FILE,
# without the fences and without the fence's indentation.
_docs_md_block() {
    awk -v tag="<!-- ci: $2 -->" '
        armed == 0 && $0 ~ "^[ ]*" tag "[ ]*$" { armed = 1; next }
        armed == 1 && /^[ ]*```/ { match($0, /^[ ]*/); indent = RLENGTH; armed = 2; next }
        armed == 2 && /^[ ]*```/ { found = 1; exit }
        armed == 2 { print substr($0, indent + 1) }
        END { exit found ? 0 : 1 }
    ' "$1"
}

# _docs_inline FILE PREFIX — print every inline code span of FILE (spans may wrap a line)
# that starts with PREFIX, one per line.
_docs_inline() {
    PREFIX=$2 perl -0777 -ne '
        s/\n(?!\n)/ /g;
        while (/`([^`\n]+)`/g) { my $s = $1; print "$s\n" if index($s, $ENV{PREFIX}) == 0 }
    ' "$1"
}

_docs_log() {
    printf '[docs %(%H:%M:%S)T] %s\n' -1 "$*"
}

_docs_fail() {
    printf '[docs %(%H:%M:%S)T] FAILED: %s\n' -1 "$*" >&2
    return 1
}

# _docs_expect NAME OUTPUT REGEX... — every extended REGEX must match somewhere in OUTPUT.
_docs_expect() {
    local name=$1 out=$2 re
    shift 2
    for re in "$@"; do
        if ! grep -Eq -- "$re" <<<"$out"; then
            _docs_fail "${name}: expected output matching /${re}/, got:"$'\n'"${out}"
            return 1
        fi
    done
    _docs_log "ok: ${name}"
}

# _docs_start NAME LOG CMD — run CMD (a shell snippet) in the background in its own process
# group; remember it for _docs_stop_all.
_docs_start() {
    local name=$1 logfile=$2 cmd=$3
    setsid bash -c "$cmd" >"$logfile" 2>&1 </dev/null &
    _DOCS_PIDS+=("$!")
    _docs_log "started ${name} (pid $!): ${cmd}"
}

_docs_stop_all() {
    local pid
    for pid in "${_DOCS_PIDS[@]}"; do
        kill -TERM -- "-${pid}" 2>/dev/null || true
    done
    for pid in "${_DOCS_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    _DOCS_PIDS=()
}

# _docs_wait_http NAME URL PID LOG TIMEOUT — wait until URL answers 200, failing at once if
# the process PID died (its log is shown).
_docs_wait_http() {
    local name=$1 url=$2 pid=$3 logfile=$4 timeout=$5
    local deadline=$((SECONDS + timeout))
    while true; do
        if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url" 2>/dev/null)" == 200 ]]; then
            _docs_log "ok: ${name} answers 200 on ${url}"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            _docs_fail "${name} exited before answering ${url}; its output:"$'\n'"$(tail -n 30 "$logfile")"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            _docs_fail "${name}: no 200 from ${url} within ${timeout}s; its output:"$'\n'"$(tail -n 30 "$logfile")"
            return 1
        fi
        sleep 0.2
    done
}

# _docs_run_steps NAME SCRIPT — run SCRIPT (a shell snippet whose steps start with comment lines
# `# N. ...`) in one shell, printing `@@step N@@` before each step's output, and the shell's
# TOKEN/SID shape at the end. Used for the quickstart.
_docs_run_steps() {
    awk '
        /^# [0-9]+\./ { n = $2; sub(/\.$/, "", n); print "echo; echo \"@@step " n "@@\"" }
        { print }
        END {
            print "echo; echo \"@@step end@@\""
            print "[[ \"${TOKEN:-}\" =~ ^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$ ]] && echo token-is-a-jwt"
            print "[[ -n \"${SID:-}\" ]] && echo session-id-set"
        }
    ' <<<"$2" | bash 2>&1
}

# _docs_step_src SCRIPT N — the source lines of step N (from `# N.` to the next `# M.`).
_docs_step_src() {
    awk -v want="$2" '
        /^# [0-9]+\./ { cur = $2; sub(/\.$/, "", cur) }
        cur == want { print }
    ' <<<"$1"
}

# _docs_step OUTPUT N — the output of step N of a _docs_run_steps run.
_docs_step() {
    awk -v want="$2" '
        /^@@step / { cur = $2; sub(/@@$/, "", cur); next }
        cur == want { print }
    ' <<<"$1"
}

docs_check() (
    set -uo pipefail
    _DOCS_PIDS=()
    trap _docs_stop_all EXIT

    local repo
    repo=$(pwd)
    # Under target/ so that `cargo run` finds the workspace from the node's directory, as it does
    # for a user who runs the quickstart in the clone.
    mkdir -p target
    local dir
    dir=$(mktemp -d "${repo}/target/docs-check.XXXXXX") || return 1
    trap '_docs_stop_all; rm -rf -- "$dir"' EXIT
    _docs_log "working directory: ${dir}"

    local port up_port
    port=$(svc_free_port) && up_port=$(svc_free_port) || return 1

    # --- README: the first command -------------------------------------------------------
    local node_cmd upstream_cmd quickstart
    node_cmd=$(_docs_md_block README.md node) || _docs_fail "README.md: no block marked <!-- ci: node -->" || return 1
    upstream_cmd=$(_docs_md_block README.md test-upstream) ||
        _docs_fail "README.md: no block marked <!-- ci: test-upstream -->" || return 1
    quickstart=$(_docs_md_block README.md quickstart) ||
        _docs_fail "README.md: no block marked <!-- ci: quickstart -->" || return 1
    grep -q -- '--port 3001' <<<"$upstream_cmd" ||
        _docs_fail "README.md: the test upstream command no longer says --port 3001" || return 1

    # PORT/HOST through the environment (the README keeps 4444 as the documented default).
    _docs_start node "${dir}/node.log" "cd '${dir}' && export PORT=${port} HOST=127.0.0.1 && ${node_cmd}"
    local node_pid=${_DOCS_PIDS[-1]}
    # A clean clone compiles first: allow for that.
    _docs_wait_http "README command 1 (${node_cmd})" "http://127.0.0.1:${port}/health" "$node_pid" \
        "${dir}/node.log" 900 || return 1

    _docs_start test-upstream "${dir}/upstream.log" \
        "cd '${dir}' && ${upstream_cmd//--port 3001/--port ${up_port}}"
    local up_pid=${_DOCS_PIDS[-1]}
    local deadline=$((SECONDS + 600))
    until (exec 3<>"/dev/tcp/127.0.0.1/${up_port}") 2>/dev/null; do
        if ! kill -0 "$up_pid" 2>/dev/null || ((SECONDS >= deadline)); then
            _docs_fail "the quickstart's test upstream did not start; its output:"$'\n'"$(tail -n 30 "${dir}/upstream.log")"
            return 1
        fi
        sleep 0.2
    done
    _docs_log "ok: test upstream listens on ${up_port}"

    # --- README: the quickstart, step by step ----------------------------------------------
    quickstart=${quickstart//127.0.0.1:4444/127.0.0.1:${port}}
    quickstart=${quickstart//127.0.0.1:3001/127.0.0.1:${up_port}}
    local steps
    steps=$(grep -E '^# [0-9]+\.' <<<"$quickstart" | awk '{ sub(/\.$/, "", $2); printf "%s ", $2 }')
    if [[ "$steps" != "1 2 3 4 5 6 7 " ]]; then
        _docs_fail "README.md quickstart: expected steps 1-7, found '${steps}'; update the expectations in scripts/lib/docs_check.sh"
        return 1
    fi
    local out
    out=$(cd "$dir" && _docs_run_steps quickstart "$quickstart")
    _docs_expect "quickstart 1 (token)" "$(_docs_step "$out" end)" '^token-is-a-jwt$' || return 1
    _docs_expect "quickstart 2 (register)" "$(_docs_step "$out" 2)" '"id": ?"server-1"' || return 1
    _docs_expect "quickstart 2 (header value not returned)" "$(_docs_step "$out" 2)" \
        '"[Xx]-[Aa]pi-[Kk]ey": ?"\[redacted\]"' || return 1
    if grep -q change-me <<<"$(_docs_step "$out" 2)"; then
        _docs_fail "quickstart 2: the header value came back: $(_docs_step "$out" 2)"
        return 1
    fi
    _docs_expect "quickstart 3 (pool config)" "$(_docs_step "$out" 3)" \
        '"pool_max_size": ?10' '"pool_strategy": ?"least_connections"' || return 1
    _docs_expect "quickstart 4 (export, ready)" "$(_docs_step "$out" 4)" '"server_id": ?"server-1"' '"ready"' || return 1
    _docs_expect "quickstart 5 (422 naming the field)" "$(_docs_step "$out" 5)" 'pool_max_size' || return 1
    _docs_expect "quickstart 6 (tool call)" "$(_docs_step "$out" 6)" 'hello through poolgate' || return 1
    _docs_expect "quickstart 6 (session id)" "$(_docs_step "$out" end)" '^session-id-set$' || return 1
    _docs_expect "quickstart 7 (DELETE)" "$(_docs_step "$out" 7)" '^200$' || return 1

    # --- docs/operations.md, against the same node -----------------------------------------
    local ops=docs/operations.md token
    token=$(cd "$dir" && cargo run -q -p poolgate-node -- token --sub ops --role admin --exp 30) ||
        _docs_fail "minting the operations token" || return 1
    export POOLGATE_URL="http://127.0.0.1:${port}" TOKEN=$token
    export PATH="${repo}/target/debug:${PATH}"
    cargo build -q -p poolgate-node --bin poolctl || _docs_fail "building poolctl" || return 1

    local block
    block=$(_docs_md_block "$ops" sizing) || _docs_fail "${ops}: no block marked sizing" || return 1
    _docs_expect "operations: pool sizing" "$(cd "$dir" && bash -c "$block" 2>&1)" \
        '"pool_min_size": ?20' '"pool_max_size": ?108' || return 1

    # The gradual rollout (it needs servers: two more, so the batches differ).
    local s
    for s in server-2 server-3; do
        curl -sf -o /dev/null -X POST "${POOLGATE_URL}/api/servers" -H "Authorization: Bearer ${TOKEN}" \
            -H "Content-Type: application/json" \
            -d "{\"id\": \"${s}\", \"name\": \"${s}\", \"endpoints\": [{\"url\": \"http://127.0.0.1:${up_port}/mcp\"}]}" ||
            _docs_fail "registering ${s}" || return 1
    done
    block=$(_docs_md_block "$ops" gradual) || _docs_fail "${ops}: no block marked gradual" || return 1
    block=${block//https:\/\/mcp.example.com/${POOLGATE_URL}}
    block=${block//TOKEN=.../TOKEN=${TOKEN}}
    out=$(cd "$dir" && bash -c "$block" 2>&1)
    _docs_expect "operations: gradual enable" "$out" '"updated": ?1' '"updated": ?2' '"updated": ?3' || return 1

    local cmd
    while IFS= read -r cmd; do
        [[ -n "$cmd" ]] || continue
        out=$(cd "$dir" && bash -c "$cmd" 2>&1)
        local rc=$?
        case "$cmd" in
        *bulk-update*) _docs_expect "operations: ${cmd}" "$out" 'server-1' || return 1 ;;
        *health*)
            if ((rc > 1)); then
                _docs_fail "operations: ${cmd} exited ${rc}: ${out}"
                return 1
            fi
            _docs_log "ok: ${cmd} (exit ${rc})"
            ;;
        *)
            ((rc == 0)) || _docs_fail "operations: ${cmd} exited ${rc}: ${out}" || return 1
            _docs_log "ok: ${cmd}"
            ;;
        esac
    done < <(_docs_inline "$ops" 'poolctl --url')

    block=$(_docs_md_block "$ops" health-script) || _docs_fail "${ops}: no block marked health-script" || return 1
    out=$(cd "$dir" && bash -c "$block" 2>&1)
    local rc=$?
    if ((rc > 1)); then
        _docs_fail "operations: the health-check script exited ${rc}: ${out}"
        return 1
    fi
    _docs_expect "operations: health-check script (exit ${rc})" "$out" '^(OK|WARNING): ' || return 1

    # Backup through the API (step 3 of the backup block; steps 1-2 are pg_dump of a cluster's
    # PostgreSQL), then the pool configuration restore from that export.
    block=$(_docs_md_block "$ops" backup) || _docs_fail "${ops}: no block marked backup" || return 1
    block=$(_docs_step_src "$block" 3)
    grep -q 'api/servers/pools' <<<"$block" || _docs_fail "${ops}: backup step 3 is not the API export" || return 1
    out=$(cd "$dir" && bash -c "$block" 2>&1)
    [[ -z "$out" ]] || _docs_fail "operations: backup export printed: ${out}" || return 1
    local stamp
    stamp=$(date +%Y%m%d)
    jq -e 'length == 3 and all(.[]; .server_id)' "${dir}/pool-configs-${stamp}.json" >/dev/null ||
        _docs_fail "operations: pool-configs-${stamp}.json is not the 3 pools" || return 1
    jq -e 'all(.[]; .headers["X-Api-Key"] != "change-me")' "${dir}/servers-${stamp}.json" >/dev/null ||
        _docs_fail "operations: servers-${stamp}.json holds a header value" || return 1
    _docs_log "ok: backup export (3 pools, header values redacted)"
    block=$(_docs_md_block "$ops" restore-pools) || _docs_fail "${ops}: no block marked restore-pools" || return 1
    # Change a value, restore, and see the exported one come back.
    curl -sf -o /dev/null -X PUT "${POOLGATE_URL}/api/servers/server-1/pool/config" -H "Authorization: Bearer ${TOKEN}" \
        -H "Content-Type: application/json" -d '{"pool_max_size": 150}' || _docs_fail "changing server-1" || return 1
    out=$(cd "$dir" && bash -c "${block//YYYYMMDD/${stamp}}" 2>&1)
    [[ -z "$out" ]] || _docs_fail "operations: pool restore printed: ${out}" || return 1
    _docs_expect "operations: pool restore" \
        "$(curl -s "${POOLGATE_URL}/api/servers/server-1/pool/config" -H "Authorization: Bearer ${TOKEN}")" \
        '"pool_max_size": ?108' || return 1

    # Schema commands, on a private SQLite database (not the running node's).
    local db="sqlite://${dir}/migrate.db"
    out=$(DATABASE_URL=$db poolgate-node migrate up 2>&1) || _docs_fail "migrate up: ${out}" || return 1
    while IFS= read -r cmd; do
        [[ "$cmd" == *VERSION* || "$cmd" == *...* ]] && continue
        out=$(cd "$dir" && DATABASE_URL=$db bash -c "$cmd" 2>&1) ||
            _docs_fail "operations: ${cmd} failed: ${out}" || return 1
        _docs_log "ok: ${cmd}"
    done < <(_docs_inline "$ops" 'poolgate-node migrate' | awk '!seen[$0]++')
    out=$(DATABASE_URL=$db poolgate-node migrate status 2>&1) || _docs_fail "migrate status: ${out}" || return 1
    grep -qi 'pending' <<<"$out" || _docs_fail "after migrate down, status shows nothing pending: ${out}" || return 1
    out=$(DATABASE_URL=$db poolgate-node migrate up 2>&1) || _docs_fail "migrate up: ${out}" || return 1
    _docs_log "ok: poolgate-node migrate up"

    _docs_log "README and operations commands: all ok"
)
