package server

import (
	"bytes"
	"context"
	"crypto/hmac"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
	"github.com/hearth-rt/hearth/pubsub"
)

// LongPollOptions configures a [LongPoll] handler. The zero value works on
// a single node; a cluster needs the same Secret on every node.
type LongPollOptions struct {
	// Secret signs session tokens (HMAC-SHA256). A token names the node
	// that holds its session, and a request carrying it that reaches
	// another node is forwarded there through the broker; every node of a
	// cluster must have the same Secret. Empty means a random secret of
	// this process: the node then answers 410 to tokens it did not issue.
	Secret []byte
	// PollTimeout is how long a poll waits for messages before it is
	// answered with status 204. It must stay under the client's request
	// timeout (phoenix.js longpollerTimeout: 20 s). Zero means 10 s.
	PollTimeout time.Duration
	// SessionTimeout ends a session that has no poll in flight for that
	// long: its channels leave. Zero means 10 s, as Phoenix.
	SessionTimeout time.Duration
	// ForwardTimeout is how long a node waits for the owner of a session to
	// acknowledge a forwarded request before it answers 410 (the owner is
	// gone: the client opens a new session and rejoins). Zero means 2 s.
	ForwardTimeout time.Duration
}

// lpMaxBatch is the most messages one POST may carry, as Phoenix.
const lpMaxBatch = 100

// LongPoll serves Phoenix's long-poll transport (phoenix.js LongPoll) for
// the node of a [Server]: mount it at "<endpoint>/longpoll" next to the
// Server at "<endpoint>/websocket". A long-poll session is a
// [channels.Socket] like a WebSocket connection, with the same connect
// hook, channels, limits, admission control and drain. Create it with
// [NewLongPoll] before the node serves.
//
// The wire (see docs/protocol.md): every answer is a JSON object with HTTP
// status 200 (503 while shutting down), its "status" saying what happened.
//
//	GET  without a token   opens a session: {"status":410,"token":"..."}, or 403 refused
//	GET  ?token=...        {"status":200,"messages":[...]} / {"status":204} after PollTimeout /
//	                       {"status":410} the session is gone
//	POST ?token=...        an application/x-ndjson batch of frames: {"status":200} once handled in order
//
// The token travels in the query or in the X-Phoenix-LongPoll-Token header.
type LongPoll struct {
	srv  *Server
	node *channels.Node
	opts LongPollOptions

	mu       sync.Mutex // guards sessions, closed
	sessions map[string]*lpSession
	closed   bool
	live     atomic.Int64 // sessions whose socket has not ended

	fwd forwarder // longpoll_forward.go
}

// NewLongPoll returns the long-poll handler of s. It registers a control
// message type with the node, so it must be called before the node serves
// its first socket, at most once per node.
func NewLongPoll(s *Server, opts LongPollOptions) *LongPoll {
	if opts.PollTimeout <= 0 {
		opts.PollTimeout = 10 * time.Second
	}
	if opts.SessionTimeout <= 0 {
		opts.SessionTimeout = 10 * time.Second
	}
	if opts.ForwardTimeout <= 0 {
		opts.ForwardTimeout = 2 * time.Second
	}
	if len(opts.Secret) == 0 {
		opts.Secret = make([]byte, 32)
		_, _ = crand.Read(opts.Secret)
	}
	lp := &LongPoll{srv: s, node: s.node, opts: opts, sessions: make(map[string]*lpSession)}
	lp.fwd.init(lp)
	s.node.HandleControl(controlLongPoll, lp.fwd.handle)
	s.lpmu.Lock()
	s.lps = append(s.lps, lp)
	s.lpmu.Unlock()
	return lp
}

// Sessions returns how many long-poll sessions this node holds open: their
// sockets have not ended (a session closed by the server is kept a little
// longer, until its client's next poll reads the close, without counting).
// [Server.Connections] counts them with the WebSocket connections.
func (lp *LongPoll) Sessions() int {
	return int(lp.live.Load())
}

// Answers. Each is a complete response body.
var (
	lpGone      = []byte(`{"status":410}`)
	lpForbidden = []byte(`{"status":403}`)
	lpNoContent = []byte(`{"status":204}`)
	lpOK        = []byte(`{"status":200}`)
	lpError     = []byte(`{"status":500}`)
)

