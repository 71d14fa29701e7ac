package main

import (
	"github.com/go-chi/chi/v5"

	jsclient "github.com/hearth-rt/hearth/js-client"
)

// mountClient serves the Hearth JavaScript client bundles embedded in the
// binary: /hearth.js (IIFE, global Hearth), /hearth.min.js, /hearth.mjs
// (ES module) and their source maps.
func mountClient(r chi.Router) {
	h := jsclient.Handler()
	for _, name := range jsclient.Files {
		r.Handle("/"+name, h)
	}
}
