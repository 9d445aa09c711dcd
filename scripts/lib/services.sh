#!/usr/bin/env bash
# shellcheck shell=bash
#
# scripts/lib/services.sh — start and stop private, throw-away service
# instances (PostgreSQL, Redis standalone / Cluster / Sentinel) for the
# poolgate test suite.
#
# Meant to be `source`d, never executed:
#
#     source scripts/lib/services.sh
#     svc_ensure_packages          # apt-get install whatever is missing
#     svc_init                     # temp dir, exports SVC_DIR
#     svc_trap                     # == trap svc_stop_all EXIT (+ INT/TERM exit)
#     svc_start_postgres           # exports POOLGATE_TEST_PG_URL
#     svc_start_redis >/dev/null   # exports POOLGATE_TEST_REDIS_URL
#     svc_start_redis_cluster      # exports POOLGATE_TEST_REDIS_CLUSTER_URL
#     svc_start_redis_sentinel     # exports POOLGATE_TEST_REDIS_SENTINEL_URL, ...
#
# Every instance listens on 127.0.0.1 only, on a port that was free when it
# was picked, and keeps all its files under $SVC_DIR. Nothing touches the
# system-wide services (e.g. a Debian PostgreSQL cluster on 5432 or a packaged
# redis on 6379): they are neither used nor stopped.
#
# Bookkeeping lives in FILES inside $SVC_DIR, not in shell variables, so that
# instances started (or ports handed out) inside a command substitution
# subshell, e.g. `port=$(svc_start_redis extra)`, are still known to
# svc_stop_all in the parent shell.
#
# Log output of these functions goes to stderr; stdout carries only values
# meant to be captured (a port number).

# The caller is expected to run in strict mode too; setting it here makes the
# library behave the same whoever sources it.
set -euo pipefail

# Guard against being sourced twice (re-sourcing would reset state).
if [[ -n "${_SVC_LIB_LOADED:-}" ]]; then
    return 0
fi
_SVC_LIB_LOADED=1

# Default bound for every wait loop, in seconds. Override per run if needed.
: "${SVC_WAIT_SECONDS:=30}"

# Sentinel service name used by svc_start_redis_sentinel.
: "${SVC_SENTINEL_SERVICE:=poolgate}"

# Set once apt-get update has run in this shell (run it at most once).
_SVC_APT_UPDATED=0

# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

# _svc_log MSG... — timestamped message on stderr.
_svc_log() {
    printf '[svc %(%H:%M:%S)T] %s\n' -1 "$*" >&2
}

# _svc_err MSG... — timestamped error message on stderr.
_svc_err() {
    printf '[svc %(%H:%M:%S)T] ERROR: %s\n' -1 "$*" >&2
}

# _svc_now_ms — milliseconds since the epoch (for durations).
_svc_now_ms() {
    local ns
    ns=$(date +%s%N)
    printf '%s\n' "$((ns / 1000000))"
}

# _svc_since MS — "1.234s" elapsed since a _svc_now_ms value.
_svc_since() {
    local start=$1 now diff
    now=$(_svc_now_ms)
    diff=$((now - start))
    printf '%d.%03ds' "$((diff / 1000))" "$((diff % 1000))"
}

# _svc_log_tail FILE [LINES] — show the end of a service log on stderr.
_svc_log_tail() {
    local file=$1 lines=${2:-30}
    if [[ -f "$file" ]]; then
        printf -- '----- last %s lines of %s -----\n' "$lines" "$file" >&2
        tail -n "$lines" -- "$file" >&2 || true
        printf -- '----- end of %s -----\n' "$file" >&2
    else
        printf -- '(no log file at %s)\n' "$file" >&2
    fi
}

# _svc_wait_until SECONDS DESCRIPTION LOGFILE CMD [ARGS...]
# Polls CMD (quietly) every 0.2 s until it succeeds or SECONDS elapse.
# On timeout prints an error plus the tail of LOGFILE and returns 1.
_svc_wait_until() {
    local timeout=$1 desc=$2 logfile=$3
    shift 3
    local deadline=$((SECONDS + timeout))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            _svc_err "timed out after ${timeout}s waiting for: ${desc}"
            _svc_log_tail "$logfile"
            return 1
        fi
        sleep 0.2
    done
}

