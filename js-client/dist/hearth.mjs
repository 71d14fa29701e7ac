/* @hearth-rt/client: built from js-client/src by `go run ./js-client/cmd/build`; do not edit. */

// js-client/src/constants.ts
var VSN = "2.0.0";
var EVENTS = {
  join: "phx_join",
  leave: "phx_leave",
  reply: "phx_reply",
  error: "phx_error",
  close: "phx_close"
};
var SOCKET_TOPIC = "phoenix";
var TOKEN_EVENT = "token";
var HEARTH_KEY = "$hearth";
var EXT_PARAM = "_hearth";
var TOKEN_PROTOCOL_PREFIX = "base64url.bearer.phx.";
var READY_STATE = { connecting: 0, open: 1, closing: 2, closed: 3 };
var CLOSE = {
  normal: 1e3,
  goingAway: 1001,
  abnormal: 1006,
  serviceRestart: 1012,
  tryAgainLater: 1013,
  /** Unauthorized: the token is missing or invalid (also used when `authToken` throws SignedOut). */
  unauthorized: 4501,
  /** Session revoked: terminal whatever token was used. */
  revoked: 4503,
  /** First terminal code: 4500-4999 mean "do not reconnect". */
  terminalMin: 4500,
  terminalMax: 4999
};
var DEFAULTS = {
  timeout: 1e4,
  heartbeatIntervalMs: 3e4,
  heartbeatTimeoutMs: 1e4,
  reconnectBaseMs: 500,
  reconnectMaxMs: 2e4,
  stableAfterMs: 1e4,
  rejoinBaseMs: 1e3,
  rejoinMaxMs: 1e4,
  /** Fraction of a server's retry hint added as random extra delay. */
  hintJitter: 0.2,
  /** Longest retry hint honoured (a larger one is clamped). */
  maxHintMs: 6e5,
  /** Spread of the reconnect when a hidden tab becomes visible or the browser comes online. */
  resumeJitterMs: 1e3,
  /** Pushes a channel keeps while it cannot send; more fail with "buffer full". */
  pushBufferSize: 100
};

// js-client/src/push.ts
var Push = class {
  /**
   * Pushes are made by Channel.push, join and leave; there is no need to
   * construct one. The payload is a value, or a function returning it (read
   * on every send).
   */
  constructor(channel, event, payload, timeout) {
    this.channel = channel;
    this.event = event;
    /** The push's ref while it waits for a reply, else null. */
    this.ref = null;
    this.hooks = [];
    this.received = null;
    this.wasSent = false;
    this.payload = typeof payload === "function" ? payload : () => payload ?? {};
    this.timeout = timeout;
  }
  /** Registers a callback for an outcome and returns the push, for chaining. */
  receive(status, callback) {
    if (this.received && this.received.status === status) callback(this.received.response);
    this.hooks.push({ status, callback });
    return this;
  }
  /** Reports whether the push received this outcome. */
  hasReceived(status) {
    return this.received !== null && this.received.status === status;
  }
  /** Reports whether the push went out on the connection. */
  get sent() {
    return this.wasSent;
  }
  /** Sends the push with a fresh ref and starts waiting for its reply (made by Channel.push; there is no need to call it). */
  send() {
    if (this.received && this.received.status === "timeout") return;
    this.startTimeout();
    this.wasSent = true;
    try {
      this.channel.socket.send({
        topic: this.channel.topic,
        event: this.event,
        payload: this.payload(),
        ref: this.ref,
        join_ref: this.channel.joinRef()
      });
    } catch (err) {
      this.trigger("error", { reason: "cannot encode: " + (err instanceof Error ? err.message : String(err)) });
    }
  }
  /** Forgets the previous attempt and sends again with a new timeout. */
  resend(timeout) {
    this.timeout = timeout;
    this.reset();
    this.send();
  }
  /** @internal Forgets the ref, the timer and the outcome. */
  reset() {
    this.cancelTimeout();
    this.ref = null;
    this.received = null;
    this.wasSent = false;
  }
  /** @internal Takes a ref and starts the timeout, which triggers "timeout". */
  startTimeout() {
    this.cancelTimeout();
    this.ref = this.channel.socket.makeRef();
    this.channel.expectReply(this.ref, this);
    this.timer = setTimeout(() => {
      this.timer = void 0;
      this.channel.pushTimedOut(this);
      this.trigger("timeout", {});
    }, this.timeout);
  }
  /** @internal Stops waiting for the reply. */
  cancelTimeout() {
    if (this.timer !== void 0) clearTimeout(this.timer);
    this.timer = void 0;
    if (this.ref !== null) this.channel.forgetReply(this.ref, this);
  }
  /** @internal Settles the push with an outcome and runs its callbacks. */
  trigger(status, response) {
    this.cancelTimeout();
    this.received = { status, response };
    for (const h of this.hooks.slice()) {
      if (h.status === status) h.callback(response);
    }
  }
};

// js-client/src/timer.ts
function backoff(attempt, baseMs, maxMs, random = Math.random) {
  const exp = Math.min(Math.max(attempt, 0), 52);
  const cap = Math.min(maxMs, baseMs * 2 ** exp);
  return Math.floor(random() * cap);
}
function retryHint(code, reason) {
  if (!reason || isTerminal(code)) return null;
  const m = /"?retry_after_ms"?\s*[=:]\s*"?(\d{1,12})/.exec(reason);
  if (!m) return null;
  return Math.min(Number(m[1]), DEFAULTS.maxHintMs);
}
function phoenixReconnectAfterMs(tries) {
  return [10, 50, 100, 150, 200, 250, 500, 1e3, 2e3][tries - 1] ?? 5e3;
}
function phoenixRejoinAfterMs(tries) {
  return [1e3, 2e3, 5e3][tries - 1] ?? 1e4;
}
function isTerminal(code) {
  return code >= CLOSE.terminalMin && code <= CLOSE.terminalMax;
}
var RetryTimer = class {
  /**
   * @param callback runs when a scheduled delay has passed
   * @param delayFor gives the delay for the next attempt; `tries` starts at 1
   */
  constructor(callback, delayFor) {
    this.callback = callback;
    this.delayFor = delayFor;
    /** Attempts scheduled since the last reset. */
    this.tries = 0;
  }
  /**
   * Schedules the callback after the next backoff delay (or after `delayMs`
   * when given) and counts one more try. It returns the delay.
   */
  schedule(delayMs) {
    this.cancel();
    this.tries++;
    const delay = Math.max(0, delayMs ?? this.delayFor(this.tries));
    this.start(delay);
    return delay;
  }
  /** Schedules the callback after `delayMs` without counting a try. */
  start(delayMs) {
    this.cancel();
    this.timer = setTimeout(() => {
      this.timer = void 0;
      this.callback();
    }, delayMs);
  }
  /** Reports whether the callback is scheduled. */
  get pending() {
    return this.timer !== void 0;
  }
  /** Cancels a scheduled callback; the tries are kept. */
  cancel() {
    if (this.timer !== void 0) clearTimeout(this.timer);
    this.timer = void 0;
  }
  /** Cancels a scheduled callback and forgets the tries. */
  reset() {
    this.tries = 0;
    this.cancel();
  }
};

