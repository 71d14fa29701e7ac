package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/server"
	"github.com/hearth-rt/hearth/server/api"
)

// An app mounts the API at /api and the dashboard at /dashboard, next to
// its socket. A backend then publishes with a plain HTTP request.
func Example() {
	node := channels.New(channels.Options{})
	node.Handle("room:*", channels.Handler{ // the topics the app serves
		Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		},
	})
	a := api.New(api.Options{Node: node, Keys: []string{"secret-key"}})
	defer a.Close()
	ws := server.New(node, server.Options{})

	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", ws)
	mux.Handle("/api/", a)
	mux.Handle("/dashboard", a.Dashboard())
	mux.Handle("/dashboard/", a.Dashboard())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/api/publish",
		strings.NewReader(`{"topic":"room:lobby","event":"new_msg","payload":{"body":"hi"}}`))
	req.Header.Set("Authorization", "Bearer secret-key")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	res.Body.Close()
	fmt.Println(res.Status)
	// Output: 200 OK
}
