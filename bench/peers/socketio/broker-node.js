// One node of `hearth bench broker`, on Socket.IO 4's @socket.io/postgres-adapter:
// the pub/sub layer alone, without WebSockets. It speaks the node protocol
// described in internal/bench/brokernode.go:
//
//   node broker-node.js --role pub|sub --database-url URL --run ID --topics N --rate R --seconds S --size B [--pool P]
//
// stdout: one JSON object per line ({"ready":true}, then results); stdin:
// "go" (pub), "stats" and "stop" (sub).
//
// A pub node broadcasts io.to(topic).emit("new_msg", topic, payload): the
// adapter turns each into a NOTIFY. A sub node counts the broadcasts its
// adapter receives from the other node (ClusterAdapter.onMessage with type
// BROADCAST), which is where the adapter hands a message to the node's own
// sockets; no socket is connected, so nothing else is measured.
"use strict";

const readline = require("node:readline");
const { performance } = require("node:perf_hooks");
const { Server } = require("socket.io");
const { MessageType } = require("socket.io-adapter");
const pg = require("pg");
const { createAdapter } = require("@socket.io/postgres-adapter");

function flag(name, def) {
  const i = process.argv.indexOf("--" + name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const role = flag("role", "");
const databaseURL = flag("database-url", "");
const run = flag("run", "");
const topics = Number(flag("topics", "100"));
const rate = Number(flag("rate", "1000"));
const seconds = Number(flag("seconds", "10"));
const size = Number(flag("size", "64"));
// The pool's size: how many NOTIFY statements may be in flight at once.
const poolSize = Number(flag("pool", process.env.HEARTH_BENCH_SIO_POOL || "16"));

if ((role !== "pub" && role !== "sub") || !databaseURL) {
  console.error("usage: broker-node.js --role pub|sub --database-url URL ...");
  process.exit(2);
}

const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const nowUS = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

async function main() {
  const pool = new pg.Pool({ connectionString: databaseURL, max: poolSize });
  pool.on("error", (err) => console.error("postgres error:", err.message));
  await pool.query(`CREATE TABLE IF NOT EXISTS socket_io_attachments (
    id bigserial UNIQUE, created_at timestamptz DEFAULT NOW(), payload bytea)`);
  // Count the NOTIFY statements that completed, so that a pub node knows
  // when everything it emitted has left.
  let notified = 0;
  let notifyFailed = 0;
  const query = pool.query.bind(pool);
  pool.query = (...args) => {
    const p = query(...args);
    const broadcast = Array.isArray(args[1]) && typeof args[1][1] === "string" && args[1][1].includes('"type":' + MessageType.BROADCAST + ",");
    if (typeof args[0] === "string" && args[0].includes("pg_notify") && broadcast) {
      p.then(() => notified++, () => notifyFailed++);
    }
    return p;
  };
  const io = new Server({ transports: ["websocket"] });
  io.adapter(createAdapter(pool));
  const adapter = io.of("/").adapter;
  const rl = readline.createInterface({ input: process.stdin });

  if (role === "sub") {
    let received = 0;
    let first = 0;
    let last = 0;
    const lat = [];
    const onMessage = adapter.onMessage.bind(adapter);
    adapter.onMessage = (message, offset) => {
      const packet = message.data && message.data.packet;
      const payload = packet && packet.data && packet.data[2];
      if (message.type === MessageType.BROADCAST && message.uid !== adapter.uid && payload && payload.r === run) {
        const now = nowUS();
        if (!first) first = now;
        last = now;
        received++;
        if (typeof payload.t === "number") lat.push((now - payload.t) / 1000);
      }
      return onMessage(message, offset);
    };
    // The adapter LISTENs once its client connected: give it a moment.
    await new Promise((r) => setTimeout(r, 1000));
    print({ ready: true });
    rl.on("line", (line) => {
      if (line === "stats") print({ received });
      if (line === "stop") {
        lat.sort((a, b) => a - b);
        const at = (q) => (lat.length ? lat[Math.max(0, Math.ceil(q * lat.length) - 1)] : 0);
        print({ received, first_us: first, last_us: last, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: lat.length ? lat[lat.length - 1] : 0 });
        process.exit(0);
      }
    });
    return;
  }

  await new Promise((r) => setTimeout(r, 1000));
  print({ ready: true });
  await new Promise((resolve) => rl.on("line", (line) => line === "go" && resolve()));
  // Open loop, as the Hearth node: every 5 ms, emit what is due.
  const body = "x".repeat(Math.max(0, size - 30));
  const start = performance.now();
  const end = start + seconds * 1000;
  let issued = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const now = Math.min(performance.now(), end);
      let due = Math.floor(((now - start) / 1000) * rate) - issued;
      for (; due > 0; due--) {
        const topic = "bench:b" + (issued % topics);
        io.to(topic).emit("new_msg", topic, { t: nowUS(), r: run, body });
        issued++;
      }
      if (now >= end) resolve();
      else setTimeout(tick, 5);
    };
    tick();
  });
  // Wait for the NOTIFY statements still queued in the pool (at most 120 s).
  const deadline = performance.now() + 120000;
  while (notified + notifyFailed < issued && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  print({ published: notified, failed: issued - notified, skipped: 0 });
  rl.on("close", () => process.exit(0));
}

main().catch((err) => {
  print({ error: String(err && err.message) });
  process.exit(1);
});