// closeAnswer is an answer with the close code and reason a WebSocket
// would have got: Phoenix clients ignore "close", the Hearth client reads
// it (terminal codes, reconnect hints).
func closeAnswer(status, code int, reason string) []byte {
	b := append([]byte(`{"status":`), strconv.Itoa(status)...)
	b = append(b, `,"close":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"reason":`...)
	b = wire.AppendString(b, reason)
	return append(b, "}}"...)
}

// ServeHTTP implements the long-poll transport.
func (lp *LongPoll) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := lp.srv
	// Requests keep coming for a session during the drain (each poll is a
	// request): they are served until the drain has told every session
	// to go. New sessions are refused from the start (open).
	if !s.enterLongPoll() {
		s.stats.shed[shedShutdown].Add(1)
		writeAnswer(w, http.StatusServiceUnavailable, lpError)
		return
	}
	defer s.wg.Done()
	if !s.checkOrigin(r) {
		writeAnswer(w, http.StatusForbidden, lpForbidden)
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		w.Header().Set("Access-Control-Allow-Origin", o)
		w.Header().Set("Vary", "Origin")
	}
	v1, ok := lpVersion(r.URL.Query().Get("vsn"))
	if !ok {
		writeAnswer(w, http.StatusForbidden, lpForbidden)
		return
	}
	token := r.Header.Get("X-Phoenix-LongPoll-Token")
	if token == "" {
		token = r.URL.Query().Get("token")
	}
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Access-Control-Allow-Headers", r.Header.Get("Access-Control-Request-Headers"))
		w.Header().Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		w.Header().Set("Access-Control-Max-Age", "3600")
		writeAnswer(w, http.StatusOK, lpOK)
		return
	case http.MethodGet:
		if token == "" {
			lp.open(w, r, v1)
			return
		}
	case http.MethodPost:
		if token == "" {
			writeAnswer(w, http.StatusOK, lpGone)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		http.Error(w, "server: long-poll takes GET and POST", http.StatusMethodNotAllowed)
		return
	}
	owner, sid, ok := lp.verify(token)
	if !ok {
		writeAnswer(w, http.StatusOK, lpGone)
		return
	}
	req := lpRequest{Method: r.Method, SID: sid, ContentType: r.Header.Get("Content-Type")}
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, lp.maxBody()))
		if err != nil {
			http.Error(w, "server: long-poll batch too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		req.Body = body
	}
	var answer []byte
	if owner == lp.node.ID() {
		answer = lp.serveLocal(r.Context(), &req)
	} else if _, single := lp.node.Broker().(*pubsub.Memory); single {
		answer = lpGone // no other node to ask: a session of a previous run
	} else {
		answer = lp.fwd.forward(r.Context(), owner, &req)
	}
	if r.Method == http.MethodGet {
		// phoenix.js takes the token of every poll answer as its own, as
		// Phoenix sends it each time.
		answer = withToken(answer, token)
	}
	writeAnswer(w, http.StatusOK, answer)
}

// withToken adds "token" to an answer.
func withToken(answer []byte, token string) []byte {
	b := make([]byte, 0, len(answer)+len(token)+12)
	b = append(b, `{"token":`...)
	b = wire.AppendString(b, token)
	b = append(b, ',')
	return append(b, answer[1:]...)
}

// lpVersion maps vsn to the serializer: 2.0.0, or 1.0.0 (also when vsn is
// missing, as Phoenix).
func lpVersion(vsn string) (v1, ok bool) {
	switch vsn {
	case Vsn:
		return false, true
	case VsnV1, "":
		return true, true
	}
	return false, false
}

func writeAnswer(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// maxBody bounds a POST: a full batch of the largest messages, base64.
func (lp *LongPoll) maxBody() int64 {
	return min(lpMaxBatch*(lp.srv.opts.MaxMessageSize*4/3+8), 16<<20)
}

// lpRequest is a poll or a batch for a session, served here or forwarded
// to the session's node.
type lpRequest struct {
	Method      string `json:"m"`
	SID         string `json:"s"`
	ContentType string `json:"c,omitempty"`
	Body        []byte `json:"-"`
}

// serveLocal answers a request for a session of this node.
func (lp *LongPoll) serveLocal(ctx context.Context, req *lpRequest) []byte {
	lp.mu.Lock()
	ss := lp.sessions[req.SID]
	lp.mu.Unlock()
	if ss == nil {
		return lpGone
	}
	if req.Method == http.MethodGet {
		return ss.poll(ctx)
	}
	return ss.post(req.ContentType, req.Body)
}

// Tokens: base64url(node "." sid) "." base64url(HMAC-SHA256).

func (lp *LongPoll) sign(sid string) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(lp.node.ID() + "." + sid))
	mac := hmac.New(sha256.New, lp.opts.Secret)
	mac.Write([]byte(payload))
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (lp *LongPoll) verify(token string) (node, sid string, ok bool) {
	payload, sig, found := strings.Cut(token, ".")
	if !found || len(token) > 512 {
		return "", "", false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return "", "", false
	}
	mac := hmac.New(sha256.New, lp.opts.Secret)
	mac.Write([]byte(payload))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return "", "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", "", false
	}
	i := bytes.LastIndexByte(raw, '.')
	if i < 0 {
		return "", "", false
	}
	return string(raw[:i]), string(raw[i+1:]), true
}

