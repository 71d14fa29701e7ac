package postgres

import (
	"crypto/md5"
	"encoding/binary"
	"hash/fnv"
	"strconv"
)

// Interest-based listening. Topic records travel on one of Shards
// notification channels, chosen by a hash of the topic that Go (shardOf)
// and SQL (hearth_shard, schema.go) compute alike; control records
// (presence, disconnects, the server API) and the listener's probe travel
// on the schema's channel, which every node listens to. A node LISTENs to
// the shards where it has a subscribed topic, and UNLISTENs a shard when
// its last topic there goes: Postgres then sends it only the notifications
// of shards it has an interest in.
//
// A topic whose shard the node does not listen to yet is subscribed stale:
// the listener goroutine LISTENs (which takes effect when the statement's
// implicit transaction commits) and only then catches the topic up from
// the table, exactly as after a reconnect. Whatever committed before the
// LISTEN is in the table when the catch-up reads it; whatever commits after
// arrives as a notification; offsets drop what arrives twice.

// Shards is the number of notification channels topics are spread over.
//
// A node listens to the shards of its topics: with k topics spread
// uniformly it listens to about Shards×(1-(1-1/Shards)^k) of them, so with
// 1024 shards a node holding 100 topics hears about 9% of the traffic, one
// holding 1000 about 62%. More shards would let busier nodes hear less,
// but a PostgreSQL backend matches every queued notification against its
// list of LISTENed channels one by one: past a few thousand channels that
// scan costs more than the notifications it saves. 1024 keeps the list
// short enough (a node listening to every shard does a 1024-string scan
// per notification) while cutting the traffic of the small and mid-size
// nodes a large cluster is made of. The value is recorded in the schema
// (hearth_meta key "shards") and baked into hearth_shard(): changing it is
// a schema migration.
const Shards = 1024

// shardOf returns the shard of topic: the first four bytes of the topic's
// MD5, big-endian, modulo Shards. hearth_shard() in SQL computes the same:
// ('x' || substr(md5(topic), 1, 8))::bit(32)::bigint % Shards.
func shardOf(topic string) int {
	sum := md5.Sum([]byte(topic))
	return int(binary.BigEndian.Uint32(sum[:4]) % Shards)
}

// shardPrefix returns the prefix of the shard channels of base: base + ".",
// or, when base + "." + the longest shard number would exceed PostgreSQL's
// 63-byte identifiers, "hs" + a hash of base + ".". Schema channels never
// hold a dot (validName), so a shard channel is never another schema's
// channel.
func shardPrefix(base string) string {
	if len(base)+1+len(strconv.Itoa(Shards-1)) <= 63 {
		return base + "."
	}
	h := fnv.New64a()
	h.Write([]byte(base))
	return "hs" + strconv.FormatUint(h.Sum64(), 16) + "."
}
