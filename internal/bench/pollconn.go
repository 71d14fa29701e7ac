package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Transports a load client can use (GroupSpec.Transport).
const (
	TransportWebSocket = ""        // the default
	TransportPolling   = "polling" // HTTP long-polling: Phoenix's LongPoll or Engine.IO's polling
)

// clientConn is what a load client talks to: a WebSocket (wsConn) or an
// HTTP long-poll session (pollConn) that looks like one.
type clientConn interface {
	// readMessage returns the next text message; the slice is valid until
	// the next call.
	readMessage() (op byte, data []byte, err error)
	// writeText sends a text message. It must not block for long: it is
	// called with the client's lock held.
	writeText(p []byte) error
	// closeWith ends the connection as the client would on its own.
	closeWith(code int)
	// close ends the connection at once.
	close()
}

func (w *wsConn) close() { w.c.Close() }

// PollError is a long-poll request the server answered with a failure:
// an HTTP status other than 200, or a Phoenix long-poll "status".
type PollError struct {
	Status int
	// Body is the start of the answer (Engine.IO says why in it).
	Body string
}

// Error implements error.
func (e *PollError) Error() string {
	return fmt.Sprintf("bench: long-poll answered %d: %.80s", e.Status, e.Body)
}

// pollConn is a load client's HTTP long-poll session, as a browser client
// runs one: a GET always waiting for messages, and what the client sends
// batched into one POST at a time (phoenix.js's LongPoll: ndjson;
// Engine.IO's polling: packets joined by U+001E). Each pollConn has its
// own HTTP connections (at most one GET and one POST in flight), from its
// client's source address, as each browser has its own.
type pollConn struct {
	phoenix bool   // Phoenix long-poll; else Engine.IO polling
	url     string // with the token (Phoenix) or the sid (Engine.IO)
	hc      *http.Client
	ctx     context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	inbox   [][]byte
	wake    chan struct{} // closed when inbox or err changes
	err     error
	out     [][]byte // messages waiting for the next POST
	posting bool
	cur     []byte // the message readMessage returned last
}

