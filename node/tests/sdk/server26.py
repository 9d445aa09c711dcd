"""An MCP server on the official Python SDK 2.x (`MCPServer`) that speaks the sessionless
2026-07-28 revision, for node/tests/api/modern.rs.

    python server26.py PORT [--only-2026] [--json]

Serves Streamable HTTP on http://127.0.0.1:PORT/mcp (loopback only). The SDK's app is dual-era: a
request with `MCP-Protocol-Version: 2026-07-28` takes the stateless per-request path
(`server/discover`, `_meta`, `Mcp-Method`), one without the header (or with a handshake-era
version) takes the session-era transport (`initialize`, `Mcp-Session-Id`). With `--only-2026` every
request that would reach the session-era transport is refused before it gets there: 400 with
JSON-RPC -32020 when the version header is missing, -32022 (`data.supported`, `data.requested`)
for a handshake-era version, 405 for GET and DELETE — so a peer that gets anything done must have
spoken 2026-07-28. `--json` answers POSTs with JSON bodies instead of SSE streams.

Every HTTP request is logged on stderr as one line, for the tests to read:

    REQ <METHOD> <path> pv=<MCP-Protocol-Version or -> method=<Mcp-Method or -> name=<Mcp-Name or -> session=<Mcp-Session-Id or ->

Tools, named like the project's test upstream so the same client plans drive both:

    echo {text}      returns the text
    add {a, b}       returns a + b (integers)
    counter {}       increments and returns ONE process-wide counter (2026 servers keep no
                     per-session state; the count is also in structuredContent.result)
"""

import json
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
ONLY_2026 = "--only-2026" in sys.argv
JSON_RESPONSE = "--json" in sys.argv

mcp = MCPServer(
    "poolgate-server26-test",
    version="1.0.0",
    instructions="poolgate's 2026-07-28 test server (mcp 2.x MCPServer)",
)

_counter = 0


@mcp.tool()
def echo(text: str) -> str:
    """Echoes text back."""
    return text


@mcp.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@mcp.tool()
def counter() -> int:
    """Increments and returns a process-wide counter."""
    global _counter
    _counter += 1
    return _counter


inner = mcp.streamable_http_app(json_response=JSON_RESPONSE)


def _log(scope) -> None:
    h = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    fields = " ".join(
        f"{label}={h.get(name) or '-'}"
        for label, name in (
            ("pv", "mcp-protocol-version"),
            ("method", "mcp-method"),
            ("name", "mcp-name"),
            ("session", "mcp-session-id"),
        )
    )
    print(f"REQ {scope['method']} {scope['path']} {fields}", file=sys.stderr, flush=True)


async def _send_json(send, status: int, payload) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _refuse_session_era(scope, receive, send) -> None:
    """--only-2026: answers a request the session-era transport would have taken."""
    if scope["method"] != "POST":
        await send(
            {
                "type": "http.response.start",
                "status": 405,
                "headers": [(b"allow", b"POST"), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
        return
    chunks, more = [], True
    while more:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        more = msg.get("more_body", False)
    try:
        rid = json.loads(b"".join(chunks)).get("id")
    except (ValueError, AttributeError):
        rid = None
    pv = dict(scope["headers"]).get(b"mcp-protocol-version", b"").decode("latin-1")
    if not pv:
        err = {"code": -32020, "message": "MCP-Protocol-Version header is required (this server speaks only 2026-07-28)"}
    else:
        err = {
            "code": -32022,
            "message": "Unsupported protocol version",
            "data": {"supported": list(MODERN_PROTOCOL_VERSIONS), "requested": pv},
        }
    await _send_json(send, 400, {"jsonrpc": "2.0", "id": rid, "error": err})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return await inner(scope, receive, send)  # lifespan: starts the SDK's session manager
    _log(scope)
    if ONLY_2026 and scope["path"] == "/mcp":
        pv = dict(scope["headers"]).get(b"mcp-protocol-version", b"").decode("latin-1")
        session_era = not pv or pv in HANDSHAKE_PROTOCOL_VERSIONS
        if scope["method"] != "POST" or session_era:
            return await _refuse_session_era(scope, receive, send)
    return await inner(scope, receive, send)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