# _svc_require_init — fail clearly when svc_init has not been called.
_svc_require_init() {
    if [[ -z "${SVC_DIR:-}" || ! -d "${SVC_DIR}" ]]; then
        _svc_err "svc_init has not been called (SVC_DIR unset or missing)"
        return 1
    fi
}

# _svc_register LINE — append one instance record to the registry.
# Records (space separated, paths contain no spaces: they live in SVC_DIR):
#   redis    PORT PIDFILE NAME
#   postgres DATADIR BINDIR
_svc_register() {
    printf '%s\n' "$*" >>"${SVC_DIR}/instances"
}

# _svc_run_as_pg CMD [ARGS...] — run a PostgreSQL binary as the `postgres`
# OS user when we are root (postgres refuses to run as root), else as us.
_svc_run_as_pg() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# _svc_pid_is NAME_SUBSTRING PID — true if PID is alive and its command line
# mentions NAME_SUBSTRING (protects against killing a recycled pid).
_svc_pid_is() {
    local what=$1 pid=$2
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/${pid}/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q -- "$what"
}

# _svc_pid_alive PID — true if PID runs (a zombie awaiting reaping by init,
# as daemonized servers become once they exit, counts as gone).
_svc_pid_alive() {
    local state=""
    kill -0 "$1" 2>/dev/null || return 1
    # /proc/PID/stat: "pid (comm) S ..." — the state follows the last ')'.
    state=$(sed -n 's/.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || true
    [[ "$state" != "Z" && "$state" != "X" ]]
}

# _svc_wait_pid_gone PID SECONDS — wait for a process to exit (bounded).
_svc_wait_pid_gone() {
    local pid=$1 timeout=$2
    local deadline=$((SECONDS + timeout))
    while _svc_pid_alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
    return 0
}

# ---------------------------------------------------------------------------
# svc_ensure_packages — install missing packages with apt-get
# ---------------------------------------------------------------------------

# _svc_pkg_installed PKG — true if dpkg knows PKG as installed.
_svc_pkg_installed() {
    local status
    status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
    [[ "$status" == "install ok installed" ]]
}

# _svc_pg_bindir — newest /usr/lib/postgresql/*/bin that has initdb.
_svc_pg_bindir() {
    local dir best="" best_ver=0 ver
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "${dir}/initdb" ]] || continue
        ver=${dir#/usr/lib/postgresql/}
        ver=${ver%/bin}
        # Major versions are plain integers since PostgreSQL 10.
        [[ "$ver" =~ ^[0-9]+$ ]] || continue
        if ((ver > best_ver)); then
            best_ver=$ver
            best=$dir
        fi
    done
    [[ -n "$best" ]] || return 1
    printf '%s\n' "$best"
}

