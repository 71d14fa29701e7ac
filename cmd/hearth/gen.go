package main

import (
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/hearth-rt/hearth/templates"
)

func init() {
	register("gen", "add code to an application: hearth gen channel NAME, hearth gen types", func(args []string) error {
		return runGen(args, os.Stdout)
	})
}

func genUsage(w io.Writer) {
	fmt.Fprint(w, `usage: hearth gen channel NAME [flags]
       hearth gen types [--dir DIR]

gen types writes assets/events.gen.ts: the TypeScript types of the typed
events (channels.HandleIn, channels.Emits) of the app's channels, for
socket.channel<RoomEvents>(...). gen channel runs it too.

Run inside an app made by `+"`hearth new`"+`. Adds the channel NAME, handling the
topics "NAME:*": channels/NAME_channel.go (join authorization, handle-in), its test
channels/NAME_channel_test.go, and a TypeScript module assets/NAME.ts. Never
overwrites a file. NAME is snake_case (chat_room) or CamelCase (ChatRoom,
underscored as Phoenix does: both make channels/chat_room_channel.go, the
type ChatRoomChannel and the topics "chat_room:*").

flags:
`)
}

func runGen(args []string, out io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		genUsage(os.Stderr)
		genChannelFlags(new(genConfig)).PrintDefaults()
		return errors.New("want a generator: channel or types")
	}
	switch args[0] {
	case "channel":
		return runGenChannel(args[1:], out)
	case "types":
		return runGenTypes(args[1:], out)
	}
	return fmt.Errorf("unknown generator %q: want channel or types", args[0])
}

type genConfig struct {
	dir                 string
	intercept, presence bool
}

func genChannelFlags(cfg *genConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("gen channel", flag.ContinueOnError)
	fs.StringVar(&cfg.dir, "dir", ".", "the app's directory, or any directory inside it")
	fs.BoolVar(&cfg.intercept, "intercept", false, "also intercept new_msg with an Out handler that rewrites it per subscriber")
	fs.BoolVar(&cfg.presence, "presence", false, "track who is in each topic (Deps.Presence): clients get presence_state and presence_diff")
	fs.Usage = func() {
		genUsage(fs.Output())
		fs.PrintDefaults()
	}
	return fs
}

func runGenChannel(args []string, out io.Writer) error {
	var cfg genConfig
	fs := genChannelFlags(&cfg)
	name, err := oneArg(fs, args, "channel NAME")
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if name, err = templates.ChannelName(name); err != nil {
		return unprefix(err)
	}
	app, err := findApp(cfg.dir)
	if err != nil {
		return err
	}
	data := templates.ChannelData{Name: name, Module: app.module, Intercept: cfg.intercept, Presence: cfg.presence}
	files, err := templates.Channel(data)
	if err != nil {
		return unprefix(err)
	}
	if exist, err := existing(app.rel, files); err != nil {
		return err
	} else if len(exist) > 0 {
		return errExist(exist)
	}
	if err := app.checkChannel(data); err != nil {
		return err
	}
	if err := writeFiles(app.rel, files, out); err != nil {
		return err
	}
	if err := app.writeTypes(out); err != nil {
		return fmt.Errorf("the channel is written, but: %w\nFix the cause, then run `hearth gen types`", err)
	}
	fmt.Fprintf(out, `
The channel handles the topics %[1]q. It registers itself (init in
channels/%[2]s_channel.go calls define), so `+"`go run .`"+` serves it. Check it:

    go test ./channels -run %[3]s

From the browser (the global Hearth of /hearth.js, as in static/app.js):

    const ch = socket.channel("%[2]s:lobby")
    ch.on("new_msg", ({ user, body }) => console.log(user, body))
    ch.join().receive("ok", () => ch.push("new_msg", { body: "hi" }))

or, with a bundler and checked by tsc, join%[4]s from assets/%[2]s.ts (its
types come from the Go handler: assets/events.gen.ts, rewritten by
`+"`hearth gen types`"+` after you change the channel's events). Make the
channel yours in channels/%[2]s_channel.go:

    join       who may join which topic%[6]s
    newMsg     the typed new_msg push (%[4]sNewMsg in, %[4]sMessage out)
    handleIn   the other pushes%[5]s
`, data.Topic(), name, data.Test(), data.Pascal(),
		map[bool]string{true: "\n    out        how each subscriber sees a new_msg", false: ""}[cfg.intercept],
		map[bool]string{true: " (and presence tracking: Deps.Presence)", false: ""}[cfg.presence])
	return nil
}

