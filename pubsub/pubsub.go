// Package pubsub is the cluster layer under Hearth's channels: it carries
// broadcasts between the nodes of a cluster and keeps a per-topic history so
// that a client (or a node's listener) that was away can catch up.
//
// A [Broker] assigns every published message of a topic a monotonically
// increasing offset within an epoch, and delivers the messages of each topic a
// node subscribed to exactly once and in offset order, to that node's
// [Handler]. The in-process [Memory] broker is the default; package
// pubsub/postgres is the cluster implementation on PostgreSQL LISTEN/NOTIFY.
//
// # Positions and recovery
//
// A [Position] names a point in a topic's stream: an epoch (which changes when
// the topic's history is reset or lost, for example a memory broker restarting)
// and the offset of the last message seen. [Broker.History] returns what came
// after a position, and says whether that is everything ([History.Complete]).
//
// # Control messages
//
// Some cluster traffic is not a broadcast: force-disconnect requests, presence
// heartbeats. [Broker.PublishControl] sends such a message to every node
// (including the sender) at most once, without storing it.
package pubsub

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Position is a point in a topic's stream.
type Position struct {
	// Epoch identifies the topic's history. A client position with another
	// epoch cannot be recovered from.
	Epoch string `json:"epoch"`
	// Offset is the offset of the last message at this position. The first
	// message of an epoch has offset 1; zero means "before the first message".
	Offset uint64 `json:"offset"`
}

// String returns "epoch:offset".
func (p Position) String() string { return p.Epoch + ":" + strconv.FormatUint(p.Offset, 10) }

// Message is one broadcast on a topic.
type Message struct {
	Topic string
	Event string
	// Payload is JSON text, or raw bytes when Binary is true.
	Payload []byte
	Binary  bool
	// Exclude, when not empty, names the connection that must not receive the
	// message (broadcast-from). Brokers carry it unchanged.
	Exclude string

	// Epoch and Offset are set by the broker: on the messages it delivers to a
	// Handler and returns from History. They are ignored on Publish.
	Epoch  string
	Offset uint64
}

// Position returns the stream position of a delivered message.
func (m *Message) Position() Position { return Position{Epoch: m.Epoch, Offset: m.Offset} }

// Handler receives what a Broker delivers to this node.
//
// HandleMessage is called for every message of a subscribed topic, exactly
// once and in offset order per topic; calls for different topics may run
// concurrently. It must not block for long: it runs on the broker's delivery
// path. The message and its payload must be treated as read-only; they may
// be shared with other nodes in the same process.
//
// HandleControl is called for every control message published anywhere in
// the cluster, this node's own included.
type Handler interface {
	HandleMessage(m *Message)
	HandleControl(data []byte)
}

// Broker is the cluster pub/sub with history.
//
// Register must be called once, before Subscribe; package channels does this
// when a broker is given to it. All other methods are safe for concurrent use.
type Broker interface {
	// Register sets the handler that receives this node's deliveries.
	Register(h Handler)

	// Publish stores m in the topic's history, assigning the next offset, and
	// delivers it to every node subscribed to the topic. It returns once the
	// message is durable for the broker (committed, for Postgres), with the
	// position it was given.
	Publish(ctx context.Context, m Message) (Position, error)

	// PublishControl sends data to every node's Handler.HandleControl, at
	// most once and without storing it.
	PublishControl(ctx context.Context, data []byte) error

	// Subscribe starts delivery of the topic's messages to this node. Calls
	// are counted: delivery stops after as many Unsubscribe calls.
	Subscribe(ctx context.Context, topic string) error
	// Unsubscribe undoes one Subscribe.
	Unsubscribe(ctx context.Context, topic string) error

	// History returns up to limit messages of the topic after since, oldest
	// first, together with the topic's current position. limit <= 0 means
	// the broker's own maximum. See History for what Complete means.
	History(ctx context.Context, topic string, since Position, limit int) (History, error)

	// Close stops the broker. Pending Publish calls fail with ErrClosed.
	Close() error
}

// AsyncBroker is a Broker that can also publish without waiting for each
// message to be stored. Both brokers of this module implement it; package
// channels falls back to Publish for a broker that does not.
type AsyncBroker interface {
	Broker
	// PublishAsync queues m and returns without waiting for it. done, when
	// not nil, is called once with the outcome of the queued message, on a
	// goroutine of the broker: it must not block. The messages queued for
	// one topic are published in the order of the calls that queued them.
	// PublishAsync blocks only while the broker's queue is full, until ctx
	// ends. An error means m was not queued, and done is not called.
	PublishAsync(ctx context.Context, m Message, done func(Position, error)) error
}

// History is the answer of Broker.History.
type History struct {
	// Messages are the messages after the requested position, oldest first.
	// When Complete is false they may hold only what is still retained (or
	// nothing): a client told its recovery is incomplete refetches state.
	Messages []Message
	// Top is the topic's position now: its epoch and the offset of its
	// latest message (zero when the topic has none).
	Top Position
	// Complete reports whether Messages hold every message after the
	// requested position up to Top: the epoch matched, nothing in between
	// was trimmed, and the limit was not reached.
	Complete bool
}

// Errors returned by brokers.
var (
	// ErrClosed is returned by a broker that was closed.
	ErrClosed = errors.New("pubsub: broker closed")
	// ErrTooLarge is returned by Publish for a payload over the broker's limit.
	ErrTooLarge = errors.New("pubsub: payload too large")
	// ErrInvalidTopic is returned for a topic [CheckTopic] refuses; the
	// error is then a *TopicError that says why.
	ErrInvalidTopic = errors.New("pubsub: invalid topic")
)

// MaxTopicLen is the longest topic any broker accepts, in bytes. It matches
// the one-byte length fields of the Phoenix binary framing.
const MaxTopicLen = 255

// TopicError says why a topic is refused. It matches [ErrInvalidTopic]
// with errors.Is.
type TopicError struct {
	Reason string // e.g. "topic must not be empty"
}

func (e *TopicError) Error() string        { return "pubsub: invalid topic: " + e.Reason }
func (e *TopicError) Is(target error) bool { return target == ErrInvalidTopic }

// CheckTopic returns nil if every broker accepts topic, else a *TopicError
// saying why not. The rules are the same for every broker, so that an
// application moving from the in-process broker to PostgreSQL meets no
// new refusal: 1 to MaxTopicLen bytes of UTF-8 text without a NUL byte
// (PostgreSQL text cannot hold one).
func CheckTopic(topic string) error {
	switch {
	case topic == "":
		return &TopicError{"topic must not be empty"}
	case len(topic) > MaxTopicLen:
		return &TopicError{"topic is longer than " + strconv.Itoa(MaxTopicLen) + " bytes"}
	case strings.IndexByte(topic, 0) >= 0:
		return &TopicError{"topic contains a NUL byte"}
	case !utf8.ValidString(topic):
		return &TopicError{"topic is not valid UTF-8"}
	}
	return nil
}

// ValidTopic reports whether topic is acceptable to a broker (see
// [CheckTopic]).
func ValidTopic(topic string) bool { return CheckTopic(topic) == nil }