// js-client/src/channel.ts
var REASONS = ["new_epoch", "ahead", "trimmed", "limit", "unavailable"];
var Channel = class {
  /** Channels are made with socket.channel(topic, params). */
  constructor(topic, params, socket) {
    this.topic = topic;
    this.socket = socket;
    /** The channel's state. */
    this.state = "closed";
    this.bindings = [];
    this.bindingRef = 0;
    this.joinedOnce = false;
    this.buffer = [];
    this.replies = /* @__PURE__ */ new Map();
    this.recoverHooks = [];
    this.caughtUpHooks = [];
    this.caughtUp = null;
    this.terminated = false;
    this.pos = null;
    this.since = null;
    this.replayLeft = 0;
    this.replayTop = 0;
    this.pendingRecover = null;
    this.hadJoined = false;
    this.closeReason = "channel closed";
    this.params = typeof params === "function" ? params : () => params ?? {};
    this.timeout = socket.timeout;
    this.rejoinTimer = new RetryTimer(() => {
      if (this.socket.isConnected()) this.rejoin();
    }, (tries) => socket.rejoinAfterMs(tries));
    this.joinPush = new Push(this, EVENTS.join, () => this.joinPayload(), this.timeout);
    this.joinPush.receive("ok", () => {
      this.state = "joined";
      this.rejoinTimer.reset();
      const buffered = this.buffer;
      this.buffer = [];
      for (const p of buffered) p.send();
    });
    this.joinPush.receive("error", (resp) => {
      this.state = "errored";
      const hint = resp?.retry_after_ms;
      if (this.socket.isConnected()) this.rejoinTimer.schedule(typeof hint === "number" ? this.socket.hintDelay(hint) : void 0);
    });
    this.joinPush.receive("timeout", () => {
      this.socket.log("channel", `join timed out: ${this.topic}`);
      new Push(this, EVENTS.leave, () => ({}), this.timeout).send();
      this.state = "errored";
      this.joinPush.reset();
      if (this.socket.isConnected()) this.rejoinTimer.schedule();
    });
  }
  /**
   * Joins the topic. Call it once; the channel rejoins by itself from then
   * on. The returned push receives "ok" (with the join reply) on every
   * successful join, rejoins included.
   */
  join(timeout = this.timeout) {
    if (this.joinedOnce) {
      throw new Error(`hearth: joined "${this.topic}" more than once (a channel rejoins by itself)`);
    }
    this.timeout = timeout;
    this.joinedOnce = true;
    this.rejoin(timeout);
    return this.joinPush;
  }
  /**
   * Leaves the topic. The returned push receives "ok" once the server
   * confirmed (or at once while disconnected); the channel is closed then
   * and does not rejoin.
   */
  leave(timeout = this.timeout) {
    this.rejoinTimer.cancel();
    this.joinPush.cancelTimeout();
    this.state = "leaving";
    const done = () => {
      this.socket.log("channel", `left ${this.topic}`);
      this.trigger({ join_ref: null, ref: null, topic: this.topic, event: EVENTS.close, payload: "leave" });
    };
    const p = new Push(this, EVENTS.leave, () => ({}), timeout);
    p.receive("ok", done).receive("timeout", done);
    p.send();
    if (!this.socket.isConnected()) p.trigger("ok", {});
    return p;
  }
  /**
   * Pushes an event to the server. The payload is a JSON value, or an
   * ArrayBuffer (or typed array) sent as a binary frame. While the channel
   * cannot send (not joined, or disconnected) pushes wait in a bounded
   * buffer; when it is full the push fails at once with
   * receive("error", {reason: "buffer full"}). On a closed channel (left, or
   * the socket closed for good) the push fails at once with the reason.
   */
  push(event, payload = {}, timeout = this.timeout) {
    if (!this.joinedOnce) {
      throw new Error(`hearth: push "${event}" to "${this.topic}" before joining`);
    }
    const p = new Push(this, event, () => payload, timeout);
    if (this.canPush()) {
      p.send();
    } else if (this.state === "closed" || this.state === "leaving") {
      p.trigger("error", { reason: this.closeReason });
    } else if (this.buffer.length >= this.socket.pushBufferSize) {
      this.socket.log("channel", `push buffer full: ${this.topic} ${event}`);
      p.trigger("error", { reason: "buffer full" });
    } else {
      p.startTimeout();
      this.buffer.push(p);
    }
    return p;
  }
  /** Subscribes to an event; returns a ref for `off`. */
  on(event, callback) {
    const ref = ++this.bindingRef;
    this.bindings.push({ event, ref, callback });
    return ref;
  }
  /** Unsubscribes the callback with the given ref, or every callback of the event. */
  off(event, ref) {
    this.bindings = this.bindings.filter((b) => !(b.event === event && (ref === void 0 || ref === b.ref)));
  }
  /** Runs callback when the channel is closed for good (left, or closed by the server). */
  onClose(callback) {
    return this.on(EVENTS.close, callback);
  }
  /** Runs callback when the channel errors (it then rejoins by itself). */
  onError(callback) {
    return this.on(EVENTS.error, callback);
  }
  /**
   * Runs callback after every rejoin that asked the server for the messages
   * missed while away, telling whether recovery was complete. When it was
   * not, refetch state. Returns a function that unsubscribes.
   */
  onRecover(callback) {
    this.recoverHooks.push(callback);
    return () => {
      this.recoverHooks = this.recoverHooks.filter((h) => h !== callback);
    };
  }
  /**
   * Runs callback once the messages replayed by a rejoin have all reached
   * the channel's `on` callbacks (right after `onRecover` when nothing was
   * replayed, or recovery was incomplete): from then on messages are live.
   * Returns a function that unsubscribes.
   */
  onCaughtUp(callback) {
    this.caughtUpHooks.push(callback);
    return () => {
      this.caughtUpHooks = this.caughtUpHooks.filter((h) => h !== callback);
    };
  }
  /**
   * A hook every incoming event passes through before the `on` callbacks
   * (as phoenix.js's): it returns the payload they receive. Override it on
   * an instance to transform payloads; the default returns the payload.
   */
  onMessage(_event, payload, _ref, _joinRef) {
    return payload;
  }
  /** Reports whether the channel is closed. */
  isClosed() {
    return this.state === "closed";
  }
  /** Reports whether the channel errored (it rejoins by itself). */
  isErrored() {
    return this.state === "errored";
  }
  /** Reports whether the channel is joined. */
  isJoined() {
    return this.state === "joined";
  }
  /** Reports whether the channel is joining. */
  isJoining() {
    return this.state === "joining";
  }
  /** Reports whether the channel is leaving. */
  isLeaving() {
    return this.state === "leaving";
  }
  /** The channel's position in its topic's stream, or null when unknown. */
  position() {
    return this.pos ? { ...this.pos } : null;
  }
  /** The ref of the current join, which messages of this membership carry. */
  joinRef() {
    return this.joinPush.ref;
  }
  /** Reports whether the channel is joined and its socket connected. */
  canPush() {
    return this.socket.isConnected() && this.state === "joined";
  }
  /** @internal Joins again after an error or a reconnect. */
  rejoin(timeout = this.timeout) {
    if (this.state === "leaving") return;
    this.socket.leaveOpenTopic(this.topic, this);
    this.state = "joining";
    if (!this.socket.isConnected()) {
      this.joinPush.timeout = timeout;
      this.joinPush.reset();
      return;
    }
    this.joinPush.resend(timeout);
  }
  /** @internal The socket opened: join if waiting for it, rejoin if the connection loss errored the channel. */
  socketOpened() {
    this.rejoinTimer.reset();
    if (this.terminated) {
      this.terminated = false;
      this.closeReason = "channel closed";
      this.state = "errored";
    }
    if (this.state === "errored" || this.state === "joining" && !this.joinPush.sent) this.rejoin(this.joinPush.timeout);
  }
  /**
   * @internal The socket closed for good (a terminal close code, or the app
   * signed out): the channel is closed, its waiting pushes fail at once
   * with the reason. It rejoins if the app calls `socket.connect()` again.
   */
  socketTerminated(reason) {
    if (this.state === "closed" || this.state === "leaving") return;
    this.rejoinTimer.reset();
    const joining = this.state === "joining" && this.joinPush.sent;
    this.state = "closed";
    this.terminated = true;
    this.closeReason = reason;
    const failed = /* @__PURE__ */ new Set([...this.buffer, ...this.replies.values()]);
    failed.delete(this.joinPush);
    this.buffer = [];
    if (joining) this.joinPush.trigger("error", { reason });
    else this.joinPush.cancelTimeout();
    for (const p of failed) p.trigger("error", { reason });
    this.state = "closed";
    this.dispatch(EVENTS.close, { reason }, null, null);
  }
  /** @internal The socket lost its connection. */
  socketClosed(reason) {
    this.rejoinTimer.cancel();
    if (this.state === "joined" || this.state === "joining") {
      this.fail({ reason });
    }
  }
  /** @internal Reports whether a message belongs to this channel's current membership. */
  isMember(msg) {
    if (msg.topic !== this.topic) return false;
    if (msg.join_ref !== null && msg.join_ref !== this.joinRef()) {
      this.socket.log("channel", `dropping message with stale join_ref: ${msg.topic} ${msg.event}`);
      return false;
    }
    return true;
  }
  /** @internal Handles one message of this channel. */
  trigger(msg) {
    const { event, payload, ref, join_ref: joinRef } = msg;
    switch (event) {
      case EVENTS.reply:
        this.handleReply(ref, payload);
        return;
      case EVENTS.close:
        this.closed();
        break;
      case EVENTS.error:
        if (this.state === "leaving" || this.state === "closed") return;
        this.fail(payload);
        return;
      default:
        if (ref !== null && joinRef === null && !this.advance(ref)) return;
    }
    this.dispatch(event, payload, ref, joinRef);
    if (this.caughtUp && this.replayLeft === 0) this.fireCaughtUp();
  }
  /** @internal Registers the push waiting for a reply with this ref. */
  expectReply(ref, push) {
    this.replies.set(ref, push);
  }
  /** @internal Stops routing replies with this ref to push. */
  forgetReply(ref, push) {
    if (this.replies.get(ref) === push) this.replies.delete(ref);
  }
  /** @internal A push timed out: if it was still buffered, it will never be sent. */
  pushTimedOut(push) {
    this.buffer = this.buffer.filter((p) => p !== push);
  }
  dispatch(event, payload, ref, joinRef) {
    const handled = this.onMessage(event, payload, ref, joinRef);
    for (const b of this.bindings.slice()) {
      if (b.event === event) b.callback(handled, ref, joinRef);
    }
  }
  fireCaughtUp() {
    const info = this.caughtUp;
    this.caughtUp = null;
    if (info) for (const h of this.caughtUpHooks.slice()) h(info);
  }
  fail(payload) {
    this.state = "errored";
    this.joinPush.reset();
    this.dispatch(EVENTS.error, payload, null, null);
    if (this.socket.isConnected()) this.rejoinTimer.schedule();
  }
  closed() {
    this.rejoinTimer.reset();
    this.joinPush.cancelTimeout();
    this.state = "closed";
    this.terminated = false;
    const buffered = this.buffer;
    this.buffer = [];
    for (const p of buffered) p.trigger("error", { reason: "channel closed" });
    this.socket.remove(this);
  }
  handleReply(ref, payload) {
    const push = ref === null ? void 0 : this.replies.get(ref);
    if (!push) return;
    let status = "error";
    let response = {};
    if (payload !== null && typeof payload === "object") {
      const p = payload;
      if (typeof p.status === "string") status = p.status;
      if ("response" in p) response = p.response;
    }
    if (push === this.joinPush) {
      const info = takeHearth(response);
      if (status === "ok") this.joinOk(info);
    }
    push.trigger(status, response);
    const recover = this.pendingRecover;
    this.pendingRecover = null;
    if (recover) {
      this.caughtUp = recover;
      for (const h of this.recoverHooks.slice()) h(recover);
      if (this.replayLeft === 0) this.fireCaughtUp();
    }
  }
  /** The join payload: the app's params and Hearth's key, with the position to resume from on a rejoin. */
  joinPayload() {
    const params = this.params();
    if (!this.socket.hearth) {
      this.since = null;
      return params;
    }
    this.since = this.pos;
    return { ...params, [HEARTH_KEY]: this.pos ? { since: { epoch: this.pos.epoch, offset: this.pos.offset } } : {} };
  }
  /**
   * Takes the position the server reported in a join reply and, on a
   * rejoin, prepares the recovery report.
   */
  joinOk(info) {
    const since = this.since;
    const rejoin = this.hadJoined;
    this.hadJoined = true;
    this.replayLeft = 0;
    this.caughtUp = null;
    const known = info !== null && typeof info.epoch === "string" && info.epoch !== "" && typeof info.offset === "number";
    if (!known) {
      this.pos = null;
      const reason = info !== null && typeof info.reason === "string" && REASONS.includes(info.reason) ? info.reason : "untracked";
      if (rejoin) this.pendingRecover = { recovered: false, replayed: 0, reason, position: null };
      return;
    }
    const top = { epoch: info.epoch, offset: info.offset };
    const recovered = since !== null && info.recovered === true && since.epoch === top.epoch;
    const replayed = recovered && typeof info.replayed === "number" ? info.replayed : 0;
    if (replayed > 0 && since) {
      this.replayLeft = replayed;
      this.replayTop = top.offset;
      this.pos = { ...since };
    } else {
      this.pos = top;
    }
    if (!rejoin) return;
    this.pendingRecover = { recovered, replayed, position: { ...top } };
    if (!recovered) {
      let reason = "unknown";
      if (since === null) reason = "untracked";
      else if (typeof info.reason === "string" && REASONS.includes(info.reason)) reason = info.reason;
      else if (since.epoch !== top.epoch) reason = "new_epoch";
      this.pendingRecover.reason = reason;
    }
  }
  /**
   * Takes the position of a broadcast ("@<offset>" in its ref). It returns
   * false for a message at or before the channel's position: a duplicate.
   */
  advance(ref) {
    if (ref.charCodeAt(0) !== 64 || !this.pos) return true;
    const offset = Number(ref.slice(1));
    if (!Number.isSafeInteger(offset) || offset <= 0) return true;
    if (offset <= this.pos.offset) {
      this.socket.log("channel", `dropping duplicate broadcast at offset ${offset}: ${this.topic}`);
      return false;
    }
    this.pos = { epoch: this.pos.epoch, offset };
    if (this.replayLeft > 0 && --this.replayLeft === 0 && this.replayTop > offset) {
      this.pos = { epoch: this.pos.epoch, offset: this.replayTop };
    }
    return true;
  }
};
function takeHearth(response) {
  if (response === null || typeof response !== "object" || Array.isArray(response) || !(HEARTH_KEY in response)) return null;
  const r = response;
  const info = r[HEARTH_KEY];
  delete r[HEARTH_KEY];
  return info !== null && typeof info === "object" ? info : null;
}

