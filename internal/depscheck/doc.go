// Package depscheck tests scripts/deps, the list of system packages that
// `make test` and CI install or ask for.
package depscheck