svc_ensure_packages() {
    local start missing=()
    start=$(_svc_now_ms)

    # Each package must be installed AND its command usable.
    local pkg cmd
    for pkg in redis-server:redis-server redis-sentinel:redis-sentinel redis-tools:redis-cli jq:jq curl:curl; do
        cmd=${pkg#*:}
        pkg=${pkg%%:*}
        if ! _svc_pkg_installed "$pkg" || ! command -v "$cmd" >/dev/null 2>&1; then
            missing+=("$pkg")
        fi
    done
    # `postgresql` is the Debian meta package (PostgreSQL 15 on Debian 12);
    # what we really need is an initdb/pg_ctl/postgres under
    # /usr/lib/postgresql/*/bin plus the client tools (psql, pg_isready).
    if ! _svc_pkg_installed postgresql || ! _svc_pg_bindir >/dev/null; then
        missing+=(postgresql)
    fi

    if ((${#missing[@]} == 0)); then
        _svc_log "packages: all present ($(_svc_since "$start"))"
        return 0
    fi

    if ((EUID != 0)); then
        _svc_err "missing packages (${missing[*]}) and not root: install them with apt-get first"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        _svc_err "missing packages (${missing[*]}) and no apt-get on this machine"
        return 1
    fi

    _svc_log "packages: installing ${missing[*]}"
    if ((_SVC_APT_UPDATED == 0)); then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || {
            _svc_err "apt-get update failed"
            return 1
        }
        _SVC_APT_UPDATED=1
    fi
    # Note: Debian's postinst scripts may start a system redis on 6379, a
    # system sentinel on 26379 or a PostgreSQL cluster on 5432. That is
    # harmless: we never use those ports (free ports only) and leave them be.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2 || {
        _svc_err "apt-get install ${missing[*]} failed"
        return 1
    }
    _svc_log "packages: installed ${missing[*]} in $(_svc_since "$start")"
}

# ---------------------------------------------------------------------------
# svc_init / svc_stop_all / svc_trap
# ---------------------------------------------------------------------------

svc_init() {
    if [[ -n "${SVC_DIR:-}" && -d "${SVC_DIR}" && -f "${SVC_DIR}/.svc_owned" ]]; then
        _svc_log "already initialised: ${SVC_DIR}"
        return 0
    fi
    SVC_DIR=$(mktemp -d "${TMPDIR:-/tmp}/poolgate-svc.XXXXXX")
    export SVC_DIR
    # The postgres OS user must be able to traverse into its data dir.
    chmod 0755 "$SVC_DIR"
    # Marker: svc_stop_all only ever deletes a directory carrying it.
    : >"${SVC_DIR}/.svc_owned"
    : >"${SVC_DIR}/instances"
    : >"${SVC_DIR}/ports"
    _svc_log "temp dir: ${SVC_DIR}"
}

# _svc_stop_redis PORT PIDFILE NAME — graceful shutdown, then kill if needed.
_svc_stop_redis() {
    local port=$1 pidfile=$2 name=$3 pid=""
    if [[ -s "$pidfile" ]]; then
        pid=$(head -n 1 -- "$pidfile" 2>/dev/null || true)
    fi
    # SHUTDOWN NOSAVE works for redis-server and redis-sentinel alike. A
    # successful shutdown closes the connection, so redis-cli's exit code
    # is meaningless here; bound it in time in case the server hangs.
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
    if [[ -n "$pid" ]] && _svc_pid_is redis "$pid"; then
        if ! _svc_wait_pid_gone "$pid" 5; then
            _svc_log "redis '${name}' (port ${port}, pid ${pid}) did not exit; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            _svc_wait_pid_gone "$pid" 5 || _svc_err "could not kill pid ${pid}"
        fi
    fi
}

# _svc_stop_postgres DATADIR BINDIR — immediate shutdown, then kill if needed.
_svc_stop_postgres() {
    local datadir=$1 bindir=$2 pid=""
    [[ -d "$datadir" ]] || return 0
    if [[ -s "${datadir}/postmaster.pid" ]]; then
        pid=$(head -n 1 -- "${datadir}/postmaster.pid" 2>/dev/null || true)
        _svc_run_as_pg "${bindir}/pg_ctl" -D "$datadir" stop -m immediate -w -t 10 \
            >/dev/null 2>&1 || true
        if [[ -n "$pid" ]] && _svc_pid_is postgres "$pid"; then
            _svc_log "postgres (pid ${pid}) did not stop; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            _svc_wait_pid_gone "$pid" 5 || _svc_err "could not kill pid ${pid}"
        fi
    fi
}

# svc_stop_all [SIGNAL] — stop every instance recorded in the registry (in
# reverse start order, including ones whose start failed halfway), then
# remove $SVC_DIR. Idempotent: a second call finds nothing and returns.
# With a SIGNAL name argument (INT/TERM, as svc_trap installs it) it exits
# afterwards with 128+signal number, like an uncaught signal would.
svc_stop_all() {
    local rc=$? sig=${1:-} had_errexit=0
    # Never let a failure during cleanup abort the cleanup itself.
    [[ $- == *e* ]] && had_errexit=1
    set +e
    local dir=${SVC_DIR:-}
    if [[ -n "$dir" && -d "$dir" && -f "${dir}/.svc_owned" ]]; then
        local kind a b c
        if [[ -s "${dir}/instances" ]]; then
            _svc_log "stopping services in ${dir}"
            # tac: stop in reverse order (sentinels before their redis, ...)
            while read -r kind a b c; do
                case "$kind" in
                redis) _svc_stop_redis "$a" "$b" "$c" ;;
                postgres) _svc_stop_postgres "$a" "$b" ;;
                "") ;;
                *) _svc_err "unknown registry entry: ${kind} ${a} ${b} ${c}" ;;
                esac
            done < <(tac -- "${dir}/instances")
            : >"${dir}/instances"
        fi
        rm -rf -- "$dir" || _svc_err "could not remove ${dir}"
        _svc_log "services stopped, ${dir} removed"
    fi
    ((had_errexit)) && set -e
    if [[ -n "$sig" ]]; then
        trap - "$sig"
        case "$sig" in
        INT) exit 130 ;;
        TERM) exit 143 ;;
        HUP) exit 129 ;;
        *) exit 1 ;;
        esac
    fi
    return "$rc"
}