// js-client/src/longpoll.ts
var MAX_BATCH = 100;
async function request(method, url, headers, body, signal) {
  try {
    const res = await fetch(url, { method, headers, body, signal, cache: "no-store" });
    return await res.json();
  } catch (err) {
    if (signal.aborted) throw err;
    return null;
  }
}
function toBase64(data) {
  const b = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data);
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return btoa(s);
}
function fromBase64(s) {
  const bin = atob(s);
  const b = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
  return b.buffer;
}
var LongPoll = class {
  constructor(endPoint, protocols) {
    this.binaryType = "arraybuffer";
    this.readyState = READY_STATE.connecting;
    /** Request timeout (ms); a socket sets it. Must exceed the server's poll window (10 s). */
    this.timeout = 2e4;
    this.onopen = null;
    this.onclose = null;
    this.onerror = null;
    this.onmessage = null;
    this.authToken = null;
    this.token = null;
    this.ctl = new AbortController();
    this.batch = null;
    this.sending = false;
    this.url = endPoint.replace(/^ws(s?):\/\//, "http$1://").replace(/\/websocket(?=\?|$)/, "/longpoll");
    if (Array.isArray(protocols) && protocols.length === 2 && protocols[1].startsWith(TOKEN_PROTOCOL_PREFIX)) {
      const enc = protocols[1].slice(TOKEN_PROTOCOL_PREFIX.length).replace(/-/g, "+").replace(/_/g, "/");
      this.authToken = new TextDecoder().decode(fromBase64(enc + "=".repeat((4 - enc.length % 4) % 4)));
    }
    setTimeout(() => {
      void this.poll();
    }, 0);
  }
  endpoint() {
    return this.token === null ? this.url : this.url + (this.url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.token);
  }
  async call(method, headers, body) {
    const ctl = this.ctl;
    const timer = setTimeout(() => ctl.abort(), this.timeout);
    try {
      return await request(method, this.endpoint(), headers, body, ctl.signal);
    } finally {
      clearTimeout(timer);
    }
  }
  async poll() {
    while (this.readyState === READY_STATE.connecting || this.readyState === READY_STATE.open) {
      const headers = { Accept: "application/json" };
      if (this.authToken) headers["X-Phoenix-AuthToken"] = this.authToken;
      let a;
      try {
        a = await this.call("GET", headers, null);
      } catch {
        if (this.readyState <= READY_STATE.open) this.fail(CLOSE.abnormal, "timeout");
        return;
      }
      if (this.readyState > READY_STATE.open) return;
      if (!a) return this.fail(CLOSE.abnormal, "long-poll request failed");
      if (a.status === 410 && this.token !== null) {
        return this.fail(a.close?.code ?? 3410, a.close?.reason ?? "session_gone");
      }
      if (a.token) this.token = a.token;
      switch (a.status) {
        case 200:
          for (const m of a.messages ?? []) {
            if (this.readyState !== READY_STATE.open) return;
            const data = m[0] === "[" || m[0] === "{" ? m : fromBase64(m);
            if (this.onmessage) this.onmessage({ data });
          }
          break;
        case 204:
          break;
        case 410:
          this.readyState = READY_STATE.open;
          if (this.onopen) this.onopen({});
          break;
        case 403:
          return this.fail(a.close?.code ?? 1008, a.close?.reason ?? "forbidden");
        default:
          return this.fail(a.close?.code ?? 1011, a.close?.reason ?? "internal server error");
      }
    }
  }
  /** Queues a frame; frames of one turn of the event loop go in one POST. */
  send(data) {
    const line = typeof data === "string" ? data : toBase64(data);
    if (this.batch) {
      this.batch.push(line);
      return;
    }
    this.batch = [line];
    if (!this.sending) setTimeout(() => {
      void this.flush();
    }, 0);
  }
  async flush() {
    this.sending = true;
    while (this.batch && this.readyState === READY_STATE.open) {
      const lines = this.batch.splice(0, MAX_BATCH);
      if (this.batch.length === 0) this.batch = null;
      let a;
      try {
        a = await this.call("POST", { "Content-Type": "application/x-ndjson" }, lines.join("\n"));
      } catch {
        a = null;
      }
      if (this.readyState !== READY_STATE.open) break;
      if (!a || a.status !== 200) {
        this.fail(a?.close?.code ?? 1011, a?.close?.reason ?? "long-poll send failed");
        break;
      }
    }
    this.sending = false;
  }
  /** Closes: pending requests are cancelled and queued frames dropped. */
  close(code = CLOSE.normal, reason = "") {
    this.stop(code, reason, true);
  }
  fail(code, reason) {
    if (this.onerror) this.onerror({ type: "error", reason });
    this.stop(code, reason, false);
  }
  stop(code, reason, wasClean) {
    if (this.readyState === READY_STATE.closed) return;
    this.readyState = READY_STATE.closed;
    this.batch = null;
    this.ctl.abort();
    if (this.onclose) this.onclose({ code, reason, wasClean });
  }
};

// js-client/src/serializer.ts
var KIND = { push: 0, reply: 1, broadcast: 2, broadcastPos: 3 };
var HEADER = { push: 5, serverPush: 4, reply: 5, broadcast: 3, broadcastPos: 4 };
function isBinary(v) {
  return v instanceof ArrayBuffer || ArrayBuffer.isView(v) || Object.prototype.toString.call(v) === "[object ArrayBuffer]";
}
var Serializer = class {
  constructor() {
    this.encoder = new TextEncoder();
    this.decoder = new TextDecoder();
  }
  /** Encodes a message to a text or binary frame. It throws when a binary header field is longer than 255 bytes. */
  encode(msg) {
    if (isBinary(msg.payload)) return this.encodeBinary(msg, msg.payload);
    return JSON.stringify([msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload]);
  }
  /** Decodes a frame. It throws an Error saying what is wrong with a malformed one. */
  decode(raw) {
    if (typeof raw === "string") return this.decodeText(raw);
    if (isBinary(raw)) return this.decodeBinary(raw);
    throw new Error("hearth: cannot decode a frame of type " + typeof raw);
  }
  decodeText(raw) {
    const a = JSON.parse(raw);
    if (!Array.isArray(a) || a.length !== 5) throw new Error("hearth: message is not a 5-element JSON array");
    const [joinRef, ref, topic, event, payload] = a;
    if (!isRef(joinRef) || !isRef(ref)) throw new Error("hearth: message refs must be strings or null");
    if (typeof topic !== "string" || typeof event !== "string") throw new Error("hearth: message topic and event must be strings");
    return { join_ref: joinRef, ref, topic, event, payload };
  }
  encodeBinary(msg, payload) {
    const fields = [msg.join_ref ?? "", msg.ref ?? "", msg.topic, msg.event].map((s, i) => {
      const b = this.encoder.encode(s);
      if (b.length > 255) throw new Error(`hearth: ${FIELD_NAMES[i]} is longer than 255 bytes and cannot be sent in a binary frame`);
      return b;
    });
    const body = ArrayBuffer.isView(payload) ? new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength) : new Uint8Array(payload);
    let size = HEADER.push + body.length;
    for (const f of fields) size += f.length;
    const out = new Uint8Array(size);
    out[0] = KIND.push;
    let p = 1;
    for (const f of fields) out[p++] = f.length;
    for (const f of fields) {
      out.set(f, p);
      p += f.length;
    }
    out.set(body, p);
    return out.buffer;
  }
  decodeBinary(buf) {
    const b = new Uint8Array(buf);
    if (b.length === 0) throw new Error("hearth: empty binary message");
    const kind = b[0];
    const header = kind === KIND.push ? HEADER.serverPush : kind === KIND.reply ? HEADER.reply : kind === KIND.broadcast ? HEADER.broadcast : kind === KIND.broadcastPos ? HEADER.broadcastPos : -1;
    if (header < 0) throw new Error(`hearth: unknown binary message kind ${kind}`);
    if (b.length < header) throw new Error("hearth: binary message shorter than its header");
    let p = header;
    const field = (len) => {
      if (p + len > b.length) throw new Error("hearth: binary message shorter than its header says");
      const s = this.decoder.decode(b.subarray(p, p + len));
      p += len;
      return s;
    };
    const rest = () => buf.slice(p);
    switch (kind) {
      case KIND.push: {
        const joinRef = field(b[1]), topic = field(b[2]), event = field(b[3]);
        return { join_ref: orNull(joinRef), ref: null, topic, event, payload: rest() };
      }
      case KIND.reply: {
        const joinRef = field(b[1]), ref = field(b[2]), topic = field(b[3]), status = field(b[4]);
        return { join_ref: orNull(joinRef), ref: orNull(ref), topic, event: EVENTS.reply, payload: { status, response: rest() } };
      }
      case KIND.broadcast: {
        const topic = field(b[1]), event = field(b[2]);
        return { join_ref: null, ref: null, topic, event, payload: rest() };
      }
      default: {
        const topic = field(b[1]), event = field(b[2]), pos = field(b[3]);
        return { join_ref: null, ref: orNull(pos), topic, event, payload: rest() };
      }
    }
  }
};
var FIELD_NAMES = ["join_ref", "ref", "topic", "event"];
function isRef(v) {
  return v === null || typeof v === "string";
}
function orNull(s) {
  return s === "" ? null : s;
}

