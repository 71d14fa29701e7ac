// Package presence tracks who is present in which topic, across every node
// of a Hearth cluster, with Phoenix Presence's wire format: the official
// phoenix.js Presence (and the Hearth client's) works unchanged.
//
// # Use
//
// Create one Presence per node, before the node serves, and track clients
// from Join:
//
//	p := presence.New(node, presence.Options{Logger: log})
//	node.Handle("room:*", channels.Handler{
//		Join: func(ctx context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
//			user := userOf(c.Socket())
//			return channels.JoinReply{}, p.Track(c, user, map[string]any{"online_at": time.Now().Unix()})
//		},
//	})
//	...
//	ws.Shutdown(ctx) // sockets close: their presences leave
//	p.Shutdown(ctx)  // then presence says goodbye to the cluster
//
// [Presence.Track] pushes the topic's presence_state to the joining client
// and announces the join to every subscriber of the topic, on every node,
// as a presence_diff. A presence lasts until [Presence.Untrack] or the end
// of its channel (leave, socket closed, crash, refused join).
// [Presence.Update] changes a meta. [Presence.List] returns the cluster's
// view of a topic.
//
// # Wire format
//
// presence_state, pushed to one client: {key: {"metas": [meta, ...]}}.
// presence_diff, broadcast to a topic's subscribers:
// {"joins": {key: {"metas": [...]}}, "leaves": {key: {"metas": [...]}}}.
// Each meta is the tracked JSON object with "phx_ref" added (unique in the
// cluster); an update is a leave of the old meta and a join of the new one,
// whose "phx_ref_prev" names the old ref, in one diff.
//
// Diffs are node-local broadcasts ([channels.Node.LocalBroadcast]): they
// are not stored and never replayed by recovery (a rejoining client gets a
// fresh presence_state instead). Each topic sends at most one diff per
// Options.DiffInterval (50 ms), holding every change since the previous
// one, so a reconnect storm into a big room costs one fan-out per interval
// rather than one per member, and clients joining within one interval
// share one encoding of the state.
//
// # Cluster
//
// Each node owns the presences of its own sockets and announces their
// changes to the others with control messages through the broker (at most
// once, in order per node); every node keeps the merged view and sends the
// diffs to its own subscribers. Messages are numbered per node, so a lost
// one is noticed (at the next message or heartbeat) and repaired by
// asking the owner for its state. A node starting up asks every node for
// its state. State transfers are split into messages of at most 5,000
// bytes, which a PostgreSQL notification can carry.
//
// Every node heartbeats every Options.HeartbeatInterval (5 s). A node not
// heard from within Options.Timeout (15 s) is considered dead and its
// presences leave: on every other node, a killed node's presences are
// gone at most Timeout + HeartbeatInterval/5 + DiffInterval after the
// last message it managed to send (about 16 s with the defaults), plus
// the broker's delivery time. A node that shuts down cleanly says goodbye
// and its presences leave at once. A restarted process is a new member
// (each run draws a random incarnation): the presences of its previous
// run time out, or leave at once when it comes back with the same NodeID.
//
// # Limits
//
// Keys are at most [MaxKeyLen] bytes and metas at most [MaxMetaSize] bytes
// of JSON, so that any change fits in one control message.
package presence
