package postgres

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/hearth-rt/hearth/pubsub"
)

// The text of every notification on a Hearth channel.
//
//	note    = "h1" *record
//	record  = topic / message / ref / control
//	topic   = "T" str str                      ; topic, epoch: applies to the records after it,
//	                                           ; up to the next topic or control record
//	message = "M" offset "," flag "," str str str ; event, exclude, payload
//	ref     = "R" offset "," offset            ; the topic's messages from..to are in the table
//	control = "C" flag str                     ; data
//	flag    = "j" / "b"                        ; payload as text (JSON) / base64 (binary)
//	str     = length ":" bytes                 ; length in bytes, decimal
//
// A notification must stay under PostgreSQL's 8000-byte payload limit;
// noteLimit leaves a margin. The SQL function hearth_publish writes the same
// format (see schema.go): keep the two in step.
const (
	noteVersion = "h1"
	noteLimit   = 7900
)

var errBadNote = errors.New("postgres: malformed notification")

// appendStr appends a length-prefixed string.
func appendStr(b []byte, s string) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// appendBytes appends length-prefixed bytes.
func appendBytes(b, s []byte) []byte {
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, ':')
	return append(b, s...)
}

// inlineText reports whether a JSON payload can travel as notification text:
// valid UTF-8 without NUL bytes (PostgreSQL text cannot hold them).
func inlineText(p []byte) bool {
	return bytes.IndexByte(p, 0) < 0 && utf8.Valid(p)
}

// appendMessage appends the "M" record of m at offset, or returns ok=false
// when the payload cannot travel inline within max bytes.
func appendMessage(b []byte, m *pubsub.Message, offset uint64, max int) (_ []byte, ok bool) {
	// A cheap upper bound first, so huge payloads are not encoded for nothing.
	plen := len(m.Payload)
	if m.Binary {
		plen = base64.StdEncoding.EncodedLen(plen)
	}
	if plen+len(m.Event)+len(m.Exclude)+40 > max {
		return b, false
	}
	if !m.Binary && !inlineText(m.Payload) {
		return b, false
	}
	start := len(b)
	b = append(b, 'M')
	b = strconv.AppendUint(b, offset, 10)
	if m.Binary {
		b = append(b, ",b,"...)
	} else {
		b = append(b, ",j,"...)
	}
	b = appendStr(b, m.Event)
	b = appendStr(b, m.Exclude)
	if m.Binary {
		b = strconv.AppendInt(b, int64(plen), 10)
		b = append(b, ':')
		b = base64.StdEncoding.AppendEncode(b, m.Payload)
	} else {
		b = appendBytes(b, m.Payload)
	}
	if len(b)-start > max {
		return b[:start], false
	}
	return b, true
}

// appendRef appends an "R" record.
func appendRef(b []byte, from, to uint64) []byte {
	b = append(b, 'R')
	b = strconv.AppendUint(b, from, 10)
	b = append(b, ',')
	return strconv.AppendUint(b, to, 10)
}

// appendControl appends a "C" record, or returns ok=false when data cannot
// fit in a notification.
func appendControl(b, data []byte) (_ []byte, ok bool) {
	start := len(b)
	b = append(b, 'C')
	if inlineText(data) {
		b = append(b, 'j')
		b = appendBytes(b, data)
	} else {
		b = append(b, 'b')
		b = strconv.AppendInt(b, int64(base64.StdEncoding.EncodedLen(len(data))), 10)
		b = append(b, ':')
		b = base64.StdEncoding.AppendEncode(b, data)
	}
	if len(b)-start > noteLimit-len(noteVersion) {
		return b[:start], false
	}
	return b, true
}

// noteWriter packs records into as few notifications as possible.
type noteWriter struct {
	notes []string
	buf   []byte
	topic string // the topic whose header opens the current run in buf
	rec   []byte // scratch for one record
	// refFrom..refTo is a pending run of consecutive references to
	// messages of refTopic, not yet written.
	refFrom, refTo     uint64
	refTopic, refEpoch string
}

func (w *noteWriter) reset() {
	w.notes = w.notes[:0]
	w.buf = w.buf[:0]
	w.topic = ""
	w.refFrom, w.refTo = 0, 0
}

// flush finishes the current notification.
func (w *noteWriter) flush() {
	w.flushRef()
	if len(w.buf) > len(noteVersion) {
		w.notes = append(w.notes, string(w.buf))
	}
	w.buf = append(w.buf[:0], noteVersion...)
	w.topic = ""
}

func (w *noteWriter) flushRef() {
	if w.refFrom == 0 {
		return
	}
	from, to := w.refFrom, w.refTo
	w.refFrom, w.refTo = 0, 0
	var tmp [48]byte
	w.put(w.refTopic, w.refEpoch, appendRef(tmp[:0], from, to))
}

// put appends one record of topic (epoch is needed only when the topic's
// header must be written), starting a new notification when it does not fit.
func (w *noteWriter) put(topic, epoch string, rec []byte) {
	if len(w.buf) == 0 {
		w.buf = append(w.buf, noteVersion...)
	}
	need := len(rec)
	if topic != w.topic {
		need += 2*6 + 2 + len(topic) + len(epoch)
	}
	if len(w.buf)+need > noteLimit {
		w.flush()
	}
	if topic != w.topic {
		w.buf = append(w.buf, 'T')
		w.buf = appendStr(w.buf, topic)
		w.buf = appendStr(w.buf, epoch)
		w.topic = topic
	}
	w.buf = append(w.buf, rec...)
}

