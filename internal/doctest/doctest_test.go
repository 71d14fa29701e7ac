package doctest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A Go block of the docs is checked when
//
//   - it is a whole file (it starts with a package clause): it must pass
//     go vet, and if it declares tests, go test; or
//   - the line before it is "<!-- doctest: NAME -->": testdata/NAME.txt is
//     a Go file holding the line "// FRAGMENT", which the block replaces
//     (it declares what the block uses but does not show); the result
//     must pass go vet, and go test when NAME ends in "_test".
//
// Any other Go block fails the test, which says how to mark it.
// "<!-- doctest: skip (why) -->" marks one as knowingly unchecked.

type block struct {
	file   string // relative to the repository root
	line   int
	marker string
	code   string
}

var markerRE = regexp.MustCompile(`^<!--\s*doctest:\s*(\S+)(\s[^>]*)?-->$`)

func goBlocks(t *testing.T, root string) []block {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(root, "README.md")}, files...)
	var blocks []block
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		sc := bufio.NewScanner(bytes.NewReader(data))
		var prev string
		var cur *block
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			switch {
			case cur != nil && strings.HasPrefix(line, "```"):
				blocks = append(blocks, *cur)
				cur = nil
			case cur != nil:
				cur.code += line + "\n"
			case strings.TrimSpace(line) == "```go":
				cur = &block{file: rel, line: n}
				if m := markerRE.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
					cur.marker = m[1]
				}
			}
			if strings.TrimSpace(line) != "" {
				prev = line
			}
		}
	}
	return blocks
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestDocsGoExamples builds every checkable Go block of the docs inside the
// Hearth module (so that they use this checkout and its dependencies) and
// runs the tests among them.
func TestDocsGoExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the docs' examples")
	}
	root := repoRoot(t)
	tmp, err := os.MkdirTemp(root, ".doctest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	var vet, test []string
	where := map[string]string{}
	var unchecked []string
	for i, b := range goBlocks(t, root) {
		name := "main.go"
		src := b.code
		switch {
		case b.marker == "skip":
			continue
		case b.marker != "":
			tmpl, err := os.ReadFile(filepath.Join("testdata", b.marker+".txt"))
			if err != nil {
				t.Errorf("%s:%d: doctest %s: %v", b.file, b.line, b.marker, err)
				continue
			}
			if !bytes.Contains(tmpl, []byte("// FRAGMENT\n")) {
				t.Errorf("testdata/%s.txt has no \"// FRAGMENT\" line", b.marker)
				continue
			}
			src = strings.Replace(string(tmpl), "// FRAGMENT\n", b.code, 1)
			if strings.HasSuffix(b.marker, "_test") {
				name = "doc_test.go"
			}
		case strings.HasPrefix(b.code, "package "):
			if strings.Contains(b.code, "\nfunc Test") {
				name = "doc_test.go"
			}
		default:
			unchecked = append(unchecked, b.file+":"+strconv.Itoa(b.line))
			continue
		}
		dir := filepath.Join(tmp, "b"+strconv.Itoa(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		pkg := "./" + filepath.Base(tmp) + "/" + filepath.Base(dir)
		where[pkg] = b.file + ":" + strconv.Itoa(b.line)
		vet = append(vet, pkg)
		if name == "doc_test.go" {
			test = append(test, pkg)
		}
	}
	if len(vet) == 0 {
		t.Fatal("no Go example of the docs is checked")
	}
	run := func(args ...string) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			msg := string(out)
			for pkg, at := range where {
				msg = strings.ReplaceAll(msg, strings.TrimPrefix(pkg, "./"), at+" ("+strings.TrimPrefix(pkg, "./")+")")
			}
			t.Errorf("go %s: %v\n%s", args[0], err, msg)
		}
	}
	run(append([]string{"vet"}, vet...)...)
	if len(test) > 0 {
		run(append([]string{"test", "-count=1"}, test...)...)
	}
	t.Logf("checked %d Go examples (%d run as tests)", len(vet), len(test))
	if len(unchecked) > 0 {
		t.Errorf("Go blocks of the docs that nothing checks: %s\nMake each a whole file (package clause), or put <!-- doctest: NAME --> before it with internal/doctest/testdata/NAME.txt declaring what it uses, or <!-- doctest: skip (why) -->", strings.Join(unchecked, ", "))
	}
}
