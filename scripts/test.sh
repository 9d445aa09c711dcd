#!/usr/bin/env bash
#
# scripts/test.sh — the project's single test command (also what CI runs,
# via .ci/run).
#
#   scripts/test.sh                      # fmt, clippy, all tests
#   scripts/test.sh -E 'test(auth)'      # extra args go to the test runner
#
# It starts private PostgreSQL and Redis instances on free loopback ports
# (scripts/lib/services.sh), exports their URLs for the tests
# (POOLGATE_TEST_PG_URL, POOLGATE_TEST_REDIS_URL, ...), installs the MCP SDK
# peers into .cache/peers when missing (scripts/lib/peers.sh:
# POOLGATE_TEST_NPM_DIR, POOLGATE_TEST_PY), runs every phase
# even if an earlier one failed, stops all services on exit (also on
# failure or Ctrl-C) and exits non-zero if any phase failed.
#
# Environment flags:
#   POOLGATE_TEST_WITH_CLUSTER=0   skip the 3-master Redis Cluster, started by
#                                  default (POOLGATE_TEST_REDIS_CLUSTER_URL); the
#                                  control tests' cluster:: variants then fail,
#                                  so filter them out: -E 'not test(/cluster/)'
#   POOLGATE_TEST_WITH_SENTINEL=0  skip Redis primary+replica+3 sentinels, started
#                                  by default (POOLGATE_TEST_REDIS_SENTINEL_URL, ...);
#                                  likewise for the sentinel:: variants
#   POOLGATE_TEST_DOC=1            also run `cargo test --workspace --doc` (off by default)
#   CI=<anything>                  plain (colourless) cargo output

set -euo pipefail

# Repo root = parent of this script's directory, wherever we're called from.
SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "${SCRIPT_DIR}/.." && pwd)
cd -- "$REPO_ROOT"

# shellcheck source=scripts/lib/services.sh
source "${SCRIPT_DIR}/lib/services.sh"
# shellcheck source=scripts/lib/peers.sh
source "${SCRIPT_DIR}/lib/peers.sh"
# shellcheck source=scripts/lib/deploy_check.sh
source "${SCRIPT_DIR}/lib/deploy_check.sh"
# shellcheck source=scripts/lib/docs_check.sh
source "${SCRIPT_DIR}/lib/docs_check.sh"

export RUST_BACKTRACE=1
if [[ -n "${CI:-}" ]]; then
    export CARGO_TERM_COLOR=never
fi

START_SECONDS=$SECONDS
FAILED_PHASES=()
PASSED_PHASES=()

# log MSG... — timestamped progress line.
log() {
    printf '[test.sh %(%H:%M:%S)T] %s\n' -1 "$*"
}

# on_exit — EXIT trap: stop every service we started (svc_stop_all is
# idempotent and stops even half-started ones), then print the total time.
# The script's exit status is left as it was.
on_exit() {
    local rc=$?
    svc_stop_all || true
    log "total elapsed: $((SECONDS - START_SECONDS))s (exit ${rc})"
}

# phase NAME CMD [ARGS...] — run one phase, record its result, keep going.
phase() {
    local name=$1
    shift
    local t0=$SECONDS rc=0
    log "==> phase ${name}: $*"
    "$@" || rc=$?
    if ((rc == 0)); then
        PASSED_PHASES+=("$name")
        log "<== phase ${name}: ok ($((SECONDS - t0))s)"
    else
        FAILED_PHASES+=("$name")
        log "<== phase ${name}: FAILED with exit ${rc} ($((SECONDS - t0))s)"
    fi
}

# Cleanup on every exit; on INT/TERM svc_stop_all stops the services and
# exits 130/143, which runs the EXIT trap as well (a harmless no-op by then).
trap on_exit EXIT
trap 'svc_stop_all INT' INT
trap 'svc_stop_all TERM' TERM

