"""A small MCP server on the official Python SDK 1.x (FastMCP), for node/tests/api/sdk.rs.

    python fastmcp_server.py PORT

Serves Streamable HTTP (stateful: one MCP session per client `initialize`) on
http://127.0.0.1:PORT/mcp — loopback only — and logs every request (uvicorn access log). Tools, named like the project's test upstream so the
same client plans drive both:

    echo {text}          returns the text
    add {a, b}           returns a + b
    counter {}           increments and returns a counter kept PER MCP SESSION (proves isolation)
    slow {ms, steps}     sleeps ms milliseconds, reporting `steps` progress notifications
"""

import asyncio
import sys
import weakref

from mcp.server.fastmcp import Context, FastMCP

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 8000

# INFO: uvicorn's access log then shows each request (`"DELETE /mcp HTTP/1.1" 200`), which the
# test reads to check that a client's DELETE reached this server.
mcp = FastMCP("poolgate-fastmcp-test", host="127.0.0.1", port=PORT, log_level="INFO")

# ServerSession -> count. FastMCP creates one ServerSession per MCP session (stateful mode), so
# keying by it gives per-session state; weak keys drop it when the session ends.
_counters: "weakref.WeakKeyDictionary[object, int]" = weakref.WeakKeyDictionary()


@mcp.tool()
def echo(text: str) -> str:
    """Echoes text back."""
    return text


@mcp.tool()
def add(a: float, b: float) -> float:
    """Adds two numbers."""
    return a + b


@mcp.tool()
def counter(ctx: Context) -> int:
    """Increments and returns a counter kept per MCP session."""
    session = ctx.session
    _counters[session] = _counters.get(session, 0) + 1
    return _counters[session]


@mcp.tool()
async def slow(ctx: Context, ms: int = 100, steps: int = 0) -> str:
    """Sleeps ms milliseconds, reporting progress in steps."""
    steps = max(0, min(steps, 100))
    ms = max(0, min(ms, 60_000))
    if steps == 0:
        await asyncio.sleep(ms / 1000)
    for i in range(steps):
        await asyncio.sleep(ms / 1000 / steps)
        await ctx.report_progress(i + 1, steps, f"step {i + 1} of {steps}")
    return f"slept {ms} ms"


if __name__ == "__main__":
    mcp.run(transport="streamable-http")
