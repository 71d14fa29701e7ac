// Package doctest checks that the Go examples of README.md and docs/*.md
// compile, and that the tests among them pass, so that the docs cannot
// drift from the API. See doctest_test.go for the rules.
package doctest
