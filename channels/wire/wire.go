// Package wire encodes and decodes the Phoenix V2 wire format, JSON and
// binary, and the server side of WebSocket framing.
//
// A JSON message is the array [join_ref, ref, topic, event, payload], refs
// being strings or null. The binary format carries an ArrayBuffer payload
// behind a header of one-byte lengths:
//
//	push      (client to server) [0, join_ref_len, ref_len, topic_len, event_len] join_ref ref topic event payload
//	push      (server to client) [0, join_ref_len, topic_len, event_len] join_ref topic event payload
//	reply     (server to client) [1, join_ref_len, ref_len, topic_len, status_len] join_ref ref topic status payload
//	broadcast (server to client) [2, topic_len, event_len] topic event payload
//
// Decoding never panics on any input; it returns a *DecodeError that says
// what is wrong. Encoding appends to a caller's buffer and allocates nothing
// when the buffer has room.
package wire

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Binary frame kinds.
const (
	KindPush      = 0
	KindReply     = 1
	KindBroadcast = 2
)

// Message is one decoded Phoenix message. An empty ref or join ref stands
// for null.
type Message struct {
	JoinRef string
	// JoinRefEmpty is set when the join_ref was the empty string rather
	// than null: a reply echoes it as "" (see AppendTextReplyTo).
	JoinRefEmpty bool
	Ref          string
	Topic        string
	Event        string
	// Payload is the raw JSON value for a text message, or the raw bytes of
	// a binary one. It aliases the decoded buffer.
	Payload []byte
	Binary  bool
}

// DecodeError describes a message that is not valid Phoenix V2.
type DecodeError struct {
	Reason string
	// Framed is set when only the message's content is wrong (an empty
	// topic or event, a payload that is not valid JSON or nested too
	// deep) while its framing is sound: the Message returned with the
	// error holds its refs and topic. Such an error concerns one topic,
	// and a server answers it there (an error reply), keeping the
	// connection; any other DecodeError leaves the stream unreadable.
	Framed bool
}

func (e *DecodeError) Error() string { return "wire: " + e.Reason }

func fail(reason string) error { return &DecodeError{Reason: reason} }

// invalid reports a well-framed message whose content is wrong.
func invalid(reason string) error { return &DecodeError{Reason: reason, Framed: true} }

// MaxDepth is the deepest nesting of arrays and objects accepted in a
// JSON payload: that of Go's encoding/json, which handlers decode with.
const MaxDepth = 10000

// DecodeText decodes a JSON message. Strings are copied; the payload aliases data.
func DecodeText(data []byte) (Message, error) {
	var m Message
	d := decoder{b: data}
	d.ws()
	if !d.eat('[') {
		return m, fail("message is not a JSON array")
	}
	var err error
	d.ws()
	m.JoinRefEmpty = len(d.b)-d.i >= 2 && d.b[d.i] == '"' && d.b[d.i+1] == '"'
	if m.JoinRef, err = d.ref("join_ref"); err != nil {
		return m, err
	}
	if err = d.comma(); err != nil {
		return m, err
	}
	if m.Ref, err = d.ref("ref"); err != nil {
		return m, err
	}
	if err = d.comma(); err != nil {
		return m, err
	}
	if m.Topic, err = d.str("topic"); err != nil {
		return m, err
	}
	if err = d.comma(); err != nil {
		return m, err
	}
	if m.Event, err = d.str("event"); err != nil {
		return m, err
	}
	if err = d.comma(); err != nil {
		return m, err
	}
	d.ws()
	start := d.i
	if err = d.skipValue(); err != nil {
		return m, err
	}
	m.Payload = data[start:d.i]
	d.ws()
	if !d.eat(']') {
		return m, fail("message array must have exactly 5 elements")
	}
	d.ws()
	if d.i != len(d.b) {
		return m, fail("trailing data after message array")
	}
	switch {
	case m.Topic == "":
		return m, invalid("topic must not be empty")
	case m.Event == "":
		return m, invalid("event must not be empty")
	case d.depth > MaxDepth:
		return m, invalid("payload is nested deeper than " + strconv.Itoa(MaxDepth) + " levels")
	case !json.Valid(m.Payload):
		return m, invalid("payload is not valid JSON")
	}
	return m, nil
}

