package jsclient

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/hearth-rt/hearth/js-client/internal/build"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBundlesFresh fails when js-client/dist is stale: it rebuilds the
// bundles in memory from js-client/src with the same esbuild options and
// compares them byte for byte with the committed (and embedded) files.
func TestBundlesFresh(t *testing.T) {
	out, err := build.Bundles("..")
	if err != nil {
		t.Fatal(err)
	}
	var built []string
	for _, f := range out {
		if strings.HasPrefix(f.Name, "hearth.cjs") {
			// The CommonJS build is for npm's require(), not served.
			if committed, err := os.ReadFile(filepath.Join("dist", f.Name)); err != nil || !bytes.Equal(committed, f.Contents) {
				t.Errorf("js-client/dist/%s is stale or missing: run `go run ./js-client/cmd/build` (or `npm run build`) and commit", f.Name)
			}
			continue
		}
		built = append(built, f.Name)
		committed, err := os.ReadFile(filepath.Join("dist", f.Name))
		if err != nil {
			t.Fatalf("js-client/dist/%s missing: run `go run ./js-client/cmd/build`", f.Name)
		}
		if !bytes.Equal(committed, f.Contents) {
			t.Errorf("js-client/dist/%s is stale against js-client/src: run `go run ./js-client/cmd/build` (or `npm run build`) and commit", f.Name)
		}
		embedded, err := fs.ReadFile(FS(), f.Name)
		if err != nil || !bytes.Equal(embedded, committed) {
			t.Errorf("embedded %s differs from the file on disk", f.Name)
		}
	}
	want := append([]string(nil), Files...)
	sort.Strings(want)
	if strings.Join(built, ",") != strings.Join(want, ",") {
		t.Fatalf("build produced %v, Files lists %v", built, want)
	}
}

func TestBundleShapes(t *testing.T) {
	read := func(name string) string {
		b, err := fs.ReadFile(FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if s := read("hearth.mjs"); !strings.Contains(s, "export {") || !strings.Contains(s, "Socket") {
		t.Error("hearth.mjs does not export Socket")
	}
	for _, name := range []string{"hearth.js", "hearth.min.js"} {
		if s := read(name); !strings.Contains(s, "var Hearth=") && !strings.Contains(s, "var Hearth =") {
			t.Errorf("%s does not define the global Hearth", name)
		}
		if s := read(name); !strings.HasSuffix(strings.TrimSpace(s), "//# sourceMappingURL="+name+".map") {
			t.Errorf("%s does not link its source map", name)
		}
	}
}

func get(t *testing.T, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, body
}

func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("/", Handler())
	mux.Handle("/assets/", http.StripPrefix("/assets", Handler()))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer http.DefaultTransport.(*http.Transport).CloseIdleConnections()

	want, _ := fs.ReadFile(FS(), "hearth.min.js")

	t.Run("content types", func(t *testing.T) {
		for name, ctype := range map[string]string{
			"/hearth.mjs":        "text/javascript; charset=utf-8",
			"/hearth.js":         "text/javascript; charset=utf-8",
			"/hearth.min.js":     "text/javascript; charset=utf-8",
			"/hearth.min.js.map": "application/json; charset=utf-8",
			"/assets/hearth.mjs": "text/javascript; charset=utf-8",
		} {
			res, body := get(t, srv.URL+name, nil)
			if res.StatusCode != 200 || res.Header.Get("Content-Type") != ctype || len(body) == 0 {
				t.Errorf("%s: %d %q (%d bytes)", name, res.StatusCode, res.Header.Get("Content-Type"), len(body))
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s: no nosniff", name)
			}
		}
	})
	t.Run("revalidation", func(t *testing.T) {
		res, body := get(t, srv.URL+"/hearth.min.js", nil)
		if !bytes.Equal(body, want) {
			t.Fatal("body differs from the built file")
		}
		if cc := res.Header.Get("Cache-Control"); cc != "public, no-cache" {
			t.Fatalf("Cache-Control %q", cc)
		}
		etag := res.Header.Get("ETag")
		if etag == "" {
			t.Fatal("no ETag")
		}
		res, body = get(t, srv.URL+"/hearth.min.js", map[string]string{"If-None-Match": etag})
		if res.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Fatalf("If-None-Match: %d with %d bytes", res.StatusCode, len(body))
		}
	})
	t.Run("versioned URL is immutable", func(t *testing.T) {
		res, _ := get(t, srv.URL+"/hearth.min.js?v="+Version(), nil)
		if cc := res.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Fatalf("Cache-Control %q", cc)
		}
		res, _ = get(t, srv.URL+"/hearth.min.js?v=old", nil)
		if cc := res.Header.Get("Cache-Control"); strings.Contains(cc, "immutable") {
			t.Fatalf("stale version cached: %q", cc)
		}
	})
	t.Run("gzip", func(t *testing.T) {
		res, body := get(t, srv.URL+"/hearth.min.js", map[string]string{"Accept-Encoding": "br, gzip"})
		if res.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding %q", res.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		plain, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(plain, want) {
			t.Fatalf("gunzipped body differs (%v)", err)
		}
		if res.Header.Get("ETag") == "" || res.Header.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("headers %v", res.Header)
		}
		res, _ = get(t, srv.URL+"/hearth.min.js", map[string]string{"Accept-Encoding": "gzip;q=0"})
		if res.Header.Get("Content-Encoding") != "" {
			t.Fatal("gzip sent although refused")
		}
	})
	t.Run("errors", func(t *testing.T) {
		if res, _ := get(t, srv.URL+"/nope.js", nil); res.StatusCode != http.StatusNotFound {
			t.Errorf("unknown file: %d", res.StatusCode)
		}
		res, err := http.Post(srv.URL+"/hearth.js", "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST: %d", res.StatusCode)
		}
	})
}
