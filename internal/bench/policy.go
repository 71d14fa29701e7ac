package bench

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"time"
)

// Policy is a client reconnect schedule.
type Policy interface {
	// Name is the policy's registry name.
	Name() string
	// Delay is how long to wait before reconnect attempt n (0 for the first
	// attempt after a disconnect). hint is the server's reconnect hint (a
	// close reason's retry_after_ms=, an HTTP Retry-After), zero if none.
	Delay(n int, hint time.Duration) time.Duration
	// RejoinDelay is how long to wait before retrying a refused or
	// timed-out channel join for the nth time (0 first). hint is the
	// refusal's retry_after_ms, zero if none.
	RejoinDelay(n int, hint time.Duration) time.Duration
	// StableAfter is how long a connection must last before the attempt
	// counter resets. Zero means it resets as soon as a connection opens.
	StableAfter() time.Duration
}

// Policies lists the reconnect policies by name.
var Policies = map[string]func() Policy{
	"hearth":   func() Policy { return DefaultHearthPolicy() },
	"phoenix":  func() Policy { return PhoenixPolicy{} },
	"socketio": func() Policy { return SocketIOPolicy{Base: time.Second, Max: 5 * time.Second, Factor: 0.5} },
}

// PolicyByName returns the named policy.
func PolicyByName(name string) (Policy, error) {
	f, ok := Policies[name]
	if !ok {
		return nil, fmt.Errorf("bench: unknown reconnect policy %q (want hearth, phoenix or socketio)", name)
	}
	return f(), nil
}

// HearthPolicy is the Hearth JavaScript client's schedule (js-client
// DEFAULTS): full jitter over a capped exponential, random(0, min(Cap,
// Base*2^n)), the cap applied before the jitter so a fleet that failed
// together never retries in lockstep; a server hint replaces the computed
// delay, plus up to HintJitter of it at random; channel rejoins back off the
// same way between RejoinBase and RejoinCap; the attempt counter resets once
// a connection lasted Stable.
type HearthPolicy struct {
	Base, Cap             time.Duration
	RejoinBase, RejoinCap time.Duration
	HintJitter            float64
	Stable                time.Duration
}

// DefaultHearthPolicy returns the Hearth client's defaults: 500 ms to 20 s,
// rejoins 1 s to 10 s, hints plus up to 20 %, stable after 10 s.
func DefaultHearthPolicy() HearthPolicy {
	return HearthPolicy{
		Base: 500 * time.Millisecond, Cap: 20 * time.Second,
		RejoinBase: time.Second, RejoinCap: 10 * time.Second,
		HintJitter: 0.2, Stable: 10 * time.Second,
	}
}

// Name implements Policy.
func (HearthPolicy) Name() string { return "hearth" }

// Delay implements Policy.
func (p HearthPolicy) Delay(n int, hint time.Duration) time.Duration {
	if hint > 0 {
		return p.hinted(hint)
	}
	return fullJitter(p.Base, p.Cap, n)
}

func (p HearthPolicy) hinted(hint time.Duration) time.Duration {
	return hint + time.Duration(rand.Float64()*p.HintJitter*float64(hint))
}

// RejoinDelay implements Policy: the server's hint (a join refused by
// admission control carries retry_after_ms), else full jitter.
func (p HearthPolicy) RejoinDelay(n int, hint time.Duration) time.Duration {
	if hint > 0 {
		return p.hinted(hint)
	}
	return fullJitter(p.RejoinBase, p.RejoinCap, n)
}

// StableAfter implements Policy: Hearth resets its backoff only once a
// connection proved stable.
func (p HearthPolicy) StableAfter() time.Duration { return p.Stable }

func fullJitter(base, limit time.Duration, n int) time.Duration {
	ceil := float64(base) * math.Pow(2, float64(min(n, 30)))
	ceil = min(ceil, float64(limit))
	return time.Duration(rand.Float64() * ceil)
}

// PhoenixPolicy is phoenix.js's default: 10, 50, 100, 150, 200, 250, 500,
// 1000, 2000 ms then 5 s, no jitter, reset on open; channel rejoins after
// 1, 2 then 5 s. It ignores server hints.
type PhoenixPolicy struct{}

var phoenixSteps = [...]time.Duration{10, 50, 100, 150, 200, 250, 500, 1000, 2000}

// Name implements Policy.
func (PhoenixPolicy) Name() string { return "phoenix" }

// Delay implements Policy.
func (PhoenixPolicy) Delay(n int, _ time.Duration) time.Duration {
	if n < len(phoenixSteps) {
		return phoenixSteps[n] * time.Millisecond
	}
	return 5 * time.Second
}

// RejoinDelay implements Policy.
func (PhoenixPolicy) RejoinDelay(n int, _ time.Duration) time.Duration {
	steps := [...]time.Duration{time.Second, 2 * time.Second}
	if n < len(steps) {
		return steps[n]
	}
	return 5 * time.Second
}

// StableAfter implements Policy.
func (PhoenixPolicy) StableAfter() time.Duration { return 0 }

// SocketIOPolicy is socket.io-client's reconnection formula (its Backoff):
// ms = Base*2^n; with r uniform in [0,1), deviation = floor(r*Factor*ms),
// subtracted when floor(r*10) is even and added otherwise; then the result
// is capped at Max. The cap comes after the jitter, so from the attempt
// where Base*2^n*(1-Factor) passes Max (the 5th with the defaults) every
// client retries at exactly Max, in lockstep. Reset on open; it ignores
// server hints.
type SocketIOPolicy struct {
	Base, Max time.Duration
	Factor    float64
}

// Name implements Policy.
func (SocketIOPolicy) Name() string { return "socketio" }

// Delay implements Policy.
func (p SocketIOPolicy) Delay(n int, _ time.Duration) time.Duration {
	ms := float64(p.Base.Milliseconds()) * math.Pow(2, float64(min(n, 30)))
	if p.Factor > 0 {
		r := rand.Float64()
		dev := math.Floor(r * p.Factor * ms)
		if int(math.Floor(r*10))&1 == 0 {
			ms -= dev
		} else {
			ms += dev
		}
	}
	ms = min(ms, float64(p.Max.Milliseconds()))
	return time.Duration(ms) * time.Millisecond
}

// RejoinDelay implements Policy (a Socket.IO app retries its room join
// with the same schedule).
func (p SocketIOPolicy) RejoinDelay(n int, _ time.Duration) time.Duration { return p.Delay(n, 0) }

// StableAfter implements Policy.
func (SocketIOPolicy) StableAfter() time.Duration { return 0 }

var retryAfterRe = regexp.MustCompile(`retry_after_ms=(\d+)`)

// closeHint extracts a retry_after_ms= hint from a close reason.
func closeHint(reason string) time.Duration {
	m := retryAfterRe.FindStringSubmatch(reason)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0
	}
	return time.Duration(n) * time.Millisecond
}
