// Package server is Hearth's WebSocket transport: it serves a
// [channels.Node] to Phoenix V2 clients (the Hearth client, the official
// phoenix npm package, Phoenix clients for other languages) on
// github.com/gobwas/ws.
//
// A [Server] is an [http.Handler]. Mount it where Phoenix clients expect
// it, "<endpoint>/websocket", on any router. With chi:
//
//	node := channels.New(channels.Options{Connect: authenticate, Logger: log})
//	node.Handle("room:*", roomHandler)
//
//	srv := server.New(node, server.Options{
//		Logger:         log,
//		AllowedOrigins: []string{"https://app.example.com"},
//	})
//	r := chi.NewRouter()
//	r.Handle("/socket/websocket", srv) // new Socket("/socket") in the browser
//	hs := &http.Server{Addr: ":4000", Handler: r, ReadHeaderTimeout: 10 * time.Second}
//	go hs.ListenAndServe()
//	...
//	r.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) {
//		if !srv.Ready() {
//			w.WriteHeader(http.StatusServiceUnavailable) // draining
//		}
//	})
//	...
//	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
//	defer cancel()
//	srv.Shutdown(ctx) // drain: close the sockets over DrainWindow (1012), wait
//	hs.Shutdown(ctx)
//
// # Handshake
//
// An upgrade request is answered, in this order:
//
//   - HTTP 503 once [Server.Shutdown] has begun.
//   - HTTP 403 when the query parameter vsn is neither 2.0.0 nor 1.0.0 (a
//     missing vsn means 1.0.0, Phoenix's V1 serializer, as Phoenix does; a
//     V1 connection is translated to V2 at its edge, text only).
//   - HTTP 405, 426 or 400 when it is not a WebSocket upgrade request.
//   - HTTP 403 when the Origin header is not allowed ([Options.AllowedOrigins];
//     by default only the request's own host; requests without Origin, from
//     non-browser clients, pass).
//   - HTTP 400 for a malformed auth token. Phoenix 1.8 clients send the
//     token as the subprotocol "base64url.bearer.phx.<token>" next to
//     "phoenix"; the server decodes it into [channels.ConnectEvent].Token,
//     removes it from the headers the connect hook sees, selects "phoenix",
//     and never logs it.
//   - HTTP 429 (or 403 after a terminal close) during a reconnect cooldown
//     (below).
//   - Admission control (below): over a limit, close 1013 after the
//     upgrade, or HTTP 503 with Retry-After; the connect hook does not run.
//   - The node's connect hook runs before the upgrade: an error refuses with
//     HTTP 403 and the error's text as the body; a *[channels.CloseError]
//     upgrades and then closes with its code and reason, which a browser
//     can read (it cannot read an HTTP status), for a client that announced
//     it reads Hearth's close codes; every other client gets 403, 429 or
//     503 before the upgrade (below).
//
// # Refusals every client backs off from
//
// Phoenix clients (phoenix.js, Swift, Kotlin, Dart) read no close codes,
// reconnect 10 ms after any close and reset their backoff on every
// successful upgrade: a refusal told after an upgrade is a reconnect loop
// for them. Only a client that sends the query parameter _hearth
// ([channels.ExtParam]; the Hearth client does) is upgraded to be told a
// refusal's close code; every other one gets an HTTP status before the
// upgrade, and its backoff climbs. Closes of an open connection caused by
// the client (4029, 1009, 4008, 1002, 1007) or terminal (4500-4999) start
// a reconnect cooldown ([Options.ReconnectCooldown]): the same client's
// reconnects are refused before the upgrade until it ends.
// docs/protocol.md has the table of every close and what follows it.
//
// # Connections
//
// On Linux an idle connection has no goroutine and no buffer: connections
// wait for input in an epoll instance (one-shot, re-armed after each
// read), and when one is readable a worker from a small elastic pool
// reads what it has without ever blocking, parses the frames
// incrementally and handles complete messages, so a client sending a
// frame one byte at a time holds nothing but the bytes of that frame.
// Idle, close-handshake and write deadlines are enforced by a periodic
// sweep instead of a timer per connection. Elsewhere, for TLS
// connections, and with [Options.BlockingReads], each connection has a
// reader goroutine instead; the behaviour is the same. See
// docs/performance.md.
//
// Only while there is something to write does a connection have a writer
// goroutine; the writer alone writes to the network, control frames
// included. Frames queued while a write is in progress go out together in
// one writev. The outgoing queue is bounded in bytes; sending never blocks
// the broadcaster, and queuing a broadcast frame allocates nothing.
//
// Inbound messages may be fragmented; pings are answered with pongs; text
// messages must be valid UTF-8. Every frame from the client restarts the
// idle timer.
//
// # Limits and close codes
//
//	code  reason                          when
//	1000+ (echoed)                        the client closed (its code is echoed)
//	1001  "idle timeout"                  nothing received for IdleTimeout (60 s)
//	1002  "protocol error: ..."           reserved bits or opcodes, unmasked or bad control frames
//	1007  "invalid UTF-8 in text message" text message that is not UTF-8
//	1007  "invalid compressed message"    permessage-deflate data that does not inflate
//	1007  "invalid message: ..."          not a Phoenix V2 message (what is wrong follows)
//	1009  "message too big"               message over MaxMessageSize (64 KiB)
//	1011  "internal error"                the channel layer failed unexpectedly
//	1012  "service restart retry_after_ms=<n>"  Shutdown: the drain
//	1013  "try again later retry_after_ms=<n>"  admission control refused it
//	4008  "slow consumer"                 outgoing queue over MaxQueueBytes (1 MiB)
//	4029  "rate limit exceeded"           over MessageRate (100/s, bursts of 200)
//	any   from the connect hook or        a *channels.CloseError, Node.Disconnect (4100),
//	      the application                 Socket.Close
//
// A write that cannot complete within WriteTimeout (10 s) drops the
// connection without a close frame. After the server sends a close frame
// it waits up to 3 s for the client's before closing the TCP connection,
// reading and discarding what arrives meanwhile, so that the client
// receives the close frame instead of a reset.
//
// # Compression
//
// With [Options.Compression] enabled (it is off by default) the server
// accepts permessage-deflate (RFC 7692) from clients that offer it, as every
// browser does, always without context takeover: no connection keeps a
// compression window, a broadcast is compressed once per node and the same
// bytes are queued on every compressing connection, and compressors and
// decompressors come from pools. Frames below [Compression].MinSize and
// control frames go out uncompressed. A compressed message from the client
// is bounded by MaxMessageSize once inflated: past it, inflation stops and
// the connection is closed with 1009. See [Compression] and
// docs/server.md.
//
// # Admission control
//
// New connections are admitted by token buckets on the node's rate
// ([Options.ConnectRate], 2,000 per second per core by default) and each
// client address's (a quarter of it), and up to [Options.MaxConnections]
// (the open-file limit less a tenth). The client address comes from
// X-Forwarded-For or X-Real-IP only when the peer is one of
// [Options.TrustedProxies]; it is also what the connect hook sees as
// [channels.ConnectEvent].RemoteAddr. A refused request costs no connect
// hook: a Hearth client (one that sent _hearth=1) is upgraded and closed
// with 1013 "try again later retry_after_ms=<n>", other clients get HTTP
// 503 with Retry-After. The hints are jittered over the time the node
// needs to take everyone it refused, so they do not come back together.
// [Server.Stats] counts what was shed, by reason.
//
// # Drain
//
// [Server.Shutdown] turns [Server.Ready] false (serve it as /readyz),
// refuses new upgrades with 503, and closes the open connections one by
// one spread over [Options.DrainWindow] (30 s) with 1012 "service restart
// retry_after_ms=<n>", hints spread so that the reconnects reach the other
// nodes at an even rate. A node with few connections finishes early
// ([Options.MinDrainRate]); a context deadline shorter than the window
// compresses the closes and stretches the hints. docs/operations.md covers
// deploys behind proxies and on Kubernetes.
//
// # Long-poll
//
// [NewLongPoll] serves the same node over Phoenix's long-poll transport
// (phoenix.js LongPoll) for clients whose WebSockets are blocked: a
// session is a socket like a connection, with the same connect hook,
// origin check, admission control, limits and drain. Its token is signed
// and names the node that holds the session; a request reaching another
// node is forwarded there through the broker, so no sticky sessions are
// needed. See docs/protocol.md for the wire.
//
// # Logging
//
// Every disconnect is logged at Debug level with the connection id, the
// socket id, the close code and reason and who closed; slow consumers and
// failed writes at Warn, rate-limited clients at Info, failures of the
// channel layer at Error. Payloads and tokens are never logged.
package server
