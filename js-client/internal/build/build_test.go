package build

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoot(t *testing.T) {
	root, err := Root(".")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "js-client", "src", "index.ts")); err != nil {
		t.Fatalf("Root = %s, which has no js-client/src/index.ts", root)
	}
	if sub, err := Root(filepath.Join(root, "js-client", "src")); err != nil || sub != root {
		t.Fatalf("Root from js-client/src = %q, %v; want %q", sub, err, root)
	}
}

// TestBundlesDeterministic: the staleness check relies on the same sources
// always giving the same bytes, wherever the repository lives.
func TestBundlesDeterministic(t *testing.T) {
	root, err := Root(".")
	if err != nil {
		t.Fatal(err)
	}
	a, err := Bundles(root)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Bundles(filepath.Join(root, "js-client", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 8 || len(a) != len(b) {
		t.Fatalf("got %d and %d outputs, want 8", len(a), len(b))
	}
	for i := range a {
		if a[i].Name != b[i].Name || !bytes.Equal(a[i].Contents, b[i].Contents) {
			t.Fatalf("%s differs between two builds", a[i].Name)
		}
		if strings.Contains(string(a[i].Contents), root) {
			t.Fatalf("%s contains the absolute path %s", a[i].Name, root)
		}
		if !strings.HasSuffix(a[i].Name, ".map") && !strings.HasPrefix(string(a[i].Contents), Banner) {
			t.Fatalf("%s does not start with the banner", a[i].Name)
		}
	}
}

// TestDashboardUpToDate: the committed dashboard script of package
// server/api is what its source builds to (run `go run ./js-client/cmd/build`
// after changing it or the client), and holds no absolute path.
func TestDashboardUpToDate(t *testing.T) {
	root, err := Root(".")
	if err != nil {
		t.Fatal(err)
	}
	js, err := Dashboard(root)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(DashboardOutput)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, js) {
		t.Fatalf("%s is stale: run `go run ./js-client/cmd/build`", DashboardOutput)
	}
	if strings.Contains(string(js), root) {
		t.Fatalf("%s contains the absolute path %s", DashboardOutput, root)
	}
}

// TestSizeTableFresh: the size table in docs/client.md is the one the build
// writes for the current sources, and the minified bundle is within budget.
func TestSizeTableFresh(t *testing.T) {
	root, err := Root(".")
	if err != nil {
		t.Fatal(err)
	}
	out, err := Bundles(root)
	if err != nil {
		t.Fatal(err)
	}
	table, err := SizeTable(out)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, SizeDoc))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), table) {
		t.Fatalf("the size table of %s is stale: run `go run ./js-client/cmd/build`; want\n%s", SizeDoc, table)
	}
}

func TestSizeTableBudget(t *testing.T) {
	big := []Output{{Name: "hearth.min.js", Contents: randomBytes(MaxMinGzip + 100)}}
	if _, err := SizeTable(big); err == nil || !strings.Contains(err.Error(), "over the budget") {
		t.Fatalf("a bundle over budget gave %v", err)
	}
	if got := thousands(1234567); got != "1,234,567" {
		t.Fatalf("thousands = %s", got)
	}
	if _, err := ReplaceSizeTable([]byte("no markers"), "x"); err == nil {
		t.Fatal("a document without markers was accepted")
	}
}

// randomBytes returns n incompressible bytes (a fixed xorshift sequence).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}