# svc_trap — install the cleanup traps: always on EXIT, and on INT/TERM stop
# everything and exit (a plain `trap svc_stop_all EXIT INT TERM` works too,
# since svc_stop_all is idempotent, but would carry on after Ctrl-C).
svc_trap() {
    trap 'svc_stop_all' EXIT
    trap 'svc_stop_all INT' INT
    trap 'svc_stop_all TERM' TERM
    trap 'svc_stop_all HUP' HUP
}

# ---------------------------------------------------------------------------
# svc_free_port — a free TCP port on 127.0.0.1, never the same one twice
# ---------------------------------------------------------------------------

# _svc_probe_port — ask the kernel for a free port (bind to port 0).
_svc_probe_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
'
    else
        # Fallback without python3: a random port nobody answers on.
        local p
        while true; do
            p=$((20000 + RANDOM % 12000))
            if ! (exec 3<>"/dev/tcp/127.0.0.1/${p}") 2>/dev/null; then
                printf '%s\n' "$p"
                return 0
            fi
        done
    fi
}

svc_free_port() {
    _svc_require_init || return 1
    local port tries=0
    while ((tries < 50)); do
        tries=$((tries + 1))
        port=$(_svc_probe_port) || continue
        [[ "$port" =~ ^[0-9]+$ ]] || continue
        # Already handed out during this run (the service may not listen yet)?
        if grep -qx -- "$port" "${SVC_DIR}/ports" 2>/dev/null; then
            continue
        fi
        printf '%s\n' "$port" >>"${SVC_DIR}/ports"
        printf '%s\n' "$port"
        return 0
    done
    _svc_err "could not find a free port after ${tries} tries"
    return 1
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

svc_start_postgres() {
    _svc_require_init || return 1
    local start bindir port dir data sock log
    start=$(_svc_now_ms)
    bindir=$(_svc_pg_bindir) || {
        _svc_err "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (run svc_ensure_packages)"
        return 1
    }
    port=$(svc_free_port) || return 1
    dir="${SVC_DIR}/pg"
    data="${dir}/data"
    sock="${dir}/run"
    log="${dir}/postgres.log"
    mkdir -p -- "$sock"
    if ((EUID == 0)); then
        chown -R postgres:postgres -- "$dir"
    fi
    chmod 0700 -- "$dir"
    # Register before anything can half-start, so svc_stop_all cleans up.
    _svc_register "postgres ${data} ${bindir}"

    # --no-sync: skip fsync of the fresh cluster (throw-away data).
    if ! _svc_run_as_pg "${bindir}/initdb" -D "$data" -U postgres -A trust \
        -E UTF8 --locale=C --no-sync >"${dir}/initdb.log" 2>&1; then
        _svc_err "initdb failed"
        _svc_log_tail "${dir}/initdb.log"
        return 1
    fi

    # Trust auth, loopback only (no IPv6: we listen on 127.0.0.1 only).
    _svc_run_as_pg tee "${data}/pg_hba.conf" >/dev/null <<'EOF'
# poolgate test instance: trust on the private socket and on loopback only
local   all          all                     trust
host    all          all     127.0.0.1/32    trust
local   replication  all                     trust
host    replication  all     127.0.0.1/32    trust
EOF
    # Test-speed settings: durability off (the data is thrown away).
    _svc_run_as_pg tee -a "${data}/postgresql.conf" >/dev/null <<EOF

# ---- poolgate test instance (scripts/lib/services.sh) ----
listen_addresses = '127.0.0.1'
port = ${port}
unix_socket_directories = '${sock}'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF

    # pg_ctl -w waits for startup itself; -t bounds it.
    if ! _svc_run_as_pg "${bindir}/pg_ctl" -D "$data" -l "$log" -w \
        -t "$SVC_WAIT_SECONDS" start >"${dir}/pg_ctl.log" 2>&1; then
        _svc_err "PostgreSQL did not start on 127.0.0.1:${port}"
        _svc_log_tail "${dir}/pg_ctl.log" 10
        _svc_log_tail "$log"
        return 1
    fi
    _svc_wait_until "$SVC_WAIT_SECONDS" "PostgreSQL ready on 127.0.0.1:${port}" "$log" \
        "${bindir}/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres || return 1

    export POOLGATE_TEST_PG_URL="postgres://postgres@127.0.0.1:${port}/postgres"
    export POOLGATE_TEST_PG_PORT="$port"
    _svc_log "postgres: 127.0.0.1:${port} ready in $(_svc_since "$start") (${bindir%/bin})"
}

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------

# _svc_redis_launch NAME PORT BINARY [EXTRA ARGS...]
# Starts one daemonized redis-server (or redis-sentinel with a config file
# passed in EXTRA ARGS) with its own dir/pidfile/logfile under
# $SVC_DIR/redis/NAME and waits for PING -> PONG. Registers it first.
_svc_redis_launch() {
    local name=$1 port=$2 binary=$3
    shift 3
    local dir="${SVC_DIR}/redis/${name}"
    local pidfile="${dir}/redis.pid" log="${dir}/redis.log"
    if [[ -e "$dir" ]]; then
        _svc_err "redis instance name '${name}' already used"
        return 1
    fi
    mkdir -p -- "$dir"
    _svc_register "redis ${port} ${pidfile} ${name}"
    # stdout/stderr go to the log: keeps a caller's $(...) from hanging on
    # the daemon's inherited pipe, and keeps early errors visible.
    if ! "$binary" "$@" \
        --port "$port" \
        --bind 127.0.0.1 \
        --daemonize yes \
        --dir "$dir" \
        --pidfile "$pidfile" \
        --logfile "$log" \
        </dev/null >>"${dir}/stdout.log" 2>&1; then
        _svc_err "${binary} '${name}' failed to start on port ${port}"
        _svc_log_tail "${dir}/stdout.log" 10
        _svc_log_tail "$log"
        return 1
    fi
    _svc_wait_until "$SVC_WAIT_SECONDS" "redis '${name}' to answer PING on 127.0.0.1:${port}" "$log" \
        _svc_redis_pong "$port" || return 1
}

# _svc_redis_pong PORT — true if the server on PORT answers PONG.
_svc_redis_pong() {
    local out
    out=$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null) || return 1
    [[ "$out" == "PONG" ]]
}

