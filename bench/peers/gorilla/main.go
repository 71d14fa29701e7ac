// Command gorilla is the idiomatic-Go baseline for hearth bench: a textbook
// gorilla/websocket hub (one reader and one writer goroutine per connection,
// a hub goroutine owning the subscriptions, fed through register,
// unregister, subscribe and broadcast channels), speaking just enough of the
// Phoenix V2 protocol for the bench load clients: phx_join (always ok),
// phx_leave, heartbeat, and new_msg, which is broadcast verbatim to every
// subscriber of the topic and answered with an ok reply.
//
// It is deliberately what a competent Go developer would write first, not a
// tuned server: it is the yardstick Hearth is compared against.
//
//	go run ./bench/peers/gorilla --addr 127.0.0.1:4100
//
// With --compress it accepts permessage-deflate (gorilla's
// EnableCompression, no context takeover) and writes each broadcast as one
// websocket.PreparedMessage shared by all subscribers: gorilla then
// compresses it once per compression mode, not once per connection.
//
// net/http/pprof is mounted on the same address (/debug/pprof/), which the
// bench tool reads for Go heap figures.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	_ "net/http/pprof" // heap figures for the bench tool
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

const (
	writeWait      = 10 * time.Second
	pongWait       = 60 * time.Second
	pingPeriod     = (pongWait * 9) / 10
	maxMessageSize = 64 << 10
	sendBuffer     = 256
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// compress is --compress: broadcasts go out as prepared messages.
var compress bool

// client is one connection.
type client struct {
	hub  *hub
	conn *websocket.Conn
	send chan outFrame
}

// outFrame is a frame to write: raw bytes, or a prepared broadcast.
type outFrame struct {
	frame    []byte
	prepared *websocket.PreparedMessage
}

type subscription struct {
	c     *client
	topic string
	join  bool
}

type envelope struct {
	topic string
	frame outFrame
}

// hub owns the topic registry; only its run goroutine touches the maps.
type hub struct {
	clients    map[*client]map[string]bool
	topics     map[string]map[*client]bool
	register   chan *client
	unregister chan *client
	subscribe  chan subscription
	broadcast  chan envelope
}

func newHub() *hub {
	return &hub{
		clients:    make(map[*client]map[string]bool),
		topics:     make(map[string]map[*client]bool),
		register:   make(chan *client),
		unregister: make(chan *client),
		subscribe:  make(chan subscription, 1024),
		broadcast:  make(chan envelope, 1024),
	}
}

func (h *hub) run() {
	for {
		select {
		case c := <-h.register:
			h.clients[c] = make(map[string]bool)
		case c := <-h.unregister:
			if topics, ok := h.clients[c]; ok {
				for t := range topics {
					h.drop(c, t)
				}
				delete(h.clients, c)
				close(c.send)
			}
		case s := <-h.subscribe:
			topics, ok := h.clients[s.c]
			if !ok {
				continue
			}
			if s.join {
				topics[s.topic] = true
				subs := h.topics[s.topic]
				if subs == nil {
					subs = make(map[*client]bool)
					h.topics[s.topic] = subs
				}
				subs[s.c] = true
			} else {
				delete(topics, s.topic)
				h.drop(s.c, s.topic)
			}
		case e := <-h.broadcast:
			for c := range h.topics[e.topic] {
				select {
				case c.send <- e.frame:
				default:
					// Too slow: drop the client, as the textbook hub does.
					for t := range h.clients[c] {
						h.drop(c, t)
					}
					delete(h.clients, c)
					close(c.send)
				}
			}
		}
	}
}

func (h *hub) drop(c *client, topic string) {
	if subs := h.topics[topic]; subs != nil {
		delete(subs, c)
		if len(subs) == 0 {
			delete(h.topics, topic)
		}
	}
}

// readPump decodes Phoenix messages and acts on them.
func (c *client) readPump() {
	defer func() {
		c.hub.unregister <- c
		c.conn.Close()
	}()
	c.conn.SetReadLimit(maxMessageSize)
	_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
	c.conn.SetPongHandler(func(string) error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return
		}
		// Any message proves the client alive (Phoenix clients send heartbeats, not pongs).
		_ = c.conn.SetReadDeadline(time.Now().Add(pongWait))
		var msg [5]json.RawMessage
		if err := json.Unmarshal(data, &msg); err != nil {
			return
		}
		var joinRef, ref *string
		var topic, event string
		_ = json.Unmarshal(msg[0], &joinRef)
		_ = json.Unmarshal(msg[1], &ref)
		if json.Unmarshal(msg[2], &topic) != nil || json.Unmarshal(msg[3], &event) != nil {
			return
		}
		switch event {
		case "heartbeat":
			c.reply(joinRef, ref, topic, "ok")
		case "phx_join":
			c.hub.subscribe <- subscription{c: c, topic: topic, join: true}
			c.reply(joinRef, ref, topic, "ok")
		case "phx_leave":
			c.hub.subscribe <- subscription{c: c, topic: topic}
			c.reply(joinRef, ref, topic, "ok")
		case "new_msg":
			frame, _ := json.Marshal([]any{nil, nil, topic, "new_msg", msg[4]})
			out := outFrame{frame: frame}
			if compress {
				out.prepared, _ = websocket.NewPreparedMessage(websocket.TextMessage, frame)
			}
			c.hub.broadcast <- envelope{topic: topic, frame: out}
			c.reply(joinRef, ref, topic, "ok")
		default:
			c.reply(joinRef, ref, topic, "error")
		}
	}
}

func (c *client) reply(joinRef, ref *string, topic, status string) {
	frame, _ := json.Marshal([]any{joinRef, ref, topic, "phx_reply", map[string]any{"status": status, "response": map[string]any{}}})
	// The send channel may be closed by the hub; a closed client just stops.
	defer func() { _ = recover() }()
	select {
	case c.send <- outFrame{frame: frame}:
	default:
	}
}

// writePump writes queued frames and pings.
func (c *client) writePump() {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		c.conn.Close()
	}()
	for {
		select {
		case frame, ok := <-c.send:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if !ok {
				_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, ""))
				return
			}
			var err error
			if frame.prepared != nil {
				err = c.conn.WritePreparedMessage(frame.prepared)
			} else {
				err = c.conn.WriteMessage(websocket.TextMessage, frame.frame)
			}
			if err != nil {
				return
			}
		case <-ticker.C:
			_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.conn.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

func serveWS(h *hub, w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("vsn") != "2.0.0" {
		http.Error(w, "unsupported vsn", http.StatusForbidden)
		return
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &client{hub: h, conn: conn, send: make(chan outFrame, sendBuffer)}
	h.register <- c
	go c.writePump()
	go c.readPump()
}

func main() {
	addr := flag.String("addr", "127.0.0.1:4100", "listen address")
	flag.BoolVar(&compress, "compress", false, "accept permessage-deflate; broadcasts as prepared messages")
	flag.Parse()
	upgrader.EnableCompression = compress
	h := newHub()
	go h.run()
	http.HandleFunc("/socket/websocket", func(w http.ResponseWriter, r *http.Request) { serveWS(h, w, r) })
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(bytes.TrimSpace([]byte("ok\n"))) })
	srv := &http.Server{Addr: *addr}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = srv.Close()
	}()
	fmt.Fprintln(os.Stderr, "gorilla peer listening on", *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
