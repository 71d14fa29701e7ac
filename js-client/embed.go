// Package jsclient serves the built Hearth JavaScript client from the Go
// binary, so that an application (and `hearth serve`) needs no Node
// toolchain at run time.
//
// The bundles are built from js-client/src by `go run ./js-client/cmd/build`
// and committed in js-client/dist:
//
//	hearth.mjs      ES module (import { Socket } from "/hearth.mjs")
//	hearth.js       IIFE defining the global Hearth (<script src="/hearth.js">)
//	hearth.min.js   the same, minified
//
// each with its source map (name + ".map").
//
// Mount [Handler] where the files should be served:
//
//	mux.Handle("/hearth.js", jsclient.Handler())
//	mux.Handle("/assets/", http.StripPrefix("/assets", jsclient.Handler()))
package jsclient

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

//go:embed dist/hearth.mjs dist/hearth.mjs.map dist/hearth.js dist/hearth.js.map dist/hearth.min.js dist/hearth.min.js.map
var dist embed.FS

// Files lists the names Handler serves.
var Files = []string{"hearth.mjs", "hearth.mjs.map", "hearth.js", "hearth.js.map", "hearth.min.js", "hearth.min.js.map"}

// FS returns the built files, named as in [Files].
func FS() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic("jsclient: " + err.Error())
	}
	return sub
}

type asset struct {
	body, gz    []byte
	ctype, etag string
}

var (
	loadOnce sync.Once
	assets   map[string]*asset
	version  string
)

func load() {
	assets = make(map[string]*asset, len(Files))
	all := sha256.New()
	for _, name := range Files {
		body, err := fs.ReadFile(FS(), name)
		if err != nil {
			panic("jsclient: missing built file " + name + ": run `go run ./js-client/cmd/build`")
		}
		sum := sha256.Sum256(body)
		all.Write(sum[:])
		a := &asset{body: body, ctype: contentType(name), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		var buf bytes.Buffer
		w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = w.Write(body)
		_ = w.Close()
		if buf.Len() < len(body) {
			a.gz = buf.Bytes()
		}
		assets[name] = a
	}
	version = hex.EncodeToString(all.Sum(nil)[:6])
}

func contentType(name string) string {
	if strings.HasSuffix(name, ".map") {
		return "application/json; charset=utf-8"
	}
	return "text/javascript; charset=utf-8"
}

// Version returns a short hash of the built files. Pages that reference the
// client as "/hearth.js?v=" + Version() get it cached for a year: the URL
// changes whenever the client does.
func Version() string {
	loadOnce.Do(load)
	return version
}

// Handler serves the files in [Files], chosen by the last element of the
// request path, with their content type, an ETag (answering If-None-Match
// with 304) and gzip when the client accepts it. Responses revalidate on
// every use, except for requests whose query has v=[Version], which are
// cacheable for a year. Other paths get 404, other methods 405.
func Handler() http.Handler {
	loadOnce.Do(load)
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	a := assets[path.Base(r.URL.Path)]
	if a == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Vary", "Accept-Encoding")
	if r.URL.Query().Get("v") == version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "public, no-cache")
	}
	body, etag := a.body, a.etag
	if a.gz != nil && acceptsGzip(r) {
		body, etag = a.gz, a.etag[:len(a.etag)-1]+`-gz"`
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("ETag", etag)
	// ServeContent answers If-None-Match, HEAD and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			q := strings.TrimSpace(params)
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