// app is an application made by `hearth new`, as gen finds it.
type app struct {
	root   string // absolute directory of go.mod
	rel    string // root as given by the user, for messages
	module string
	// channels is the channels package: its directory and the top-level
	// identifiers and string literals of its files.
	channelsDir string
	decls       map[string]string // identifier -> file that declares it
	topics      map[string]string // "NAME:*" literal -> file that uses it
}

// channelsPackageFuncs are the declarations of the app's channels package
// that generated channels use.
var channelsPackageFuncs = []string{"define", "currentUser", "validSubtopic", "Register", "Connect", "Deps"}

// findApp finds the app around dir: the nearest go.mod at or above it,
// with a channels package.
func findApp(dir string) (*app, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root := abs
	for {
		if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(root)
		if parent == root {
			return nil, fmt.Errorf("no go.mod in %s or any parent directory: run hearth gen inside an app made by `hearth new` (or pass --dir)", abs)
		}
		root = parent
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, err
	}
	a := &app{root: root, module: modulePath(gomod), channelsDir: filepath.Join(root, "channels")}
	if a.module == "" {
		return nil, fmt.Errorf("%s declares no module path", filepath.Join(root, "go.mod"))
	}
	if a.module == hearthModule {
		return nil, fmt.Errorf("%s is Hearth itself, not an app: run hearth gen inside an app made by `hearth new`", root)
	}
	a.rel = root
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, root); err == nil && !strings.HasPrefix(r, "..") {
			a.rel = r
		}
	}
	if err := a.scanChannels(); err != nil {
		return nil, err
	}
	return a, nil
}

// scanChannels reads the declarations of the channels package.
func (a *app) scanChannels() error {
	st, err := os.Stat(a.channelsDir)
	if err != nil || !st.IsDir() {
		return fmt.Errorf("no channels package at %s: hearth gen channel works in apps made by `hearth new`, whose channels live in channels/", a.channelsDir)
	}
	paths, err := filepath.Glob(filepath.Join(a.channelsDir, "*.go"))
	if err != nil {
		return err
	}
	a.decls = make(map[string]string)
	a.topics = make(map[string]string)
	fset := token.NewFileSet()
	for _, p := range paths {
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("reading the channels package: %w", err)
		}
		base := filepath.Base(p)
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					a.decls[d.Name.Name] = base
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						a.decls[s.Name.Name] = base
					case *ast.ValueSpec:
						for _, n := range s.Names {
							a.decls[n.Name] = base
						}
					}
				}
			}
		}
		if strings.HasSuffix(base, "_test.go") {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasSuffix(s, ":*") {
					a.topics[s] = base
				}
			}
			return true
		})
	}
	var missing []string
	for _, fn := range channelsPackageFuncs {
		if _, ok := a.decls[fn]; !ok {
			missing = append(missing, fn)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("the channels package at %s lacks %s, which generated channels use: it does not look like one made by `hearth new`", a.channelsDir, strings.Join(missing, ", "))
	}
	return nil
}

// checkChannel refuses a channel whose topic is already handled or whose
// identifiers are already declared in the channels package.
func (a *app) checkChannel(d templates.ChannelData) error {
	if file, ok := a.topics[d.Topic()]; ok {
		return fmt.Errorf("the topics %q are already handled in channels/%s", d.Topic(), file)
	}
	var clash []string
	for _, id := range d.Identifiers() {
		if file, ok := a.decls[id]; ok {
			clash = append(clash, id+" (channels/"+file+")")
		}
	}
	if len(clash) > 0 {
		sort.Strings(clash)
		return fmt.Errorf("channel %q would redeclare %s: choose another name", d.Name, strings.Join(clash, ", "))
	}
	return nil
}
