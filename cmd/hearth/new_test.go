package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels/channeltest"
	"github.com/hearth-rt/hearth/internal/pgtest"
)

// repoRoot returns the root of the Hearth checkout the test runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modulePath(b) == hearthModule {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("the Hearth checkout around the test's directory was not found")
		}
		dir = parent
	}
}

// requireVersion returns the version go.mod requires of module path.
func requireVersion(gomod []byte, path string) string {
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?` + regexp.QuoteMeta(path) + `\s+(\S+)`).FindSubmatch(gomod)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// TestGoDirective keeps the generated go.mod in step with Hearth's: the
// go directive, and the fallback versions of the app's dependencies.
func TestGoDirective(t *testing.T) {
	gomod, err := os.ReadFile(filepath.Join(repoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go\s+(\S+)`).FindSubmatch(gomod)
	if m == nil || string(m[1]) != goDirective {
		t.Errorf("Hearth's go.mod says go %s; goDirective is %s", m[1], goDirective)
	}
	for _, d := range appDeps {
		if v := requireVersion(gomod, d.Path); v != d.Version {
			t.Errorf("Hearth requires %s %s; the fallback in appDeps is %s", d.Path, v, d.Version)
		}
	}
}

// goTool runs the go command in dir and returns its combined output,
// failing the test if it fails.
func goTool(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, err := goToolErr(dir, args...)
	if err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return out
}

