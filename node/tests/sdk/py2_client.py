"""An MCP client built on the official Python SDK 2.x (`Client(streamable_http_client(...), mode=...)`),
driven by node/tests/api/modern.rs against a gateway's `/servers/{id}/mcp` endpoint. Unlike the 1.x
client (py_client.py) it speaks the sessionless 2026-07-28 revision: `server/discover` instead of
the `initialize` handshake, version and capabilities in every request's `_meta`, `Mcp-Method` /
`Mcp-Name` headers, no `Mcp-Session-Id`.

    POOLGATE_MCP_TOKEN=... python py2_client.py URL [PLAN_JSON]

URL        the MCP endpoint (or env POOLGATE_MCP_URL)
PLAN_JSON  what to do (or env POOLGATE_MCP_PLAN):
             {"mode": "auto",        # "auto" (discover, fall back to initialize), "2026-07-28"
                                     # (adopt that version, no probe) or "legacy" (initialize)
              "listTools": true,     # tools/list after connecting (default true)
              "calls": [{"name": "echo", "arguments": {"text": "hi"}}, ...],
              "timeoutMs": 30000}
The bearer token comes from env POOLGATE_MCP_TOKEN (not argv: argv is visible to everyone). Run it
with the venv python that scripts/lib/peers.sh exports as POOLGATE_TEST_PY2. The client's response
cache is off (`cache=None`): every tools/list reaches the server.

Prints ONE JSON object on stdout and exits 0; on a failure to connect (or any other unexpected
exception) it still prints the object, with "error" set, and exits 1. A tool call the server
answers with a JSON-RPC error does not stop the run: it is recorded in its `calls` entry and in
`errors`. Fields:

    protocolVersion   the negotiated version ("2026-07-28" when discover succeeded)
    era               "modern" (discover adopted) or "legacy" (initialize handshake)
    serverInfo        {name, version, ...} or null (2026 servers may not identify themselves)
    capabilities, instructions, supportedVersions (modern only)
    tools             tool names from tools/list
    calls             [{name, isError, text, structuredContent, result}]; result is the whole
                      CallToolResult (model_dump by_alias, exclude_none); a failed call has
                      {name, error: {code, message, data}} instead
    errors            every JSON-RPC error a call got, as above
    http              every HTTP exchange: method, status, contentType, the MCP request headers
                      (MCP-Protocol-Version, Mcp-Method, Mcp-Name, Mcp-Session-Id), the response's
                      Mcp-Session-Id, and the JSON-RPC method of the request body
    sessionId         the last Mcp-Session-Id the server issued (legacy era only), else null
"""

import json
import os
import sys
import traceback
import warnings
from importlib.metadata import version as package_version
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

# 2.x warns (MCPDeprecationWarning, a UserWarning) about handshake-era features; keep stderr clean.
warnings.filterwarnings("ignore")

OUT: dict[str, Any] = {
    "sdk": "python2",
    "sdkVersion": None,
    "url": None,
    "mode": None,
    "protocolVersion": None,
    "era": None,
    "serverInfo": None,
    "capabilities": None,
    "instructions": None,
    "supportedVersions": None,
    "sessionId": None,
    "tools": [],
    "calls": [],
    "errors": [],
    "http": [],
    "error": None,
}

REQUEST_HEADERS = ("mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id")


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True) if model is not None else None


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def rpc_method(request: httpx2.Request) -> Any:
    try:
        body = json.loads(request.content or b"null")
    except (ValueError, httpx2.RequestNotRead):
        return None
    return body.get("method") if isinstance(body, dict) else None


def recording_http_client(token: str | None, timeout_s: float) -> httpx2.AsyncClient:
    """The SDK's own client (Bearer header) plus a hook that records every HTTP exchange."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    client = create_mcp_http_client(
        headers=headers, timeout=httpx2.Timeout(timeout_s, read=max(timeout_s, 60.0))
    )

    async def on_response(response: httpx2.Response) -> None:
        req = response.request
        sid = response.headers.get("mcp-session-id")
        if sid:
            OUT["sessionId"] = sid
        OUT["http"].append(
            {
                "method": req.method,
                "rpc": rpc_method(req),
                "status": response.status_code,
                "contentType": response.headers.get("content-type"),
                "request": {h: req.headers[h] for h in REQUEST_HEADERS if h in req.headers},
                "responseSessionId": sid,
            }
        )

    client.event_hooks["response"].append(on_response)
    return client


async def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("POOLGATE_MCP_URL")
    if not url:
        raise SystemExit("usage: py2_client.py URL [PLAN_JSON] (token in env POOLGATE_MCP_TOKEN)")
    plan = json.loads(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("POOLGATE_MCP_PLAN", "{}"))
    mode = plan.get("mode", "auto")
    timeout_s = plan.get("timeoutMs", 30000) / 1000
    OUT["url"] = url
    OUT["mode"] = mode
    OUT["sdkVersion"] = package_version("mcp")

    http = recording_http_client(os.environ.get("POOLGATE_MCP_TOKEN"), timeout_s)
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, cache=None, read_timeout_seconds=timeout_s) as client:
            session = client.session
            OUT["protocolVersion"] = client.protocol_version
            OUT["era"] = "modern" if session.discover_result is not None else "legacy"
            OUT["serverInfo"] = dump(client.server_info)
            OUT["capabilities"] = dump(client.server_capabilities)
            OUT["instructions"] = client.instructions
            if session.discover_result is not None:
                OUT["supportedVersions"] = list(session.discover_result.supported_versions)

            if plan.get("listTools", True):
                listed = await client.list_tools()
                OUT["tools"] = [t.name for t in listed.tools]

            for call in plan.get("calls", []):
                name = call["name"]
                try:
                    result = await client.call_tool(name, call.get("arguments", {}))
                except MCPError as e:
                    err = {"code": e.code, "message": e.message, "data": e.data}
                    OUT["calls"].append({"name": name, "error": err})
                    OUT["errors"].append({"name": name, **err})
                    continue
                OUT["calls"].append(
                    {
                        "name": name,
                        "isError": bool(result.is_error),
                        "text": text_of(result),
                        "structuredContent": result.structured_content,
                        "result": dump(result),
                    }
                )


def run() -> int:
    try:
        anyio.run(main)
        code = 0
    except BaseException as e:  # noqa: BLE001 - report everything, including task-group exceptions
        OUT["error"] = "".join(traceback.format_exception(e))
        code = 1
    sys.stdout.write(json.dumps(OUT, default=str) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(run())
