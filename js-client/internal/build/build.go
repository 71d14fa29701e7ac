// Package build builds the Hearth JavaScript client with esbuild's Go API:
// the bundles committed in js-client/dist and the TypeScript tests.
//
// It is shared by the build program (js-client/cmd/build) and by the test
// that fails when the committed bundles are stale.
package build

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/evanw/esbuild/pkg/api"
)

// Banner starts every bundle.
const Banner = "/* @hearth-rt/client: built from js-client/src by `go run ./js-client/cmd/build`; do not edit. */"

// Output is one built file of js-client/dist.
type Output struct {
	// Name is the file name within js-client/dist, e.g. "hearth.min.js".
	Name     string
	Contents []byte
}

type bundle struct {
	file   string
	format api.Format
	minify bool
}

var bundles = []bundle{
	{"hearth.mjs", api.FormatESModule, false},
	{"hearth.cjs", api.FormatCommonJS, false},
	{"hearth.js", api.FormatIIFE, false},
	{"hearth.min.js", api.FormatIIFE, true},
}

// Bundles builds the client from root/js-client/src/index.ts, root being
// the repository root, and returns the files of js-client/dist (bundles and
// their source maps) sorted by name, without writing them.
func Bundles(root string) ([]Output, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	dist := filepath.Join(root, "js-client", "dist")
	var out []Output
	for _, b := range bundles {
		mangle := ""
		if b.minify {
			mangle = mangleProps
		}
		res := api.Build(api.BuildOptions{
			MangleProps:       mangle,
			EntryPoints:       []string{filepath.Join("js-client", "src", "index.ts")},
			AbsWorkingDir:     root,
			Outfile:           filepath.Join(dist, b.file),
			Bundle:            true,
			Format:            b.format,
			GlobalName:        globalName(b.format),
			Platform:          api.PlatformNeutral,
			Target:            api.ES2020,
			Sourcemap:         api.SourceMapLinked,
			SourcesContent:    api.SourcesContentInclude,
			MinifyWhitespace:  b.minify,
			MinifyIdentifiers: b.minify,
			MinifySyntax:      b.minify,
			LegalComments:     api.LegalCommentsNone,
			Charset:           api.CharsetUTF8,
			Banner:            map[string]string{"js": Banner},
			LogLevel:          api.LogLevelSilent,
			Write:             false,
		})
		if err := buildError(res); err != nil {
			return nil, err
		}
		for _, f := range res.OutputFiles {
			rel, err := filepath.Rel(dist, f.Path)
			if err != nil || strings.Contains(rel, string(filepath.Separator)) {
				return nil, fmt.Errorf("build: unexpected output %s", f.Path)
			}
			out = append(out, Output{Name: rel, Contents: f.Contents})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// mangleProps names the private and internal members that the minified
// bundle shortens: long names, none of them part of the public API or of an
// object the client shares with the application, the transport or the wire
// (options, WebSocket, Environment, AbortController, typed arrays, message
// payloads such as {since: ...}). A name here that is any of those breaks
// hearth.min.js only: js-client/test/min-bundle.test.ts runs it.
var mangleProps = "^(" + strings.Join([]string{
	"bindingRef", "bindings", "caughtUp", "caughtUpHooks", "clearConn", "closeConn", "closeReason",
	"currentToken", "environmentChanged", "established", "expectReply", "fireCaughtUp", "forgetReply",
	"hadJoined", "handleReply", "heartbeatTimeoutTimer", "heartbeatTimer", "hintDelay", "joinOk",
	"joinPayload", "joinedOnce", "leaveOpenTopic", "onConnClose", "onConnMessage", "onConnOpen",
	"openFailed", "openTimer", "paramsOverride", "pendingHeartbeatRef", "pendingRecover",
	"preOpenFailures", "pushTimedOut", "receiveDiff", "receiveState", "reconnectDueAt",
	"reconnectHinted", "reconnectNow", "reconnectTimer", "recoverHooks", "rejoinTimer", "replayLeft",
	"replayTop", "resetHeartbeat", "scheduleReconnect", "sendBuffer", "sendHeartbeat", "socketClosed",
	"socketOpened", "socketTerminated", "stableTimer", "storeToken", "suspended", "syncParams",
	"syncedRef", "terminated", "transportClass", "unlisten", "usedRefreshed",
	"fellBack", "wsOpened", "encodeBinary", "decodeBinary", "decodeText", "delayFor", "joinCb",
	"leaveCb", "syncCb", "refreshed", "refused", "pings", "serializer", "wanted", "waiting",
	"opening", "opened", "dispatch", "advance", "batch", "sending", "ctl", "flush", "endpoint",
	"hooks", "replies", "received", "wasSent", "pos", "env", "gen", "opts", "hook", "route",
	"dial", "fail", "stop", "trigger", "startTimeout", "cancelTimeout", "isMember", "rejoin", "joinPush",
}, "|") + ")$"

func globalName(f api.Format) string {
	if f == api.FormatIIFE {
		return "Hearth"
	}
	return ""
}

// WriteBundles builds the client and writes js-client/dist.
func WriteBundles(root string) ([]Output, error) {
	out, err := Bundles(root)
	if err != nil {
		return nil, err
	}
	dist := filepath.Join(root, "js-client", "dist")
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	for _, f := range out {
		if err := os.WriteFile(filepath.Join(dist, f.Name), f.Contents, 0o644); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
	}
	return out, nil
}

// DashboardSource is the dashboard page's script (package server/api),
// and DashboardOutput the bundle built from it, both relative to the root.
const (
	DashboardSource = "server/api/dashboard/dashboard.ts"
	DashboardOutput = "server/api/dashboard/dashboard.js"
)

// Dashboard builds the dashboard's script (DashboardSource, with the client
// sources inlined) into one minified IIFE, without writing it.
func Dashboard(root string) ([]byte, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	res := api.Build(api.BuildOptions{
		EntryPoints:       []string{filepath.FromSlash(DashboardSource)},
		AbsWorkingDir:     root,
		Outfile:           filepath.Join(root, filepath.FromSlash(DashboardOutput)),
		Bundle:            true,
		Format:            api.FormatIIFE,
		Platform:          api.PlatformBrowser,
		Target:            api.ES2020,
		MinifyWhitespace:  true,
		MinifyIdentifiers: true,
		MinifySyntax:      true,
		LegalComments:     api.LegalCommentsNone,
		Charset:           api.CharsetUTF8,
		Banner:            map[string]string{"js": "/* Hearth dashboard: built from " + DashboardSource + " by `go run ./js-client/cmd/build`; do not edit. */"},
		LogLevel:          api.LogLevelSilent,
		Write:             false,
	})
	if err := buildError(res); err != nil {
		return nil, err
	}
	if len(res.OutputFiles) != 1 {
		return nil, fmt.Errorf("build: dashboard: %d output files", len(res.OutputFiles))
	}
	return res.OutputFiles[0].Contents, nil
}

// TestDir is where Tests writes the built tests, relative to the root. It
// lies inside the repository so that Node finds the root node_modules.
const TestDir = "js-client/.build/test"

// Tests bundles every js-client/test/*.test.ts (with the client sources
// and test helpers inlined, npm packages left as imports) into
// root/TestDir as ES modules for `node --test`. It empties the directory
// first and returns the names of the files written.
func Tests(root string) ([]string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	entries, err := filepath.Glob(filepath.Join(root, "js-client", "test", "*.test.ts"))
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if len(entries) == 0 {
		return nil, errors.New("build: no js-client/test/*.test.ts files")
	}
	outdir := filepath.Join(root, filepath.FromSlash(TestDir))
	if err := os.RemoveAll(outdir); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	res := api.Build(api.BuildOptions{
		EntryPoints:   entries,
		AbsWorkingDir: root,
		Outdir:        outdir,
		OutExtension:  map[string]string{".js": ".mjs"},
		Bundle:        true,
		Format:        api.FormatESModule,
		Platform:      api.PlatformNode,
		Packages:      api.PackagesExternal,
		Target:        api.ES2022,
		Sourcemap:     api.SourceMapInline,
		LogLevel:      api.LogLevelSilent,
		Write:         true,
	})
	if err := buildError(res); err != nil {
		return nil, err
	}
	var names []string
	for _, f := range res.OutputFiles {
		names = append(names, filepath.Base(f.Path))
	}
	sort.Strings(names)
	return names, nil
}

func buildError(res api.BuildResult) error {
	if len(res.Errors) == 0 {
		return nil
	}
	msgs := api.FormatMessages(res.Errors, api.FormatMessagesOptions{Kind: api.ErrorMessage})
	return errors.New("build: esbuild failed:\n" + strings.Join(msgs, ""))
}

// Root returns the repository root: the nearest directory at or above dir
// that holds go.mod.
func Root(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("build: no go.mod above the working directory")
		}
		dir = parent
	}
}
