package main

import "github.com/go-chi/chi/v5"

// mountClient serves the Hearth JavaScript client bundles. Replaced by the
// embedded bundles of package jsclient once they exist.
func mountClient(r chi.Router) {}
