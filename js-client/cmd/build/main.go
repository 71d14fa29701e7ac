// Command build builds the Hearth JavaScript client with esbuild's Go API,
// so that no Node toolchain is needed to produce the bundles:
//
//	go run ./js-client/cmd/build          write js-client/dist (ESM, IIFE, minified IIFE, source maps)
//	go run ./js-client/cmd/build -check   fail if js-client/dist is stale against js-client/src
//	go run ./js-client/cmd/build -tests   bundle js-client/test/*.test.ts into js-client/.build/test
//
// The type declarations (js-client/dist/types) come from tsc: `npm run build`
// runs this program and then `tsc -p js-client/tsconfig.types.json`.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hearth-rt/hearth/js-client/internal/build"
)

func main() {
	tests := flag.Bool("tests", false, "bundle the TypeScript tests instead of the client")
	check := flag.Bool("check", false, "only check that js-client/dist matches the sources")
	flag.Parse()
	if err := run(*tests, *check); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(tests, check bool) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := build.Root(wd)
	if err != nil {
		return err
	}
	switch {
	case tests:
		names, err := build.Tests(root)
		if err != nil {
			return err
		}
		fmt.Printf("built %d test files into %s\n", len(names), build.TestDir)
		return nil
	case check:
		out, err := build.Bundles(root)
		if err != nil {
			return err
		}
		for _, f := range out {
			have, err := os.ReadFile(filepath.Join(root, "js-client", "dist", f.Name))
			if err != nil || !bytes.Equal(have, f.Contents) {
				return fmt.Errorf("js-client/dist/%s is stale: run `go run ./js-client/cmd/build`", f.Name)
			}
		}
		fmt.Println("js-client/dist is up to date")
		return checkDashboard(root)
	}
	out, err := build.WriteBundles(root)
	if err != nil {
		return err
	}
	for _, f := range out {
		if filepath.Ext(f.Name) == ".map" {
			continue
		}
		fmt.Printf("js-client/dist/%-14s %6d bytes, %5d gzipped\n", f.Name, len(f.Contents), gzipSize(f.Contents))
	}
	return writeDashboard(root)
}

// writeDashboard builds the dashboard page's script of package server/api.
func writeDashboard(root string) error {
	js, err := build.Dashboard(root)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(build.DashboardOutput)), js, 0o644); err != nil {
		return err
	}
	fmt.Printf("%s %6d bytes, %5d gzipped\n", build.DashboardOutput, len(js), gzipSize(js))
	return nil
}

func checkDashboard(root string) error {
	js, err := build.Dashboard(root)
	if err != nil {
		return err
	}
	have, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(build.DashboardOutput)))
	if err != nil || !bytes.Equal(have, js) {
		return fmt.Errorf("%s is stale: run `go run ./js-client/cmd/build`", build.DashboardOutput)
	}
	fmt.Println(build.DashboardOutput + " is up to date")
	return nil
}

// gzipSize is the size of b compressed like `gzip -9`.
func gzipSize(b []byte) int {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Len()
}
