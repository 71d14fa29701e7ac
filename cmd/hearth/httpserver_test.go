package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestHTTPIdleTimeout: the demo's server closes a keep-alive connection
// idle between requests, never a request in progress that waits longer
// (a long poll), and keeps idle connections with the timeout off.
func TestHTTPIdleTimeout(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(600 * time.Millisecond) // three idle timeouts
		io.WriteString(w, "done")
	})
	start := func(idle time.Duration) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := newHTTPServer(mux, idle)
		go hs.Serve(ln)
		t.Cleanup(func() { hs.Close() })
		return ln.Addr().String()
	}
	// get sends one keep-alive request on c and reads its answer.
	get := func(c net.Conn, br *bufio.Reader) {
		t.Helper()
		if _, err := io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("a request that waits longer than the idle timeout: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "done" {
			t.Fatalf("answer %q", b)
		}
	}
	// idleFor reports what a read on the idle connection sees within d.
	idleFor := func(c net.Conn, br *bufio.Reader, d time.Duration) error {
		c.SetReadDeadline(time.Now().Add(d))
		_, err := br.ReadByte()
		return err
	}

	t.Run("on", func(t *testing.T) {
		c, err := net.Dial("tcp", start(200*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		get(c, br)
		get(c, br) // still open: the first request took 600 ms, not idle time
		if err := idleFor(c, br, 3*time.Second); !errors.Is(err, io.EOF) {
			t.Fatalf("idle keep-alive connection: read got %v, want EOF (closed by the server)", err)
		}
	})
	t.Run("off", func(t *testing.T) {
		c, err := net.Dial("tcp", start(0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		get(c, br)
		if err := idleFor(c, br, time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("with the timeout off the connection should stay open: read got %v", err)
		}
		get(c, br)
	})
}
