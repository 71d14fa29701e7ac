package wire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The golden frames in testdata/golden are shared with the TypeScript
// client's tests: the client encodes client frames and decodes server
// frames, this package does the opposite.

type goldenFile struct {
	Frames  []goldenFrame   `json:"frames"`
	Invalid []goldenInvalid `json:"invalid"`
}

type goldenFrame struct {
	Name     string        `json:"name"`
	Kind     string        `json:"kind"`
	Encoding string        `json:"encoding"`
	Frame    string        `json:"frame"`
	Message  goldenMessage `json:"message"`
}

type goldenMessage struct {
	JoinRef    *string         `json:"join_ref"`
	Ref        *string         `json:"ref"`
	Topic      string          `json:"topic"`
	Event      string          `json:"event"`
	Payload    json.RawMessage `json:"payload"`
	PayloadHex *string         `json:"payload_hex"`
	Status     string          `json:"status"`
}

type goldenInvalid struct {
	Name     string `json:"name"`
	Encoding string `json:"encoding"`
	Frame    string `json:"frame"`
}

func readGolden(t *testing.T, name string) goldenFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "golden", name))
	if err != nil {
		t.Fatalf("golden frames missing: %v", err)
	}
	var g goldenFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(g.Frames) == 0 || len(g.Invalid) == 0 {
		t.Fatalf("%s: no frames", name)
	}
	return g
}

func (f *goldenFrame) bytes(t *testing.T) []byte {
	t.Helper()
	if f.Encoding == "text" {
		return []byte(f.Frame)
	}
	b, err := hex.DecodeString(f.Frame)
	if err != nil {
		t.Fatalf("%s: frame is not hex: %v", f.Name, err)
	}
	return b
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (m *goldenMessage) payloadBytes(t *testing.T) []byte {
	t.Helper()
	if m.PayloadHex != nil {
		b, err := hex.DecodeString(*m.PayloadHex)
		if err != nil {
			t.Fatalf("payload_hex: %v", err)
		}
		return b
	}
	return compactJSON(t, m.Payload)
}

func compactJSON(t *testing.T, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		t.Fatalf("golden JSON: %v", err)
	}
	return buf.Bytes()
}

func TestGoldenClientFrames(t *testing.T) {
	g := readGolden(t, "client-frames.json")
	for _, f := range g.Frames {
		t.Run(f.Name, func(t *testing.T) {
			var (
				m   Message
				err error
			)
			if f.Encoding == "binary" {
				m, err = DecodeBinary(f.bytes(t))
			} else {
				m, err = DecodeText(f.bytes(t))
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			want := f.Message
			if m.JoinRef != deref(want.JoinRef) || m.Ref != deref(want.Ref) || m.Topic != want.Topic || m.Event != want.Event {
				t.Fatalf("decoded [%q %q %q %q], want [%q %q %q %q]", m.JoinRef, m.Ref, m.Topic, m.Event,
					deref(want.JoinRef), deref(want.Ref), want.Topic, want.Event)
			}
			if m.Binary != (f.Encoding == "binary") {
				t.Fatalf("Binary = %v", m.Binary)
			}
			payload := m.Payload
			if !m.Binary {
				payload = compactJSON(t, payload)
			}
			if wantPayload := want.payloadBytes(t); !bytes.Equal(payload, wantPayload) {
				t.Fatalf("payload %q, want %q", payload, wantPayload)
			}
		})
	}
	for _, f := range g.Invalid {
		t.Run("invalid/"+f.Name, func(t *testing.T) {
			var err error
			if f.Encoding == "binary" {
				b, herr := hex.DecodeString(f.Frame)
				if herr != nil {
					t.Fatal(herr)
				}
				_, err = DecodeBinary(b)
			} else {
				_, err = DecodeText([]byte(f.Frame))
			}
			if _, ok := err.(*DecodeError); !ok {
				t.Fatalf("decode error = %v, want a *DecodeError", err)
			}
		})
	}
}

func TestGoldenServerFrames(t *testing.T) {
	g := readGolden(t, "server-frames.json")
	for _, f := range g.Frames {
		t.Run(f.Name, func(t *testing.T) {
			got := encodeGolden(t, &f)
			if want := f.bytes(t); !bytes.Equal(got, want) {
				if f.Encoding == "text" {
					t.Fatalf("encoded\n%s\nwant\n%s", got, want)
				}
				t.Fatalf("encoded %x, want %x", got, want)
			}
		})
	}
}

// encodeGolden encodes a server frame's message with the encoder its kind names.
func encodeGolden(t *testing.T, f *goldenFrame) []byte {
	t.Helper()
	m := &f.Message
	binary := f.Encoding == "binary"
	switch f.Kind {
	case "push":
		if binary {
			return AppendBinaryPush(nil, deref(m.JoinRef), m.Topic, m.Event, m.payloadBytes(t))
		}
		return AppendText(nil, deref(m.JoinRef), "", m.Topic, m.Event, m.payloadBytes(t))
	case "reply":
		if binary {
			return AppendBinaryReply(nil, deref(m.JoinRef), deref(m.Ref), m.Topic, m.Status, m.payloadBytes(t))
		}
		var reply struct {
			Status   string          `json:"status"`
			Response json.RawMessage `json:"response"`
		}
		if err := json.Unmarshal(m.Payload, &reply); err != nil {
			t.Fatalf("reply payload: %v", err)
		}
		return AppendTextReply(nil, deref(m.JoinRef), deref(m.Ref), m.Topic, reply.Status, compactJSON(t, reply.Response))
	case "broadcast":
		var offset uint64
		if m.Ref != nil {
			o, err := strconv.ParseUint(strings.TrimPrefix(*m.Ref, string(PosPrefix)), 10, 64)
			if err != nil || !strings.HasPrefix(*m.Ref, string(PosPrefix)) {
				t.Fatalf("broadcast ref %q is not a position", *m.Ref)
			}
			offset = o
		}
		if binary {
			return AppendBroadcastBinaryPos(nil, m.Topic, m.Event, offset, m.payloadBytes(t))
		}
		return AppendBroadcastText(nil, m.Topic, m.Event, offset, m.payloadBytes(t))
	case "message":
		return AppendText(nil, deref(m.JoinRef), deref(m.Ref), m.Topic, m.Event, m.payloadBytes(t))
	}
	t.Fatalf("unknown kind %q", f.Kind)
	return nil
}
