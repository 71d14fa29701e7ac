// Package postgres is Hearth's cluster pub/sub on PostgreSQL alone: the
// nodes of a cluster share one database, broadcast through LISTEN/NOTIFY and
// keep every topic's recent history in a table, so that messages reach the
// subscribers of every node exactly once and in order per topic, also while
// a node's listener reconnects or the server restarts.
//
//	b, err := postgres.New(ctx, postgres.Options{URL: os.Getenv("DATABASE_URL")})
//	...
//	node := channels.New(channels.Options{Broker: b})
//
// # Schema
//
// [New] creates (or migrates) two tables and two functions in Options.Schema
// ("public" by default), in one transaction under an advisory lock, so
// nodes may start together against an empty database:
//
//   - hearth_topics: one row per topic with its epoch (random, made with the
//     row) and seq, the offset of its latest message;
//   - hearth_messages: the history, one row per message (topic, seq, event,
//     payload, is_binary, exclude, created_at), trimmed in the background to
//     Options.HistorySize messages per topic and Options.HistoryTTL;
//   - hearth_publish(topic, event, payload bytea, is_binary, exclude) and
//     hearth_broadcast(topic, event, payload jsonb): publishing from SQL;
//   - hearth_shard(topic): the topic's notification shard.
//
// # Publishing
//
// [Broker.Publish] queues the message; a publisher goroutine commits what
// queued while the previous transaction was in flight as one statement (one
// round trip): it adds each topic's message count to the topic's seq under
// the row lock (so offsets follow commit order, which is also the order
// listeners receive notifications in), inserts the messages, and sends them
// packed into as few notifications as fit under PostgreSQL's 8000-byte
// limit. Payloads
// that do not fit travel through the table, the notification carrying a
// reference. Nothing waits on a timer: at low load a message is committed
// alone, under load hundreds share a commit. [Broker.Stats] reports the
// batch sizes reached.
//
// # Delivery
//
// Each node has one dedicated listener connection (never through a
// transaction pooler such as PgBouncer in transaction mode: LISTEN needs a
// session; the listener proves at every connect that a notification sent
// from another session reaches it, and New fails with [ErrNotListening]
// otherwise). It delivers the messages of the topics the node subscribed to,
// checking offsets: duplicates are dropped, a message ahead of the next
// expected offset makes the node read the missing range from the table
// first. When the connection fails (a dead connection is noticed by pinging
// it when idle) the node reconnects with jittered backoff, LISTENs again,
// then reads everything its topics missed from the table; [Broker.State]
// and Options.OnStateChange tell readiness checks and metrics where it is.
// What the node can replay is bounded by the retention: messages trimmed
// before it read them are counted in Stats.Missed.
//
// # Interest-based listening
//
// Topic notifications travel on [Shards] channels ("hearth.0" to
// "hearth.1023" for channel "hearth"), a topic's shard being a hash that Go
// and the SQL function hearth_shard(topic) compute alike. A node LISTENs to
// the shards of the topics it subscribed to, adding and dropping them as
// topics come and go, and so receives only those shards' notifications;
// control messages stay on the schema's channel, which every node hears. A
// topic whose shard is not listened to yet is caught up from the table once
// the LISTEN committed, as after a reconnect: no message is lost in the
// change. [Options].ListenAll listens to every shard. Stats.ShardsListened,
// Stats.Listens and Stats.Unlistens report it.
//
// # Several databases
//
// Past what one PostgreSQL carries, [Options].URLs spreads the topics over
// several databases: each topic lives on one of them, chosen by rendezvous
// hashing of the topic over the databases' identities (recorded in each
// database's hearth_meta), which Go and the SQL function hearth_owner(topic)
// compute alike. A node keeps one pool and one listener per database and
// sends each call about a topic to its database; history, recovery,
// hearth_broadcast and the [Emitter] work per database, and hearth_publish
// refuses (SQLSTATE HT001) a topic that another database owns. Controls go
// through one database, whose control channel every node listens to.
// Adding or removing a database is an operation ([Options].Rebalance): the
// topics that move start a new epoch on their new database. See
// docs/clustering.md, "Several databases".
//
// # Publishing from outside
//
// [Emitter] publishes from any Go program with the database URL;
// `SELECT hearth_broadcast('room:1', 'new_msg', '{"body":"hi"}')` does the
// same from SQL, a trigger included; `hearth emit TOPIC EVENT JSON` from a
// shell. Every node delivers these like its own broadcasts.
//
// # Failover
//
// Give the URL every server (`host=a,b` or `postgres://a,b/db`) with
// `target_session_attrs=read-write`: after a failover the listener and the
// pool reconnect to the new primary, and the node catches up from the
// table (NOTIFY is not replicated). Every new connection compares the
// server's timeline with the one recorded in the schema: on a promoted
// standby, where an asynchronous failover may have lost acknowledged
// commits whose offsets would be handed out again, every topic moves to a
// new epoch, so that clients are told their recovery was incomplete. Set
// Options.SynchronousFailover when failovers only go to synchronous
// standbys: then the epochs stay and recovery spans the failover.
package postgres