// open runs the connect hook and opens a session.
func (lp *LongPoll) open(w http.ResponseWriter, r *http.Request, v1 bool) {
	s := lp.srv
	if s.stopping.Load() {
		s.stats.shed[shedShutdown].Add(1)
		writeAnswer(w, http.StatusServiceUnavailable, lpError)
		return
	}
	coolKey := s.trackedLongPollKey(r)
	if s.refuseLongPollCoolingDown(w, r, coolKey) {
		return
	}
	remote, why, hint, ok := s.admitLongPoll(r)
	if !ok {
		s.stats.shed[why].Add(1)
		s.logShedding(why)
		ms := hint.Milliseconds()
		w.Header().Set("Retry-After", strconv.FormatInt(max((ms+999)/1000, 1), 10))
		writeAnswer(w, http.StatusServiceUnavailable,
			closeAnswer(500, channels.CloseTryAgainLater, "try again later retry_after_ms="+strconv.FormatInt(ms, 10)))
		return
	}
	params := r.URL.Query()
	params.Del("token")
	header := r.Header
	token := header.Get("X-Phoenix-AuthToken")
	if token != "" {
		header = header.Clone()
		header.Del("X-Phoenix-AuthToken") // kept out of what an application may log
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.HandshakeTimeout)
	sock, err := lp.node.NewSocket(ctx, channels.ConnectEvent{
		Params: params, Token: token, Header: header, RemoteAddr: remote,
	})
	cancel()
	if err != nil {
		s.adm.release()
		var ce *channels.CloseError
		if errors.As(err, &ce) {
			status := 500 // phoenix.js retries
			if channels.Terminal(ce.Code) || ce.Code == channels.ClosePolicyViolation {
				status = 403 // phoenix.js stops
			}
			writeAnswer(w, http.StatusOK, closeAnswer(status, ce.Code, wire.CloseReason(ce.Reason)))
			return
		}
		s.log.Debug("long-poll session refused by the connect hook", "remote", r.RemoteAddr, "err", err)
		writeAnswer(w, http.StatusOK, lpForbidden)
		return
	}
	var id [16]byte
	_, _ = crand.Read(id[:])
	ss := &lpSession{lp: lp, sid: hex.EncodeToString(id[:]), sock: sock, v1: v1, coolKey: coolKey}
	ss.lim.tokens = float64(s.opts.MessageBurst)
	lp.mu.Lock()
	if lp.closed {
		lp.mu.Unlock()
		s.adm.release()
		sock.Closed()
		writeAnswer(w, http.StatusServiceUnavailable, lpError)
		return
	}
	// The expiry timer exists (stopped) before anyone can see the
	// session, and runs only once the socket has started: an early expiry
	// must not tell a socket Closed before Start.
	ss.expiry = time.AfterFunc(time.Hour, ss.expire)
	ss.expiry.Stop()
	lp.sessions[ss.sid] = ss
	lp.live.Add(1)
	lp.mu.Unlock()
	s.stats.accepted.Add(1)
	sock.Start(ss)
	ss.expiry.Reset(lp.opts.SessionTimeout)
	b := append([]byte(`{"status":410,"token":`), wire.AppendString(nil, lp.sign(ss.sid))...)
	writeAnswer(w, http.StatusOK, append(b, `,"messages":[]}`...))
}

// trackedLongPollKey is trackedKey (upgrade.go) for a request opening a
// long-poll session: the client is recognized by its address, its query
// and the X-Phoenix-AuthToken header, where phoenix.js sends its token
// over long-poll; 0 for a client that reads close codes.
func (s *Server) trackedLongPollKey(r *http.Request) uint64 {
	if readsCloseCodes(r) {
		return 0
	}
	if s.opts.ReconnectCooldown <= 0 {
		return 1 // nothing is remembered
	}
	return s.cooldownKeyFor(r, "X-Phoenix-Authtoken")
}

