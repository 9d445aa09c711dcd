#!/usr/bin/env bash
# shellcheck shell=bash
#
# scripts/lib/peers.sh — install the real MCP peers the SDK tests drive
# through the gateway (node/tests/api/sdk.rs, node/tests/sdk/*): the official
# TypeScript SDK, the reference server `server-everything` and a Python venv
# with the official Python SDK 1.x (FastMCP, streamablehttp_client).
#
# Meant to be `source`d, never executed:
#
#     source scripts/lib/peers.sh
#     peers_ensure        # install what is missing, export the paths below
#
# Everything lives in the git-ignored cache folder $PEERS_DIR (default
# <repo>/.cache/peers):
#
#     npm/     npm install --prefix (node_modules/@modelcontextprotocol/...)
#     venv/    python3 -m venv, with mcp==$PEERS_PY_MCP_VERSION
#
# Each part carries a marker file naming the pinned versions. A part whose
# marker matches is reused as is (a rerun costs a few milliseconds); a
# missing, stale or half-written part is removed and installed afresh, the
# marker being written last. Exports:
#
#     POOLGATE_TEST_NPM_DIR   the npm prefix (holds node_modules/)
#     POOLGATE_TEST_PY        the venv's python
#
# Log output goes to stderr. A failed install returns non-zero with a clear
# message and the tail of the installer's log.

set -euo pipefail

if [[ -n "${_PEERS_LIB_LOADED:-}" ]]; then
    return 0
fi
_PEERS_LIB_LOADED=1

# Pinned versions (see shared/THIRD_PARTY.md). Override per run if needed.
: "${PEERS_TS_SDK_VERSION:=1.32.2}"
: "${PEERS_EVERYTHING_VERSION:=2026.8.31}"
: "${PEERS_PY_MCP_VERSION:=1.30.0}"

# Cache root: <repo>/.cache/peers, the repo being the parent of scripts/.
if [[ -z "${PEERS_DIR:-}" ]]; then
    PEERS_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)/.cache/peers"
fi

# Name of the marker file inside each part.
_PEERS_MARKER=".poolgate-peers"

_peers_log() {
    printf '[peers %(%H:%M:%S)T] %s\n' -1 "$*" >&2
}

_peers_err() {
    printf '[peers %(%H:%M:%S)T] ERROR: %s\n' -1 "$*" >&2
}

# _peers_log_tail FILE — the end of an installer log, on stderr.
_peers_log_tail() {
    local file=$1
    if [[ -f "$file" ]]; then
        printf -- '----- last 30 lines of %s -----\n' "$file" >&2
        tail -n 30 -- "$file" >&2 || true
        printf -- '----- end of %s -----\n' "$file" >&2
    fi
}

# _peers_files DIR FILE... — true if every FILE (relative to DIR) exists.
_peers_files() {
    local dir=$1 f
    shift
    for f in "$@"; do
        [[ -e "${dir}/${f}" ]] || return 1
    done
}

# _peers_fresh DIR EXPECTED FILE... — true if DIR's marker reads EXPECTED and
# every FILE exists.
_peers_fresh() {
    local dir=$1 expected=$2
    shift 2
    [[ -f "${dir}/${_PEERS_MARKER}" ]] || return 1
    [[ "$(cat -- "${dir}/${_PEERS_MARKER}")" == "$expected" ]] || return 1
    _peers_files "$dir" "$@"
}

# ---------------------------------------------------------------------------
# npm: @modelcontextprotocol/sdk and @modelcontextprotocol/server-everything
# ---------------------------------------------------------------------------

peers_ensure_npm() {
    local dir="${PEERS_DIR}/npm" t0=$SECONDS
    local want="sdk=${PEERS_TS_SDK_VERSION} server-everything=${PEERS_EVERYTHING_VERSION}"
    local sdk_pkg="node_modules/@modelcontextprotocol/sdk/package.json"
    local everything="node_modules/@modelcontextprotocol/server-everything/dist/index.js"
    if ! _peers_fresh "$dir" "$want" "$sdk_pkg" "$everything"; then
        if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
            _peers_err "node/npm not found: install Debian's nodejs and npm (the SDK tests need them)"
            return 1
        fi
        _peers_log "installing npm peers into ${dir} (${want})"
        rm -rf -- "$dir" && mkdir -p -- "$dir" || return 1
        local log="${PEERS_DIR}/npm-install.log"
        if ! npm install --prefix "$dir" --no-audit --no-fund --loglevel=error \
            "@modelcontextprotocol/sdk@${PEERS_TS_SDK_VERSION}" \
            "@modelcontextprotocol/server-everything@${PEERS_EVERYTHING_VERSION}" \
            </dev/null >"$log" 2>&1; then
            _peers_err "npm install of the MCP peers failed (see ${log})"
            _peers_log_tail "$log"
            return 1
        fi
        if ! _peers_files "$dir" "$sdk_pkg" "$everything"; then
            _peers_err "npm install finished but ${dir} lacks ${sdk_pkg} or ${everything}"
            _peers_log_tail "$log"
            return 1
        fi
        printf '%s' "$want" >"${dir}/${_PEERS_MARKER}"
        _peers_log "npm peers installed in $((SECONDS - t0))s"
    fi
    export POOLGATE_TEST_NPM_DIR="$dir"
}

# ---------------------------------------------------------------------------
# Python venv: mcp 1.x
# ---------------------------------------------------------------------------

peers_ensure_venv() {
    local dir="${PEERS_DIR}/venv" t0=$SECONDS py
    local want="mcp=${PEERS_PY_MCP_VERSION}"
    if ! _peers_fresh "$dir" "$want" bin/python; then
        py=$(command -v python3 || true)
        if [[ -z "$py" ]]; then
            _peers_err "python3 not found (the Python SDK tests need it)"
            return 1
        fi
        _peers_log "creating Python venv ${dir} (${want})"
        rm -rf -- "$dir" && mkdir -p -- "$PEERS_DIR" || return 1
        local log="${PEERS_DIR}/venv-install.log"
        if ! "$py" -m venv "$dir" >"$log" 2>&1; then
            _peers_err "python3 -m venv ${dir} failed (see ${log}; Debian needs python3-venv)"
            _peers_log_tail "$log"
            return 1
        fi
        if ! "${dir}/bin/python" -m pip install --disable-pip-version-check --quiet \
            "mcp==${PEERS_PY_MCP_VERSION}" </dev/null >>"$log" 2>&1; then
            _peers_err "pip install mcp==${PEERS_PY_MCP_VERSION} failed (see ${log})"
            _peers_log_tail "$log"
            return 1
        fi
        if ! "${dir}/bin/python" -c \
            'import mcp.client.streamable_http, mcp.server.fastmcp' >>"$log" 2>&1; then
            _peers_err "the venv's mcp package lacks streamable_http or FastMCP (see ${log})"
            _peers_log_tail "$log"
            return 1
        fi
        printf '%s' "$want" >"${dir}/${_PEERS_MARKER}"
        _peers_log "Python venv ready in $((SECONDS - t0))s"
    fi
    export POOLGATE_TEST_PY="${dir}/bin/python"
}

# ---------------------------------------------------------------------------
# peers_ensure — both parts; exports POOLGATE_TEST_NPM_DIR, POOLGATE_TEST_PY
# ---------------------------------------------------------------------------

peers_ensure() {
    local t0=$SECONDS
    mkdir -p -- "$PEERS_DIR" || return 1
    peers_ensure_npm || return 1
    peers_ensure_venv || return 1
    _peers_log "MCP peers ready in $((SECONDS - t0))s (${PEERS_DIR})"
}
