// An MCP client built on the official TypeScript SDK (`Client` + `StreamableHTTPClientTransport`),
// driven by node/tests/api/sdk.rs against a gateway's `/servers/{id}/mcp` endpoint.
//
//   POOLGATE_MCP_TOKEN=... node ts_client.mjs URL [PLAN_JSON]
//
// URL        the MCP endpoint (or env POOLGATE_MCP_URL)
// PLAN_JSON  what to do after `initialize` + `tools/list` (or env POOLGATE_MCP_PLAN):
//              {"calls": [{"name": "echo", "arguments": {"text": "hi"}}, ...],
//               "progress": {"name": "slow", "arguments": {"ms": 300, "steps": 3}},  // optional
//               "sampling": {"text": "canned answer"},   // optional: declare `sampling`, answer with this text
//               "cancel": {"name": "slow", "arguments": {"ms": 5000},                 // optional: a call
//                          "afterMs": 300, "mode": "abort"},   // cancelled by AbortController ("abort")
//                                                               // or by the SDK's request timeout ("timeout")
//               "after": [{"name": "echo", ...}, ...],          // optional: calls after the cancelled one
//               "settleMs": 0,                                  // optional: wait before terminating, then
//                                                               // snapshot transport errors (late answers)
//               "terminate": true,                                                   // DELETE at the end
//               "timeoutMs": 30000}
// Order: calls, progress, cancel, after, settle, terminate.
// The bearer token comes from env POOLGATE_MCP_TOKEN (not argv: argv is visible to everyone).
// The SDK is loaded from env POOLGATE_TEST_NPM_DIR (the `npm install --prefix` folder, see
// scripts/lib/peers.sh), else from <repo>/.cache/peers/npm.
//
// Prints ONE JSON object on stdout with everything observed (session id, protocol version, server
// info, tool names, call results, progress notifications, the HTTP exchanges) and exits 0; on any
// failure it still prints the object, with "error" set, and exits 1.

import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const npmDir = process.env.POOLGATE_TEST_NPM_DIR || path.resolve(here, "../../../.cache/peers/npm");

// Locates an ESM entry point of the SDK installed under npmDir (the package's `exports` map gives
// `require` the CJS build; the ESM build sits beside it).
function sdkModule(subpath) {
    const require = createRequire(path.join(npmDir, "package.json"));
    let cjs;
    try {
        cjs = require.resolve(`@modelcontextprotocol/sdk/${subpath}`);
    } catch (e) {
        throw new Error(
            `@modelcontextprotocol/sdk not found under ${npmDir} (run scripts/test.sh, which installs it): ${e.message}`,
        );
    }
    const esm = cjs.replace(`${path.sep}dist${path.sep}cjs${path.sep}`, `${path.sep}dist${path.sep}esm${path.sep}`);
    return pathToFileURL(existsSync(esm) ? esm : cjs).href;
}

function sdkVersion() {
    try {
        const require = createRequire(path.join(npmDir, "package.json"));
        const pkgJson = require.resolve("@modelcontextprotocol/sdk/client/index.js").replace(/dist[/\\]cjs[/\\].*$/, "package.json");
        return createRequire(import.meta.url)(pkgJson).version;
    } catch {
        return null;
    }
}

// The JSON-RPC message an HTTP exchange carried ({method, id, requestId} or null).
function rpcOf(init) {
    if (typeof init?.body !== "string") return null;
    try {
        const msg = JSON.parse(init.body);
        return {
            method: msg.method ?? null,
            id: msg.id ?? null,
            requestId: msg.params?.requestId ?? null,
            isResponse: msg.method === undefined && ("result" in msg || "error" in msg),
            // For answers: what they answer with — a sampling result (it names its model), another
            // result (e.g. the SDK's own answer to a ping) or an error.
            answer: msg.method !== undefined ? null
                : msg.result?.model !== undefined ? "sampling"
                : "error" in msg ? "error"
                : "result" in msg ? "result" : null,
        };
    } catch {
        return null;
    }
}

// A finished tool call as the report shows it.
function callEntry(name, result) {
    return {
        name,
        isError: result.isError ?? false,
        text: textOf(result),
        structuredContent: result.structuredContent ?? null,
    };
}

// Text of a tool result's text content blocks, joined.
function textOf(result) {
    return (result?.content ?? [])
        .filter((c) => c.type === "text")
        .map((c) => c.text)
        .join("\n");
}

const out = {
    sdk: "typescript",
    sdkVersion: null,
    url: null,
    sessionId: null,
    protocolVersion: null,
    serverInfo: null,
    capabilities: null,
    tools: [],
    calls: [],
    progress: null,
    sampling: null,
    cancel: null,
    after: [],
    errorsBeforeTerminate: null,
    terminated: false,
    sessionIdAfterTerminate: null,
    http: [],
    transportErrors: [],
    error: null,
};

