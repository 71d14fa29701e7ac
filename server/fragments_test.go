package server

import (
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// TestUnfinishedMessageIdle: the frames of a message that never finishes
// (pings in between) do not keep a connection past the idle timeout.
func TestUnfinishedMessageIdle(t *testing.T) {
	srv := newTestServer(t, Options{IdleTimeout: 300 * time.Millisecond, MessageRate: -1}, channels.Options{}, nil)
	c := dial(t, srv.url)
	c.writeRaw(rawFrame(false, 0, 0x1, []byte(`[null,"1",`)))
	type closed struct {
		code   int
		reason string
	}
	done := make(chan closed, 1)
	go func() {
		code, reason := c.readClose()
		done <- closed{code, reason}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	limit := time.After(wait)
	for {
		select {
		case got := <-done:
			if got.code != channels.CloseGoingAway || got.reason != "idle timeout" {
				t.Fatalf("closed with %d %q, want 1001 idle timeout", got.code, got.reason)
			}
			return
		case <-tick.C:
			// A ping and another fragment, as a slow-drip client would.
			_, _ = c.ws.NetConn().Write(rawFrame(true, 0, 0x9, []byte("p")))
			_, _ = c.ws.NetConn().Write(rawFrame(false, 0, 0x0, []byte(`"x`)))
		case <-limit:
			t.Fatalf("an unfinished message kept the connection open for %v", wait)
		}
	}
}

// TestFragmentsAndPongsAreRateLimited: fragments and unsolicited pongs
// count against the message rate, as messages and pings do.
func TestFragmentsAndPongsAreRateLimited(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"fragments", rawFrame(false, 0, 0x0, []byte(` `))}, // after a first text fragment
		{"pongs", rawFrame(true, 0, 0xA, []byte("unsolicited"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, Options{MessageRate: 1, MessageBurst: 5}, channels.Options{}, nil)
			c := dial(t, srv.url)
			c.heartbeat()
			if tc.name == "fragments" {
				c.writeRaw(rawFrame(false, 0, 0x1, []byte(`[`)))
			}
			for range 50 {
				if _, err := c.ws.NetConn().Write(tc.frame); err != nil {
					break // closed already
				}
			}
			c.expectClose(channels.CloseRateLimited, "rate limit exceeded")
		})
	}
}
