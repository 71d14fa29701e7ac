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
