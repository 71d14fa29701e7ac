// The Hearth dashboard: a page served by server/api (Dashboard), built
// with esbuild into dashboard.js by `go run ./js-client/cmd/build`. It
// joins the dashboard channel with the API key and renders the cluster
// state the node pushes every second; searches and disconnects go through
// the HTTP API with the same key.

import { Socket, type Channel } from "../../../js-client/src/index"

const KEY_STORE = "hearth.dashboard.key"
const WINDOW = 300 // samples kept for the plots: five minutes at one per second
const COLORS = ["#2563eb", "#c2410c", "#15803d", "#7c3aed", "#b45309", "#0e7490"]

interface NodeInfo {
  node: string
  version: string
  state: string
  ready: boolean
  listener?: string
  sockets: number
  channels: number
  joins_ok: number
  joins_shed: number
  connections_shed: number
  slow_consumer_closes: number
  in_per_sec: number
  broadcasts_per_sec: number
  out_per_sec: number
  publish_ms: number
  round_trip_ms: number
}

interface State {
  at: number
  node: string
  nodes: NodeInfo[]
  top_topics: { t: string; n: number }[]
}

interface SocketEntry {
  node: string
  id: string
  conn: string
  topics: string[]
}

const body = document.body
const socketPath = body.dataset.socket || "/socket"
const apiPath = body.dataset.api || "/api"
// "app": the app's own authentication (cookies, Options.Authorize) replaces the key.
const appAuth = body.dataset.auth === "app"
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T

const rates: { in: number[]; out: number[] } = { in: [], out: [] }
const latency = new Map<string, number[]>()
let socket: Socket | null = null
let channel: Channel | null = null

function setStatus(s: string): void {
  $("status").textContent = s
}

function el(tag: string, text?: string | number, cls?: string): HTMLElement {
  const e = document.createElement(tag)
  if (text !== undefined) e.textContent = String(text)
  if (cls) e.className = cls
  return e
}

function fmt(n: number): string {
  if (!isFinite(n)) return "-"
  return n >= 100 ? Math.round(n).toString() : n.toFixed(n >= 10 ? 1 : 2)
}

function start(key: string): void {
  $("login-error").textContent = ""
  socket?.disconnect()
  socket = new Socket(socketPath, { params: {} })
  socket.onOpen(() => setStatus("connected"))
  socket.onClose(() => setStatus("reconnecting..."))
  socket.connect()
  channel = socket.channel("hearth:dashboard", { key })
  channel.on("state", (p) => render(p as State))
  channel
    .join()
    .receive("ok", () => {
      sessionStorage.setItem(KEY_STORE, key)
      $("login").hidden = true
      $("app").hidden = false
    })
    .receive("error", () => {
      sessionStorage.removeItem(KEY_STORE)
      channel?.leave()
      socket?.disconnect()
      socket = null
      setStatus("signed out")
      $("login").hidden = appAuth
      $("app").hidden = true
      $("login-error").textContent = "This key was refused."
      if (appAuth) setStatus("not authorized")
    })
}

function render(s: State): void {
  setStatus(`via ${s.node} · ${new Date(s.at).toLocaleTimeString()}`)
  const tbody = $("nodes").querySelector("tbody")!
  tbody.replaceChildren()
  let tin = 0
  let tout = 0
  for (const n of s.nodes) {
    const nin = n.in_per_sec + n.broadcasts_per_sec
    tin += nin
    tout += n.out_per_sec
    const tr = el("tr")
    tr.dataset.node = n.node
    tr.append(
      el("td", n.node),
      el("td", n.state, n.state === "ready" ? "ok" : "bad"),
      el("td", n.listener || "-", n.listener && n.listener !== "healthy" ? "bad" : "ok"),
      el("td", n.sockets, "num sockets"),
      el("td", n.channels, "num channels"),
      el("td", n.joins_ok, "num"),
      el("td", fmt(nin), "num"),
      el("td", fmt(n.out_per_sec), "num"),
      el("td", n.joins_shed + n.connections_shed, "num"),
      el("td", n.slow_consumer_closes, "num"),
      el("td", fmt(n.publish_ms || n.round_trip_ms), "num"),
      el("td", n.version, "muted"),
    )
    tbody.append(tr)
    const series = latency.get(n.node) || []
    push(series, n.publish_ms || n.round_trip_ms)
    latency.set(n.node, series)
  }
  push(rates.in, tin)
  push(rates.out, tout)
  const max = plot($("rates") as unknown as SVGSVGElement, [rates.in, rates.out], COLORS)
  $("rates-max").textContent = `scale ${fmt(max)}/s`
  const names = [...latency.keys()].sort()
  const lmax = plot($("latency") as unknown as SVGSVGElement, names.map((k) => latency.get(k)!), COLORS)
  const legend = $("latency-legend")
  legend.replaceChildren(
    ...names.map((k, i) => {
      const sp = el("span", k)
      const dot = el("i")
      dot.style.background = COLORS[i % COLORS.length]
      sp.prepend(dot)
      return sp
    }),
    el("span", `scale ${fmt(lmax)} ms`, "muted"),
  )
  const tt = $("topics").querySelector("tbody")!
  tt.replaceChildren(...s.top_topics.map((t) => {
    const tr = el("tr")
    tr.append(el("td", t.t), el("td", t.n, "num"))
    return tr
  }))
}