func goToolErr(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestNewAndGen is the scaffolding end to end: `hearth new` writes an app
// that builds, passes its own tests (over real WebSocket connections) and
// runs and stops on SIGTERM; `hearth gen channel` adds channels whose tests
// pass and whose TypeScript typechecks against the Hearth client; the
// generated tests catch a broken join authorization.
func TestNewAndGen(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and tests a generated app (about 20 s)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("the go command is needed to build the generated app: ", err)
	}
	root := repoRoot(t)
	tsc := filepath.Join(root, "node_modules", ".bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		t.Fatalf("TypeScript is needed to check the generated assets/*.ts: run `npm ci` at the repository root (%v)", err)
	}
	// The app lives outside the checkout; its dependencies come from the
	// module cache or the module proxy.
	t.Setenv("GOFLAGS", strings.TrimSpace(os.Getenv("GOFLAGS")+" -mod=mod"))
	t.Setenv("GOWORK", "off")
	app := filepath.Join(t.TempDir(), "myapp")

	var out bytes.Buffer
	// No --replace: a hearth built in a checkout (this test binary is)
	// makes the app use that checkout by itself.
	if err := runNew([]string{"myapp", "--module", "example.com/myapp", "--dir", app}, &out); err != nil {
		t.Fatalf("hearth new: %v\n%s", err, out.String())
	}
	for _, want := range []string{"* this hearth was built from the checkout " + root + ": the app uses it",
		"* creating " + filepath.Join(app, "channels", "room_channel.go"), "* running go mod tidy", "* writing " + filepath.Join(app, "assets", "events.gen.ts"), "go run ."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("hearth new printed no %q:\n%s", want, out.String())
		}
	}
	gomod, err := os.ReadFile(filepath.Join(app, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	repoMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if got := modulePath(gomod); got != "example.com/myapp" {
		t.Errorf("generated module path %q", got)
	}
	if !strings.Contains(string(gomod), "replace github.com/hearth-rt/hearth => "+root) {
		t.Errorf("generated go.mod has no replace of Hearth by %s:\n%s", root, gomod)
	}
	for _, d := range appDeps {
		if got, want := requireVersion(gomod, d.Path), requireVersion(repoMod, d.Path); got != want {
			t.Errorf("generated go.mod requires %s %s; Hearth requires %s", d.Path, got, want)
		}
	}

	t.Run("app", func(t *testing.T) {
		goTool(t, app, "vet", "./...")
		res := goTool(t, app, "test", "-race", "-count=1", "./...")
		for _, pkg := range []string{"ok  \texample.com/myapp\t", "ok  \texample.com/myapp/channels\t"} {
			if !strings.Contains(res, pkg) {
				t.Errorf("go test did not pass %q:\n%s", pkg, res)
			}
		}
	})
	if t.Failed() {
		return
	}
	t.Run("run", func(t *testing.T) { runApp(t, root, app) })
	t.Run("cluster", func(t *testing.T) { clusterApp(t, app) })

	// gen channel from a subdirectory of the app, and with --dir.
	out.Reset()
	t.Chdir(filepath.Join(app, "channels"))
	if err := runGen([]string{"channel", "ChatRoom", "--intercept"}, &out); err != nil {
		t.Fatalf("hearth gen channel ChatRoom: %v\n%s", err, out.String())
	}
	if err := runGen([]string{"channel", "--dir", app, "lounge", "--presence"}, &out); err != nil {
		t.Fatalf("hearth gen channel lounge: %v\n%s", err, out.String())
	}
	for _, want := range []string{"channels/chat_room_channel.go", "channels/chat_room_channel_test.go", "assets/chat_room.ts", `"chat_room:*"`, "go test ./channels -run TestChatRoomChannel", "out        how each", "channels/lounge_channel_test.go"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("hearth gen printed no %q:\n%s", want, out.String())
		}
	}

	t.Run("channels", func(t *testing.T) {
		goTool(t, app, "vet", "./...")
		res := goTool(t, app, "test", "-race", "-count=1", "-v", "./channels")
		for _, test := range []string{"TestChatRoomChannelJoin", "TestChatRoomChannelNewMsg", "TestChatRoomChannelPing", "TestLoungeChannelNewMsg", "TestLoungeChannelPresence", "TestRoomChannelNewMsg"} {
			if !strings.Contains(res, "--- PASS: "+test+" ") {
				t.Errorf("%s did not pass:\n%s", test, res)
			}
		}
	})

	t.Run("typescript", func(t *testing.T) {
		cfg := `{
  "compilerOptions": {
    "target": "ES2020", "lib": ["ES2020", "DOM"], "module": "ESNext", "moduleResolution": "Bundler",
    "strict": true, "noUnusedLocals": true, "noUnusedParameters": true, "noImplicitReturns": true,
    "skipLibCheck": true, "noEmit": true, "types": [],
    "paths": { "@hearth-rt/client": [` + jsonString(filepath.Join(root, "js-client", "src", "index.ts")) + `] }
  },
  "include": ["assets/*.ts"]
}`
		if err := os.WriteFile(filepath.Join(app, "tsconfig.check.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, tsc, "-p", "tsconfig.check.json")
		cmd.Dir = app
		if res, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("tsc: %v\n%s", err, res)
		}

		// The types come from the Go handlers: a misspelt field or event
		// in the front end is a compile error.
		mistake := `import type { Socket } from "@hearth-rt/client"
import type { RoomEvents } from "./events.gen"
export function f(socket: Socket) {
  const room = socket.channel<RoomEvents>("room:lobby")
  room.on("new_msg", (m) => console.log(m.bdy))
  room.push("new_msg", { body: "hi", user: "mallory" })
  room.on("new_mgs", () => {})
}
`
		bad := filepath.Join(app, "assets", "mistake.ts")
		if err := os.WriteFile(bad, []byte(mistake), 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(bad)
		cmd = exec.CommandContext(ctx, tsc, "-p", "tsconfig.check.json")
		cmd.Dir = app
		res, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatal("tsc accepted assets/mistake.ts")
		}
		for _, want := range []string{"Property 'bdy' does not exist on type 'RoomMessage'", "'user' does not exist in type 'RoomNewMsg'", `"new_mgs"`} {
			if !strings.Contains(string(res), want) {
				t.Errorf("tsc did not report %s:\n%s", want, res)
			}
		}
	})

	t.Run("types stay in step", func(t *testing.T) {
		// The app's own test notices a change to a channel's events until
		// hearth gen types runs.
		p := filepath.Join(app, "channels", "lounge_channel.go")
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		changed := strings.Replace(string(src), "Body string `json:\"body\"`\n}", "Body string `json:\"body\"`\n\tTo   string `json:\"to,omitempty\"`\n}", 1)
		if changed == string(src) {
			t.Fatal("LoungeNewMsg was not found in lounge_channel.go")
		}
		if err := os.WriteFile(p, []byte(changed), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := goToolErr(app, "test", "-count=1", "-run", "TestEventTypesUpToDate", "./channels")
		if err == nil || !strings.Contains(res, "run `hearth gen types`") {
			t.Fatalf("the app's test passed stale types:\n%s", res)
		}
		var out bytes.Buffer
		if err := runGen([]string{"types", "--dir", app}, &out); err != nil || !strings.Contains(out.String(), "* writing ") {
			t.Fatalf("gen types: %v\n%s", err, out.String())
		}
		if ts, _ := os.ReadFile(filepath.Join(app, "assets", "events.gen.ts")); !strings.Contains(string(ts), "  to?: string\n") {
			t.Errorf("events.gen.ts lacks the new field:\n%s", ts)
		}
		goTool(t, app, "test", "-count=1", "-run", "TestEventTypesUpToDate", "./channels")
	})

	t.Run("tests catch a broken join", func(t *testing.T) {
		p := filepath.Join(app, "channels", "lounge_channel.go")
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		broken := strings.Replace(string(src), "if user == nil {", "if user == nil && false {", 1)
		if broken == string(src) {
			t.Fatal("the join check to break was not found in lounge_channel.go")
		}
		if err := os.WriteFile(p, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := goToolErr(app, "test", "-count=1", "-run", "TestLoungeChannelJoin", "./channels")
		if err == nil || !strings.Contains(res, "anonymous join") {
			t.Errorf("the generated test passed a channel that lets anonymous sockets join:\n%s", res)
		}
	})
}

func jsonString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// appProcess is the generated app running as its own process.
type appProcess struct {
	cmd   *exec.Cmd
	lines chan string // its log, line by line
	log   []string
	base  string // http://127.0.0.1:port/
}

// startApp runs the app's binary on addr, with more flags, and waits until
// it listens.
func startApp(t *testing.T, bin, addr string, flags ...string) *appProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", addr}, flags...)...)
	// The app reads its database from the environment too: only the flags
	// given here count.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "DATABASE_LISTEN_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &appProcess{cmd: cmd, lines: make(chan string, 64)}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	re := regexp.MustCompile(`url=(http://\S+/)`)
	for p.base == "" {
		if m := re.FindStringSubmatch(p.next(t, "its address")); m != nil {
			p.base = m[1]
		}
	}
	return p
}

// next returns the app's next log line.
func (p *appProcess) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("the app exited before logging %s:\n%s", what, strings.Join(p.log, "\n"))
		}
		p.log = append(p.log, l)
		return l
	case <-time.After(time.Minute):
		t.Fatalf("the app did not log %s within a minute:\n%s", what, strings.Join(p.log, "\n"))
	}
	return ""
}

// stop sends SIGTERM and checks that the app shuts down and exits 0.
func (p *appProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(p.next(t, "its shutdown"), "shutting down") {
	}
	for l := range p.lines {
		p.log = append(p.log, l)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("the app exited with %v after SIGTERM:\n%s", err, strings.Join(p.log, "\n"))
	}
}

// clusterApp runs two processes of the app on one PostgreSQL database
// (-database-url): both are ready with a healthy listener, and a message
// pushed on one node reaches the sockets of both.
func clusterApp(t *testing.T, app string) {
	db := pgtest.Database(t)
	bin := filepath.Join(t.TempDir(), "myapp")
	goTool(t, app, "build", "-o", bin, ".")
	nodes := []*appProcess{
		startApp(t, bin, "127.0.0.1:0", "-database-url", db),
		startApp(t, bin, "127.0.0.1:0", "-database-url", db),
	}
	for _, n := range nodes {
		for path, want := range map[string]string{"readyz": "ready", "metrics": `hearth_pubsub_listener_state{state="healthy"} 1`} {
			res, err := http.Get(n.base + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
				t.Errorf("GET %s%s: %s, want 200 with %q:\n%.2000s", n.base, path, res.Status, want, body)
			}
		}
	}
	ada := channeltest.Dial(t, channeltest.SocketURL(strings.TrimSuffix(nodes[0].base, "/")), url.Values{"name": {"ada"}})
	bob := channeltest.Dial(t, channeltest.SocketURL(strings.TrimSuffix(nodes[1].base, "/")), url.Values{"name": {"bob"}})
	for _, c := range []*channeltest.Client{ada, bob} {
		if r := c.Join("room:lobby", nil); r.Status != "ok" {
			t.Fatalf("join: %s %s", r.Status, r.Response)
		}
	}
	for i, body := range []string{"from node 1", "and again"} {
		if r := ada.Push("room:lobby", "new_msg", map[string]string{"body": body}); r.Status != "ok" {
			t.Fatalf("new_msg: %s %s", r.Status, r.Response)
		}
		for name, c := range map[string]*channeltest.Client{"ada (node 1)": ada, "bob (node 2)": bob} {
			var m struct{ User, Body string }
			c.Expect("room:lobby", "new_msg").Decode(t, &m)
			if m.User != "ada" || m.Body != body {
				t.Errorf("%s received %+v as message %d, want ada's %q", name, m, i, body)
			}
		}
	}
	ada.Close()
	bob.Close()
	for _, n := range nodes {
		n.stop(t)
	}
}

// runApp builds the app, starts it on a free port, fetches its page and
// client, and chats on the page in Chromium across a restart of the app
// (SIGTERM, then a new process on the same port).
func runApp(t *testing.T, root, app string) {
	chromium := os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Chromium is needed to test the generated page: apt-get install chromium, or set CHROMIUM_PATH (%v)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("Node.js is needed to drive Chromium: ", err)
	}

	bin := filepath.Join(t.TempDir(), "myapp")
	goTool(t, app, "build", "-o", bin, ".")
	first := startApp(t, bin, "127.0.0.1:0")
	for _, p := range []string{"", "hearth.js", "app.js"} {
		res, err := http.Get(first.base + p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET /%s: %s", p, res.Status)
		}
	}

	script := filepath.Join(t.TempDir(), "page.cjs")
	if err := os.WriteFile(script, []byte(pageScript), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	browser := exec.CommandContext(ctx, node, script, first.base)
	browser.Env = append(os.Environ(), "CHROMIUM_PATH="+chromium,
		"PLAYWRIGHT_CORE="+filepath.Join(root, "node_modules", "playwright-core"))
	var stderr bytes.Buffer
	browser.Stderr = &stderr
	stdout, err := browser.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := browser.Start(); err != nil {
		t.Fatal(err)
	}
	steps := bufio.NewScanner(stdout)
	step := func(want string) {
		t.Helper()
		if !steps.Scan() || steps.Text() != want {
			_ = browser.Wait()
			t.Fatalf("the page script did not report %q (got %q):\n%s", want, steps.Text(), stderr.String())
		}
	}
	step("chatted")
	first.stop(t)
	step("reconnecting")
	startApp(t, bin, strings.TrimSuffix(strings.TrimPrefix(first.base, "http://"), "/"))
	step("chatted again")
	if err := browser.Wait(); err != nil {
		t.Fatalf("the page script failed: %v\n%s", err, stderr.String())
	}
}

// pageScript drives the generated page in Chromium (playwright-core):
// two users join room:lobby and chat; when the app stops, both pages show
// the reconnect countdown; when it is back, they rejoin and chat again.
// It prints each step it passes on stdout.
const pageScript = `"use strict"
const { chromium } = require(process.env.PLAYWRIGHT_CORE)
const base = process.argv[2]
const timeout = 30000

async function chat(from, to, text) {
  await from.fill("#body", text)
  await from.click("#send-btn")
  for (const p of [from, to]) {
    await p.waitForFunction((t) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.endsWith(t)), text, { timeout })
  }
}

;(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH, headless: true })
  try {
    const errors = []
    const pages = []
    for (const name of ["ada", "bob"]) {
      const page = await (await browser.newContext()).newPage()
      page.on("pageerror", (e) => errors.push(name + ": " + e))
      await page.goto(base)
      await page.fill("#name", name)
      await page.click("#join button")
      await page.waitForSelector("#status[data-state=connected]", { timeout })
      await page.waitForSelector("#body:not([disabled])", { timeout })
      pages.push(page)
    }
    const [ada, bob] = pages
    await chat(ada, bob, "hello from ada")
    const line = await bob.textContent("#messages li:last-child")
    if (line !== "adahello from ada") throw new Error("bob sees " + JSON.stringify(line))
    console.log("chatted")

    for (const p of pages) {
      await p.waitForFunction(() => /^reconnecting in \d+ s$/.test(document.getElementById("status").textContent), null, { timeout })
    }
    console.log("reconnecting")

    for (const p of pages) {
      await p.waitForSelector("#status[data-state=connected]", { timeout })
    }
    await chat(bob, ada, "back again")
    // The in-process broker lost its history with the old process: the
    // page says that messages may have been missed.
    await ada.waitForFunction(() => document.getElementById("messages").textContent.includes("missed"), null, { timeout })
    if (errors.length) throw new Error("page errors:\n" + errors.join("\n"))
    console.log("chatted again")
  } finally {
    await browser.close()
  }
})().catch((e) => {
  console.error(e)
  process.exit(1)
})
`

// newApp writes an app without running go mod tidy (gen only reads its
// files) and returns its directory.
func scaffoldApp(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	if err := runNew([]string{"app", "--dir", dir, "--tidy=false"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestNewErrors(t *testing.T) {
	tmp := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no name", nil, "want exactly one APP name"},
		{"two names", []string{"a", "b"}, "want exactly one APP name"},
		{"upper case", []string{"MyApp"}, `invalid app name "MyApp"`},
		{"space", []string{"my app"}, `invalid app name "my app"`},
		{"leading digit", []string{"1app"}, `invalid app name "1app"`},
		{"path", []string{"../app"}, `invalid app name "../app"`},
		{"std package", []string{"net"}, `collides with the standard library package "net"`},
		{"bad module", []string{"app", "--module", "example.com/a b"}, `invalid module path "example.com/a b"`},
		{"dotdot module", []string{"app", "--module", "example.com/../x"}, `invalid module path`},
		{"replace not a checkout", []string{"app", "--replace", tmp}, "not a checkout of github.com/hearth-rt/hearth"},
		{"unknown flag", []string{"app", "--nope"}, "flag provided but not defined: -nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			err := runNew(append(tc.args, "--dir", dir, "--tidy=false"), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("%s was created (%v)", dir, err)
			}
		})
	}
}

func TestNewNeverOverwrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "app")
	if err := os.MkdirAll(filepath.Join(dir, "channels"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Unrelated files may be there already (a .git, a LICENSE).
	for name, body := range map[string]string{"main.go": "package main // mine\n", "channels/room_channel.go": "mine\n", "LICENSE": "mine\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := runNew([]string{"app", "--dir", dir, "--tidy=false"}, io.Discard)
	if err == nil {
		t.Fatal("hearth new overwrote existing files")
	}
	for _, want := range []string{"refusing to overwrite", filepath.Join(dir, "main.go"), filepath.Join(dir, "channels", "room_channel.go")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "LICENSE") {
		t.Errorf("error %q lists a file hearth new does not write", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "main.go")); string(b) != "package main // mine\n" {
		t.Errorf("main.go changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); !os.IsNotExist(err) {
		t.Errorf("go.mod was written although the command failed (%v)", err)
	}

	// Into an existing directory without clashes, it writes.
	if err := os.Remove(filepath.Join(dir, "main.go")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "channels", "room_channel.go")); err != nil {
		t.Fatal(err)
	}
	if err := runNew([]string{"--tidy=false", "app", "--dir", dir}, io.Discard); err != nil {
		t.Fatalf("hearth new into a directory holding only a LICENSE: %v", err)
	}
}

func TestGenErrors(t *testing.T) {
	app := scaffoldApp(t)
	write := func(t *testing.T, rel, body string) {
		t.Helper()
		p := filepath.Join(app, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(p) })
	}
	gen := func(args ...string) error {
		return runGen(append(args, "--dir", app), io.Discard)
	}

	t.Run("names", func(t *testing.T) {
		for _, name := range []string{"", "chat-room", "ChatLinux", "chat room", "9lives", "_chat", "chat__room", "chat_",
			"chat_test", "chat_linux", "chat_windows", "chat_amd64", "chat_wasm", "a_1", "chat.room", "ünï",
			strings.Repeat("x", 41)} {
			err := gen("channel", name)
			if err == nil || !strings.Contains(err.Error(), "invalid channel name") {
				t.Errorf("gen channel %q: got %v, want an invalid channel name error", name, err)
			}
		}
		if err := gen("channel"); err == nil || !strings.Contains(err.Error(), "want exactly one channel NAME") {
			t.Errorf("gen channel without a name: %v", err)
		}
		if err := gen("channel", "a", "b"); err == nil || !strings.Contains(err.Error(), "want exactly one channel NAME") {
			t.Errorf("gen channel with two names: %v", err)
		}
		if err := runGen([]string{"model", "x"}, io.Discard); err == nil || !strings.Contains(err.Error(), `unknown generator "model"`) {
			t.Errorf("gen model: %v", err)
		}
	})

	t.Run("existing files", func(t *testing.T) {
		err := gen("channel", "room")
		if err == nil {
			t.Fatal("gen channel room overwrote the app's room channel")
		}
		for _, f := range []string{"channels/room_channel.go", "channels/room_channel_test.go", "assets/room.ts"} {
			if !strings.Contains(err.Error(), filepath.Join(app, filepath.FromSlash(f))) {
				t.Errorf("error %q does not list %s", err, f)
			}
		}
		// Only the clashing file is listed, and nothing is written.
		write(t, "assets/game.ts", "// mine\n")
		err = gen("channel", "game")
		if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") || !strings.Contains(err.Error(), filepath.Join("assets", "game.ts")) ||
			strings.Contains(err.Error(), "game_channel.go") {
			t.Fatalf("gen channel game with assets/game.ts present: %v", err)
		}
		if _, err := os.Stat(filepath.Join(app, "channels", "game_channel.go")); !os.IsNotExist(err) {
			t.Errorf("channels/game_channel.go was written (%v)", err)
		}
	})

	t.Run("topic already handled", func(t *testing.T) {
		write(t, "channels/arena_routes.go", "package channels\n\nfunc init() { define(\"arena:*\", nil) }\n")
		err := gen("channel", "arena")
		if err == nil || !strings.Contains(err.Error(), `the topics "arena:*" are already handled in channels/arena_routes.go`) {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("identifier taken", func(t *testing.T) {
		write(t, "channels/duel_old.go", "package channels\n\ntype DuelMessage struct{}\n")
		err := gen("channel", "duel")
		if err == nil || !strings.Contains(err.Error(), "would redeclare DuelMessage (channels/duel_old.go)") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestGenOutsideAnApp(t *testing.T) {
	tmp := t.TempDir()
	gen := func(dir string) error { return runGen([]string{"channel", "chat", "--dir", dir}, io.Discard) }

	if err := gen(tmp); err == nil || !strings.Contains(err.Error(), "no go.mod in "+tmp+" or any parent directory") {
		t.Errorf("no go.mod: %v", err)
	}

	plain := filepath.Join(tmp, "plain")
	if err := os.MkdirAll(filepath.Join(plain, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plain, "go.mod"), []byte("module example.com/plain\n\ngo 1.26.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := gen(filepath.Join(plain, "sub")); err == nil || !strings.Contains(err.Error(), "no channels package at "+filepath.Join(plain, "channels")) {
		t.Errorf("no channels package: %v", err)
	}

	if err := os.MkdirAll(filepath.Join(plain, "channels"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(plain, "channels", "x.go"), []byte("package channels\n\nfunc Register() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := gen(plain); err == nil || !strings.Contains(err.Error(), "lacks define, currentUser, validSubtopic, Connect, Deps") {
		t.Errorf("foreign channels package: %v", err)
	}

	if err := gen(repoRoot(t)); err == nil || !strings.Contains(err.Error(), "is Hearth itself") {
		t.Errorf("inside Hearth: %v", err)
	}
	if _, err := os.Stat(filepath.Join(plain, "channels", "chat_channel.go")); !os.IsNotExist(err) {
		t.Errorf("a channel was written outside an app (%v)", err)
	}
}

// TestNewFromCheckout: a hearth built from a checkout (as this test binary
// is) cannot require a released Hearth, so the app it writes uses the
// checkout, and says so; --replace still picks another one.
func TestNewFromCheckout(t *testing.T) {
	if ownVersion() != "" {
		t.Skip("this binary has a released version of Hearth to require")
	}
	root := repoRoot(t)
	dir := filepath.Join(t.TempDir(), "app")
	var out bytes.Buffer
	if err := runNew([]string{"app", "--dir", dir, "--tidy=false"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "* this hearth was built from the checkout " + root + ": the app uses it"; !strings.Contains(out.String(), want) {
		t.Errorf("hearth new did not say %q:\n%s", want, out.String())
	}
	gomod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"replace github.com/hearth-rt/hearth => " + root, "github.com/hearth-rt/hearth " + replacedVersion} {
		if !strings.Contains(string(gomod), want) {
			t.Errorf("go.mod lacks %q:\n%s", want, gomod)
		}
	}

	// An explicit --replace wins, and nothing is said about this checkout.
	other := filepath.Join(t.TempDir(), "other")
	if err := os.MkdirAll(other, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "go.mod"), []byte("module github.com/hearth-rt/hearth\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	dir2 := filepath.Join(t.TempDir(), "app")
	if err := runNew([]string{"app", "--dir", dir2, "--tidy=false", "--replace", other}, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "built from the checkout") {
		t.Errorf("hearth new --replace mentioned its own checkout:\n%s", out.String())
	}
	if gomod, _ := os.ReadFile(filepath.Join(dir2, "go.mod")); !strings.Contains(string(gomod), "replace github.com/hearth-rt/hearth => "+other) {
		t.Errorf("go.mod does not replace Hearth by %s:\n%s", other, gomod)
	}
}