async function main() {
    const url = process.argv[2] || process.env.POOLGATE_MCP_URL;
    if (!url) throw new Error("usage: ts_client.mjs URL [PLAN_JSON] (token in env POOLGATE_MCP_TOKEN)");
    const plan = JSON.parse(process.argv[3] || process.env.POOLGATE_MCP_PLAN || "{}");
    const token = process.env.POOLGATE_MCP_TOKEN;
    const timeout = plan.timeoutMs ?? 30000;
    out.url = url;
    out.sdkVersion = sdkVersion();

    const { Client } = await import(sdkModule("client/index.js"));
    const { StreamableHTTPClientTransport } = await import(sdkModule("client/streamableHttp.js"));

    // Records every HTTP exchange the transport makes (method, status, content type).
    const recordingFetch = async (input, init) => {
        const method = init?.method ?? "GET";
        const entry = { method, status: null, contentType: null, rpc: rpcOf(init) };
        out.http.push(entry);
        try {
            const resp = await fetch(input, init);
            entry.status = resp.status;
            entry.contentType = resp.headers.get("content-type");
            return resp;
        } catch (e) {
            entry.error = String(e?.message ?? e);
            throw e;
        }
    };

    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const transport = new StreamableHTTPClientTransport(new URL(url), {
        requestInit: { headers },
        fetch: recordingFetch,
    });
    const capabilities = plan.sampling ? { sampling: {} } : {};
    const client = new Client({ name: "poolgate-sdk-test-ts", version: "0.0.0" }, { capabilities });
    client.onerror = (e) => out.transportErrors.push(String(e?.message ?? e));
    if (plan.sampling) {
        // The server's sampling/createMessage, relayed by the gateway, is answered with a canned text.
        const { CreateMessageRequestSchema } = await import(sdkModule("types.js"));
        out.sampling = { requests: [] };
        client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
            out.sampling.requests.push(request.params);
            return {
                role: "assistant",
                content: { type: "text", text: plan.sampling.text },
                model: plan.sampling.model ?? "poolgate-canned-model",
                stopReason: "endTurn",
            };
        });
    }

    try {
        await client.connect(transport, { timeout });
        out.sessionId = transport.sessionId ?? null;
        out.protocolVersion = transport.protocolVersion ?? null;
        out.serverInfo = client.getServerVersion() ?? null;
        out.capabilities = client.getServerCapabilities() ?? null;

        const listed = await client.listTools({}, { timeout });
        out.tools = listed.tools.map((t) => t.name);

        for (const call of plan.calls ?? []) {
            const result = await client.callTool({ name: call.name, arguments: call.arguments ?? {} }, undefined, {
                timeout,
            });
            out.calls.push(callEntry(call.name, result));
        }

        if (plan.progress) {
            const notifications = [];
            const result = await client.callTool(
                { name: plan.progress.name, arguments: plan.progress.arguments ?? {} },
                undefined,
                {
                    timeout,
                    resetTimeoutOnProgress: true,
                    onprogress: (p) => notifications.push(p),
                },
            );
            out.progress = {
                name: plan.progress.name,
                count: notifications.length,
                notifications,
                isError: result.isError ?? false,
                text: textOf(result),
            };
        }

        if (plan.cancel) {
            // The SDK cancels by rejecting the call locally and sending notifications/cancelled.
            const c = plan.cancel;
            const mode = c.mode ?? "abort";
            const afterMs = c.afterMs ?? 300;
            const options = { timeout: mode === "timeout" ? afterMs : timeout };
            let timer = null;
            if (mode === "abort") {
                const controller = new AbortController();
                options.signal = controller.signal;
                timer = setTimeout(() => controller.abort("poolgate test: cancelled by the user"), afterMs);
            }
            const started = Date.now();
            out.cancel = { name: c.name, mode, afterMs, cancelled: false };
            try {
                const result = await client.callTool({ name: c.name, arguments: c.arguments ?? {} }, undefined, options);
                out.cancel.result = callEntry(c.name, result);
            } catch (e) {
                out.cancel.cancelled = true;
                out.cancel.errorCode = e?.code ?? null;
                out.cancel.errorMessage = String(e?.message ?? e);
            } finally {
                if (timer) clearTimeout(timer);
            }
            out.cancel.elapsedMs = Date.now() - started;
        }

        for (const call of plan.after ?? []) {
            const result = await client.callTool({ name: call.name, arguments: call.arguments ?? {} }, undefined, {
                timeout,
            });
            out.after.push(callEntry(call.name, result));
        }

        if (plan.settleMs) {
            await new Promise((resolve) => setTimeout(resolve, plan.settleMs));
        }
        out.errorsBeforeTerminate = [...out.transportErrors];

        if (plan.terminate ?? true) {
            await transport.terminateSession();
            out.terminated = true;
            out.sessionIdAfterTerminate = transport.sessionId ?? null;
        }
    } finally {
        await client.close().catch((e) => out.transportErrors.push(`close: ${e?.message ?? e}`));
    }
}

let code = 0;
try {
    await main();
} catch (e) {
    out.error = String(e?.stack ?? e);
    code = 1;
}
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exitCode = code;