function push(a: number[], v: number): void {
  a.push(isFinite(v) ? v : 0)
  if (a.length > WINDOW) a.shift()
}

/** Draws series as polylines scaled to their common maximum; returns it. */
function plot(svg: SVGSVGElement, series: number[][], colors: string[]): number {
  const W = 600
  const H = 140
  const max = Math.max(1, ...series.flat())
  // The x axis spans the last minute until there is more to show.
  const span = Math.max(60, Math.min(WINDOW, ...series.map((s) => s.length)))
  const ns = "http://www.w3.org/2000/svg"
  svg.replaceChildren()
  for (let y = 0; y <= 4; y++) {
    const line = document.createElementNS(ns, "line")
    line.setAttribute("x1", "0")
    line.setAttribute("x2", String(W))
    line.setAttribute("y1", String((H * y) / 4))
    line.setAttribute("y2", String((H * y) / 4))
    line.setAttribute("stroke", "#eee")
    svg.append(line)
  }
  series.forEach((s, i) => {
    const pts = s.map((v, j) => `${(W * (j + span - s.length)) / (span - 1)},${H - 2 - ((H - 4) * v) / max}`).join(" ")
    const pl = document.createElementNS(ns, "polyline")
    pl.setAttribute("points", pts)
    pl.setAttribute("fill", "none")
    pl.setAttribute("stroke", colors[i % colors.length])
    pl.setAttribute("stroke-width", "2")
    pl.setAttribute("vector-effect", "non-scaling-stroke")
    svg.append(pl)
  })
  return max
}

async function api(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(apiPath + path, {
    method,
    headers: appAuth
      ? { "Content-Type": "application/json" }
      : { Authorization: "Bearer " + (sessionStorage.getItem(KEY_STORE) || ""), "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const data = await res.json().catch(() => ({}))
  if (!res.ok) throw new Error(data?.error?.message || `HTTP ${res.status}`)
  return data
}

async function search(q: string): Promise<void> {
  $("search-error").textContent = ""
  const tbody = $("results").querySelector("tbody")!
  tbody.replaceChildren()
  $("presence").textContent = ""
  const isTopic = q.includes(":")
  try {
    const res = await api("GET", `/sockets?${isTopic ? "topic" : "user"}=${encodeURIComponent(q)}`)
    const list = res.sockets as SocketEntry[]
    if (list.length === 0) tbody.append(rowOf([el("td", "no sockets", "muted")]))
    for (const s of list) {
      const btn = el("button", "Disconnect") as HTMLButtonElement
      btn.dataset.user = s.id
      btn.disabled = !s.id
      btn.title = s.id ? `close every socket of ${s.id}, cluster-wide` : "anonymous socket"
      btn.addEventListener("click", () => disconnect(s.id, btn))
      tbody.append(rowOf([el("td", s.node), el("td", s.id || "(anonymous)"), el("td", s.conn, "muted"), el("td", s.topics.join(", ")), wrap(btn)]))
    }
    if (res.missing_nodes?.length) $("search-error").textContent = `no answer from ${res.missing_nodes.join(", ")}`
    if (isTopic) {
      const p = await api("GET", `/presence?topic=${encodeURIComponent(q)}`).catch(() => null)
      if (p) $("presence").textContent = `presence: ${Object.keys(p.presences).join(", ") || "nobody"}`
    } else {
      // The user's presence in the topics its sockets joined (the first few).
      const topics = [...new Set(list.flatMap((s) => s.topics))].slice(0, 5)
      const present: string[] = []
      for (const t of topics) {
        const p = await api("GET", `/presence?topic=${encodeURIComponent(t)}`).catch(() => null)
        const metas = p?.presences?.[q]?.metas?.length ?? 0
        if (metas > 0) present.push(`${t} (${metas})`)
      }
      $("presence").textContent = `present in: ${present.join(", ") || "no topic"}`
    }
  } catch (err) {
    $("search-error").textContent = String((err as Error).message)
  }
}

function rowOf(cells: HTMLElement[]): HTMLElement {
  const tr = el("tr")
  tr.append(...cells)
  return tr
}

function wrap(e: HTMLElement): HTMLElement {
  const td = el("td")
  td.append(e)
  return td
}

async function disconnect(user: string, btn: HTMLButtonElement): Promise<void> {
  if (!user) return
  btn.disabled = true
  try {
    await api("POST", "/disconnect", { user })
    btn.textContent = "Disconnected"
  } catch (err) {
    btn.disabled = false
    $("search-error").textContent = String((err as Error).message)
  }
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault()
  const key = ($("key") as HTMLInputElement).value.trim()
  if (key) start(key)
})
$("search-form").addEventListener("submit", (ev) => {
  ev.preventDefault()
  const q = ($("search") as HTMLInputElement).value.trim()
  if (q) void search(q)
})
const saved = sessionStorage.getItem(KEY_STORE)
if (appAuth) {
  $("login").hidden = true
  start("")
} else if (saved) start(saved)