# ---------------------------------------------------------------------------
# services (a failure here aborts the run; the trap still cleans up)
# ---------------------------------------------------------------------------
log "==> services"
t0=$SECONDS
svc_ensure_packages
svc_init
svc_start_postgres
svc_start_redis default >/dev/null # default instance: exports POOLGATE_TEST_REDIS_URL

# Redis Cluster / Sentinel: on by default, the control-plane conformance suite
# (control/tests/control) runs on both. Set the flag to 0 to skip one (e.g. a
# quick local run filtered to other tests).
if [[ "${POOLGATE_TEST_WITH_CLUSTER:-1}" == "1" ]]; then
    svc_start_redis_cluster # exports POOLGATE_TEST_REDIS_CLUSTER_URL
fi
if [[ "${POOLGATE_TEST_WITH_SENTINEL:-1}" == "1" ]]; then
    svc_start_redis_sentinel # exports POOLGATE_TEST_REDIS_SENTINEL_URL, ..._PRIMARY_PORT, ..._REPLICA_PORT
fi
log "<== services ready ($((SECONDS - t0))s)"

# Real MCP peers for the SDK tests (node/tests/api/sdk.rs): the official
# TypeScript and Python SDKs and server-everything, cached in .cache/peers/
# (a rerun reuses them). Exports POOLGATE_TEST_NPM_DIR and POOLGATE_TEST_PY.
log "==> MCP peers"
t0=$SECONDS
if ! peers_ensure; then
    log "ERROR: installing the MCP SDK peers into .cache/peers failed (see the messages above); the SDK tests cannot run"
    exit 1
fi
log "<== MCP peers ready ($((SECONDS - t0))s)"
env | grep '^POOLGATE_TEST_' | sort | sed 's/^/    /'

# ---------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------

# --locked only when a Cargo.lock exists (it may not be committed yet).
LOCKED=()
if [[ -f Cargo.lock ]]; then
    LOCKED=(--locked)
fi

phase fmt cargo fmt --all -- --check
phase clippy cargo clippy --workspace --all-targets "${LOCKED[@]}" -- -D warnings
# Deployment material: manifests, Prometheus rules (promtool), dashboard, Dockerfile.
phase deploy deploy_check

# Test parallelism: both runners default to the number of CPUs; leave it.
if cargo nextest --version >/dev/null 2>&1; then
    phase tests cargo nextest run --workspace --no-fail-fast "$@"
else
    log "cargo-nextest not available; falling back to cargo test"
    phase tests cargo test --workspace --no-fail-fast "$@"
fi

# Load-test smoke run: every scenario (a)-(i) with tiny counts against debug binaries, so the
# load tools cannot rot (the full runs stay out of CI: loadtests/README.md). Uses the test
# PostgreSQL server; writes its report under the services' temporary directory.
loadtests_smoke() {
    cargo build -q -p poolgate-node -p poolgate-loadtests "${LOCKED[@]}" &&
        target/debug/scenarios --smoke --bin-dir target/debug --pg-url "${POOLGATE_TEST_PG_URL}" \
            --out "${SVC_DIR}/loadtests" all
}
phase loadtests-smoke loadtests_smoke

# The README's first command and quickstart, and the runnable commands of docs/operations.md,
# extracted from the Markdown and run as written (private ports): a change that breaks the docs
# breaks CI.
phase docs docs_check

if [[ "${POOLGATE_TEST_DOC:-0}" == "1" ]]; then
    phase doctests cargo test --workspace --doc
fi

# ---------------------------------------------------------------------------
# summary (deliberately not in the "N passed, N failed" form: those are
# phases, not tests)
# ---------------------------------------------------------------------------
log "phases ok: ${PASSED_PHASES[*]:-none}"
if ((${#FAILED_PHASES[@]} > 0)); then
    log "phases FAILED: ${FAILED_PHASES[*]}"
    exit 1
fi
log "all phases ok"