// js-client/src/socket.ts
var Socket = class {
  /**
   * @param endPoint the socket's path or URL, e.g. "/socket" or
   *   "wss://example.com/socket"; "/websocket" is appended as Phoenix does.
   */
  constructor(endPoint, opts = {}) {
    /** The channels made with `channel()` and not removed. */
    this.channels = [];
    /** The current WebSocket, or null. */
    this.conn = null;
    this.serializer = new Serializer();
    this.hooks = { open: [], close: [], error: [], message: [], terminal: [], token: [], reconnect: [] };
    this.ref = 0;
    this.gen = 0;
    this.wanted = false;
    this.opening = false;
    this.opened = false;
    this.waiting = false;
    this.suspended = false;
    this.unlisten = null;
    this.pendingHeartbeatRef = null;
    this.sendBuffer = [];
    this.pings = /* @__PURE__ */ new Map();
    this.refreshed = null;
    this.usedRefreshed = false;
    this.refused = false;
    this.preOpenFailures = 0;
    this.established = 0;
    this.reconnectDueAt = 0;
    this.reconnectHinted = false;
    this.fellBack = false;
    this.wsOpened = false;
    this.endPoint = endPoint;
    this.opts = opts;
    this.timeout = opts.timeout ?? DEFAULTS.timeout;
    this.pushBufferSize = opts.pushBufferSize ?? DEFAULTS.pushBufferSize;
    this.hearth = opts.hearth ?? true;
    this.random = opts.random ?? Math.random;
    this.env = opts.environment === void 0 ? browserEnvironment() : opts.environment;
    this.reconnectTimer = new RetryTimer(() => this.reconnectNow(), (tries) => this.reconnectAfterMs(tries));
    this.transport = opts.transport;
    this.binaryType = opts.binaryType ?? "arraybuffer";
    this.vsn = opts.vsn ?? VSN;
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? DEFAULTS.heartbeatIntervalMs;
    this.encode = opts.encode ?? ((msg, cb) => cb(this.serializer.encode(msg)));
    this.decode = opts.decode ?? ((frame, cb) => cb(this.serializer.decode(frame)));
    this.logger = opts.logger ?? (opts.debug ? (kind, msg, data) => console.log(`${kind}: ${msg}`, data) : null);
    let store = opts.sessionStorage;
    try {
      store = store ?? globalThis.sessionStorage;
    } catch {
      store = null;
    }
    this.sessionStore = store && typeof store.getItem === "function" ? store : null;
  }
  /** The delay before reconnect attempt `tries` (1, 2, ...). */
  reconnectAfterMs(tries) {
    if (this.opts.reconnectAfterMs) return this.opts.reconnectAfterMs(tries);
    return backoff(tries - 1, this.opts.reconnectBaseMs ?? DEFAULTS.reconnectBaseMs, this.opts.reconnectMaxMs ?? DEFAULTS.reconnectMaxMs, this.random);
  }
  /** The delay before channel rejoin attempt `tries` (1, 2, ...). */
  rejoinAfterMs(tries) {
    if (this.opts.rejoinAfterMs) return this.opts.rejoinAfterMs(tries);
    return backoff(tries - 1, this.opts.rejoinBaseMs ?? DEFAULTS.rejoinBaseMs, this.opts.rejoinMaxMs ?? DEFAULTS.rejoinMaxMs, this.random);
  }
  /**
   * Connects, and keeps reconnecting after losses until `disconnect()` or a
   * terminal close. Calling it while connected or connecting does nothing;
   * while a reconnect is scheduled it connects at once. Params given here
   * replace the `params` option (deprecated in phoenix.js; kept for it).
   */
  connect(params) {
    if (params) this.paramsOverride = params;
    if (this.opts.longPollFallbackMs !== void 0 && (fallbackRemembered() || typeof globalThis.WebSocket !== "function")) {
      this.fellBack = true;
    }
    if (!this.transport && !this.fellBack && typeof globalThis.WebSocket !== "function") {
      throw new Error("hearth: no WebSocket: pass {transport: WebSocket} (ws in Node)");
    }
    if (this.wanted && (this.conn || this.opening)) return;
    this.wanted = true;
    this.suspended = false;
    this.waiting = false;
    this.reconnectTimer.cancel();
    this.listen();
    if (this.env && this.env.offline()) {
      this.waiting = true;
      this.log("transport", "offline: waiting to connect");
      return;
    }
    this.open();
  }
  /**
   * Closes the connection (code 1000 unless given) and stops reconnecting.
   * Joined channels rejoin when `connect()` is called again. The callback
   * runs once the connection closed.
   */
  disconnect(callback, code = CLOSE.normal, reason) {
    this.wanted = false;
    this.suspended = false;
    this.waiting = false;
    this.reconnectTimer.reset();
    if (this.unlisten) this.unlisten();
    this.unlisten = null;
    this.closeConn(code, reason ?? "", callback);
  }
  /**
   * Closes the connection (the channels rejoin over the next one) and makes
   * `transport` the transport class of later connections. Call `connect()`
   * to connect with it, as with phoenix.js.
   */
  replaceTransport(transport) {
    this.transport = transport;
    if (this.wanted || this.conn || this.opening) this.disconnect();
  }
  /** "wss" on an https page, else "ws". */
  protocol() {
    const loc = globalThis.location;
    return loc && /^https/.test(loc.protocol) ? "wss" : "ws";
  }
  /** Reports whether a logger is set. */
  hasLogger() {
    return this.logger !== null;
  }
  /**
   * Sends a heartbeat and calls back with the round trip in milliseconds.
   * Returns false (and does not call back) when not connected.
   */
  ping(callback) {
    if (!this.isConnected()) return false;
    const ref = this.makeRef();
    const start = Date.now();
    this.pings.set(ref, () => callback(Date.now() - start));
    this.send({ join_ref: null, ref, topic: SOCKET_TOPIC, event: "heartbeat", payload: {} });
    return true;
  }
  /**
   * Sends a raw message (as phoenix.js's `socket.push`): at once when
   * connected, else when the next connection opens.
   */
  push(data) {
    const msg = { join_ref: data.join_ref ?? null, ref: data.ref ?? null, topic: data.topic, event: data.event, payload: data.payload ?? {} };
    if (this.isConnected()) this.send(msg);
    else this.sendBuffer.push(msg);
  }
  channel(topic, params) {
    const ch = new Channel(topic, params, this);
    this.channels.push(ch);
    return ch;
  }
  /** Forgets a channel (done by the channel itself once closed). */
  remove(channel) {
    this.channels = this.channels.filter((c) => c !== channel);
  }
  /** Runs callback when a connection opens. Returns a ref for `off`. */
  onOpen(callback) {
    return this.hook("open", callback);
  }
  /** Runs callback when a connection closes, with its close code and reason. Returns a ref for `off`. */
  onClose(callback) {
    return this.hook("close", callback);
  }
  /**
   * Runs callback on a transport error, a failed connect or an undecodable
   * frame, with the transport class in use and the number of connections
   * that opened so far (as phoenix.js). Returns a ref for `off`.
   */
  onError(callback) {
    return this.hook("error", callback);
  }
  /** Runs callback for every decoded message received. Returns a ref for `off`. */
  onMessage(callback) {
    return this.hook("message", callback);
  }
  /**
   * Runs callback when the server closed the connection with a terminal
   * code (4500-4999: unauthorized, token expired, session revoked): the
   * socket stopped reconnecting. Sign in again, then call `connect()`.
   * Returns a ref for `off`.
   */
  onTerminal(callback) {
    return this.hook("terminal", callback);
  }
  /**
   * Runs callback when the server handed over a fresh token (event `token`
   * on any channel or on the socket topic). The socket uses it on its next
   * connect by itself; the callback is for keeping it elsewhere. Returns a
   * ref for `off`.
   */
  onToken(callback) {
    return this.hook("token", callback);
  }
  /** Runs callback whenever a reconnect is scheduled. Returns a ref for `off`. */
  onReconnect(callback) {
    return this.hook("reconnect", callback);
  }
  /** Removes the callbacks with the given refs. */
  off(refs) {
    const lists = this.hooks;
    for (const kind of Object.keys(lists)) lists[kind] = lists[kind].filter(([ref]) => !refs.includes(ref));
  }
  /** Reports whether the connection is open. */
  isConnected() {
    return this.opened && this.conn !== null && this.conn.readyState === READY_STATE.open;
  }
  /** The connection's state. */
  connectionState() {
    if (this.opening) return "connecting";
    switch (this.conn ? this.conn.readyState : READY_STATE.closed) {
      case READY_STATE.connecting:
        return "connecting";
      case READY_STATE.open:
        return "open";
      case READY_STATE.closing:
        return "closing";
      default:
        return "closed";
    }
  }
  /** The socket URL for the given connect params (default: the `params` option, when not a promise). */
  endPointURL(params = this.syncParams()) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v === void 0 || v === null) continue;
      q.append(k, typeof v === "object" ? JSON.stringify(v) : String(v));
    }
    q.set("vsn", this.vsn);
    if (this.hearth) q.set(EXT_PARAM, "1");
    const at = this.endPoint.indexOf("?");
    let url = (at < 0 ? this.endPoint : this.endPoint.slice(0, at)).replace(/\/+$/, "");
    if (!/\/websocket$/.test(url)) url += "/websocket";
    url += "?" + (at < 0 ? "" : this.endPoint.slice(at + 1) + "&") + q.toString();
    if (/^https?:/.test(url)) return url.replace(/^http/, "ws");
    if (/^wss?:/.test(url)) return url;
    const loc = globalThis.location;
    const proto = loc && loc.protocol === "https:" ? "wss" : "ws";
    if (url.startsWith("//")) return `${proto}:${url}`;
    if (!loc) throw new Error(`hearth: a relative endpoint (${this.endPoint}) needs a page location; give a full ws:// URL`);
    return `${proto}://${loc.host}${url}`;
  }
  /** Makes a new message ref. */
  /**
   * @internal The wait before acting on a server's retry hint: the hint
   * plus up to `hintJitter` of it, so that clients told the same hint do
   * not come back in lockstep.
   */
  hintDelay(hintMs) {
    const jitter = this.opts.hintJitter ?? DEFAULTS.hintJitter;
    const hint = Math.min(Math.max(0, hintMs), DEFAULTS.maxHintMs);
    return hint + Math.floor(this.random() * hint * jitter);
  }
  makeRef() {
    this.ref = this.ref >= Number.MAX_SAFE_INTEGER ? 1 : this.ref + 1;
    return String(this.ref);
  }
  /** @internal Sends a message now; it is dropped when the socket is not connected. Throws if it cannot be encoded. */
  send(msg) {
    const conn = this.conn;
    if (!this.isConnected() || !conn) return;
    this.log("push", `${msg.topic} ${msg.event} (${msg.join_ref}, ${msg.ref})`);
    this.encode(msg, (frame) => {
      if (this.conn === conn && this.isConnected()) conn.send(frame);
    });
  }
  /** @internal Leaves any other joined or joining channel of the topic. */
  leaveOpenTopic(topic, except) {
    const dup = this.channels.find((c) => c !== except && c.topic === topic && (c.state === "joined" || c.state === "joining"));
    if (dup) {
      this.log("channel", `leaving duplicate topic ${topic}`);
      dup.leave();
    }
  }
  /** @internal Stores a token the server handed over. */
  storeToken(payload) {
    if (payload === null || typeof payload !== "object") return;
    const { token, expires_at: exp } = payload;
    if (typeof token !== "string" || token === "") return;
    this.refreshed = { token, expiresAt: typeof exp === "number" && Number.isFinite(exp) ? exp * 1e3 : null };
    this.log("auth", "token refreshed");
    this.emit("token", { ...this.refreshed });
  }
  /** Logs through the logger, if any. */
  log(kind, msg, data) {
    if (this.logger) this.logger(kind, msg, data);
  }
  /** The number of connections that opened so far. */
  get establishedConnections() {
    return this.established;
  }
  /** The connect params when they are at hand without waiting. */
  syncParams() {
    const p = this.paramsOverride ?? this.opts.params;
    const v = typeof p === "function" ? p() : p;
    return v && !isThenable(v) ? v : {};
  }
  transportClass() {
    return this.transport ?? (this.fellBack ? LongPoll : globalThis.WebSocket);
  }
  hook(kind, callback) {
    const ref = this.makeRef();
    this.hooks[kind].push([ref, callback]);
    return ref;
  }
  emit(kind, ...args) {
    for (const [, cb] of this.hooks[kind].slice()) cb(...args);
  }
  /** The token for the next connect: the server's refreshed one while valid, else the app's. */
  currentToken() {
    const r = this.refreshed;
    this.usedRefreshed = false;
    if (r && (r.expiresAt === null || Date.now() < r.expiresAt - TOKEN_MARGIN_MS)) {
      this.usedRefreshed = true;
      return r.token;
    }
    this.refreshed = null;
    const t = this.opts.authToken;
    return typeof t === "function" ? t() : t;
  }
  /** Starts a connection attempt, reading params and token first. */
  open() {
    const gen = ++this.gen;
    this.opening = true;
    let params;
    let token;
    try {
      const p = this.paramsOverride ?? this.opts.params;
      params = typeof p === "function" ? p() : p ?? {};
      token = this.currentToken();
    } catch (err) {
      this.openFailed(gen, err);
      return;
    }
    if (isThenable(params) || isThenable(token)) {
      Promise.all([params, token]).then(
        ([p, t]) => {
          if (gen === this.gen) this.dial(gen, p, t);
        },
        (err) => this.openFailed(gen, err)
      );
      return;
    }
    this.dial(gen, params, token);
  }
  openFailed(gen, err) {
    if (gen !== this.gen) return;
    this.opening = false;
    if (isSignedOut(err)) {
      this.log("auth", "signed out");
      this.terminate(CLOSE.unauthorized, err.message || "signed out");
      return;
    }
    this.log("transport", "cannot connect: " + String(err));
    this.emit("error", err, this.transportClass(), this.established);
    if (this.wanted && !this.conn && !this.opening) this.scheduleReconnect(CLOSE.abnormal, "connect failed");
  }
  dial(gen, params, token) {
    const query = { ...params };
    const key = this.opts.tokenParam ?? "token";
    if (this.usedRefreshed && token && key in query) {
      query[key] = token;
    }
    let protocols;
    if (token) {
      if (this.opts.tokenParam) query[this.opts.tokenParam] = token;
      else protocols = ["phoenix", TOKEN_PROTOCOL_PREFIX + base64url(token)];
    }
    const Transport = this.transportClass();
    const Ctor = Transport;
    const canFall = !this.transport && !this.fellBack && !this.wsOpened && this.opts.longPollFallbackMs !== void 0;
    const fallBack = () => {
      if (gen !== this.gen || this.opened) return;
      this.log("transport", "WebSocket did not open: falling back to long-poll");
      this.fellBack = true;
      rememberFallback();
      this.gen++;
      detach(ws);
      ws.onclose = null;
      try {
        ws.close();
      } catch {
      }
      this.clearConn();
      this.dial(this.gen, params, token);
    };
    let ws;
    try {
      const url = this.endPointURL(query);
      ws = protocols ? new Ctor(url, protocols) : new Ctor(url);
    } catch (err) {
      if (canFall) {
        this.fellBack = true;
        rememberFallback();
        this.dial(gen, params, token);
        return;
      }
      this.openFailed(gen, err);
      return;
    }
    this.opening = false;
    this.conn = ws;
    ws.binaryType = this.binaryType;
    if (Transport === LongPoll) ws.timeout = this.timeout + 1e4;
    ws.onopen = () => {
      if (gen !== this.gen) return;
      if (Transport !== LongPoll) this.wsOpened = true;
      this.onConnOpen();
    };
    ws.onerror = (ev) => {
      if (gen !== this.gen) return;
      if (!this.opened && refusedUpgrade(ev)) this.refused = true;
      this.emit("error", ev, Transport, this.established);
    };
    ws.onmessage = (ev) => {
      if (gen === this.gen) this.onConnMessage(ev.data);
    };
    ws.onclose = (ev) => {
      if (gen !== this.gen) return;
      if (canFall && !this.opened) return fallBack();
      this.onConnClose(ev.code ?? CLOSE.abnormal, ev.reason ?? "", ev.wasClean ?? false);
    };
    this.openTimer = setTimeout(() => this.abort("connect timeout"), this.timeout);
    if (canFall) setTimeout(fallBack, this.opts.longPollFallbackMs);
  }
  onConnOpen() {
    clearTimeout(this.openTimer);
    this.opened = true;
    this.established++;
    this.preOpenFailures = 0;
    this.log("transport", "connected");
    this.stableTimer = setTimeout(() => {
      this.reconnectTimer.tries = 0;
    }, this.opts.stableAfterMs ?? DEFAULTS.stableAfterMs);
    this.resetHeartbeat();
    for (const ch of this.channels.slice()) ch.socketOpened();
    const buffered = this.sendBuffer;
    this.sendBuffer = [];
    for (const m of buffered) this.send(m);
    this.emit("open");
  }
  onConnMessage(data) {
    const gen = this.gen;
    let decoded = [];
    try {
      this.decode(data, (msg) => {
        if (decoded) decoded.push(msg);
        else if (gen === this.gen) this.route(msg);
      });
    } catch (err) {
      decoded = null;
      this.log("transport", "dropping undecodable frame: " + String(err));
      this.emit("error", err, this.transportClass(), this.established);
      return;
    }
    const msgs = decoded;
    decoded = null;
    for (const msg of msgs) if (gen === this.gen) this.route(msg);
  }
  route(msg) {
    if (msg.topic === SOCKET_TOPIC) {
      if (msg.ref !== null && msg.ref === this.pendingHeartbeatRef) this.resetHeartbeat();
      const ping = msg.ref !== null ? this.pings.get(msg.ref) : void 0;
      if (ping && msg.ref !== null) {
        this.pings.delete(msg.ref);
        ping();
      }
      if (msg.event === TOKEN_EVENT && this.hearth) this.storeToken(msg.payload);
    } else {
      for (const ch of this.channels.slice()) {
        if (ch.isMember(msg)) ch.trigger(msg);
      }
    }
    this.emit("message", msg);
  }
  onConnClose(code, reason, wasClean) {
    const opened = this.opened;
    const refused = this.refused;
    this.refused = false;
    this.clearConn();
    this.log("transport", `closed ${code} ${reason}`);
    for (const ch of this.channels.slice()) ch.socketClosed("connection closed");
    this.emit("close", { code, reason, wasClean });
    if (!this.wanted || this.conn || this.opening) return;
    if (this.usedRefreshed && !opened && !isTerminal(code)) this.preOpenFailures++;
    const refusedRefreshed = this.usedRefreshed && (isTerminal(code) && code !== CLOSE.revoked || refused || this.refreshed !== null && this.refreshed.expiresAt === null && this.preOpenFailures >= REFRESHED_MAX_FAILURES);
    if (refusedRefreshed) {
      this.log("transport", `refreshed token refused (${code})`);
      this.refreshed = null;
      this.usedRefreshed = false;
      this.preOpenFailures = 0;
      this.scheduleReconnect(code, reason);
      return;
    }
    if (isTerminal(code)) {
      this.terminate(code, reason);
      return;
    }
    this.scheduleReconnect(code, reason);
  }
  /** Stops for good after a terminal close: no reconnect, channels closed, pushes failed. */
  terminate(code, reason) {
    this.wanted = false;
    this.refreshed = null;
    this.usedRefreshed = false;
    this.reconnectTimer.reset();
    if (this.unlisten) this.unlisten();
    this.unlisten = null;
    this.log("transport", `terminal close ${code}`);
    for (const ch of this.channels.slice()) ch.socketTerminated(reason || `closed ${code}`);
    this.emit("terminal", code, reason);
  }
  scheduleReconnect(code, reason) {
    const hint = retryHint(code, reason);
    const delay = this.reconnectTimer.schedule(hint === null ? void 0 : this.hintDelay(hint));
    this.reconnectDueAt = Date.now() + delay;
    this.reconnectHinted = hint !== null;
    this.log("transport", `reconnecting in ${delay} ms`);
    this.emit("reconnect", { delay, tries: this.reconnectTimer.tries, code, reason, hinted: hint !== null });
  }
  reconnectNow() {
    if (!this.wanted || this.conn || this.opening) return;
    if (this.env && (this.env.hidden() || this.env.offline())) {
      this.waiting = true;
      this.log("transport", "hidden or offline: waiting");
      return;
    }
    this.open();
  }
  listen() {
    if (!this.env || this.unlisten) return;
    this.unlisten = this.env.listen((ev) => this.environmentChanged(ev));
  }
  environmentChanged(ev) {
    const env = this.env;
    if (!env) return;
    switch (ev) {
      case "visible":
      case "online": {
        if (ev === "online" && this.isConnected() && this.pendingHeartbeatRef === null) {
          clearTimeout(this.heartbeatTimer);
          this.sendHeartbeat();
          break;
        }
        if (!this.wanted || this.conn || this.opening || env.hidden() || env.offline()) break;
        const soon = Math.floor(this.random() * (this.opts.resumeJitterMs ?? DEFAULTS.resumeJitterMs));
        if (this.waiting || this.reconnectTimer.pending && !this.reconnectHinted && this.reconnectDueAt - Date.now() > soon) {
          this.waiting = false;
          this.reconnectTimer.start(soon);
        }
        break;
      }
      case "pagehide":
        if (this.wanted && this.opts.closeOnPageHide !== false) {
          this.wanted = false;
          this.waiting = false;
          this.suspended = true;
          this.reconnectTimer.cancel();
          this.closeConn(CLOSE.goingAway, "page hidden");
        }
        break;
      case "pageshow":
        if (this.suspended) this.connect();
        break;
    }
  }
  /** Closes the current connection on purpose, without reconnecting. */
  closeConn(code, reason, callback) {
    this.gen++;
    const ws = this.conn;
    this.clearConn();
    if (!ws) {
      if (callback) callback();
      return;
    }
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(fallback);
      if (callback) callback();
    };
    const fallback = setTimeout(finish, 1e3);
    detach(ws);
    ws.onclose = finish;
    try {
      ws.close(code, reason);
    } catch {
      ws.close();
    }
    for (const ch of this.channels.slice()) ch.socketClosed("disconnected");
    this.emit("close", { code, reason, wasClean: true });
  }
  /** Drops a connection presumed dead and reconnects. */
  abort(reason) {
    const ws = this.conn;
    if (!ws) return;
    this.gen++;
    this.log("transport", reason);
    detach(ws);
    ws.onclose = null;
    const terminate = ws.terminate;
    try {
      if (typeof terminate === "function") terminate.call(ws);
      else ws.close(CLOSE.normal, reason);
    } catch {
    }
    this.onConnClose(CLOSE.abnormal, reason, false);
  }
  clearConn() {
    clearTimeout(this.openTimer);
    clearTimeout(this.stableTimer);
    clearTimeout(this.heartbeatTimer);
    clearTimeout(this.heartbeatTimeoutTimer);
    this.pendingHeartbeatRef = null;
    this.pings.clear();
    this.conn = null;
    this.opened = false;
    this.opening = false;
  }
  resetHeartbeat() {
    clearTimeout(this.heartbeatTimer);
    clearTimeout(this.heartbeatTimeoutTimer);
    this.pendingHeartbeatRef = null;
    this.heartbeatTimer = setTimeout(() => this.sendHeartbeat(), this.heartbeatIntervalMs);
  }
  sendHeartbeat() {
    if (!this.isConnected()) return;
    this.pendingHeartbeatRef = this.makeRef();
    this.send({ join_ref: null, ref: this.pendingHeartbeatRef, topic: SOCKET_TOPIC, event: "heartbeat", payload: {} });
    this.heartbeatTimeoutTimer = setTimeout(() => this.abort("heartbeat timeout"), this.opts.heartbeatTimeoutMs ?? DEFAULTS.heartbeatTimeoutMs);
  }
};
var FALLBACK_KEY = "hearth:fallback:LongPoll";
function fallbackRemembered() {
  try {
    return globalThis.sessionStorage?.getItem(FALLBACK_KEY) === "true";
  } catch {
    return false;
  }
}
function rememberFallback() {
  try {
    globalThis.sessionStorage?.setItem(FALLBACK_KEY, "true");
  } catch {
  }
}
function detach(ws) {
  ws.onopen = ws.onmessage = null;
  ws.onerror = () => {
  };
}
var SignedOut = class extends Error {
  constructor(message = "signed out") {
    super(message);
    this.name = "SignedOut";
  }
};
function isSignedOut(err) {
  return err instanceof SignedOut || err instanceof Error && err.name === "SignedOut";
}
function refusedUpgrade(ev) {
  const e = ev;
  const msg = String((e && (e.message ?? (e.error && e.error.message))) ?? "");
  return /Unexpected server response: 4\d\d/.test(msg);
}
var REFRESHED_MAX_FAILURES = 3;
var TOKEN_MARGIN_MS = 1e3;
function isThenable(v) {
  return v !== null && typeof v === "object" && typeof v.then === "function";
}
function base64url(s) {
  const bytes = new TextEncoder().encode(s);
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function browserEnvironment() {
  const g = globalThis;
  const doc = g.document;
  if (!doc || typeof g.addEventListener !== "function") return null;
  return {
    hidden: () => doc.visibilityState === "hidden",
    offline: () => !!g.navigator && g.navigator.onLine === false,
    listen(onEvent) {
      const handlers = [
        [doc, "visibilitychange", () => {
          if (doc.visibilityState !== "hidden") onEvent("visible");
        }],
        [g, "online", () => onEvent("online")],
        [g, "pagehide", () => onEvent("pagehide")],
        [g, "pageshow", () => onEvent("pageshow")]
      ];
      for (const [t, name, fn] of handlers) t.addEventListener?.(name, fn);
      return () => {
        for (const [t, name, fn] of handlers) t.removeEventListener?.(name, fn);
      };
    }
  };
}

// js-client/src/presence.ts
var hasOwn = (o, k) => Object.prototype.hasOwnProperty.call(o, k);
function emptyState() {
  return /* @__PURE__ */ Object.create(null);
}
function copy(v) {
  return JSON.parse(JSON.stringify(v));
}
function keysOf(s) {
  return s ? Object.keys(s) : [];
}
function get(s, key) {
  return hasOwn(s, key) ? s[key] : void 0;
}
function shallow(s) {
  const out = emptyState();
  for (const k of keysOf(s)) out[k] = s[k];
  return out;
}
function syncDiff(state, diff, onJoin, onLeave) {
  const next = shallow(state);
  const joins = diff.joins ?? {};
  const leaves = diff.leaves ?? {};
  for (const key of keysOf(joins)) {
    const joined = copy(joins[key]);
    const current = get(next, key);
    const newRefs = new Set(joined.metas.map((m) => m.phx_ref));
    const kept = current ? current.metas.filter((m) => !newRefs.has(m.phx_ref)) : [];
    next[key] = { metas: [...kept, ...copy(joined.metas)] };
    onJoin?.(key, current, joined);
  }
  for (const key of keysOf(leaves)) {
    const current = get(next, key);
    if (!current) continue;
    const left = copy(leaves[key]);
    const gone = new Set(left.metas.map((m) => m.phx_ref));
    const remaining = { metas: current.metas.filter((m) => !gone.has(m.phx_ref)) };
    if (remaining.metas.length === 0) delete next[key];
    else next[key] = remaining;
    onLeave?.(key, remaining, left);
  }
  return next;
}
function syncState(state, newState, onJoin, onLeave) {
  const joins = emptyState();
  const leaves = emptyState();
  for (const key of keysOf(state)) {
    if (!hasOwn(newState, key)) leaves[key] = state[key];
  }
  for (const key of keysOf(newState)) {
    const incoming = newState[key];
    const current = get(state, key);
    if (!current) {
      joins[key] = incoming;
      continue;
    }
    const curRefs = new Set(current.metas.map((m) => m.phx_ref));
    const newRefs = new Set(incoming.metas.map((m) => m.phx_ref));
    const joined = incoming.metas.filter((m) => !curRefs.has(m.phx_ref));
    const left = current.metas.filter((m) => !newRefs.has(m.phx_ref));
    if (joined.length > 0) joins[key] = { metas: joined };
    if (left.length > 0) leaves[key] = { metas: left };
  }
  return syncDiff(state, { joins, leaves }, onJoin, onLeave);
}
function listPresences(state, by) {
  const pick = by ?? ((_key, p) => p);
  return keysOf(state).map((key) => pick(key, state[key]));
}
var Presence = class {
  constructor(channel, opts = {}) {
    this.channel = channel;
    /** The current state. Treat it as read-only. */
    this.state = emptyState();
    this.pending = [];
    this.syncedRef = null;
    this.joinCb = () => {
    };
    this.leaveCb = () => {
    };
    this.syncCb = () => {
    };
    this.events = opts.events ?? { state: "presence_state", diff: "presence_diff" };
    this.refs = [
      [this.events.state, channel.on(this.events.state, (s) => this.receiveState(s))],
      [this.events.diff, channel.on(this.events.diff, (d) => this.receiveDiff(d))]
    ];
  }
  /** Runs callback for each key with joining metas (see JoinCallback). */
  onJoin(callback) {
    this.joinCb = callback;
  }
  /** Runs callback for each key with leaving metas (see LeaveCallback). */
  onLeave(callback) {
    this.leaveCb = callback;
  }
  /** Runs callback after every state or diff was applied. */
  onSync(callback) {
    this.syncCb = callback;
  }
  /** Lists the keys present, each turned into a value by `by` (default: the entry). */
  list(by) {
    return listPresences(this.state, by);
  }
  /** Merges a full state into state (as phoenix.js's `Presence.syncState`); see the function syncState. */
  static syncState(state, newState, onJoin, onLeave) {
    return syncState(state, newState, onJoin, onLeave);
  }
  /** Applies a diff to state (as phoenix.js's `Presence.syncDiff`); see the function syncDiff. */
  static syncDiff(state, diff, onJoin, onLeave) {
    return syncDiff(state, diff, onJoin, onLeave);
  }
  /** Lists a state's keys (as phoenix.js's `Presence.list`); see listPresences. */
  static list(presences, chooser) {
    return listPresences(presences, chooser);
  }
  /** Stops following the channel. */
  destroy() {
    for (const [event, ref] of this.refs) this.channel.off(event, ref);
    this.pending = [];
  }
  /** Reports whether diffs are held until the current join's state arrives. */
  inPendingSyncState() {
    return this.syncedRef === null || this.syncedRef !== this.channel.joinRef();
  }
  receiveState(s) {
    this.syncedRef = this.channel.joinRef();
    this.state = syncState(this.state, s, this.joinCb, this.leaveCb);
    const held = this.pending;
    this.pending = [];
    for (const d of held) this.state = syncDiff(this.state, d, this.joinCb, this.leaveCb);
    this.syncCb();
  }
  receiveDiff(d) {
    if (this.inPendingSyncState()) {
      this.pending.push(d);
      return;
    }
    this.state = syncDiff(this.state, d, this.joinCb, this.leaveCb);
    this.syncCb();
  }
};
export {
  CLOSE,
  Channel,
  DEFAULTS,
  EVENTS,
  HEARTH_KEY,
  KIND,
  LongPoll,
  Presence,
  Push,
  RetryTimer,
  Serializer,
  SignedOut,
  Socket,
  VSN,
  backoff,
  base64url,
  browserEnvironment,
  isTerminal,
  listPresences,
  phoenixReconnectAfterMs,
  phoenixRejoinAfterMs,
  retryHint,
  syncDiff,
  syncState
};
//# sourceMappingURL=hearth.mjs.map