# svc_start_redis [NAME] — standalone redis-server on a free port.
# Prints the port on stdout and sets SVC_LAST_REDIS_PORT. For the default
# instance (no NAME, or NAME=default) it exports POOLGATE_TEST_REDIS_URL;
# call it directly (not in $(...)) for that export to reach the caller,
# e.g. `svc_start_redis >/dev/null`. Extra instances: `p=$(svc_start_redis x)`.
svc_start_redis() {
    _svc_require_init || return 1
    local name=${1:-default} start port
    start=$(_svc_now_ms)
    port=$(svc_free_port) || return 1
    _svc_redis_launch "$name" "$port" redis-server \
        --save '' --appendonly no || return 1
    # Global on purpose: read by callers that did not capture stdout.
    # shellcheck disable=SC2034
    SVC_LAST_REDIS_PORT=$port
    if [[ "$name" == "default" ]]; then
        export POOLGATE_TEST_REDIS_URL="redis://127.0.0.1:${port}"
        export POOLGATE_TEST_REDIS_PORT="$port"
    fi
    _svc_log "redis '${name}': 127.0.0.1:${port} ready in $(_svc_since "$start")"
    printf '%s\n' "$port"
}

# _svc_cluster_ok PORT — node on PORT sees a healthy 3-node cluster.
_svc_cluster_ok() {
    local info
    info=$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null) || return 1
    info=${info//$'\r'/}
    grep -qx 'cluster_state:ok' <<<"$info" &&
        grep -qx 'cluster_slots_ok:16384' <<<"$info" &&
        grep -qx 'cluster_known_nodes:3' <<<"$info"
}

