// Package templates holds the files Hearth writes or serves: the demo app's
// page (served by `hearth serve`) and the scaffolding of `hearth new` and
// `hearth gen channel`.
package templates

import (
	"embed"
	"io/fs"
)

//go:embed demo
var demo embed.FS

// Demo is the demo app's static page (index.html, app.js, style.css).
func Demo() fs.FS {
	sub, err := fs.Sub(demo, "demo")
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return sub
}
