package channels

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
)

// This file holds what operators' tools (package server/api, dashboards)
// need to look into a node and act on it: topic and socket listings, and
// a cluster-wide unsubscribe. None of it runs on the broadcast path.

// ErrUnsubscribed is the reason given to Terminate when the channel was
// closed by [Node.Unsubscribe]. The client receives phx_close and does not
// rejoin.
var ErrUnsubscribed = errors.New("channels: unsubscribed by the server")

// Topics returns the topics with subscribers on this node and how many
// joined channels each has.
func (n *Node) Topics() map[string]int {
	out := make(map[string]int)
	n.EachTopic(func(topic string, subscribers int) { out[topic] = subscribers })
	return out
}

// EachTopic calls fn for every topic with subscribers on this node, with
// how many joined channels it has. It holds a lock of the subscription
// registry during each call (joins and broadcasts of some topics wait), so
// fn must be quick and must not call into the node.
func (n *Node) EachTopic(fn func(topic string, subscribers int)) {
	for i := range n.hub.shards {
		sh := &n.hub.shards[i]
		sh.mu.RLock()
		for t, ts := range sh.topics {
			fn(t, len(ts.chans))
		}
		sh.mu.RUnlock()
	}
}

// SocketInfo describes one connected socket of this node.
type SocketInfo struct {
	// ID is the id the connect hook gave ("" if anonymous).
	ID string `json:"id"`
	// ConnID is the connection's unique id in the cluster.
	ConnID string `json:"conn"`
	// IP is the client address the transport resolved.
	IP string `json:"ip,omitempty"`
	// Topics are the topics the socket has joined, sorted.
	Topics []string `json:"topics"`
}

// SocketsOf returns the sockets of this node whose ConnectReply.ID is id,
// at most limit of them (limit <= 0: all).
func (n *Node) SocketsOf(id string, limit int) []SocketInfo {
	n.mu.Lock()
	var list []*Socket
	for s := range n.byID[id] {
		if limit > 0 && len(list) >= limit {
			break
		}
		list = append(list, s)
	}
	n.mu.Unlock()
	return infos(list)
}

// Subscribers returns the sockets of this node that joined topic, at most
// limit of them (limit <= 0: all).
func (n *Node) Subscribers(topic string, limit int) []SocketInfo {
	sh := n.hub.shard(topic)
	sh.mu.RLock()
	var list []*Socket
	if ts := sh.topics[topic]; ts != nil {
		for c := range ts.chans {
			if limit > 0 && len(list) >= limit {
				break
			}
			list = append(list, c.socket)
		}
	}
	sh.mu.RUnlock()
	return infos(list)
}

func infos(list []*Socket) []SocketInfo {
	out := make([]SocketInfo, 0, len(list))
	for _, s := range list {
		out = append(out, SocketInfo{ID: s.id, ConnID: s.connID, IP: s.ip, Topics: s.topics()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ConnID < out[j].ConnID })
	return out
}

// topics lists the joined topics. It waits for the socket's running
// handler, if any.
func (s *Socket) topics() []string {
	s.hmu.Lock()
	out := make([]string, 0, len(s.chans))
	for _, c := range s.chans {
		out = append(out, c.topic)
	}
	s.hmu.Unlock()
	sort.Strings(out)
	return out
}

// Unsubscribe closes the channel of topic of every socket whose
// ConnectReply.ID is id, on every node of the cluster: the client receives
// phx_close (it does not rejoin) and the handler's Terminate runs with
// [ErrUnsubscribed]. The sockets stay connected.
func (n *Node) Unsubscribe(ctx context.Context, id, topic string) error {
	b, err := json.Marshal(unsubscribeMsg{ID: id, Topic: topic})
	if err != nil {
		return err
	}
	return n.PublishControl(ctx, controlUnsubscribe, b)
}

const controlUnsubscribe = "hearth.unsubscribe"

type unsubscribeMsg struct {
	ID    string `json:"id"`
	Topic string `json:"topic"`
}

// unsubscribeLocal runs on the broker's delivery path: the channels are
// closed on a goroutine of their own, since a socket's handler lock may be
// held by a slow handler.
func (n *Node) unsubscribeLocal(body []byte) {
	var u unsubscribeMsg
	if err := json.Unmarshal(body, &u); err != nil {
		n.log.Warn("invalid unsubscribe message", "err", err)
		return
	}
	n.mu.Lock()
	var list []*Socket
	for s := range n.byID[u.ID] {
		list = append(list, s)
	}
	n.mu.Unlock()
	if len(list) == 0 {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for _, s := range list {
			s.hmu.Lock()
			if c := s.channel(u.Topic); c != nil && !s.closed {
				n.log.Info("channel closed by request", "socket_id", s.id, "conn", s.connID, "topic", u.Topic)
				s.endChannel(c, ErrUnsubscribed, "phx_close")
			}
			s.hmu.Unlock()
		}
	}()
}