# svc_start_redis_cluster — three masters, all 16384 slots assigned.
# Exports POOLGATE_TEST_REDIS_CLUSTER_URL (fred syntax) and
# POOLGATE_TEST_REDIS_CLUSTER_PORTS ("P1 P2 P3").
svc_start_redis_cluster() {
    _svc_require_init || return 1
    local start i port bus ports=()
    start=$(_svc_now_ms)
    for i in 1 2 3; do
        port=$(svc_free_port) || return 1
        # The cluster bus needs a second port; Redis' default (port+10000)
        # may be taken or exceed 65535 for ephemeral ports, so pick one.
        bus=$(svc_free_port) || return 1
        _svc_redis_launch "cluster-${i}" "$port" redis-server \
            --save '' --appendonly no \
            --cluster-enabled yes \
            --cluster-config-file nodes.conf \
            --cluster-port "$bus" || return 1
        ports+=("$port")
    done

    local log="${SVC_DIR}/redis/cluster-create.log"
    if ! timeout "$SVC_WAIT_SECONDS" redis-cli --cluster create \
        "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" "127.0.0.1:${ports[2]}" \
        --cluster-replicas 0 --cluster-yes </dev/null >"$log" 2>&1; then
        _svc_err "redis-cli --cluster create failed"
        _svc_log_tail "$log"
        return 1
    fi
    for port in "${ports[@]}"; do
        _svc_wait_until "$SVC_WAIT_SECONDS" "cluster_state:ok on 127.0.0.1:${port}" \
            "${SVC_DIR}/redis/cluster-1/redis.log" _svc_cluster_ok "$port" || {
            _svc_log_tail "$log" 15
            return 1
        }
    done

    export POOLGATE_TEST_REDIS_CLUSTER_URL="redis-cluster://127.0.0.1:${ports[0]}?node=127.0.0.1:${ports[1]}&node=127.0.0.1:${ports[2]}"
    export POOLGATE_TEST_REDIS_CLUSTER_PORTS="${ports[*]}"
    _svc_log "redis cluster: 127.0.0.1:{${ports[0]},${ports[1]},${ports[2]}} ready in $(_svc_since "$start")"
}

# _svc_replica_up PORT — the replica on PORT has a live link to its primary.
_svc_replica_up() {
    local info
    info=$(timeout 2 redis-cli -h 127.0.0.1 -p "$1" info replication 2>/dev/null) || return 1
    grep -q '^master_link_status:up' <<<"${info//$'\r'/}"
}

