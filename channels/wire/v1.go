package wire

import (
	"bytes"
	"encoding/json"
)

// Phoenix's V1 serializer (vsn=1.0.0, which Phoenix also assumes when a
// client gives no vsn) sends every message as a JSON object:
//
//	{"join_ref":"1","ref":"2","topic":"room:42","event":"new_msg","payload":{...}}
//
// It is text only. Hearth speaks V2 inside; a V1 connection translates at
// its edge with [DecodeV1] and [AppendV1].

// v1Message is the V1 object. Refs are strings or null (absent).
type v1Message struct {
	JoinRef *string         `json:"join_ref"`
	Ref     *string         `json:"ref"`
	Topic   *string         `json:"topic"`
	Event   *string         `json:"event"`
	Payload json.RawMessage `json:"payload"`
}

// DecodeV1 decodes a V1 JSON object. The payload is copied.
func DecodeV1(data []byte) (Message, error) {
	var m Message
	d := bytes.TrimSpace(data)
	if len(d) == 0 || d[0] != '{' {
		return m, fail("message is not a JSON object (vsn 1.0.0)")
	}
	var o v1Message
	if err := json.Unmarshal(d, &o); err != nil {
		return m, fail("message is not a valid V1 JSON object: refs, topic and event must be strings")
	}
	if o.Topic == nil || o.Event == nil || *o.Topic == "" || *o.Event == "" {
		return m, fail("topic and event must not be empty")
	}
	m.Topic, m.Event = *o.Topic, *o.Event
	if o.JoinRef != nil {
		m.JoinRef = *o.JoinRef
	}
	if o.Ref != nil {
		m.Ref = *o.Ref
	}
	m.Payload = o.Payload
	if len(m.Payload) == 0 || string(m.Payload) == "null" {
		m.Payload = []byte("{}")
	}
	return m, nil
}

// AppendV2 appends the V2 JSON array form of a decoded text message.
func AppendV2(dst []byte, m *Message) []byte {
	return AppendText(dst, m.JoinRef, m.Ref, m.Topic, m.Event, m.Payload)
}

// AppendV1 appends the V1 object form of a V2 JSON array message (as the
// server encodes them). It returns an error for anything else.
func AppendV1(dst, v2 []byte) ([]byte, error) {
	m, err := DecodeText(v2)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `{"join_ref":`...)
	dst = appendRef(dst, m.JoinRef)
	dst = append(dst, `,"ref":`...)
	dst = appendRef(dst, m.Ref)
	dst = append(dst, `,"topic":`...)
	dst = AppendString(dst, m.Topic)
	dst = append(dst, `,"event":`...)
	dst = AppendString(dst, m.Event)
	dst = append(dst, `,"payload":`...)
	dst = appendPayload(dst, m.Payload)
	return append(dst, '}'), nil
}

// FramePayload splits a complete server-to-client WebSocket frame (as
// FinishFrame returns it: final, unmasked) into its opcode and payload.
// ok is false when frame is not such a frame.
func FramePayload(frame []byte) (opcode byte, payload []byte, ok bool) {
	if len(frame) < 2 || frame[1]&0x80 != 0 {
		return 0, nil, false
	}
	opcode = frame[0] & 0x0F
	n, h := int(frame[1]&0x7F), 2
	switch n {
	case 126:
		if len(frame) < 4 {
			return 0, nil, false
		}
		n, h = int(frame[2])<<8|int(frame[3]), 4
	case 127:
		if len(frame) < 10 {
			return 0, nil, false
		}
		var u uint64
		for _, b := range frame[2:10] {
			u = u<<8 | uint64(b)
		}
		if u > uint64(len(frame)) {
			return 0, nil, false
		}
		n, h = int(u), 10
	}
	if len(frame)-h != n {
		return 0, nil, false
	}
	return opcode, frame[h:], true
}
