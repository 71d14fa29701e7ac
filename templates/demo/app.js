// The demo chat, on the Hearth client (served by the server at /hearth.js).
// It signs in (POST /login sets a session cookie), fetches a short-lived
// token (GET /token) only when it has none, and lets the server refresh the
// token over the socket. The status pill shows what a user cares about:
// connected, reconnecting in N s, recovered N missed messages, recovery
// incomplete, signed out.
"use strict"
;(() => {
  const $ = (id) => document.getElementById(id)
  const status = $("status")
  const messages = $("messages")
  const body = $("body")
  const sendBtn = $("send-btn")

  let socket = null
  let room = null
  let user = null
  let countdown = null

  function setStatus(state, text) {
    clearInterval(countdown)
    status.dataset.state = state
    status.textContent = text
  }

  function line(cls, who, text) {
    const li = document.createElement("li")
    if (cls) li.className = cls
    if (who) {
      const b = document.createElement("b")
      b.textContent = who
      li.appendChild(b)
    }
    li.appendChild(document.createTextNode(text))
    messages.appendChild(li)
    messages.scrollTop = messages.scrollHeight
  }

  function showPresence(list) {
    const ul = $("presence")
    ul.textContent = ""
    for (const name of list) {
      const li = document.createElement("li")
      li.textContent = name
      ul.appendChild(li)
    }
  }

  async function fetchToken() {
    const res = await fetch("/token", { credentials: "same-origin" })
    if (!res.ok) throw new Error("no session (" + res.status + ")")
    return (await res.json()).token
  }

  function connect() {
    socket = new Hearth.Socket("/socket", {
      // Read on every connect unless the server already pushed a fresher token.
      authToken: fetchToken,
      logger: window.HEARTH_DEBUG ? (kind, msg, data) => console.debug(kind, msg, data) : undefined,
    })
    socket.onOpen(() => setStatus("connected", "connected"))
    socket.onReconnect(({ delay, hinted }) => {
      let left = Math.ceil(delay / 1000)
      const show = () => setStatus("reconnecting", "reconnecting in " + left + " s" + (hinted ? " (server hint)" : ""))
      show()
      countdown = setInterval(() => {
        left = Math.max(0, left - 1)
        status.textContent = "reconnecting in " + left + " s" + (hinted ? " (server hint)" : "")
      }, 1000)
    })
    socket.onTerminal((code, reason) => {
      setStatus("closed", "signed out: " + (reason || code))
      line("system", "", "The server ended this session (" + (reason || code) + "). Sign in again.")
      body.disabled = sendBtn.disabled = true
    })
    socket.connect()
  }

  function joinRoom(name) {
    if (room) room.leave()
    messages.textContent = ""
    const topic = "room:" + name
    $("title").textContent = topic
    room = socket.channel(topic, {})
    room.on("new_msg", (msg) => line("", msg.user + ":", msg.body))
    room.onRecover(({ recovered, replayed }) => {
      if (recovered) {
        if (replayed > 0) line("system", "", "recovered " + replayed + " missed message" + (replayed === 1 ? "" : "s"))
        setStatus("connected", replayed > 0 ? "connected · recovered " + replayed + " missed" : "connected")
      } else {
        setStatus("incomplete", "connected · recovery incomplete")
        line("system", "", "Some messages could not be recovered while you were away.")
      }
    })
    if (window.Hearth.Presence) {
      const presence = new Hearth.Presence(room)
      presence.onSync(() => showPresence(presence.list((key) => key)))
    }
    room
      .join()
      .receive("ok", () => {
        body.disabled = sendBtn.disabled = false
        body.focus()
      })
      .receive("error", (resp) => line("system", "", "join refused: " + JSON.stringify(resp)))
  }

  $("join").addEventListener("submit", async (e) => {
    e.preventDefault()
    const name = $("name").value.trim()
    const roomName = $("room").value.trim() || "lobby"
    if (name !== user) {
      const res = await fetch("/login", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user: name }),
        credentials: "same-origin",
      })
      if (!res.ok) {
        line("system", "", "sign-in failed: " + (await res.text()))
        return
      }
      user = name
      if (socket) socket.disconnect()
      connect()
    }
    joinRoom(roomName)
  })

  $("send").addEventListener("submit", (e) => {
    e.preventDefault()
    const text = body.value.trim()
    if (!text || !room) return
    // A long timeout: a message typed while the connection is down waits
    // in the client's buffer and goes out once it is back.
    room
      .push("new_msg", { user, body: text }, 60000)
      .receive("ok", () => (body.value = ""))
      .receive("error", (r) => line("system", "", "not sent: " + (r && r.reason)))
      .receive("timeout", () => line("system", "", "not sent: the connection stayed down for a minute"))
  })

  setStatus("closed", "not connected")
})()
