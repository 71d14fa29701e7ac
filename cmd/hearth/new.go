package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/build"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/hearth-rt/hearth/templates"
)

func init() {
	register("new", "scaffold an application: hearth new APP", func(args []string) error {
		return runNew(args, os.Stdout)
	})
}

const (
	// hearthModule is the module path of Hearth.
	hearthModule = "github.com/hearth-rt/hearth"
	// goDirective is the go directive of generated apps: Hearth's own
	// (TestGoDirective keeps them equal).
	goDirective = "1.26.0"
	// replacedVersion is the version required of a module that a replace
	// directive points at a directory (what `go mod edit` writes).
	replacedVersion = "v0.0.0-00010101000000-000000000000"
)

// appDeps are the modules a generated app imports besides Hearth, with the
// versions used when this binary's build information lacks them.
var appDeps = []templates.Require{
	{Path: "github.com/go-chi/chi/v5", Version: "v5.5.0"},
}

type newConfig struct {
	name, module, dir, replace string
	tidy                       bool
}

func newFlags(cfg *newConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("new", flag.ContinueOnError)
	fs.StringVar(&cfg.module, "module", "", "Go module path (default APP)")
	fs.StringVar(&cfg.dir, "dir", "", "directory to write the app into (default ./APP)")
	fs.StringVar(&cfg.replace, "replace", "", "use this checkout of Hearth (a directory) through a replace directive (default: the checkout this binary was built from, if it was)")
	fs.BoolVar(&cfg.tidy, "tidy", true, "run go mod tidy in the new app; -tidy=false skips it")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: hearth new APP [flags]

Writes a runnable Hearth app into ./APP: go.mod, main.go (a chi router, the
WebSocket endpoint, graceful shutdown), a "room:*" channel with its test, a
page using the Hearth client, a README. APP is a lower-case name (my_app).

flags:
`)
		fs.PrintDefaults()
	}
	return fs
}

func runNew(args []string, out io.Writer) error {
	var cfg newConfig
	fs := newFlags(&cfg)
	name, err := oneArg(fs, args, "APP name")
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	cfg.name = name
	if err := templates.CheckAppName(cfg.name); err != nil {
		return unprefix(err)
	}
	if cfg.module == "" {
		cfg.module = cfg.name
	}
	if err := templates.CheckModulePath(cfg.module); err != nil {
		return unprefix(err)
	}
	if first, _, _ := strings.Cut(cfg.module, "/"); !strings.Contains(first, ".") && isStdPackage(first) {
		return fmt.Errorf("module path %q collides with the standard library package %q: choose another name or pass --module", cfg.module, first)
	}
	if cfg.dir == "" {
		cfg.dir = cfg.name
	}

	data := templates.AppData{Name: cfg.name, Module: cfg.module, GoVersion: goDirective}
	hearthVersion := ""
	if cfg.replace == "" && ownVersion() == "" {
		// Built in a checkout (go build, go run, go install from a
		// directory): no version a go.mod could require, so the app uses
		// that checkout, which is where this binary's code came from.
		if src := sourceCheckout(); src != "" {
			cfg.replace = src
			fmt.Fprintf(out, "* this hearth was built from the checkout %s: the app uses it (a replace directive in go.mod; --replace DIR picks another)\n", src)
		}
	}
	if cfg.replace != "" {
		if cfg.replace, err = checkHearthCheckout(cfg.replace); err != nil {
			return err
		}
		data.Replace = cfg.replace
		hearthVersion = replacedVersion
	} else if v := ownVersion(); v != "" {
		hearthVersion = v
	}
	if hearthVersion != "" {
		data.Requires = append(data.Requires, templates.Require{Path: hearthModule, Version: hearthVersion})
	}
	for _, d := range appDeps {
		data.Requires = append(data.Requires, templates.Require{Path: d.Path, Version: depVersion(d.Path, d.Version)})
	}

	files, err := templates.App(data)
	if err != nil {
		return unprefix(err)
	}
	if err := writeFiles(cfg.dir, files, out); err != nil {
		return err
	}
	rel := cfg.dir
	if cfg.tidy {
		fmt.Fprintf(out, "* running go mod tidy in %s\n", rel)
		if err := goModTidy(cfg.dir); err != nil {
			fix := "Fix the cause, then run `go mod tidy` there."
			if hearthVersion == "" {
				dir := "/path/to/hearth"
				if src := sourceCheckout(); src != "" {
					dir = src
				}
				fix = fmt.Sprintf(`This hearth binary was built from a checkout, not from a released version.
Build the app against that checkout:

    cd %s
    go mod edit -replace %s=%s
    go mod tidy

(or next time: hearth new %s --replace %s)`, rel, hearthModule, dir, cfg.name, dir)
			}
			return fmt.Errorf("the app is written in %s, but `go mod tidy` failed: %v\n%s", rel, err, fix)
		}
		// The TypeScript types of the channels' events (assets/events.gen.ts).
		a, err := findApp(cfg.dir)
		if err == nil {
			err = a.writeTypes(out)
		}
		if err != nil {
			return fmt.Errorf("the app is written in %s, but writing its TypeScript types failed: %v\nFix the cause, then run `hearth gen types` there", rel, err)
		}
	}
	fmt.Fprintf(out, `
Your Hearth app is ready. Run it:

    cd %s
%s    go run .

and open http://127.0.0.1:4000 in two tabs. Test it:

    go test ./...

Add a channel (topics "game:*", its test and assets/game.ts):

    hearth gen channel game

See README.md for the layout and what to change before production.
`, rel, map[bool]string{true: "", false: "    go mod tidy\n    hearth gen types\n"}[cfg.tidy])
	return nil
}

// parseInterspersed parses flags that may come before or after the
// positional arguments (hearth new APP --module x), where package flag alone
// oneArg parses flags placed anywhere among the arguments and returns the
// one positional argument, described by what in the error otherwise.
// flag.ErrHelp comes back when -h was asked for (usage already printed).
func oneArg(fs *flag.FlagSet, args []string, what string) (string, error) {
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return "", err
	}
	if len(rest) != 1 {
		fs.Usage()
		return "", errors.New("want exactly one " + what)
	}
	return rest[0], nil
}

// stops at the first positional one. Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos, tail []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, tail = args[:i], args[i+1:]
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// unprefix drops the "templates: " prefix from a validation error: the
// command already prefixes its errors with its name.
func unprefix(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "templates: "))
}

// isStdPackage reports whether name is a standard library package of the
// local Go installation.
func isStdPackage(name string) bool {
	p, err := build.Default.Import(name, "", build.FindOnly)
	return err == nil && p.Goroot
}

// checkHearthCheckout returns dir as an absolute path after checking that
// it holds the Hearth module.
func checkHearthCheckout(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	mod, err := os.ReadFile(filepath.Join(abs, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("--replace %s: not a checkout of %s: %w", dir, hearthModule, err)
	}
	if got := modulePath(mod); got != hearthModule {
		return "", fmt.Errorf("--replace %s: go.mod declares module %q, not %s", dir, got, hearthModule)
	}
	return abs, nil
}

var moduleLineRE = regexp.MustCompile(`(?m)^\s*module\s+("[^"]*"|\S+)`)

// modulePath returns the module path declared by a go.mod, or "".
func modulePath(gomod []byte) string {
	m := moduleLineRE.FindSubmatch(gomod)
	if m == nil {
		return ""
	}
	p := string(m[1])
	if u, err := strconv.Unquote(p); err == nil {
		p = u
	}
	return p
}

var semverRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// ownVersion returns the version of Hearth this binary was built from when
// it is one a go.mod can require (a release or a published pseudo-version,
// as `go install github.com/hearth-rt/hearth/cmd/hearth@v1.2.3` records),
// else "".
func ownVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Path != hearthModule {
		return ""
	}
	if v := bi.Main.Version; semverRE.MatchString(v) {
		return v
	}
	return "" // "(devel)", or a local build with "+dirty" metadata
}

