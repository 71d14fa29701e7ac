package channels

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// ConnectEvent describes a client that wants to open a socket. It is given
// to [Options.Connect] before the WebSocket upgrade.
type ConnectEvent struct {
	// Params are the query parameters of the socket URL (vsn included).
	Params url.Values
	// Token is the Phoenix 1.8 auth token sent in Sec-WebSocket-Protocol
	// as "base64url.bearer.phx.<token>", decoded; empty when absent.
	Token string
	// Header holds the request headers, cookies included.
	Header http.Header
	// RemoteAddr is the client's address as the server sees it.
	RemoteAddr string
}

// Cookie returns the named cookie of the upgrade request, or nil.
func (e *ConnectEvent) Cookie(name string) *http.Cookie {
	r := http.Request{Header: e.Header}
	c, err := r.Cookie(name)
	if err != nil {
		return nil
	}
	return c
}

// ConnectReply accepts a socket.
type ConnectReply struct {
	// ID identifies the socket's user or session, so that all of its
	// sockets can be disconnected at once ([Node.Disconnect]). Empty means
	// anonymous.
	ID string
	// Assigns is the application's per-socket state, read by handlers with
	// [Socket.Assigns]. It should be treated as read-only after connect.
	Assigns any
	// ExpiresAt is when the socket's credentials (its token) expire. With
	// Options.Refresh set, fresh tokens are pushed before then. Zero means
	// they do not expire.
	ExpiresAt time.Time
}

// ConnectFunc decides whether a socket may connect. Returning an error
// refuses it: before the upgrade with HTTP 403, or, when the error is a
// *CloseError, after the upgrade with that close code and reason, which a
// browser can read (use this for terminal answers such as an expired token).
type ConnectFunc func(ctx context.Context, ev ConnectEvent) (ConnectReply, error)

// JoinEvent is a client's request to join a topic.
type JoinEvent struct {
	// Topic is the full topic, e.g. "room:42".
	Topic string
	// Params is the join payload (a JSON value; "{}" when the client sent
	// none). Hearth's own reserved key is removed.
	Params json.RawMessage
}

// JoinReply accepts a join.
type JoinReply struct {
	// Response is sent to the client in the ok reply. nil means {}.
	// See [Channel.Push] for how values are encoded.
	Response any
}

// InEvent is a message pushed by the client on a joined channel.
type InEvent struct {
	Event string
	// Ref is the push's reference. Keep it to answer later with
	// [Channel.Reply] after returning [NoReply].
	Ref string
	// Payload is a JSON value, or raw bytes when Binary is true. It belongs
	// to the handler and may be retained.
	Payload []byte
	Binary  bool
}

// Decode unmarshals a JSON payload into v.
func (e *InEvent) Decode(v any) error {
	if e.Binary {
		return errors.New("channels: payload is binary")
	}
	return json.Unmarshal(e.Payload, v)
}

// OutEvent is a broadcast on its way to one subscriber whose handler
// intercepts the event. The handler forwards it with [Channel.Push] (as is
// or changed) or drops it by doing nothing.
type OutEvent struct {
	Event string
	// Payload is shared with every other subscriber: do not modify it.
	Payload []byte
	Binary  bool
}

// Reply answers a client push. The zero value sends no reply.
type Reply struct {
	// Status is "ok" or "error"; empty means no reply.
	Status string
	// Response is the reply's response. See [Channel.Push] for encoding.
	Response any
}

// NoReply sends no reply to a push (the client's push times out unless the
// handler answers later with [Channel.Reply]).
var NoReply = Reply{}

// OK returns an ok reply with the given response.
func OK(response any) Reply { return Reply{Status: "ok", Response: response} }

// ErrorReply returns an error reply with the given response.
func ErrorReply(response any) Reply { return Reply{Status: "error", Response: response} }

// Handler defines a channel: what happens when clients join a topic that
// matches its pattern, push to it, or receive broadcasts on it. Only Join is
// required: [Node.Handle] panics without it.
//
// # Concurrency
//
// The handler functions of one socket never run concurrently: messages from
// the client are handled one at a time in the order they arrive, and
// intercepted broadcasts in the order they were published. Different sockets
// run in parallel. A handler that panics crashes only its channel: the
// client receives phx_error (and rejoins), Terminate runs, the server and
// every other channel go on.
type Handler struct {
	// Join authorizes a join, and is required: [Node.Handle] panics
	// without it, since a channel that anyone may join has to say so
	// (return JoinReply{}, nil). Return a JoinReply to accept; return
	// [Refuse] (or any *ReplyError) to refuse with a response. Any other
	// error refuses with {"reason":"join crashed"} and is logged.
	Join func(ctx context.Context, c *Channel, ev JoinEvent) (JoinReply, error)

	// In handles a client push. The returned Reply is sent unless it is
	// NoReply. Returning a *ReplyError sends an error reply; [ErrStop]
	// closes the channel normally (the client receives phx_close); any
	// other error crashes the channel (phx_error). nil means every push
	// gets the error reply {"reason":"unhandled event"}.
	In func(ctx context.Context, c *Channel, ev InEvent) (Reply, error)

	// Intercept lists the broadcast events that go through Out for each
	// subscriber instead of being written to all of them at once.
	Intercept []string
	// Out filters or rewrites an intercepted broadcast for one subscriber.
	Out func(ctx context.Context, c *Channel, ev OutEvent) error

	// Events declares typed events ([HandleIn], [Emits]): the client
	// pushes they name are decoded strictly and handled by their
	// functions (In gets the others), and [Node.Events] lists them all for
	// `hearth gen types`, which writes the matching TypeScript types.
	Events []Event

	// Terminate runs once when the channel ends: the client left (reason
	// [ErrLeft]), the socket closed ([ErrSocketClosed]), the channel was
	// replaced by a new join ([ErrRejoined]), stopped ([ErrStop]) or
	// crashed (a *PanicError or the handler's error).
	Terminate func(c *Channel, reason error)
}

// ReplyError is an error that carries the response of an error reply.
type ReplyError struct {
	Response any
}

func (e *ReplyError) Error() string {
	b, _ := json.Marshal(e.Response)
	return "channels: error reply " + string(b)
}

// Refuse returns a *ReplyError whose response is {"reason": reason}, the
// conventional way to refuse a join or a push.
func Refuse(reason string) error {
	return &ReplyError{Response: map[string]string{"reason": reason}}
}

// CloseError refuses or ends a connection with a WebSocket close code and a
// reason (at most 123 bytes) that the client can read.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	return "channels: close " + strconv.Itoa(e.Code) + " " + e.Reason
}

// PanicError is the reason given to Terminate when a handler panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return "channels: handler panicked" }

// Reasons a channel ends, given to Terminate.
var (
	// ErrStop, returned by an In or Out handler, closes the channel
	// normally: the client receives phx_close and does not rejoin.
	ErrStop = errors.New("channels: channel stopped")
	// ErrLeft means the client left the channel.
	ErrLeft = errors.New("channels: client left")
	// ErrSocketClosed means the socket closed.
	ErrSocketClosed = errors.New("channels: socket closed")
	// ErrRejoined means the client joined the same topic again.
	ErrRejoined = errors.New("channels: channel replaced by a new join")
	// ErrNotJoined is returned when pushing to a channel that has ended.
	ErrNotJoined = errors.New("channels: channel not joined")
)
