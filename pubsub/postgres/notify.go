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
//	record  = topic / base / message / ref / control
//	topic   = "T" str str                      ; topic, epoch: the records after it, up to
//	                                           ; the next topic, base or control record,
//	                                           ; are this topic's, with absolute offsets
//	base    = "B" str str offset ","           ; the same with a base: offsets are base + n
//	message = "M" offset "," flag "," str str str ; event, exclude, payload
//	ref     = "R" offset "," offset            ; the topic's messages from..to are in the table
//	control = "C" flag str                     ; data
//	flag    = "j" / "b"                        ; payload as text (JSON) / base64 (binary)
//	str     = length ":" bytes                 ; length in bytes, decimal
//
// A notification must stay under PostgreSQL's 8000-byte payload limit;
// noteLimit leaves a margin. The Broker writes "B" headers: it packs the
// records before the database has assigned the offsets, so the records carry
// offsets relative to the topic's base and the publishing statement fills
// the headers in (see noteWriter). The SQL function hearth_publish writes
// "T" headers (see schema.go): keep the formats in step.
const (
	noteVersion = "h1"
	noteLimit   = 7900
	// maxEpoch is the longest epoch the schema allows (a CHECK constraint).
	maxEpoch = 64
)

var errBadNote = errors.New("postgres: malformed notification")

// probeNote is the notification a node sends itself to prove that its
// listener hears the channel: a topic record that no node subscribes to
// (nodes skip it), named after the node and a random nonce.
func probeNote(node string, nonce uint64) string {
	b := append([]byte(noteVersion), 'T')
	b = appendStr(b, "$probe:"+node+":"+strconv.FormatUint(nonce, 16))
	b = appendStr(b, "-")
	return string(b)
}

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

// noteWriter packs records into as few notifications as possible. It
// writes templates for PostgreSQL's format(): literal text has every '%'
// doubled, and the header of topic group g (1-based) is the placeholder
// "%g$s", which the publishing statement replaces with the group's "B"
// record once it knows the epoch and base. Sizes are counted as they will
// be after format(), with each header at its largest.
type noteWriter struct {
	notes []string
	chans []string // the channel of each of notes
	ch    string   // the channel of the current notification
	buf   []byte   // template of the current notification
	size  int      // size of the current notification after format()
	group int      // group whose header opens the current run in buf; 0: none
	rec   []byte   // scratch for one record
	// refFrom..refTo is a pending run of consecutive references to
	// messages of refGroup (relative offsets), not yet written.
	refFrom, refTo uint64
	refGroup       int
	refTopic       string
}

// headerMax is the largest "B" record of topic.
func headerMax(topic string) int {
	return 1 + 4 + len(topic) + 3 + maxEpoch + 20 + 1
}

func (w *noteWriter) reset() {
	w.notes = w.notes[:0]
	w.chans = w.chans[:0]
	w.ch = ""
	w.buf = append(w.buf[:0], noteVersion...)
	w.size = len(noteVersion)
	w.group = 0
	w.refFrom, w.refTo, w.refGroup = 0, 0, 0
}

// flush finishes the current notification.
func (w *noteWriter) flush() {
	w.flushRef()
	if w.size > len(noteVersion) {
		w.notes = append(w.notes, string(w.buf))
		w.chans = append(w.chans, w.ch)
	}
	w.buf = append(w.buf[:0], noteVersion...)
	w.size = len(noteVersion)
	w.group = 0
}

func (w *noteWriter) flushRef() {
	if w.refFrom == 0 {
		return
	}
	from, to := w.refFrom, w.refTo
	w.refFrom, w.refTo = 0, 0
	var tmp [48]byte
	w.put(w.refGroup, w.refTopic, appendRef(tmp[:0], from, to))
}

// channel sends the records written from now on to channel ch: a
// notification goes to one channel, so a change of channel ends the
// current one.
func (w *noteWriter) channel(ch string) {
	if ch != w.ch {
		w.flush()
		w.ch = ch
	}
}

// put appends one record of group g (0: a record of no topic), starting a
// new notification when it does not fit.
func (w *noteWriter) put(g int, topic string, rec []byte) {
	need := len(rec)
	if g != 0 && g != w.group {
		need += headerMax(topic)
	}
	if w.size+need > noteLimit {
		w.flush()
	}
	if g != 0 && g != w.group {
		w.buf = append(w.buf, '%')
		w.buf = strconv.AppendInt(w.buf, int64(g), 10)
		w.buf = append(w.buf, "$s"...)
		w.size += headerMax(topic)
	}
	w.group = g
	for _, c := range rec {
		if c == '%' {
			w.buf = append(w.buf, '%')
		}
		w.buf = append(w.buf, c)
	}
	w.size += len(rec)
}

// message adds message m of group g, at offset base+rel; it reports whether
// the payload travels inline (false: readers fetch it from the table).
func (w *noteWriter) message(g int, m *pubsub.Message, rel uint64) bool {
	max := noteLimit - len(noteVersion) - headerMax(m.Topic)
	var ok bool
	w.rec, ok = appendMessage(w.rec[:0], m, rel, max)
	if !ok {
		if w.refFrom != 0 && (w.refGroup != g || w.refTo+1 != rel) {
			w.flushRef()
		}
		if w.refFrom == 0 {
			w.refFrom, w.refGroup, w.refTopic = rel, g, m.Topic
		}
		w.refTo = rel
		return false
	}
	w.flushRef()
	w.put(g, m.Topic, w.rec)
	return true
}

// control adds a control record; false when data is too large. It ends
// the current topic's run.
func (w *noteWriter) control(data []byte) bool {
	var ok bool
	w.rec, ok = appendControl(w.rec[:0], data)
	if !ok {
		return false
	}
	w.flushRef()
	w.put(0, "", w.rec)
	return true
}

// finish returns the notification templates written since reset.
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
	var base uint64
	for r.err == nil && r.s != "" {
		switch c := r.byte(); c {
		case 'T', 'B':
			topic := r.str()
			epoch := r.str()
			base = 0
			if c == 'B' {
				base = r.uint(',')
			}
			if r.err != nil {
				break
			}
			inTopic = true
			skip = !v.topic(topic, epoch)
		case 'M':
			off := base + r.uint(',')
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
				v.ref(base+from, base+to)
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