// sourceCheckout returns the Hearth checkout this binary was built from
// when it is still there (the path is unknown for -trimpath builds), else "".
func sourceCheckout() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	root := filepath.Dir(filepath.Dir(filepath.Dir(file))) // cmd/hearth/new.go
	if _, err := checkHearthCheckout(root); err != nil {
		return ""
	}
	return root
}

// depVersion returns the version of module path this binary was built with,
// so that a generated app uses what Hearth was tested with, or fallback.
func depVersion(path, fallback string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path && semverRE.MatchString(d.Version) {
				return d.Version
			}
		}
	}
	return fallback
}

// existing returns the paths under root of the files that exist already.
func existing(root string, files []templates.File) ([]string, error) {
	var exist []string
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if _, err := os.Lstat(p); err == nil {
			exist = append(exist, p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return exist, nil
}

// errExist is the error for files that would be overwritten.
func errExist(paths []string) error {
	return fmt.Errorf("refusing to overwrite existing files (nothing was written):\n  %s", strings.Join(paths, "\n  "))
}

// writeFiles writes files under root, printing each. It writes nothing if
// any of them exists: the error lists them all.
func writeFiles(root string, files []templates.File, out io.Writer) error {
	exist, err := existing(root, files)
	if err != nil {
		return err
	}
	if len(exist) > 0 {
		return errExist(exist)
	}
	for _, f := range files {
		p := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		// O_EXCL: a file created meanwhile is not overwritten either.
		w, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		_, err = w.Write(f.Data)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "* creating %s\n", p)
	}
	return nil
}

// goModTidy runs `go mod tidy` in dir, returning its output on failure.
func goModTidy(dir string) error {
	cmd := exec.Command("go", "mod", "tidy")
	cmd.Dir = dir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w\n%s", err, indent(buf.String()))
	}
	return nil
}

func indent(s string) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(strings.TrimSpace(s)))
	for sc.Scan() {
		b.WriteString("    " + sc.Text() + "\n")
	}
	return b.String()
}
