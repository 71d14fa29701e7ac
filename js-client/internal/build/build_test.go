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
	if len(a) != 6 || len(a) != len(b) {
		t.Fatalf("got %d and %d outputs, want 6", len(a), len(b))
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
