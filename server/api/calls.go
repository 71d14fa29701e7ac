package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/pubsub"
)

// PublishRequest is the body of POST /publish, and one message of
// POST /publish/batch.
type PublishRequest struct {
	Topic   string          `json:"topic"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload"`
}

// Published is where a published message went: its topic's stream
// position (the epoch and the message's offset).
type Published struct {
	Topic  string `json:"topic"`
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// check validates a message the way Node.Broadcast does, plus the topic
// must be one a channel of the node serves.
func (a *API) check(m *PublishRequest, what string) error {
	if err := a.checkTopic(m.Topic, what+"topic"); err != nil {
		return err
	}
	if m.Event == "" || len(m.Event) > 255 {
		return badRequest("invalid_event", what+"event must be 1 to 255 bytes")
	}
	if strings.HasPrefix(m.Event, "phx_") {
		return badRequest("invalid_event", what+"event "+strconv.Quote(m.Event)+": phx_ events are reserved for the protocol")
	}
	if len(m.Payload) == 0 || string(m.Payload) == "null" {
		m.Payload = json.RawMessage("{}")
	}
	if len(m.Payload) > a.opts.MaxPayloadBytes {
		return &Error{http.StatusRequestEntityTooLarge, "payload_too_large", what + "payload over " + strconv.Itoa(a.opts.MaxPayloadBytes) + " bytes"}
	}
	return nil
}

// checkTopic refuses an invalid topic and one no channel serves.
func (a *API) checkTopic(topic, what string) error {
	if topic == "" {
		return badRequest("missing_topic", what+" is required")
	}
	if !pubsub.ValidTopic(topic) {
		return badRequest("invalid_topic", what+" must be 1 to 255 bytes")
	}
	if _, ok := a.node.Match(topic); !ok || topic == DashboardTopic {
		return &Error{http.StatusNotFound, "unknown_topic", "no channel serves topic " + strconv.Quote(topic)}
	}
	return nil
}

func (a *API) publish(w http.ResponseWriter, r *http.Request) error {
	var m PublishRequest
	if err := decode(r, &m); err != nil {
		return err
	}
	if err := a.check(&m, ""); err != nil {
		return err
	}
	pos, err := a.node.Broker().Publish(r.Context(), pubsub.Message{Topic: m.Topic, Event: m.Event, Payload: m.Payload})
	if err != nil {
		return brokerErr(err)
	}
	writeJSON(w, http.StatusOK, Published{Topic: m.Topic, Epoch: pos.Epoch, Offset: pos.Offset})
	return nil
}

func brokerErr(err error) error {
	switch {
	case errors.Is(err, pubsub.ErrTooLarge):
		return &Error{http.StatusRequestEntityTooLarge, "payload_too_large", "the broker refused the payload as too large"}
	case errors.Is(err, pubsub.ErrInvalidTopic):
		return badRequest("invalid_topic", "the broker refused the topic")
	}
	return err
}

// BatchRequest is the body of POST /publish/batch.
type BatchRequest struct {
	Messages []PublishRequest `json:"messages"`
}

// BatchResult is one message's outcome in the answer of POST /publish/batch:
// its position, or the error that kept it from being stored.
type BatchResult struct {
	Published
	Error *Error `json:"error,omitempty"`
}

// publishBatch validates every message first (one bad message publishes
// nothing), then queues them all, so that a PostgreSQL broker stores them
// in few transactions, in order per topic.
func (a *API) publishBatch(w http.ResponseWriter, r *http.Request) error {
	var b BatchRequest
	if err := decode(r, &b); err != nil {
		return err
	}
	if len(b.Messages) == 0 {
		return badRequest("empty_batch", "messages must hold at least one message")
	}
	if len(b.Messages) > a.opts.MaxBatch {
		return &Error{http.StatusRequestEntityTooLarge, "batch_too_large", "at most " + strconv.Itoa(a.opts.MaxBatch) + " messages per batch"}
	}
	for i := range b.Messages {
		if err := a.check(&b.Messages[i], "messages["+strconv.Itoa(i)+"]."); err != nil {
			return err
		}
	}
	res := make([]BatchResult, len(b.Messages))
	var wg sync.WaitGroup
	failed := false
	var fmu sync.Mutex
	fail := func(i int, err error) {
		var e *Error
		if !errors.As(brokerErr(err), &e) {
			a.log.Warn("api: batch message not stored", "topic", b.Messages[i].Topic, "err", err)
			e = &Error{http.StatusServiceUnavailable, "unavailable", "the cluster's broker failed; retry"}
		}
		fmu.Lock()
		res[i].Error, failed = e, true
		fmu.Unlock()
	}
	ab, async := a.node.Broker().(pubsub.AsyncBroker)
	for i, m := range b.Messages {
		res[i].Topic = m.Topic
		msg := pubsub.Message{Topic: m.Topic, Event: m.Event, Payload: m.Payload}
		if !async {
			pos, err := a.node.Broker().Publish(r.Context(), msg)
			if err != nil {
				fail(i, err)
				continue
			}
			res[i].Epoch, res[i].Offset = pos.Epoch, pos.Offset
			continue
		}
		wg.Add(1)
		err := ab.PublishAsync(r.Context(), msg, func(pos pubsub.Position, err error) {
			defer wg.Done()
			if err != nil {
				fail(i, err)
				return
			}
			res[i].Epoch, res[i].Offset = pos.Epoch, pos.Offset
		})
		if err != nil {
			wg.Done()
			fail(i, err)
		}
	}
	wg.Wait()
	status := http.StatusOK
	if failed {
		status = http.StatusServiceUnavailable // some messages were not stored: retry those
	}
	writeJSON(w, status, map[string]any{"results": res})
	return nil
}

func (a *API) presence(w http.ResponseWriter, r *http.Request) error {
	topic := r.URL.Query().Get("topic")
	if err := a.presenceTopic(topic); err != nil {
		return err
	}
	list := a.opts.Presence.List(topic)
	type entry struct {
		Metas []json.RawMessage `json:"metas"`
	}
	out := make(map[string]entry, len(list))
	for key, metas := range list {
		e := entry{Metas: make([]json.RawMessage, 0, len(metas))}
		for _, m := range metas {
			e.Metas = append(e.Metas, json.RawMessage(m.Data))
		}
		out[key] = e
	}
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "presences": out})
	return nil
}