// message adds a message of topic at offset; it reports whether the
// payload travels inline (false: readers fetch it from the table).
func (w *noteWriter) message(epoch string, m *pubsub.Message, offset uint64) bool {
	max := noteLimit - len(noteVersion) - (2*6 + 2 + len(m.Topic) + len(epoch))
	var ok bool
	w.rec, ok = appendMessage(w.rec[:0], m, offset, max)
	if !ok {
		if w.refFrom != 0 && (w.refTopic != m.Topic || w.refTo+1 != offset) {
			w.flushRef()
		}
		if w.refFrom == 0 {
			w.refFrom, w.refTopic, w.refEpoch = offset, m.Topic, epoch
		}
		w.refTo = offset
		return false
	}
	w.flushRef()
	w.put(m.Topic, epoch, w.rec)
	return true
}

// control adds a control record; false when data is too large.
func (w *noteWriter) control(data []byte) bool {
	var ok bool
	w.rec, ok = appendControl(w.rec[:0], data)
	if !ok {
		return false
	}
	w.flushRef()
	if len(w.buf) == 0 {
		w.buf = append(w.buf, noteVersion...)
	}
	if len(w.buf)+len(w.rec) > noteLimit {
		w.flush()
	}
	w.buf = append(w.buf, w.rec...)
	w.topic = "" // a control record ends the topic's run
	return true
}

// finish returns the notifications written since reset.
func (w *noteWriter) finish() []string {
	w.flush()
	return w.notes
}

// noteVisitor receives the records of a notification, in order.
type noteVisitor interface {
	// topic starts the records of a topic; it returns false to skip them.
	topic(topic, epoch string) bool
	message(offset uint64, event, exclude string, payload []byte, binary bool)
	ref(from, to uint64)
	control(data []byte)
}

// noteReader is a cursor over the text of a notification.
type noteReader struct {
	s   string
	err error
}

func (r *noteReader) fail() { r.err = errBadNote; r.s = "" }

func (r *noteReader) byte() byte {
	if r.err != nil || r.s == "" {
		r.fail()
		return 0
	}
	c := r.s[0]
	r.s = r.s[1:]
	return c
}

// uint reads a decimal number ended by stop.
func (r *noteReader) uint(stop byte) uint64 {
	if r.err != nil {
		return 0
	}
	var n uint64
	i := 0
	for ; i < len(r.s) && i < 20; i++ {
		c := r.s[i]
		if c == stop {
			break
		}
		if c < '0' || c > '9' {
			r.fail()
			return 0
		}
		n = n*10 + uint64(c-'0')
	}
	if i == 0 || i == len(r.s) || r.s[i] != stop {
		r.fail()
		return 0
	}
	r.s = r.s[i+1:]
	return n
}

// uintEnd reads a decimal number ended by the end of a record: a letter or
// the end of the text.
func (r *noteReader) uintEnd() uint64 {
	if r.err != nil {
		return 0
	}
	var n uint64
	i := 0
	for ; i < len(r.s) && i < 20 && r.s[i] >= '0' && r.s[i] <= '9'; i++ {
		n = n*10 + uint64(r.s[i]-'0')
	}
	if i == 0 {
		r.fail()
		return 0
	}
	r.s = r.s[i:]
	return n
}

func (r *noteReader) str() string {
	n := r.uint(':')
	if r.err != nil {
		return ""
	}
	if n > uint64(len(r.s)) {
		r.fail()
		return ""
	}
	s := r.s[:n]
	r.s = r.s[n:]
	return s
}

// decodePayload returns the payload bytes of flag f.
func decodePayload(f byte, s string) ([]byte, error) {
	if f == 'b' {
		return base64.StdEncoding.DecodeString(s)
	}
	return []byte(s), nil
}

// readNote walks the records of a notification. It stops at the first
// malformed record and returns errBadNote; records before it were visited.
func readNote(s string, v noteVisitor) error {
	if len(s) < len(noteVersion) || s[:len(noteVersion)] != noteVersion {
		return errBadNote
	}
	r := noteReader{s: s[len(noteVersion):]}
	inTopic, skip := false, false
	for r.err == nil && r.s != "" {
		switch r.byte() {
		case 'T':
			topic := r.str()
			epoch := r.str()
			if r.err != nil {
				break
			}
			inTopic = true
			skip = !v.topic(topic, epoch)
		case 'M':
			off := r.uint(',')
			f := r.byte()
			if r.byte() != ',' || (f != 'j' && f != 'b') {
				r.fail()
			}
			event := r.str()
			exclude := r.str()
			payload := r.str()
			if r.err != nil || !inTopic {
				r.fail()
				break
			}
			if skip {
				continue
			}
			p, err := decodePayload(f, payload)
			if err != nil {
				r.fail()
				break
			}
			v.message(off, event, exclude, p, f == 'b')
		case 'R':
			from := r.uint(',')
			to := r.uintEnd()
			if r.err != nil || !inTopic || from == 0 || to < from {
				r.fail()
				break
			}
			if !skip {
				v.ref(from, to)
			}
		case 'C':
			f := r.byte()
			data := r.str()
			if r.err != nil || (f != 'j' && f != 'b') {
				r.fail()
				break
			}
			p, err := decodePayload(f, data)
			if err != nil {
				r.fail()
				break
			}
			inTopic, skip = false, false
			v.control(p)
		default:
			r.fail()
		}
	}
	return r.err
}
