package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/server"
	"github.com/hearth-rt/hearth/templates"
)

func init() {
	register("serve", "run the demo chat app", runServe)
}

type serveConfig struct {
	addr     string
	logLevel string
}

func runServe(args []string) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:4000", "address to listen on")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	app, err := newDemo(log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: app.router, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("hearth demo listening", "url", "http://"+ln.Addr().String()+"/")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := app.ws.Shutdown(sctx); err != nil {
		log.Warn("websocket shutdown", "err", err)
	}
	return hs.Shutdown(sctx)
}

// demo is the demo chat application: a chi router with the socket, the page
// and a token endpoint.
type demo struct {
	router chi.Router
	node   *channels.Node
	ws     *server.Server
	key    []byte // demo token signing key, random per process
}

// demoUser is what the connect hook stores in a socket's assigns.
type demoUser struct {
	Name       string
	Authorized bool // presented a valid token
}

func newDemo(log *slog.Logger) (*demo, error) {
	d := &demo{key: make([]byte, 32)}
	if _, err := rand.Read(d.key); err != nil {
		return nil, err
	}
	d.node = channels.New(channels.Options{Logger: log, Connect: d.connect})
	d.node.Handle("room:*", channels.Handler{Join: d.joinRoom, In: d.handleIn})
	d.node.Handle("private:*", channels.Handler{Join: d.joinPrivate, In: d.handleIn})
	d.ws = server.New(d.node, server.Options{Logger: log})

	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Handle("/socket/websocket", d.ws)
	r.Get("/token", d.token)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Handle("/demo/*", http.StripPrefix("/demo/", http.FileServerFS(templates.Demo())))
	r.Get("/", func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, templates.Demo(), "index.html") })
	mountClient(r)
	d.router = r
	return d, nil
}

// connect accepts everyone; a token (query param "token" or the Phoenix
// bearer form) marks the socket authorized for private:* topics. An invalid
// token is refused.
func (d *demo) connect(_ context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
	tok := ev.Token
	if tok == "" {
		tok = ev.Params.Get("token")
	}
	u := &demoUser{Name: ev.Params.Get("user")}
	if tok != "" {
		name, err := d.verify(tok)
		if err != nil {
			return channels.ConnectReply{}, err
		}
		u.Name, u.Authorized = name, true
	}
	return channels.ConnectReply{ID: u.Name, Assigns: u}, nil
}

func (d *demo) joinRoom(_ context.Context, _ *channels.Channel, _ channels.JoinEvent) (channels.JoinReply, error) {
	return channels.JoinReply{}, nil
}

func (d *demo) joinPrivate(_ context.Context, c *channels.Channel, _ channels.JoinEvent) (channels.JoinReply, error) {
	if u := c.Socket().Assigns().(*demoUser); !u.Authorized {
		return channels.JoinReply{}, channels.Refuse("unauthorized")
	}
	return channels.JoinReply{}, nil
}

func (d *demo) handleIn(ctx context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
	switch ev.Event {
	case "new_msg":
		var m struct {
			User string `json:"user"`
			Body string `json:"body"`
		}
		if err := ev.Decode(&m); err != nil || strings.TrimSpace(m.Body) == "" {
			return channels.ErrorReply(map[string]string{"reason": "new_msg needs {\"user\", \"body\"}"}), nil
		}
		if u := c.Socket().Assigns().(*demoUser); u.Authorized {
			m.User = u.Name // an authenticated socket cannot speak for others
		}
		if err := c.Broadcast(ctx, "new_msg", m); err != nil {
			return channels.ErrorReply(map[string]string{"reason": "broadcast failed"}), nil
		}
		return channels.OK(nil), nil
	case "ping":
		if ev.Binary {
			return channels.OK(ev.Payload), nil
		}
		return channels.OK(json.RawMessage(ev.Payload)), nil
	}
	return channels.ErrorReply(map[string]string{"reason": "unknown event " + ev.Event}), nil
}

// token issues a demo token for ?user=NAME, valid for one hour.
func (d *demo) token(w http.ResponseWriter, r *http.Request) {
	user := r.URL.Query().Get("user")
	if user == "" || len(user) > 64 {
		http.Error(w, "user must be 1 to 64 characters", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": d.sign(user, time.Now().Add(time.Hour))})
}

func (d *demo) sign(user string, exp time.Time) string {
	body := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%s|%d", user, exp.Unix())))
	mac := hmac.New(sha256.New, d.key)
	mac.Write([]byte(body))
	return body + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

var errBadToken = errors.New("demo: invalid token")

func (d *demo) verify(tok string) (string, error) {
	body, sig, ok := strings.Cut(tok, ".")
	if !ok {
		return "", errBadToken
	}
	mac := hmac.New(sha256.New, d.key)
	mac.Write([]byte(body))
	want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return "", errBadToken
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return "", errBadToken
	}
	user, exp, ok := strings.Cut(string(raw), "|")
	var unix int64
	if _, err := fmt.Sscan(exp, &unix); !ok || err != nil || time.Now().Unix() > unix {
		return "", errBadToken
	}
	return user, nil
}
