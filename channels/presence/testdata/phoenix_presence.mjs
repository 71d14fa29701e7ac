// The official phoenix.js client and its Presence, against two Hearth
// nodes (run by TestPhoenixJSPresence in presence_phoenix_test.go):
//
//   node phoenix_presence.mjs ws://node-a/socket ws://node-b/socket
//
// Each step waits (with a deadline) until every client's Presence shows
// what the cluster holds. Prints "ok" and exits 0 on success; on failure
// prints what was expected and what each client saw, and exits 1.

import { Socket, Presence } from "phoenix"
import WebSocket from "ws"

const [urlA, urlB] = process.argv.slice(2)
if (!urlA || !urlB) {
  console.error("usage: phoenix_presence.mjs URL_A URL_B")
  process.exit(2)
}
const TOPIC = "room:phoenix-js"
const sockets = []

function connect(url) {
  const socket = new Socket(url, { transport: WebSocket, params: {}, reconnectAfterMs: () => 100 })
  socket.connect()
  sockets.push(socket)
  return socket
}

// A joined channel with a phoenix.js Presence, and what its callbacks saw.
async function join(name, socket, params) {
  const channel = socket.channel(TOPIC, params)
  const presence = new Presence(channel)
  const client = { name, channel, presence, joins: [], leaves: [], syncs: 0 }
  presence.onJoin((key, current, joined) => client.joins.push({ key, had: current ? current.metas.length : 0, joined: joined.metas }))
  presence.onLeave((key, current, left) => client.leaves.push({ key, remaining: current.metas.length, left: left.metas }))
  presence.onSync(() => client.syncs++)
  await new Promise((resolve, reject) => {
    channel.join().receive("ok", resolve).receive("error", (r) => reject(new Error(`${name}: join refused ${JSON.stringify(r)}`))).receive("timeout", () => reject(new Error(`${name}: join timed out`)))
  })
  return client
}

// A client's view: key -> sorted statuses of its metas.
function view(client) {
  const out = {}
  for (const { key, metas } of client.presence.list((key, p) => ({ key, metas: p.metas }))) {
    out[key] = metas.map((m) => m.status ?? "-").sort()
  }
  return out
}

const canon = (v) => JSON.stringify(Object.keys(v).sort().map((k) => [k, v[k]]))

async function waitView(clients, want, what) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const bad = clients.filter((c) => canon(view(c)) !== canon(want))
    if (bad.length === 0) return
    if (Date.now() > deadline) {
      throw new Error(`${what}: want ${canon(want)}; ${bad.map((c) => `${c.name} has ${canon(view(c))}`).join("; ")}`)
    }
    await new Promise((r) => setTimeout(r, 10))
  }
}

function push(client, event, payload) {
  return new Promise((resolve, reject) => {
    client.channel.push(event, payload).receive("ok", resolve).receive("error", (r) => reject(new Error(`${client.name} ${event}: ${JSON.stringify(r)}`))).receive("timeout", () => reject(new Error(`${client.name} ${event}: timeout`)))
  })
}

function check(cond, what) {
  if (!cond) throw new Error(what)
}

async function main() {
  const alice = await join("alice", connect(urlA), { user: "alice", meta: { status: "online" } })
  const bob = await join("bob", connect(urlB), { user: "bob", meta: { status: "online" } })
  await waitView([alice, bob], { alice: ["online"], bob: ["online"] }, "alice on A and bob on B see each other")
  check(alice.joins.some((j) => j.key === "bob" && j.had === 0), "alice's onJoin saw bob arrive")

  // An update: one diff in which the old meta leaves and the new joins.
  const leavesBefore = alice.leaves.length
  await push(bob, "update", { status: "typing" })
  await waitView([alice, bob], { alice: ["online"], bob: ["typing"] }, "bob's update reaches both nodes")
  const bobMeta = alice.presence.state.bob.metas[0]
  check(typeof bobMeta.phx_ref === "string" && typeof bobMeta.phx_ref_prev === "string" && bobMeta.phx_ref !== bobMeta.phx_ref_prev, `updated meta carries phx_ref_prev: ${JSON.stringify(bobMeta)}`)
  check(alice.leaves.slice(leavesBefore).some((l) => l.key === "bob" && l.left[0].phx_ref === bobMeta.phx_ref_prev && l.remaining === 1), "the update's leave names the old meta, and bob stays")

  // Two tabs of one user on two nodes: one key, two metas.
  const carolA = await join("carol-a", connect(urlA), { user: "carol", meta: { status: "tab-a" } })
  const tabB = connect(urlB)
  await join("carol-b", tabB, { user: "carol", meta: { status: "tab-b" } })
  const three = { alice: ["online"], bob: ["typing"], carol: ["tab-a", "tab-b"] }
  await waitView([alice, bob, carolA], three, "carol's two tabs")

  // A tab's socket goes away: its meta leaves, the key stays.
  tabB.disconnect()
  await waitView([alice, bob, carolA], { alice: ["online"], bob: ["typing"], carol: ["tab-a"] }, "carol's closed tab")

  // Leaving the channel untracks.
  await new Promise((resolve) => bob.channel.leave().receive("ok", resolve))
  await waitView([alice, carolA], { alice: ["online"], carol: ["tab-a"] }, "bob left")
  check(alice.leaves.some((l) => l.key === "bob" && l.remaining === 0), "alice's onLeave saw bob go")

  // A late watcher on B gets everything in its first presence_state.
  const watcher = await join("watcher", connect(urlB), { watch: true })
  await waitView([watcher], { alice: ["online"], carol: ["tab-a"] }, "a late watcher's state")
  check(watcher.syncs === 1, `the watcher needed ${watcher.syncs} syncs, want its first state to hold everything`)
}

main().then(
  () => {
    for (const s of sockets) s.disconnect()
    console.log("ok")
    process.exit(0)
  },
  (err) => {
    console.error(err.message)
    process.exit(1)
  },
)