func (a *API) presenceTopic(topic string) error {
	if a.opts.Presence == nil {
		return &Error{http.StatusNotFound, "presence_disabled", "this server does not track presence"}
	}
	return a.checkTopic(topic, "topic")
}

func (a *API) presenceCount(w http.ResponseWriter, r *http.Request) error {
	topic := r.URL.Query().Get("topic")
	if err := a.presenceTopic(topic); err != nil {
		return err
	}
	keys, metas := a.opts.Presence.Count(topic)
	writeJSON(w, http.StatusOK, map[string]any{"topic": topic, "keys": keys, "metas": metas})
	return nil
}

// HistoryMessage is one retained message in the answer of GET /history.
type HistoryMessage struct {
	Offset  uint64          `json:"offset"`
	Event   string          `json:"event"`
	Payload json.RawMessage `json:"payload,omitempty"`
	// Binary payloads come base64-encoded here instead of in Payload.
	PayloadBase64 []byte `json:"payload_base64,omitempty"`
}

func (a *API) history(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	topic := q.Get("topic")
	if err := a.checkTopic(topic, "topic"); err != nil {
		return err
	}
	var since pubsub.Position
	if s := q.Get("since"); s != "" {
		ep, off, hasEpoch := strings.Cut(s, ":")
		if !hasEpoch {
			ep, off = "", s
		}
		n, err := strconv.ParseUint(off, 10, 64)
		if err != nil {
			return badRequest("invalid_since", "since must be OFFSET or EPOCH:OFFSET")
		}
		since = pubsub.Position{Epoch: ep, Offset: n}
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return badRequest("invalid_limit", "limit must be 1 to 1000")
		}
		limit = n
	}
	ctx := r.Context()
	if since.Epoch == "" {
		// An offset alone counts in the topic's current epoch.
		h, err := a.node.Broker().History(ctx, topic, pubsub.Position{}, 1)
		if err != nil {
			return brokerErr(err)
		}
		since.Epoch = h.Top.Epoch
	}
	h, err := a.node.Broker().History(ctx, topic, since, limit)
	if err != nil {
		return brokerErr(err)
	}
	msgs := make([]HistoryMessage, 0, len(h.Messages))
	for _, m := range h.Messages {
		hm := HistoryMessage{Offset: m.Offset, Event: m.Event}
		if m.Binary {
			hm.PayloadBase64 = m.Payload
		} else {
			hm.Payload = m.Payload
		}
		msgs = append(msgs, hm)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"topic": topic, "epoch": h.Top.Epoch, "top": h.Top.Offset,
		"complete": h.Complete, "messages": msgs,
	})
	return nil
}

