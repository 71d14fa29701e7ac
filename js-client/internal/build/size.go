package build

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MaxMinGzip is the size budget of the minified client, gzipped: the build
// fails beyond it.
const MaxMinGzip = 10 * 1024

// The region of docs/client.md that WriteSizeTable rewrites.
const (
	sizeBegin = "<!-- size-table: written by `go run ./js-client/cmd/build`; do not edit -->"
	sizeEnd   = "<!-- /size-table -->"
)

// SizeDoc is the document holding the size table, relative to the root.
const SizeDoc = "docs/client.md"

// GzipSize is the size of b compressed by Go's gzip at its best compression.
func GzipSize(b []byte) int {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Len()
}

// SizeTable is the Markdown table of the bundles' sizes (source maps left
// out), between the markers of docs/client.md. It fails when the minified
// bundle is over MaxMinGzip gzipped.
func SizeTable(out []Output) (string, error) {
	var b strings.Builder
	b.WriteString(sizeBegin + "\n")
	b.WriteString("| file | bytes | gzipped |\n|---|--:|--:|\n")
	for _, f := range out {
		if filepath.Ext(f.Name) == ".map" {
			continue
		}
		gz := GzipSize(f.Contents)
		name := "`" + f.Name + "`"
		if f.Name == "hearth.min.js" {
			if gz > MaxMinGzip {
				return "", fmt.Errorf("build: hearth.min.js is %d bytes gzipped, over the budget of %d", gz, MaxMinGzip)
			}
			name += " (budget " + thousands(MaxMinGzip) + ")"
			fmt.Fprintf(&b, "| %s | %s | **%s** |\n", name, thousands(len(f.Contents)), thousands(gz))
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", name, thousands(len(f.Contents)), thousands(gz))
	}
	b.WriteString(sizeEnd)
	return b.String(), nil
}

// ReplaceSizeTable returns doc with its size table region replaced by table.
func ReplaceSizeTable(doc []byte, table string) ([]byte, error) {
	s := string(doc)
	i := strings.Index(s, sizeBegin)
	j := strings.Index(s, sizeEnd)
	if i < 0 || j < i {
		return nil, errors.New("build: " + SizeDoc + " has no size table markers")
	}
	return []byte(s[:i] + table + s[j+len(sizeEnd):]), nil
}

// WriteSizeTable rewrites the size table of root/docs/client.md for out.
func WriteSizeTable(root string, out []Output) error {
	table, err := SizeTable(out)
	if err != nil {
		return err
	}
	path := filepath.Join(root, filepath.FromSlash(SizeDoc))
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	next, err := ReplaceSizeTable(doc, table)
	if err != nil {
		return err
	}
	if bytes.Equal(doc, next) {
		return nil
	}
	if err := os.WriteFile(path, next, 0o644); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	return nil
}

// thousands formats n with commas: 12345 -> "12,345".
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
