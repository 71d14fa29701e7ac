package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// lpPool keeps long-poll sessions on a `hearth serve` (target
// hearth-longpoll): each opens a session on /socket/longpoll, joins one
// topic and then polls without pause, as phoenix.js's LongPoll does. It
// runs in the bench process: the server's side is what is measured.
type lpPool struct {
	base   string // http://addr/socket/longpoll?vsn=2.0.0
	client *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	joined atomic.Int64
	failed atomic.Int64
	last   atomic.Value // the last failure, a string
	n      int
}

func newLPPool(addr string) *lpPool {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{MaxIdleConns: 0, MaxIdleConnsPerHost: 100_000, IdleConnTimeout: time.Minute}
	return &lpPool{
		base:   "http://" + addr + "/socket/longpoll?vsn=2.0.0",
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		ctx:    ctx, cancel: cancel,
	}
}

// lpAnswer is a long-poll answer.
type lpAnswer struct {
	Status   int      `json:"status"`
	Token    string   `json:"token"`
	Messages []string `json:"messages"`
}

func (p *lpPool) do(method, url, body string) (lpAnswer, error) {
	var a lpAnswer
	req, err := http.NewRequestWithContext(p.ctx, method, url, strings.NewReader(body))
	if err != nil {
		return a, err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("HTTP %d: %.80s", resp.StatusCode, b)
	}
	return a, nil
}

// add opens n more sessions, at most rate per second, spread over topics,
// and returns once they are all joined (or one failed).
func (p *lpPool) add(ctx context.Context, n int, topics []string, rate int) error {
	want := p.joined.Load() + int64(n)
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	for i := range n {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.wg.Add(1)
		go p.session(topics[(p.n+i)%len(topics)])
	}
	p.n += n
	deadline := time.Now().Add(5 * time.Minute)
	for p.joined.Load() < want {
		if f := p.failed.Load(); f > 0 {
			return fmt.Errorf("bench: %d long-poll sessions failed: %v", f, p.last.Load())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d of %d long-poll sessions joined after 5 minutes", p.joined.Load(), want)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func (p *lpPool) fail(err error) {
	if errors.Is(err, context.Canceled) || p.ctx.Err() != nil {
		return
	}
	p.last.Store(err.Error())
	p.failed.Add(1)
}

// session runs one session until the pool closes.
func (p *lpPool) session(topic string) {
	defer p.wg.Done()
	var a lpAnswer
	var err error
	for {
		if a, err = p.do(http.MethodGet, p.base, ""); err != nil {
			p.fail(err)
			return
		}
		if a.Status == 410 && a.Token != "" {
			break
		}
		// Shed by admission control (500): try again shortly.
		if a.Status != 500 || sleepCtx(p.ctx, 200*time.Millisecond) != nil {
			p.fail(fmt.Errorf("open: status %d", a.Status))
			return
		}
	}
	url := p.base + "&token=" + a.Token
	join, _ := json.Marshal([]any{"1", "1", topic, "phx_join", map[string]any{}})
	if a, err = p.do(http.MethodPost, url, string(join)); err != nil || a.Status != 200 {
		p.fail(fmt.Errorf("join: %v (status %d)", err, a.Status))
		return
	}
	joined := false
	for p.ctx.Err() == nil {
		if a, err = p.do(http.MethodGet, url, ""); err != nil {
			p.fail(err)
			return
		}
		switch a.Status {
		case 200:
			for _, m := range a.Messages {
				if !joined && strings.Contains(m, `"phx_reply",{"status":"ok"`) {
					joined = true
					p.joined.Add(1)
				}
			}
		case 204:
		default:
			p.fail(fmt.Errorf("poll: status %d", a.Status))
			return
		}
	}
}

func (p *lpPool) close() {
	p.cancel()
	p.wg.Wait()
	p.client.CloseIdleConnections()
}