# _svc_sentinel_ready SPORT PRIMARY_PORT — this sentinel reports the primary
# and has discovered the replica and the two other sentinels.
_svc_sentinel_ready() {
    local sport=$1 pport=$2 addr master
    addr=$(timeout 2 redis-cli -h 127.0.0.1 -p "$sport" \
        sentinel get-master-addr-by-name "$SVC_SENTINEL_SERVICE" 2>/dev/null) || return 1
    addr=${addr//$'\r'/}
    [[ "$addr" == $'127.0.0.1\n'"$pport" ]] || return 1
    master=$(timeout 2 redis-cli -h 127.0.0.1 -p "$sport" \
        sentinel master "$SVC_SENTINEL_SERVICE" 2>/dev/null) || return 1
    master=${master//$'\r'/}
    # `sentinel master` prints alternating field/value lines.
    grep -A1 -x 'num-slaves' <<<"$master" | tail -n 1 | grep -qx '[1-9][0-9]*' &&
        grep -A1 -x 'num-other-sentinels' <<<"$master" | tail -n 1 | grep -qx '[2-9]' &&
        grep -A1 -x 'flags' <<<"$master" | tail -n 1 | grep -qx 'master'
}

# svc_start_redis_sentinel — one primary, one replica, three sentinels
# monitoring "$SVC_SENTINEL_SERVICE" (default "poolgate") with quorum 2.
# Exports POOLGATE_TEST_REDIS_SENTINEL_URL (fred syntax),
# POOLGATE_TEST_REDIS_SENTINEL_PRIMARY_PORT, ..._REPLICA_PORT and
# POOLGATE_TEST_REDIS_SENTINEL_PORTS ("S1 S2 S3").
svc_start_redis_sentinel() {
    _svc_require_init || return 1
    local start pport rport i sport conf dir sports=()
    start=$(_svc_now_ms)
    if ! command -v redis-sentinel >/dev/null 2>&1; then
        _svc_err "redis-sentinel not found (run svc_ensure_packages)"
        return 1
    fi

    # repl-diskless-sync-delay 0: Redis 7 otherwise waits 5 s for more
    # replicas before the first full sync (on both: either may be primary
    # after a failover).
    pport=$(svc_free_port) || return 1
    _svc_redis_launch sentinel-primary "$pport" redis-server \
        --save '' --appendonly no --repl-diskless-sync-delay 0 || return 1
    rport=$(svc_free_port) || return 1
    _svc_redis_launch sentinel-replica "$rport" redis-server \
        --save '' --appendonly no --repl-diskless-sync-delay 0 \
        --replicaof 127.0.0.1 "$pport" || return 1
    _svc_wait_until "$SVC_WAIT_SECONDS" "replica 127.0.0.1:${rport} linked to primary ${pport}" \
        "${SVC_DIR}/redis/sentinel-replica/redis.log" _svc_replica_up "$rport" || return 1

    for i in 1 2 3; do
        sport=$(svc_free_port) || return 1
        # Sentinel rewrites its config file at run time: it must be a
        # writable file of its own. Port/bind/dir/... come from the command
        # line (_svc_redis_launch); the monitor settings live here.
        dir="${SVC_DIR}/redis/sentinel-conf-${i}"
        mkdir -p -- "$dir"
        conf="${dir}/sentinel.conf"
        cat >"$conf" <<EOF
# poolgate test sentinel ${i} (scripts/lib/services.sh)
sentinel resolve-hostnames no
sentinel monitor ${SVC_SENTINEL_SERVICE} 127.0.0.1 ${pport} 2
sentinel down-after-milliseconds ${SVC_SENTINEL_SERVICE} 1000
sentinel failover-timeout ${SVC_SENTINEL_SERVICE} 5000
sentinel parallel-syncs ${SVC_SENTINEL_SERVICE} 1
EOF
        _svc_redis_launch "sentinel-${i}" "$sport" redis-sentinel "$conf" || return 1
        sports+=("$sport")
    done

    for i in 0 1 2; do
        _svc_wait_until "$SVC_WAIT_SECONDS" \
            "sentinel 127.0.0.1:${sports[i]} to report primary 127.0.0.1:${pport}, its replica and 2 peer sentinels" \
            "${SVC_DIR}/redis/sentinel-$((i + 1))/redis.log" \
            _svc_sentinel_ready "${sports[i]}" "$pport" || return 1
    done

    export POOLGATE_TEST_REDIS_SENTINEL_URL="redis-sentinel://127.0.0.1:${sports[0]}/0?sentinelServiceName=${SVC_SENTINEL_SERVICE}&node=127.0.0.1:${sports[1]}&node=127.0.0.1:${sports[2]}"
    export POOLGATE_TEST_REDIS_SENTINEL_PRIMARY_PORT="$pport"
    export POOLGATE_TEST_REDIS_SENTINEL_REPLICA_PORT="$rport"
    export POOLGATE_TEST_REDIS_SENTINEL_PORTS="${sports[*]}"
    _svc_log "redis sentinel: primary ${pport}, replica ${rport}, sentinels {${sports[0]},${sports[1]},${sports[2]}} ready in $(_svc_since "$start")"
}
