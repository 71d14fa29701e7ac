package bench

import (
	"context"
	"slices"
	"testing"
)

// TestSmokeScale runs the scale scenario's smoke sweep (2 and 4 broker-only
// node processes, on 1 and on 3 private Postgres servers, with and without
// interest-based listening) and checks that its counts add up.
func TestSmokeScale(t *testing.T) {
	opts := smokeOptions(t)
	rep, err := Run(context.Background(), "scale", opts)
	if err != nil {
		t.Fatal(err)
	}
	checkFiles(t, rep, "scale")
	steps := rep.Results.([]*scaleStep)
	if len(steps) != 8 {
		t.Fatalf("%d steps, want 8 (K 1 and 3 × interest and all × 2 and 4 nodes)", len(steps))
	}
	notes := map[[3]any]float64{}
	for _, s := range steps {
		name := [3]any{s.Databases, s.Listen, s.Nodes}
		notes[name] = s.NotesPerMsg
		if s.Published == 0 || s.Failed != 0 {
			t.Errorf("%v: published %d, failed %d", name, s.Published, s.Failed)
		}
		// Every subscriber of a topic got each of its messages exactly once.
		if s.Received != s.Expected || s.Lost != 0 || s.Duplicates != 0 || s.Foreign != 0 || s.Mismatched != 0 {
			t.Errorf("%v: %d deliveries of %d expected, lost %d, duplicates %d, foreign %d, mismatched (topic, node) pairs %d",
				name, s.Received, s.Expected, s.Lost, s.Duplicates, s.Foreign, s.Mismatched)
		}
		if want := int64(min(3, s.Nodes)) * s.Published; s.Expected != want {
			t.Errorf("%v: %d expected deliveries, want replicas × published = %d", name, s.Expected, want)
		}
		// Postgres sent each listener at most one notification per message
		// of a shard it listens to, and every subscriber got one.
		if bound := s.NotesEstimate * float64(s.Published); float64(s.NotesReceived) > bound+0.5 {
			t.Errorf("%v: %d notifications received, more than the %0.f the listeners' shards allow", name, s.NotesReceived, bound)
		}
		if s.NotesPerMsg*s.MsgsPerNotify < 0.9*float64(min(3, s.Nodes)) {
			t.Errorf("%v: %.2f notifications per message (%.2f messages per NOTIFY): fewer than the %d subscribers", name, s.NotesPerMsg, s.MsgsPerNotify, min(3, s.Nodes))
		}
		if s.PGCPUSeconds <= 0 || s.NodeCPUSeconds <= 0 {
			t.Errorf("%v: Postgres CPU %.2fs, node CPU %.2fs: not measured", name, s.PGCPUSeconds, s.NodeCPUSeconds)
		}
		if s.Misplaced != 0 {
			t.Errorf("%v: %d messages committed on another database than their topic's owner", name, s.Misplaced)
		}
		if len(s.PerDB) != s.Databases {
			t.Fatalf("%v: %d per-database figures", name, len(s.PerDB))
		}
		var sum int64
		for d, db := range s.PerDB {
			sum += db.Published
			// Every topic published alike, 240 topics placed by rendezvous
			// hashing: a third each, within 3.5 standard deviations.
			if s.Databases == 3 && (db.Share < 0.22 || db.Share > 0.45) {
				t.Errorf("%v: database %d carried %.2f of the messages, want about a third", name, d, db.Share)
			}
			if db.PGCPUSeconds <= 0 {
				t.Errorf("%v: database %d: no Postgres CPU measured", name, d)
			}
		}
		if sum != s.Published {
			t.Errorf("%v: the databases carried %d messages, the nodes published %d", name, sum, s.Published)
		}
	}
	for _, k := range []int{1, 3} {
		interest, all := notes[[3]any{k, ScaleInterest, 4}], notes[[3]any{k, ScaleAll, 4}]
		// 4 nodes, every topic on 3: interest-based listening spares the
		// fourth node; ListenAll sends every message to all four.
		if !(interest < all) || interest >= 4 || all > 4.01 {
			t.Errorf("K=%d, 4 nodes: %.2f notifications per message with interest-based listening, %.2f with ListenAll; want fewer with interest, under 4, at most 4 with ListenAll", k, interest, all)
		}
	}
}

func TestScaleSubscribers(t *testing.T) {
	held := make([]int, 64)
	for i := range 256 {
		s := scaleSubscribers(i, 64, 3)
		if len(s) != 3 || !slices.IsSorted(s) || s[0] == s[1] || s[1] == s[2] || !slices.Equal(s, scaleSubscribers(i, 64, 3)) {
			t.Fatalf("topic %d: subscribers %v: want 3 distinct sorted nodes, the same each time", i, s)
		}
		for _, n := range s {
			held[n]++
		}
	}
	// 768 placements over 64 nodes: 12 each on average; none left out.
	if slices.Min(held) == 0 || slices.Max(held) > 30 {
		t.Errorf("topics per node %v: badly spread", held)
	}
	if s := scaleSubscribers(5, 2, 3); !slices.Equal(s, []int{0, 1}) {
		t.Errorf("2 nodes, 3 replicas: %v, want both nodes", s)
	}
}
