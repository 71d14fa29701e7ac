package pubsub

import "time"

// SetClock replaces the broker's clock (the TTL is measured on it).
func SetClock(m *Memory, now func() time.Time) {
	m.mu.Lock()
	m.now = now
	m.mu.Unlock()
}

// Sweep runs the TTL sweep now, as the broker's timer does.
func Sweep(m *Memory) { m.sweep() }