// DecodeBinary decodes a binary client push (kind 0). Strings are copied;
// the payload aliases data.
func DecodeBinary(data []byte) (Message, error) {
	var m Message
	if len(data) < 5 {
		return m, fail("binary message shorter than its header")
	}
	if data[0] != KindPush {
		return m, fail("binary message kind " + strconv.Itoa(int(data[0])) + " is not a push")
	}
	n := 5 + int(data[1]) + int(data[2]) + int(data[3]) + int(data[4])
	if len(data) < n {
		return m, fail("binary message shorter than its header says")
	}
	p := 5
	field := func(l byte) string {
		s := string(data[p : p+int(l)])
		p += int(l)
		return s
	}
	m.JoinRef, m.Ref, m.Topic, m.Event = field(data[1]), field(data[2]), field(data[3]), field(data[4])
	for _, s := range [...]string{m.JoinRef, m.Ref, m.Topic, m.Event} {
		if !utf8.ValidString(s) {
			return m, fail("binary header field is not UTF-8")
		}
	}
	m.Payload, m.Binary = data[n:], true
	switch {
	case m.Topic == "":
		return m, invalid("topic must not be empty")
	case m.Event == "":
		return m, invalid("event must not be empty")
	}
	return m, nil
}

// AppendText appends the JSON form of a message whose payload is already
// JSON. Empty refs are written as null.
func AppendText(dst []byte, joinRef, ref, topic, event string, payload []byte) []byte {
	dst = appendHead(dst, joinRef, ref, topic)
	dst = AppendString(dst, event)
	dst = append(dst, ',')
	return append(appendPayload(dst, payload), ']')
}

// AppendTextReply appends a phx_reply message with the given status and
// JSON response.
func AppendTextReply(dst []byte, joinRef, ref, topic, status string, response []byte) []byte {
	dst = appendHead(dst, joinRef, ref, topic)
	dst = append(dst, `"phx_reply",{"status":`...)
	dst = AppendString(dst, status)
	dst = append(dst, `,"response":`...)
	return append(appendPayload(dst, response), "}]"...)
}

// AppendTextReplyTo appends the reply to m with the given status and JSON
// response, echoing m's join_ref as it was sent (null, or a string, ""
// included, as Phoenix does).
func AppendTextReplyTo(dst []byte, m *Message, status string, response []byte) []byte {
	if m.JoinRefEmpty && m.JoinRef == "" {
		dst = append(dst, `["",`...)
		dst = appendRef(dst, m.Ref)
		dst = append(dst, ',')
		dst = AppendString(dst, m.Topic)
		dst = append(dst, `,"phx_reply",{"status":`...)
		dst = AppendString(dst, status)
		dst = append(dst, `,"response":`...)
		return append(appendPayload(dst, response), "}]"...)
	}
	return AppendTextReply(dst, m.JoinRef, m.Ref, m.Topic, status, response)
}

// appendHead appends `[join_ref,ref,"topic",`.
func appendHead(dst []byte, joinRef, ref, topic string) []byte {
	dst = append(dst, '[')
	dst = appendRef(dst, joinRef)
	dst = append(dst, ',')
	dst = appendRef(dst, ref)
	dst = append(dst, ',')
	dst = AppendString(dst, topic)
	return append(dst, ',')
}

// appendPayload appends a JSON payload, {} when empty.
func appendPayload(dst, payload []byte) []byte {
	if len(payload) == 0 {
		return append(dst, "{}"...)
	}
	return append(dst, payload...)
}

// AppendBinaryPush appends a binary server push (kind 0). Strings longer
// than 255 bytes cannot be framed: callers validate topics and events first.
func AppendBinaryPush(dst []byte, joinRef, topic, event string, payload []byte) []byte {
	dst = append(dst, KindPush, byte(len(joinRef)), byte(len(topic)), byte(len(event)))
	dst = append(dst, joinRef...)
	dst = append(dst, topic...)
	dst = append(dst, event...)
	return append(dst, payload...)
}

// AppendBinaryReply appends a binary reply (kind 1).
func AppendBinaryReply(dst []byte, joinRef, ref, topic, status string, payload []byte) []byte {
	dst = append(dst, KindReply, byte(len(joinRef)), byte(len(ref)), byte(len(topic)), byte(len(status)))
	dst = append(dst, joinRef...)
	dst = append(dst, ref...)
	dst = append(dst, topic...)
	dst = append(dst, status...)
	return append(dst, payload...)
}

// AppendBinaryBroadcast appends a binary broadcast (kind 2).
func AppendBinaryBroadcast(dst []byte, topic, event string, payload []byte) []byte {
	dst = append(dst, KindBroadcast, byte(len(topic)), byte(len(event)))
	dst = append(dst, topic...)
	dst = append(dst, event...)
	return append(dst, payload...)
}

// FitsBinary reports whether s fits a one-byte length field.
func FitsBinary(s string) bool { return len(s) <= 255 }