// refuseLongPollCoolingDown refuses to open a session for a client whose
// previous session or connection with the same credentials was closed for
// what it did, while its cooldown lasts (refuse.go): HTTP 429 with
// Retry-After, or 403 after a terminal close, and a status phoenix.js
// backs off from without an open: 500 (it retries on its schedule, which
// no open resets) or 403 (terminal). It reports whether it answered.
func (s *Server) refuseLongPollCoolingDown(w http.ResponseWriter, r *http.Request, key uint64) bool {
	e, left, ok := s.coolingDown(key)
	if !ok {
		return false
	}
	s.log.Debug("long-poll session refused: cooling down", "remote", r.RemoteAddr, "code", e.code, "retry_after", left)
	reason := e.reason + ": reconnecting too soon"
	if channels.Terminal(e.code) {
		writeAnswer(w, http.StatusForbidden, closeAnswer(403, e.code, reason))
		return true
	}
	w.Header().Set("Retry-After", strconv.FormatInt(max(int64((left+time.Second-1)/time.Second), 1), 10))
	writeAnswer(w, http.StatusTooManyRequests, closeAnswer(500, channels.CloseRateLimited, reason))
	return true
}

// admitLongPoll applies admission control to a new session as to an
// upgrade (see Server.admit), returning why and the hint when it sheds.
func (s *Server) admitLongPoll(r *http.Request) (remote string, why shedReason, hint time.Duration, ok bool) {
	a := &s.adm
	ip, fromHeader, valid := a.clientAddr(r)
	if !a.reserve() {
		return "", shedMaxConns, a.fullHint(time.Now()), false
	}
	now := time.Now()
	if ok, hint := a.allowIP(ip, now); !ok {
		a.release()
		s.warnUntrustedProxy(r)
		return "", shedIPRate, hint, false
	}
	if ok, hint := a.allowNode(now); !ok {
		a.release()
		return "", shedNodeRate, hint, false
	}
	remote = r.RemoteAddr
	if fromHeader && valid {
		remote = ip.String()
	}
	return remote, 0, 0, true
}

// closeForShutdown refuses new sessions from now on and returns the open
// ones, for the drain to close (Server.Shutdown).
func (lp *LongPoll) closeForShutdown() []*lpSession {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	lp.closed = true
	return lp.openSessions()
}

// openSessions returns the sessions whose socket has not ended. lp.mu
// must be held.
func (lp *LongPoll) openSessions() []*lpSession {
	list := make([]*lpSession, 0, len(lp.sessions))
	for _, ss := range lp.sessions {
		ss.mu.Lock()
		closed := ss.closed
		ss.mu.Unlock()
		if !closed {
			list = append(list, ss)
		}
	}
	return list
}

// lpSession is a long-poll socket: a channels.Transport whose frames wait
// in a queue for the client's next poll.
type lpSession struct {
	lp      *LongPoll
	sid     string
	sock    *channels.Socket
	v1      bool
	expiry  *time.Timer
	coolKey uint64 // the client's reconnect cooldown key, 0 if not tracked (refuse.go)

	inMu sync.Mutex // serializes batches: messages are handled in order
	lim  limiter    // inbound message rate (inMu)

	mu      sync.Mutex // guards the fields below
	queue   [][]byte   // JSON strings, ready to join into "messages"
	qbytes  int
	wake    chan struct{} // closed when a waiting poll should look again
	gen     uint64        // polls started: a newer poll supersedes a waiting one
	polling bool
	closed  bool // Close was called: no more frames; ends once the queue is taken
	code    int
	reason  string
	ended   bool // the socket was told Closed
}

// Send implements channels.Transport.
func (ss *lpSession) Send(frame []byte) bool {
	op, p, ok := wire.FramePayload(frame)
	if !ok {
		return false
	}
	var msg []byte
	switch op {
	case wire.OpText:
		if ss.v1 {
			v, err := wire.AppendV1(nil, p)
			if err != nil {
				return false
			}
			p = v
		}
		msg = appendJSONBytes(make([]byte, 0, len(p)+len(p)/8+2), p)
	case wire.OpBinary:
		if ss.v1 {
			return true // V1 is text only, as Phoenix's: binary frames are not for it
		}
		msg = make([]byte, 0, base64.StdEncoding.EncodedLen(len(p))+2)
		msg = append(msg, '"')
		msg = base64.StdEncoding.AppendEncode(msg, p)
		msg = append(msg, '"')
	default:
		return false
	}
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return false
	}
	if ss.qbytes+len(msg) > ss.lp.srv.opts.MaxQueueBytes {
		ss.mu.Unlock()
		ss.lp.srv.log.Info("closing long-poll session: slow consumer", "conn", ss.sock.ConnID())
		ss.Close(channels.CloseSlowConsumer, "slow consumer")
		return false
	}
	ss.queue = append(ss.queue, msg)
	ss.qbytes += len(msg)
	ss.signal()
	ss.mu.Unlock()
	return true
}

