package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
)

// EventKind tells which way a typed [Event] travels.
type EventKind int

const (
	// EventIn is pushed by clients and answered with a reply.
	EventIn EventKind = iota
	// EventOut is pushed or broadcast by the server.
	EventOut
)

func (k EventKind) String() string {
	if k == EventIn {
		return "in"
	}
	return "out"
}

// Event declares one typed event of a channel, for [Handler].Events. Make
// them with [HandleIn] (a client push, its payload and reply types, and the
// function handling it) and [Emits] (a server push or broadcast and its
// payload type). The declarations serve two ends:
//
//   - the server decodes the payload of a typed client push strictly
//     (unknown fields and wrong types are refused with an error reply that
//     says what does not fit) before the handler function sees it;
//   - [Node.Events] lists them, and `hearth gen types` (package
//     channels/tstypes) writes TypeScript declarations from them, so that
//     with the Hearth client a misspelt event or field is a compile error.
type Event struct {
	// Name is the event's name ("new_msg").
	Name string
	// Kind tells which way it travels.
	Kind EventKind
	// Payload is the Go type of the payload.
	Payload reflect.Type
	// Reply is the Go type of the ok reply's response (EventIn only).
	Reply reflect.Type

	handle func(ctx context.Context, c *Channel, ev InEvent) (Reply, error)
}

// HandleIn declares a client push named name whose payload decodes into P
// and whose ok reply carries R, handled by fn.
//
// The payload is decoded strictly: a field P does not have, a value of the
// wrong type, trailing data or a binary payload are answered with an error
// reply {"reason": "invalid payload", "event": name, "error": "..."} and fn
// does not run. fn's error follows the rules of [Handler].In: a
// *[ReplyError] (see [Refuse]) sends an error reply, [ErrStop] closes the
// channel, any other error crashes it. Otherwise the reply is ok with fn's
// R as its response.
func HandleIn[P, R any](name string, fn func(ctx context.Context, c *Channel, payload P) (R, error)) Event {
	if fn == nil {
		panic("channels: HandleIn " + name + ": nil function")
	}
	return Event{
		Name:    name,
		Kind:    EventIn,
		Payload: reflect.TypeFor[P](),
		Reply:   reflect.TypeFor[R](),
		handle: func(ctx context.Context, c *Channel, ev InEvent) (Reply, error) {
			var p P
			if err := decodeStrict(ev, &p); err != nil {
				return ErrorReply(map[string]string{"reason": "invalid payload", "event": name, "error": err.Error()}), nil
			}
			r, err := fn(ctx, c, p)
			if err != nil {
				return Reply{}, err
			}
			return OK(r), nil
		},
	}
}

// Emits declares an event named name that the server pushes
// ([Channel.Push]) or broadcasts ([Channel.Broadcast], [Node.Broadcast]) on
// the channel's topics, with a payload of type P. It is a declaration for
// clients' types: what is sent is not checked.
func Emits[P any](name string) Event {
	return Event{Name: name, Kind: EventOut, Payload: reflect.TypeFor[P]()}
}

var bytesType = reflect.TypeFor[[]byte]()

// decodeStrict decodes a typed push's payload into p (a pointer).
func decodeStrict(ev InEvent, p any) error {
	if ev.Binary {
		if reflect.TypeOf(p).Elem() == bytesType {
			*(p.(*[]byte)) = ev.Payload
			return nil
		}
		return errors.New("want a JSON payload, got a binary one")
	}
	dec := json.NewDecoder(bytes.NewReader(ev.Payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		return describeDecodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// describeDecodeError rewords encoding/json's errors for a client.
func describeDecodeError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Errorf("field %q: want %s, got %s", te.Field, jsonKind(te.Type), te.Value)
		}
		return fmt.Errorf("want %s, got %s", jsonKind(te.Type), te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return errors.New("not valid JSON")
	}
	// "json: unknown field \"bdy\"" and the like.
	msg := err.Error()
	if len(msg) > 6 && msg[:6] == "json: " {
		msg = msg[6:]
	}
	return errors.New(msg)
}

// jsonKind names the JSON kind a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.String()
}

// withEvents returns h with its typed events installed: In dispatches the
// typed client pushes and hands the others to h.In. It panics on a
// duplicate or unnamed event.
func withEvents(pattern string, h Handler) Handler {
	if len(h.Events) == 0 {
		return h
	}
	in := make(map[string]Event)
	out := make(map[string]bool)
	for _, e := range h.Events {
		switch {
		case e.Name == "":
			panic("channels: handler for " + pattern + " declares an event without a name")
		case e.Payload == nil:
			panic("channels: handler for " + pattern + ": event " + e.Name + " was not made with HandleIn or Emits")
		case e.Kind == EventIn && e.handle == nil:
			panic("channels: handler for " + pattern + ": event " + e.Name + " was not made with HandleIn")
		case e.Kind == EventIn && in[e.Name].Name != "", e.Kind == EventOut && out[e.Name]:
			panic("channels: handler for " + pattern + " declares the " + e.Kind.String() + " event " + e.Name + " twice")
		}
		if e.Kind == EventIn {
			in[e.Name] = e
		} else {
			out[e.Name] = true
		}
	}
	if len(in) == 0 {
		return h
	}
	untyped := h.In
	h.In = func(ctx context.Context, c *Channel, ev InEvent) (Reply, error) {
		if e, ok := in[ev.Event]; ok {
			return e.handle(ctx, c, ev)
		}
		if untyped == nil {
			return ErrorReply(reasonUnhandled), nil
		}
		return untyped(ctx, c, ev)
	}
	return h
}

// ChannelEvents is the typed events of one topic pattern, as
// [Node.Events] lists them.
type ChannelEvents struct {
	Pattern string
	Events  []Event
}

// Events returns the typed events that the handlers of the node declare,
// by pattern (sorted), for code generators such as `hearth gen types`.
// Handlers without typed events are left out.
func (n *Node) Events() []ChannelEvents {
	var all []ChannelEvents
	add := func(rt *route) {
		if len(rt.handler.Events) > 0 {
			all = append(all, ChannelEvents{Pattern: rt.pattern, Events: rt.handler.Events})
		}
	}
	for _, rt := range n.router.exact {
		add(rt)
	}
	for _, rt := range n.router.splat {
		add(rt)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Pattern < all[j].Pattern })
	return all
}