func appendRef(dst []byte, ref string) []byte {
	if ref == "" {
		return append(dst, "null"...)
	}
	return AppendString(dst, ref)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

type decoder struct {
	b     []byte
	i     int
	depth int // the deepest nesting skipValue saw
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *decoder) comma() error {
	d.ws()
	if !d.eat(',') {
		return fail("message array must have exactly 5 elements")
	}
	d.ws()
	return nil
}

// ref decodes a string or null.
func (d *decoder) ref(name string) (string, error) {
	d.ws()
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return "", nil
	}
	if d.i < len(d.b) && d.b[d.i] != '"' {
		return "", fail(name + " must be a string or null")
	}
	return d.str(name)
}

// str decodes a JSON string.
func (d *decoder) str(name string) (string, error) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return "", fail(name + " must be a string")
	}
	start := d.i
	d.i++
	escaped := false
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '\\':
			escaped = true
			d.i += 2
			continue
		case c == '"':
			d.i++
			raw := d.b[start+1 : d.i-1]
			if !escaped {
				if !utf8.Valid(raw) {
					return "", fail(name + " is not valid UTF-8")
				}
				return string(raw), nil
			}
			var s string
			if err := json.Unmarshal(d.b[start:d.i], &s); err != nil {
				return "", fail(name + " is not a valid JSON string")
			}
			return s, nil
		case c < 0x20:
			return "", fail(name + " contains a control character")
		}
		d.i++
	}
	return "", fail("unterminated string in " + name)
}

// skipValue moves past one JSON value without validating its contents
// (the caller validates the payload with json.Valid).
func (d *decoder) skipValue() error {
	start, depth := d.i, 0
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch c {
		case '"':
			d.i++
			for d.i < len(d.b) && d.b[d.i] != '"' {
				if d.b[d.i] == '\\' {
					d.i++
				}
				d.i++
			}
			if d.i >= len(d.b) {
				return fail("unterminated string in payload")
			}
			d.i++
		case '{', '[':
			depth++
			d.depth = max(d.depth, depth)
			d.i++
		case '}', ']':
			if depth == 0 {
				// The end of the message array (or a stray brace) after a scalar.
				if d.i == start {
					return fail("payload is missing")
				}
				return nil
			}
			depth--
			d.i++
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				if d.i == start {
					return fail("payload is missing")
				}
				return nil
			}
			d.i++
		default:
			d.i++
		}
		if depth == 0 && (c == '}' || c == ']' || c == '"') {
			return nil
		}
	}
	if depth > 0 || d.i == start {
		return fail("payload is not valid JSON")
	}
	return nil
}

// KindBroadcastPos is Hearth's extension of the binary framing: a broadcast
// that carries its stream position, sent only to clients that announced the
// extension. Header [3, topic_len, event_len, pos_len] topic event pos payload,
// pos being the same "@<offset>" string a JSON broadcast carries in its ref slot.
const KindBroadcastPos = 3

// PosPrefix starts the ref of a broadcast that carries a stream position:
// "@17" is the message at offset 17 of its topic. Phoenix clients ignore the
// ref of a broadcast; the prefix keeps it from ever equalling one of their
// numeric heartbeat refs.
const PosPrefix = '@'

// AppendBroadcastText appends a JSON broadcast [null, ref, topic, event,
// payload], the ref being "@<offset>" when offset is not zero and null
// otherwise.
func AppendBroadcastText(dst []byte, topic, event string, offset uint64, payload []byte) []byte {
	dst = append(dst, "[null,"...)
	if offset == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"', PosPrefix)
		dst = strconv.AppendUint(dst, offset, 10)
		dst = append(dst, '"')
	}
	dst = append(dst, ',')
	dst = AppendString(dst, topic)
	dst = append(dst, ',')
	dst = AppendString(dst, event)
	dst = append(dst, ',')
	return append(appendPayload(dst, payload), ']')
}

// AppendBroadcastBinaryPos appends a binary broadcast with its position
// (kind 3). With offset zero it appends a plain broadcast (kind 2).
func AppendBroadcastBinaryPos(dst []byte, topic, event string, offset uint64, payload []byte) []byte {
	if offset == 0 {
		return AppendBinaryBroadcast(dst, topic, event, payload)
	}
	var pos [21]byte
	p := append(pos[:0], PosPrefix)
	p = strconv.AppendUint(p, offset, 10)
	dst = append(dst, KindBroadcastPos, byte(len(topic)), byte(len(event)), byte(len(p)))
	dst = append(dst, topic...)
	dst = append(dst, event...)
	dst = append(dst, p...)
	return append(dst, payload...)
}