// appendJSONBytes appends p as a JSON string.
func appendJSONBytes(dst, p []byte) []byte {
	return wire.AppendString(dst, string(p))
}

// signal wakes a waiting poll. ss.mu must be held.
func (ss *lpSession) signal() {
	if ss.wake != nil {
		close(ss.wake)
		ss.wake = nil
	}
}

// Close implements channels.Transport: what is queued is still delivered
// to the next poll, which is then answered 410 with the code and reason.
func (ss *lpSession) Close(code int, reason string) {
	ss.mu.Lock()
	if ss.closed {
		ss.mu.Unlock()
		return
	}
	// A close for what the client did holds its next sessions off, as
	// for a WebSocket (refuse.go): phoenix.js would open a new session
	// 10 ms later, its backoff reset by the open. Recorded before a poll
	// can see the close, so that the client cannot open its next session
	// first (cool's lock is a leaf).
	if ss.coolKey != 0 {
		if d := ss.lp.srv.cooldownFor(code); d > 0 {
			ss.lp.srv.cool.add(ss.coolKey, code, reason, d, time.Now())
		}
	}
	ss.closed, ss.code, ss.reason = true, code, reason
	ss.signal()
	idle := !ss.polling && len(ss.queue) == 0
	ss.mu.Unlock()
	// Close may be called from inside a handler of the socket (a push
	// over the queue limit), whose lock Closed needs.
	go ss.end()
	if idle {
		// Kept until the client's next poll reads the close, or the
		// session timeout.
		ss.expiry.Reset(ss.lp.opts.SessionTimeout)
	}
}

// end tells the socket it is closed (its channels leave) and gives back
// the admission slot, once.
func (ss *lpSession) end() {
	ss.mu.Lock()
	if ss.ended {
		ss.mu.Unlock()
		return
	}
	ss.ended = true
	ss.mu.Unlock()
	ss.lp.live.Add(-1)
	ss.sock.Closed()
	ss.lp.srv.adm.release()
}

// remove forgets the session.
func (ss *lpSession) remove() {
	ss.lp.mu.Lock()
	if ss.lp.sessions[ss.sid] == ss {
		delete(ss.lp.sessions, ss.sid)
	}
	ss.lp.mu.Unlock()
	ss.expiry.Stop()
}

// expire ends a session that no poll came for.
func (ss *lpSession) expire() {
	ss.mu.Lock()
	if ss.polling {
		ss.mu.Unlock()
		return
	}
	if !ss.closed {
		ss.closed, ss.code, ss.reason = true, channels.CloseGoingAway, "session expired"
	}
	ss.mu.Unlock()
	ss.lp.srv.log.Debug("long-poll session expired", "conn", ss.sock.ConnID())
	ss.remove()
	ss.end()
}

// poll waits for messages up to the poll timeout.
func (ss *lpSession) poll(ctx context.Context) []byte {
	ss.expiry.Stop()
	ss.mu.Lock()
	ss.gen++
	gen := ss.gen
	ss.polling = true
	ss.signal() // a poll still waiting is superseded
	if len(ss.queue) == 0 && !ss.closed {
		ch := make(chan struct{})
		ss.wake = ch
		ss.mu.Unlock()
		t := time.NewTimer(ss.lp.opts.PollTimeout)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		ss.mu.Lock()
		if ss.gen != gen {
			ss.mu.Unlock()
			return lpNoContent
		}
	}
	ss.polling = false
	defer ss.expiry.Reset(ss.lp.opts.SessionTimeout)
	if len(ss.queue) > 0 {
		q := ss.queue
		ss.queue, ss.qbytes = nil, 0
		ss.mu.Unlock()
		return messagesAnswer(q)
	}
	if ss.closed {
		code, reason := ss.code, ss.reason
		ss.mu.Unlock()
		ss.remove()
		ss.end()
		return closeAnswer(410, code, reason)
	}
	ss.mu.Unlock()
	return lpNoContent
}

