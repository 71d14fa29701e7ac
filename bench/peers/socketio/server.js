// Socket.IO 4 peer server for `hearth bench`: the same load clients drive it
// through Engine.IO v4 / Socket.IO v5 over a raw WebSocket. It mirrors the
// Phoenix events the Hearth demo app handles:
//
//   emit("join", topic, ack)               joins the room `topic`; ack({status:"ok"})
//   emit("leave", topic, ack)              leaves it
//   emit("new_msg", topic, payload, ack)   io.to(topic).emit("new_msg", topic, payload); ack({status:"ok"})
//
// Flags: --port N (default 4200), --host H (default 127.0.0.1),
// --database-url URL (use @socket.io/postgres-adapter, for cluster runs),
// --transports LIST (default websocket; websocket,polling also serves
// Engine.IO's HTTP long-polling).
// GET /debug/mem runs the GC (when node has --expose-gc) and answers
// process.memoryUsage() as JSON; GET /healthz answers ok.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

function flag(name, def) {
  const i = process.argv.indexOf("--" + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const port = Number(flag("port", "4200"));
const host = flag("host", "127.0.0.1");
const databaseURL = flag("database-url", "");
// --compress: accept permessage-deflate (ws compresses each message for
// each recipient socket; threshold 0: every message, as the other targets).
const compress = process.argv.includes("--compress");

const httpServer = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.end("ok");
    return;
  }
  if (req.url === "/debug/mem") {
    if (typeof global.gc === "function") global.gc();
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify(process.memoryUsage()));
    return;
  }
  res.statusCode = 404;
  res.end();
});

const io = new Server(httpServer, {
  // --transports websocket,polling lets HTTP long-polling in (docs/benchmarks.md, "Long-poll").
  transports: flag("transports", "websocket").split(","),
  cors: { origin: "*" },
  perMessageDeflate: compress ? { threshold: 0 } : false,
});

async function setupAdapter() {
  if (!databaseURL) return null;
  const pg = require("pg");
  const { createAdapter } = require("@socket.io/postgres-adapter");
  const pool = new pg.Pool({ connectionString: databaseURL, max: 4 });
  pool.on("error", (err) => console.error("postgres error:", err.message));
  await pool.query(`CREATE TABLE IF NOT EXISTS socket_io_attachments (
    id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)`);
  io.adapter(createAdapter(pool));
  return pool;
}

io.on("connection", (socket) => {
  socket.on("join", (topic, ack) => {
    socket.join(String(topic));
    if (typeof ack === "function") ack({ status: "ok" });
  });
  socket.on("leave", (topic, ack) => {
    socket.leave(String(topic));
    if (typeof ack === "function") ack({ status: "ok" });
  });
  socket.on("new_msg", (topic, payload, ack) => {
    io.to(String(topic)).emit("new_msg", String(topic), payload);
    if (typeof ack === "function") ack({ status: "ok" });
  });
});

setupAdapter()
  .then((pool) => {
    httpServer.listen(port, host, () => {
      console.error(`socketio peer listening on ${host}:${port}${pool ? " (postgres adapter)" : ""}`);
    });
    const stop = () => {
      io.close(() => {
        if (pool) pool.end().finally(() => process.exit(0));
        else process.exit(0);
      });
    };
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
  })
  .catch((err) => {
    console.error("socketio peer: startup failed:", err.message);
    process.exit(1);
  });
