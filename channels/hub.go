package channels

import (
	"context"
	"hash/maphash"
	"log/slog"
	"strconv"
	"sync"

	"github.com/hearth-rt/hearth/channels/wire"
	"github.com/hearth-rt/hearth/pubsub"
)

const hubShards = 64

// hub is the node's registry of local subscriptions: topic -> joined
// channels. It is sharded by topic so that joins on different topics and
// broadcasts do not contend on one lock.
//
// Lock order: a hub shard lock may be taken while holding a Socket's
// handler lock, never the other way round; a Channel's mu is taken inside a
// shard's read lock (fanout), and never held while taking a shard lock.
type hub struct {
	seed   maphash.Seed
	shards [hubShards]hubShard
	stats  *nodeStats
	log    *slog.Logger
}

type hubShard struct {
	mu     sync.RWMutex
	topics map[string]*topicSubs
}

type topicSubs struct {
	route *route
	chans map[*Channel]struct{}
}

func (h *hub) init() {
	h.seed = maphash.MakeSeed()
	for i := range h.shards {
		h.shards[i].topics = make(map[string]*topicSubs)
	}
}

func (h *hub) shard(topic string) *hubShard {
	return &h.shards[maphash.String(h.seed, topic)%hubShards]
}

func (h *hub) add(c *Channel) {
	sh := h.shard(c.topic)
	sh.mu.Lock()
	ts := sh.topics[c.topic]
	if ts == nil {
		ts = &topicSubs{route: c.route, chans: make(map[*Channel]struct{})}
		sh.topics[c.topic] = ts
	}
	ts.chans[c] = struct{}{}
	sh.mu.Unlock()
}

func (h *hub) remove(c *Channel) {
	sh := h.shard(c.topic)
	sh.mu.Lock()
	if ts := sh.topics[c.topic]; ts != nil {
		delete(ts.chans, c)
		if len(ts.chans) == 0 {
			delete(sh.topics, c.topic)
		}
	}
	sh.mu.Unlock()
}

// fanout delivers one broker message to the local subscribers of its topic.
// This is the fastlane: the frame is encoded once (per wire variant) and
// the same bytes are queued on every connection; nothing is allocated per
// recipient. Only events the topic's handler intercepts go through each
// socket's Out handler.
func (h *hub) fanout(m *pubsub.Message) {
	sh := h.shard(m.Topic)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	ts := sh.topics[m.Topic]
	if ts == nil {
		return
	}
	_, intercepted := ts.route.intercept[m.Event]
	var plain, ext []byte // the encoded frames, built on first use
	var zip frameZip      // their compressed twins, made on first use too
	delivered := 0
	defer func() {
		h.stats.broadcasts.Add(1)
		h.stats.deliveries.Add(uint64(delivered))
		if h.log.Enabled(context.Background(), slog.LevelDebug) {
			h.log.Debug("broadcast delivered", "msg", m.Topic+"@"+strconv.FormatUint(m.Offset, 10), "event", m.Event, "recipients", delivered)
		}
	}()
	for c := range ts.chans {
		s := c.socket
		if m.Exclude != "" && s.connID == m.Exclude {
			continue
		}
		if c.recovering.Load() && c.bufferLive(m) {
			continue
		}
		if intercepted {
			s.enqueueOut(c, m, nil)
			continue
		}
		var f []byte
		isExt := s.hearthExt && m.Binary
		if isExt {
			if ext == nil {
				ext = encodeBroadcast(m, true)
			}
			f = ext
		} else {
			if plain == nil {
				plain = encodeBroadcast(m, false)
			}
			f = plain
		}
		if s.deflater != nil {
			f = zip.frame(s.deflater, f, isExt)
		}
		delivered++
		s.sendInOrder(c, m, f)
	}
}

// frameZip holds the compressed frames of one broadcast: each wire
// variant is compressed once, by the first compressing recipient that
// needs it, and the same bytes go to every other one.
type frameZip struct {
	d          *wire.Deflater // the Deflater that made them
	plain, ext []byte
}

// frame returns f, the broadcast's Hearth binary variant when isExt,
// compressed by d. A recipient with another Deflater (a second server on
// the node, with other settings) costs a compression of its own: the
// cache keeps the last Deflater's frames.
func (z *frameZip) frame(d *wire.Deflater, f []byte, isExt bool) []byte {
	if z.d != d {
		*z = frameZip{d: d}
	}
	slot := &z.plain
	if isExt {
		slot = &z.ext
	}
	if *slot == nil {
		*slot = d.Frame(f)
	}
	return *slot
}

// encodeBroadcast builds the complete WebSocket frame of a broadcast. ext
// selects Hearth's binary variant that carries the position.
func encodeBroadcast(m *pubsub.Message, ext bool) []byte {
	buf := wire.BeginFrame(make([]byte, 0, wire.MaxFrameHeader+len(m.Topic)+len(m.Event)+len(m.Payload)+48))
	if !m.Binary {
		buf = wire.AppendBroadcastText(buf, m.Topic, m.Event, m.Offset, m.Payload)
		return wire.FinishFrame(buf, wire.OpText)
	}
	if ext {
		buf = wire.AppendBroadcastBinaryPos(buf, m.Topic, m.Event, m.Offset, m.Payload)
	} else {
		buf = wire.AppendBinaryBroadcast(buf, m.Topic, m.Event, m.Payload)
	}
	return wire.FinishFrame(buf, wire.OpBinary)
}