func messagesAnswer(q [][]byte) []byte {
	n := 32
	for _, m := range q {
		n += len(m) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"status":200,"messages":[`...)
	for i, m := range q {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, m...)
	}
	return append(b, "]}"...)
}

// post handles a batch of messages in order.
func (ss *lpSession) post(contentType string, body []byte) []byte {
	ss.inMu.Lock()
	defer ss.inMu.Unlock()
	var lines [][]byte
	if strings.HasPrefix(contentType, "application/x-ndjson") {
		for len(body) > 0 && len(lines) < lpMaxBatch {
			var line []byte
			line, body, _ = bytes.Cut(body, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) > 0 {
				lines = append(lines, line)
			}
		}
	} else if len(body) > 0 {
		lines = [][]byte{body}
	}
	srv := ss.lp.srv
	for _, line := range lines {
		ss.mu.Lock()
		closed := ss.closed
		ss.mu.Unlock()
		if closed {
			return lpGone
		}
		if o := &srv.opts; o.MessageRate > 0 && !ss.lim.allow(o.MessageRate, o.MessageBurst) {
			ss.Close(channels.CloseRateLimited, "rate limit exceeded")
			return closeAnswer(429, channels.CloseRateLimited, "rate limit exceeded")
		}
		data, binary, err := ss.decodeLine(line)
		if err == nil && int64(len(data)) > srv.opts.MaxMessageSize {
			ss.Close(channels.CloseTooBig, "message too big")
			return closeAnswer(413, channels.CloseTooBig, "message too big")
		}
		if err == nil {
			err = ss.sock.HandleMessage(data, binary)
		}
		if err != nil {
			code, reason := channels.CloseCode(err)
			ss.Close(code, reason)
			return closeAnswer(400, code, reason)
		}
	}
	return lpOK
}

// decodeLine turns one line of a batch into a V2 message: a JSON text
// message ("[" for V2, "{" for V1), else a base64 binary one.
func (ss *lpSession) decodeLine(line []byte) ([]byte, bool, error) {
	switch {
	case ss.v1:
		if !utf8.Valid(line) {
			return nil, false, &wire.DecodeError{Reason: "invalid UTF-8 in text message"}
		}
		m, err := wire.DecodeV1(line)
		if err != nil {
			return nil, false, err
		}
		return wire.AppendV2(nil, &m), false, nil
	case line[0] == '[':
		if !utf8.Valid(line) {
			return nil, false, &wire.DecodeError{Reason: "invalid UTF-8 in text message"}
		}
		return line, false, nil
	default:
		b, err := base64.StdEncoding.DecodeString(string(line))
		if err != nil {
			return nil, false, &wire.DecodeError{Reason: "binary message is not valid base64"}
		}
		return b, true, nil
	}
}

// longPollSessions returns the long-poll sessions the drain closes, and
// refuses new ones from now on (Shutdown).
func (s *Server) longPollSessions() []*lpSession {
	s.lpmu.Lock()
	lps := s.lps
	s.lpmu.Unlock()
	var list []*lpSession
	for _, lp := range lps {
		list = append(list, lp.closeForShutdown()...)
	}
	return list
}

// openLongPollSessions returns the open long-poll sessions (Evacuate).
func (s *Server) openLongPollSessions() []*lpSession {
	s.lpmu.Lock()
	lps := s.lps
	s.lpmu.Unlock()
	var list []*lpSession
	for _, lp := range lps {
		lp.mu.Lock()
		list = append(list, lp.openSessions()...)
		lp.mu.Unlock()
	}
	return list
}

// liveLongPollSessions counts the open long-poll sessions.
func (s *Server) liveLongPollSessions() int {
	s.lpmu.Lock()
	defer s.lpmu.Unlock()
	n := 0
	for _, lp := range s.lps {
		n += lp.Sessions()
	}
	return n
}

// stopLongPollForwarding stops answering requests forwarded from other
// nodes, once the drain has told every session to go (Shutdown).
func (s *Server) stopLongPollForwarding() {
	s.lpmu.Lock()
	lps := s.lps
	s.lpmu.Unlock()
	for _, lp := range lps {
		lp.fwd.stop()
	}
}

// enterLongPoll registers a long-poll request with the WaitGroup unless
// the drain is over: sessions are still polled while the drain spreads
// their closes.
func (s *Server) enterLongPoll() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lpDone {
		return false
	}
	s.wg.Add(1)
	return true
}
