package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// A long-poll request that reaches a node other than its session's owner
// is carried to the owner as cluster control messages through the broker
// (Postgres NOTIFY with several nodes), and the owner's answer comes back
// the same way, so that a cluster needs no sticky sessions:
//
//	requester -> owner     "q" the request (method, session, body)
//	owner -> requester     "a" acknowledged at once: the owner is alive
//	owner -> requester     "r" the answer, once the poll or batch is done
//
// Every message starts with a JSON header line, {"to":<node>,...}, and
// may carry a body after it. Bodies are cut in parts that fit one
// notification and joined again at the other end. A request the owner
// does not acknowledge within ForwardTimeout is answered 410: the session
// is gone with its node, and the client opens a new one and rejoins.

// controlLongPoll is the control message type of the forwarding.
const controlLongPoll = "hearth.longpoll"

// fwdPart is the most body bytes in one control message: with the header
// and base64 (for bodies that are not plain text) it stays under the
// Postgres broker's ~8000 bytes.
const fwdPart = 4000

// fwdHeader is the header line of a forwarding message.
type fwdHeader struct {
	To   string     `json:"to"` // first: other nodes skip the message on its prefix
	From string     `json:"from"`
	ID   uint64     `json:"id"`
	Kind string     `json:"k"`           // "q", "a" or "r"
	I    int        `json:"i,omitempty"` // part number
	N    int        `json:"n,omitempty"` // parts in all (0 or 1: one)
	Req  *lpRequest `json:"q,omitempty"` // on every part of a request
}

type forwarder struct {
	lp     *LongPoll
	prefix []byte // {"to":"<this node>",
	seq    atomic.Uint64
	ctx    context.Context // ends when the server shuts down
	cancel context.CancelFunc

	mu      sync.Mutex
	pending map[uint64]*fwdCall // requests sent from here, by id
	parts   map[string]*fwdParts
}

type fwdCall struct {
	ack chan struct{}
	res chan []byte
}

type fwdParts struct {
	parts [][]byte
	got   int
	start time.Time
}

func (f *forwarder) init(lp *LongPoll) {
	f.lp = lp
	id, _ := json.Marshal(lp.node.ID())
	f.prefix = append(append([]byte(`{"to":`), id...), ',')
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.pending = make(map[uint64]*fwdCall)
	f.parts = make(map[string]*fwdParts)
}

func (f *forwarder) stop() { f.cancel() }

// send publishes body in parts behind copies of h.
func (f *forwarder) send(ctx context.Context, h fwdHeader, body []byte) error {
	n := max((len(body)+fwdPart-1)/fwdPart, 1)
	h.N = n
	for i := range n {
		h.I = i
		part := body[min(i*fwdPart, len(body)):min((i+1)*fwdPart, len(body))]
		hb, err := json.Marshal(h)
		if err != nil {
			return err
		}
		msg := append(append(hb, '\n'), part...)
		if err := f.lp.node.PublishControl(ctx, controlLongPoll, msg); err != nil {
			return err
		}
	}
	return nil
}

// forward carries req to the owner node and returns its answer.
func (f *forwarder) forward(ctx context.Context, owner string, req *lpRequest) []byte {
	lp := f.lp
	id := f.seq.Add(1)
	call := &fwdCall{ack: make(chan struct{}, 1), res: make(chan []byte, 1)}
	f.mu.Lock()
	f.pending[id] = call
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.pending, id)
		f.mu.Unlock()
	}()
	h := fwdHeader{To: owner, From: lp.node.ID(), ID: id, Kind: "q", Req: req}
	if err := f.send(ctx, h, req.Body); err != nil {
		lp.srv.log.Warn("long-poll request not forwarded", "owner", owner, "err", err)
		return lpError
	}
	t := time.NewTimer(lp.opts.ForwardTimeout)
	defer t.Stop()
	select {
	case <-call.ack:
	case ans := <-call.res: // the answer overtook nothing: acks come first, but be lenient
		return ans
	case <-t.C:
		lp.srv.log.Debug("long-poll owner did not answer: session gone", "owner", owner)
		return lpGone
	case <-ctx.Done():
		return lpNoContent
	}
	wait := lp.opts.PollTimeout + lp.opts.ForwardTimeout
	if req.Method == http.MethodPost {
		wait = max(wait, lp.srv.opts.HandshakeTimeout+lp.opts.ForwardTimeout)
	}
	t.Reset(wait)
	select {
	case ans := <-call.res:
		return ans
	case <-t.C:
		return lpError
	case <-ctx.Done():
		return lpNoContent
	}
}

// handle receives a control message of the forwarding. It runs on the
// broker's delivery goroutine: it never blocks.
func (f *forwarder) handle(data []byte) {
	if !bytes.HasPrefix(data, f.prefix) {
		return // for another node
	}
	line, body, _ := bytes.Cut(data, []byte("\n"))
	var h fwdHeader
	if err := json.Unmarshal(line, &h); err != nil {
		f.lp.srv.log.Warn("invalid long-poll forwarding message", "err", err)
		return
	}
	switch h.Kind {
	case "a":
		f.mu.Lock()
		call := f.pending[h.ID]
		f.mu.Unlock()
		if call != nil {
			select {
			case call.ack <- struct{}{}:
			default:
			}
		}
	case "r":
		whole := f.join(&h, body)
		if whole == nil {
			return
		}
		f.mu.Lock()
		call := f.pending[h.ID]
		f.mu.Unlock()
		if call != nil {
			select {
			case call.res <- whole:
			default:
			}
		}
	case "q":
		if h.Req == nil {
			return
		}
		whole := f.join(&h, body)
		if whole == nil {
			return
		}
		req := *h.Req
		req.Body = whole
		go f.serve(h.From, h.ID, &req)
	}
}

// join collects the parts of a message; it returns the whole body once
// the last part arrived, else nil.
func (f *forwarder) join(h *fwdHeader, body []byte) []byte {
	if h.N <= 1 {
		return bytes.Clone(body)
	}
	if h.I < 0 || h.I >= h.N || h.N > 1<<16 {
		return nil
	}
	key := h.From + "/" + h.Kind + "/" + strconv.FormatUint(h.ID, 10)
	now := time.Now()
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.parts[key]
	if p == nil {
		for k, old := range f.parts { // forget what never completed
			if now.Sub(old.start) > time.Minute {
				delete(f.parts, k)
			}
		}
		p = &fwdParts{parts: make([][]byte, h.N), start: now}
		f.parts[key] = p
	}
	if len(p.parts) != h.N || p.parts[h.I] != nil {
		return nil
	}
	p.parts[h.I] = bytes.Clone(body)
	if p.got++; p.got < h.N {
		return nil
	}
	delete(f.parts, key)
	return bytes.Join(p.parts, nil)
}

// serve answers a request forwarded to this node.
func (f *forwarder) serve(from string, id uint64, req *lpRequest) {
	ctx := f.ctx
	me := f.lp.node.ID()
	if err := f.send(ctx, fwdHeader{To: from, From: me, ID: id, Kind: "a"}, nil); err != nil {
		return
	}
	ans := f.lp.serveLocal(ctx, req)
	if err := f.send(ctx, fwdHeader{To: from, From: me, ID: id, Kind: "r"}, ans); err != nil {
		f.lp.srv.log.Warn("long-poll answer not forwarded", "to", from, "err", err)
	}
}
