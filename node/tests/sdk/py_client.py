"""An MCP client built on the official Python SDK 1.x (`streamablehttp_client` + `ClientSession`),
driven by node/tests/api/sdk.rs against a gateway's `/servers/{id}/mcp` endpoint.

    POOLGATE_MCP_TOKEN=... python py_client.py URL [PLAN_JSON]

URL        the MCP endpoint (or env POOLGATE_MCP_URL)
PLAN_JSON  what to do after `initialize` + `tools/list` (or env POOLGATE_MCP_PLAN), the same plan as
           ts_client.mjs:
             {"calls": [{"name": "echo", "arguments": {"text": "hi"}}, ...],
              "progress": {"name": "slow", "arguments": {"ms": 300, "steps": 3}},  # optional
              "terminate": true,                                                   # DELETE on close
              "timeoutMs": 30000}
The bearer token comes from env POOLGATE_MCP_TOKEN (not argv: argv is visible to everyone). Run it
with the venv python that scripts/lib/peers.sh exports as POOLGATE_TEST_PY.

Prints ONE JSON object on stdout with everything observed (session id, protocol version, server
info, tool names, call results, progress notifications, the HTTP exchanges) and exits 0; on any
failure it still prints the object, with "error" set, and exits 1.
"""

import asyncio
import json
import os
import sys
import traceback
import warnings
from datetime import timedelta
from importlib.metadata import version as package_version
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client
from mcp.shared._httpx_utils import create_mcp_http_client

# 1.30 marks streamablehttp_client deprecated in favour of streamable_http_client; it is still the
# 1.x entry point most clients use, so this test uses it on purpose.
warnings.filterwarnings("ignore", category=DeprecationWarning)

OUT: dict[str, Any] = {
    "sdk": "python",
    "sdkVersion": None,
    "url": None,
    "sessionId": None,
    "protocolVersion": None,
    "serverInfo": None,
    "capabilities": None,
    "tools": [],
    "calls": [],
    "progress": None,
    "terminated": False,
    "http": [],
    "error": None,
}


def text_of(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")


def recording_client_factory(
    headers: dict[str, str] | None = None,
    timeout: httpx.Timeout | None = None,
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    """The SDK's own client plus a hook that records every HTTP exchange."""
    client = create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)

    async def on_response(response: httpx.Response) -> None:
        OUT["http"].append(
            {
                "method": response.request.method,
                "status": response.status_code,
                "contentType": response.headers.get("content-type"),
            }
        )

    client.event_hooks["response"].append(on_response)
    return client


async def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("POOLGATE_MCP_URL")
    if not url:
        raise SystemExit("usage: py_client.py URL [PLAN_JSON] (token in env POOLGATE_MCP_TOKEN)")
    plan = json.loads(sys.argv[2] if len(sys.argv) > 2 else os.environ.get("POOLGATE_MCP_PLAN", "{}"))
    token = os.environ.get("POOLGATE_MCP_TOKEN")
    timeout = timedelta(milliseconds=plan.get("timeoutMs", 30000))
    terminate = plan.get("terminate", True)
    OUT["url"] = url
    OUT["sdkVersion"] = package_version("mcp")

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with streamablehttp_client(
        url,
        headers=headers,
        timeout=timeout.total_seconds(),
        terminate_on_close=terminate,
        httpx_client_factory=recording_client_factory,
    ) as (read, write, get_session_id):
        async with ClientSession(read, write, read_timeout_seconds=timeout) as session:
            init = await session.initialize()
            OUT["sessionId"] = get_session_id()
            OUT["protocolVersion"] = init.protocolVersion
            OUT["serverInfo"] = init.serverInfo.model_dump(exclude_none=True)
            OUT["capabilities"] = init.capabilities.model_dump(exclude_none=True)

            listed = await session.list_tools()
            OUT["tools"] = [t.name for t in listed.tools]

            for call in plan.get("calls", []):
                result = await session.call_tool(call["name"], call.get("arguments", {}))
                OUT["calls"].append(
                    {
                        "name": call["name"],
                        "isError": bool(result.isError),
                        "text": text_of(result),
                        "structuredContent": result.structuredContent,
                    }
                )

            progress = plan.get("progress")
            if progress:
                notifications: list[dict[str, Any]] = []

                async def on_progress(value: float, total: float | None, message: str | None) -> None:
                    notifications.append({"progress": value, "total": total, "message": message})

                result = await session.call_tool(
                    progress["name"], progress.get("arguments", {}), progress_callback=on_progress
                )
                OUT["progress"] = {
                    "name": progress["name"],
                    "count": len(notifications),
                    "notifications": notifications,
                    "isError": bool(result.isError),
                    "text": text_of(result),
                }
    # Leaving streamablehttp_client sent the DELETE (terminate_on_close); did it succeed?
    if terminate:
        OUT["terminated"] = any(h["method"] == "DELETE" and 200 <= h["status"] < 300 for h in OUT["http"])


def run() -> int:
    try:
        asyncio.run(main())
        code = 0
    except BaseException as e:  # noqa: BLE001 - report everything, including task-group exceptions
        OUT["error"] = "".join(traceback.format_exception(e))
        code = 1
    sys.stdout.write(json.dumps(OUT, default=str) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(run())
