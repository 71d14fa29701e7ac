package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// typesFile is where gen types writes, relative to the app's root.
const typesFile = "assets/events.gen.ts"

func runGenTypes(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("gen types", flag.ContinueOnError)
	dir := fs.String("dir", ".", "the app's directory, or any directory inside it")
	fs.Usage = func() {
		genUsage(fs.Output())
		fs.PrintDefaults()
	}
	rest, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if len(rest) != 0 {
		fs.Usage()
		return errors.New("gen types takes no arguments")
	}
	app, err := findApp(*dir)
	if err != nil {
		return err
	}
	return app.writeTypes(out)
}

// typesProgram prints the TypeScript of the app's typed events: it
// registers the app's channels on a node that never serves, and hands their
// declarations to tstypes.
const typesProgram = `// Written and removed by hearth gen types.
package main

import (
	"fmt"
	"os"

	hearth "github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/tstypes"

	app %s
)

func main() {
	n := hearth.New(hearth.Options{})
	app.Register(n, app.Deps{})
	if err := tstypes.Generate(os.Stdout, n.Events()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`

// writeTypes runs the app's channels through tstypes (in a temporary
// program inside the app, so that it builds with the app's own
// dependencies) and writes assets/events.gen.ts when it changed.
func (a *app) writeTypes(out io.Writer) error {
	tmp, err := os.MkdirTemp(a.root, ".hearth-gen-types-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	src := fmt.Sprintf(typesProgram, strconv.Quote(a.module+"/channels"))
	if err := os.WriteFile(filepath.Join(tmp, "main.go"), []byte(src), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./"+filepath.Base(tmp))
	cmd.Dir = a.root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("gen types: building the app's channels failed: %v\n%s", err, indent(stderr.String()))
	}
	path := filepath.Join(a.root, filepath.FromSlash(typesFile))
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, stdout.Bytes()) {
		fmt.Fprintf(out, "* %s is up to date\n", filepath.Join(a.rel, filepath.FromSlash(typesFile)))
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, stdout.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(out, "* writing %s\n", filepath.Join(a.rel, filepath.FromSlash(typesFile)))
	return nil
}