// DisconnectRequest is the body of POST /disconnect.
type DisconnectRequest struct {
	// User is the socket id (ConnectReply.ID) whose sockets close.
	User string `json:"user"`
	// Reason is the close reason clients see. Empty means "disconnected
	// by the server".
	Reason string `json:"reason,omitempty"`
	// Reconnect, when true, closes with 4100 (clients reconnect, and the
	// connect hook decides again) instead of the terminal 4503.
	Reconnect bool `json:"reconnect,omitempty"`
}

func (a *API) disconnect(w http.ResponseWriter, r *http.Request) error {
	var d DisconnectRequest
	if err := decode(r, &d); err != nil {
		return err
	}
	if d.User == "" {
		return badRequest("missing_user", "user is required")
	}
	if len(d.Reason) > 100 {
		return badRequest("invalid_reason", "reason must be at most 100 bytes")
	}
	code := channels.CloseRevoked
	if d.Reconnect {
		code = channels.CloseDisconnected
	}
	if d.Reason == "" {
		d.Reason = "disconnected by the server"
	}
	if err := a.node.Disconnect(r.Context(), d.User, code, d.Reason); err != nil {
		return err
	}
	a.log.Info("api: disconnect", "socket_id", d.User, "code", code)
	writeJSON(w, http.StatusOK, map[string]any{"user": d.User, "code": code})
	return nil
}

// UnsubscribeRequest is the body of POST /unsubscribe.
type UnsubscribeRequest struct {
	User  string `json:"user"`
	Topic string `json:"topic"`
}

func (a *API) unsubscribe(w http.ResponseWriter, r *http.Request) error {
	var u UnsubscribeRequest
	if err := decode(r, &u); err != nil {
		return err
	}
	if u.User == "" {
		return badRequest("missing_user", "user is required")
	}
	if err := a.checkTopic(u.Topic, "topic"); err != nil {
		return err
	}
	if err := a.node.Unsubscribe(r.Context(), u.User, u.Topic); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": u.User, "topic": u.Topic})
	return nil
}

// TopicInfo is one topic in the answer of GET /topics.
type TopicInfo struct {
	Topic       string         `json:"topic"`
	Subscribers int            `json:"subscribers"`
	Nodes       map[string]int `json:"nodes"`
}

func (a *API) topics(w http.ResponseWriter, r *http.Request) error {
	ans, missing, err := a.cl.ask(r.Context(), askTopics, "")
	if err != nil {
		return err
	}
	byTopic := map[string]*TopicInfo{}
	truncated := false
	for _, an := range ans {
		truncated = truncated || an.Truncated
		for _, tc := range an.Topics {
			ti := byTopic[tc.Topic]
			if ti == nil {
				ti = &TopicInfo{Topic: tc.Topic, Nodes: map[string]int{}}
				byTopic[tc.Topic] = ti
			}
			ti.Subscribers += tc.Count
			ti.Nodes[an.Node] += tc.Count
		}
	}
	out := make([]*TopicInfo, 0, len(byTopic))
	for _, ti := range byTopic {
		out = append(out, ti)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Subscribers != out[j].Subscribers {
			return out[i].Subscribers > out[j].Subscribers
		}
		return out[i].Topic < out[j].Topic
	})
	writeJSON(w, http.StatusOK, map[string]any{"topics": out, "truncated": truncated, "missing_nodes": missing})
	return nil
}

func (a *API) nodes(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]any{"nodes": a.cl.nodeList()})
	return nil
}

// SocketEntry is one socket in the answer of GET /sockets.
type SocketEntry struct {
	Node string `json:"node"`
	channels.SocketInfo
}

func (a *API) sockets(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	user, topic := q.Get("user"), q.Get("topic")
	var kind, arg string
	switch {
	case user != "" && topic == "":
		kind, arg = askUser, user
	case topic != "" && user == "":
		if err := a.checkTopic(topic, "topic"); err != nil {
			return err
		}
		kind, arg = askTopic, topic
	default:
		return badRequest("missing_query", "give exactly one of user= and topic=")
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.AskTimeout+time.Second)
	defer cancel()
	ans, missing, err := a.cl.ask(ctx, kind, arg)
	if err != nil {
		return err
	}
	out := []SocketEntry{}
	truncated := false
	for _, an := range ans {
		truncated = truncated || an.Truncated
		for _, s := range an.Sockets {
			out = append(out, SocketEntry{Node: an.Node, SocketInfo: s})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ConnID < out[j].ConnID })
	writeJSON(w, http.StatusOK, map[string]any{"sockets": out, "truncated": truncated, "missing_nodes": missing})
	return nil
}