// pollTransport returns an HTTP transport for one polling client.
func (d *dialer) pollTransport(src string) *http.Transport {
	nd := d.get(src)
	return &http.Transport{
		DialContext:         nd.DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// dialPoll opens a long-poll session on addr: Phoenix's (path ends in
// /longpoll) or Engine.IO's (path has transport=polling).
func (d *dialer) dialPoll(ctx context.Context, src, addr, path string, phoenix bool) (*pollConn, error) {
	tr := d.pollTransport(src)
	p := &pollConn{phoenix: phoenix, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}, wake: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	base := "http://" + addr + path
	octx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	status, body, hdr, err := p.do(octx, http.MethodGet, base, nil)
	if err != nil {
		p.close()
		return nil, err
	}
	if phoenix {
		a, err := decodeLPAnswer(status, body)
		if err != nil {
			p.close()
			return nil, err
		}
		if a.Status != 410 || a.Token == "" {
			// Shed (HTTP 503 or status 500 with a hint), refused (403),
			// or cooling down (429): as an upgrade refused.
			he := &HandshakeError{Status: a.Status, RetryAfter: retryAfter(hdr)}
			if status != http.StatusOK {
				he.Status = status
			}
			p.close()
			return nil, he
		}
		p.url = base + "&token=" + a.Token
	} else {
		if status != http.StatusOK {
			p.close()
			return nil, &HandshakeError{Status: status, RetryAfter: retryAfter(hdr)}
		}
		// The open packet: 0{"sid":...}. It goes to the client as the
		// WebSocket's first message would.
		pk := bytes.Split(body, []byte{0x1e})
		if len(pk) == 0 || len(pk[0]) < 2 || pk[0][0] != '0' {
			p.close()
			return nil, fmt.Errorf("bench: engine.io open answered %.80q", body)
		}
		var open struct {
			SID string `json:"sid"`
		}
		if err := json.Unmarshal(pk[0][1:], &open); err != nil || open.SID == "" {
			p.close()
			return nil, fmt.Errorf("bench: engine.io open without sid: %.80q", body)
		}
		p.url = base + "&sid=" + open.SID
		p.inbox = append(p.inbox, pk...)
	}
	go p.pollLoop()
	return p, nil
}

func retryAfter(h http.Header) time.Duration {
	if s := h.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return 0
}

// lpWire is a Phoenix long-poll answer.
type lpWire struct {
	Status   int      `json:"status"`
	Token    string   `json:"token"`
	Messages []string `json:"messages"`
	Close    *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"close"`
}

func decodeLPAnswer(status int, body []byte) (lpWire, error) {
	var a lpWire
	if err := json.Unmarshal(body, &a); err != nil {
		return a, &PollError{Status: status, Body: string(body)}
	}
	return a, nil
}

func (p *pollConn) do(ctx context.Context, method, url string, body []byte) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if method == http.MethodPost {
		if p.phoenix {
			req.Header.Set("Content-Type", "application/x-ndjson")
		} else {
			req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
		}
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxFrame*4))
	return resp.StatusCode, b, resp.Header, err
}

// fail ends the session with err (the first error wins).
func (p *pollConn) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
		close(p.wake)
		p.wake = make(chan struct{})
	}
	p.mu.Unlock()
	p.cancel()
}

func (p *pollConn) push(msgs [][]byte) {
	if len(msgs) == 0 {
		return
	}
	p.mu.Lock()
	p.inbox = append(p.inbox, msgs...)
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

// pollLoop keeps a GET waiting, as phoenix.js and engine.io-client do.
func (p *pollConn) pollLoop() {
	for p.ctx.Err() == nil {
		status, body, _, err := p.do(p.ctx, http.MethodGet, p.url, nil)
		if err != nil {
			p.fail(err)
			return
		}
		if p.phoenix {
			a, err := decodeLPAnswer(status, body)
			if err != nil {
				p.fail(err)
				return
			}
			switch a.Status {
			case 200:
				msgs := make([][]byte, len(a.Messages))
				for i, m := range a.Messages {
					msgs[i] = []byte(m)
				}
				p.push(msgs)
			case 204:
			case 410:
				if a.Close != nil {
					p.fail(&CloseError{Code: a.Close.Code, Reason: a.Close.Reason})
				} else {
					p.fail(&PollError{Status: 410, Body: string(body)})
				}
				return
			default:
				p.fail(&PollError{Status: a.Status, Body: string(body)})
				return
			}
			continue
		}
		if status != http.StatusOK {
			p.fail(&PollError{Status: status, Body: string(body)})
			return
		}
		p.push(bytes.Split(body, []byte{0x1e}))
	}
}

// readMessage implements clientConn.
func (p *pollConn) readMessage() (byte, []byte, error) {
	for {
		p.mu.Lock()
		if len(p.inbox) > 0 {
			m := p.inbox[0]
			p.inbox[0] = nil
			p.inbox = p.inbox[1:]
			p.mu.Unlock()
			p.cur = m
			return opText, m, nil
		}
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return 0, nil, err
		}
		wake := p.wake
		p.mu.Unlock()
		<-wake
	}
}

// writeText implements clientConn: the message joins the next POST.
func (p *pollConn) writeText(m []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.out = append(p.out, bytes.Clone(m))
	if !p.posting {
		p.posting = true
		go p.postLoop()
	}
	return nil
}

// postLoop sends what is waiting, one POST at a time.
func (p *pollConn) postLoop() {
	for {
		p.mu.Lock()
		batch := p.out
		p.out = nil
		if len(batch) == 0 || p.err != nil {
			p.posting = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		sep := []byte{0x1e}
		if p.phoenix {
			sep = []byte{'\n'}
		}
		status, body, _, err := p.do(p.ctx, http.MethodPost, p.url, bytes.Join(batch, sep))
		if err != nil {
			p.fail(err)
			return
		}
		if p.phoenix {
			a, err := decodeLPAnswer(status, body)
			if err == nil && a.Status != 200 {
				err = &PollError{Status: a.Status, Body: string(body)}
				if a.Close != nil {
					err = &CloseError{Code: a.Close.Code, Reason: a.Close.Reason}
				}
			}
			if err != nil {
				p.fail(err)
				return
			}
		} else if status != http.StatusOK {
			p.fail(&PollError{Status: status, Body: string(body)})
			return
		}
	}
}

// closeWith implements clientConn. Engine.IO is told with a close packet;
// Phoenix's long-poll has no close: the session expires on the server.
func (p *pollConn) closeWith(int) {
	if !p.phoenix {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _, _, _ = p.do(ctx, http.MethodPost, p.url, []byte("1"))
		cancel()
	}
	p.fail(net.ErrClosed)
	p.hc.CloseIdleConnections()
}

// close implements clientConn.
func (p *pollConn) close() {
	p.fail(net.ErrClosed)
	p.hc.CloseIdleConnections()
}

var _ clientConn = (*pollConn)(nil)
