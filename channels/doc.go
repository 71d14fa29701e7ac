// Package channels is the core of Hearth: Phoenix-style channels for Go.
//
// A [Node] routes topics ("room:42") to [Handler]s by pattern, keeps the
// local registry of who is joined to what, and bridges to the cluster
// broker (package pubsub). Package server serves a Node over WebSocket with
// the Phoenix V2 protocol, so the official phoenix JavaScript client and the
// Hearth client both work against it.
//
// # Defining channels
//
//	node := channels.New(channels.Options{})
//	node.Handle("room:*", channels.Handler{
//		Join: func(ctx context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
//			if !mayJoin(c.Socket().Assigns(), ev.Topic) {
//				return channels.JoinReply{}, channels.Refuse("unauthorized")
//			}
//			return channels.JoinReply{}, nil
//		},
//		In: func(ctx context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
//			return channels.OK(nil), c.Broadcast(ctx, "new_msg", json.RawMessage(ev.Payload))
//		},
//	})
//
// Sockets are authorized once, at connect, by [Options.Connect]; channels
// are authorized per join by [Handler.Join]. Broadcasts can be sent from
// anywhere with [Node.Broadcast], or from a handler with
// [Channel.Broadcast] and [Channel.BroadcastFrom].
//
// # Typed events
//
// A handler may declare its events with their Go types: [HandleIn] for a
// client push (payload and reply) and [Emits] for what the server pushes
// or broadcasts, in [Handler].Events. Typed pushes are decoded strictly
// (unknown fields and wrong types get an error reply saying so) before the
// function sees them, and [Node.Events] lists the declarations, from which
// package channels/tstypes (`hearth gen types`) writes the TypeScript
// types that the Hearth client's socket.channel<Events>(topic) checks.
//
//	node.Handle("room:*", channels.Handler{
//		Join: join,
//		Events: []channels.Event{
//			channels.HandleIn("new_msg", func(ctx context.Context, c *channels.Channel, m NewMsg) (Ack, error) {
//				return Ack{}, c.Broadcast(ctx, "new_msg", Message{Body: m.Body})
//			}),
//			channels.Emits[Message]("new_msg"),
//		},
//	})
//
// # Delivery
//
// A broadcast goes through the broker (which stores it and assigns its
// topic offset) to every node with subscribers, and each node encodes it
// once and queues the same bytes on every subscribed connection: the
// fastlane. Events listed in [Handler.Intercept] instead run [Handler.Out]
// once per subscriber, which can filter or rewrite them. A socket receives
// the broadcasts of a topic in publish order.
//
// # Concurrency
//
// The handler functions of one socket never run concurrently; client
// messages are handled in arrival order, intercepted broadcasts in publish
// order. Different sockets run in parallel. A panicking handler crashes
// only its channel: the client gets phx_error and rejoins.
//
// # Recovery
//
// A client that speaks Hearth's extension (the Hearth JavaScript client)
// sends its last position when it rejoins, and receives what it missed from
// the broker's history before live messages, without gaps or duplicates;
// the join reply says whether recovery was complete. A plain Phoenix
// client is unaffected. The wire details are in docs/protocol.md.
package channels
