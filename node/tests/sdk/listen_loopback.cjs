// Preload (`node --require listen_loopback.cjs server.js`) that makes every TCP server of the
// process listen on loopback only, whatever host the program asks for: third-party servers such as
// @modelcontextprotocol/server-everything call `app.listen(PORT)`, which binds all interfaces.
//
// The host is POOLGATE_LISTEN_HOST (default 127.0.0.1). Unix sockets and inherited handles are left
// alone. Once listening, one line `poolgate-listen-loopback: listening on HOST:PORT` goes to stderr.

"use strict";

const net = require("node:net");

const host = process.env.POOLGATE_LISTEN_HOST || "127.0.0.1";
const originalListen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenOnLoopback(...args) {
    const callback = typeof args[args.length - 1] === "function" ? args.pop() : undefined;
    const first = args[0];
    let options = null;
    if (first === undefined || first === null || typeof first === "number" || /^\d+$/.test(String(first))) {
        // listen(), listen(port[, host][, backlog])
        options = { port: first === undefined || first === null ? 0 : Number(first) };
        if (typeof args[2] === "number") options.backlog = args[2];
        else if (typeof args[1] === "number") options.backlog = args[1];
    } else if (typeof first === "object" && !("path" in first) && !("fd" in first) && !("_handle" in first)) {
        // listen({port, host, ...})
        options = { ...first };
    }
    if (options === null) {
        // A unix socket path or a handle: nothing to restrict.
        return originalListen.apply(this, callback ? [...args, callback] : args);
    }
    options.host = host;
    this.once("listening", () => {
        const addr = this.address();
        if (addr && typeof addr === "object") {
            process.stderr.write(`poolgate-listen-loopback: listening on ${addr.address}:${addr.port}\n`);
        }
    });
    return originalListen.call(this, options, ...(callback ? [callback] : []));
};
