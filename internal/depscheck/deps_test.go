package depscheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runDeps runs scripts/deps with extra environment and returns its exit
// code and output.
func runDeps(t *testing.T, env ...string) (int, string) {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "deps"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(script)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), string(out)
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestMissingPackageStopsWithTheCommand: a missing package (hidden here)
// that cannot be installed stops the script at once with the one command
// that installs it.
func TestMissingPackageStopsWithTheCommand(t *testing.T) {
	code, out := runDeps(t, "HEARTH_DEPS_HIDE=chromium pgbouncer", "HEARTH_DEPS_NO_INSTALL=1", "CHROMIUM_PATH=")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	if !strings.Contains(out, "apt-get install -y --no-install-recommends chromium pgbouncer") || !strings.Contains(out, "CHROMIUM_PATH") {
		t.Errorf("output lacks the install command:\n%s", out)
	}
}

// TestChromiumPath: CHROMIUM_PATH stands for the chromium package, and
// must name a program.
func TestChromiumPath(t *testing.T) {
	code, out := runDeps(t, "HEARTH_DEPS_NO_INSTALL=1", "CHROMIUM_PATH="+filepath.Join(t.TempDir(), "none"))
	if code != 1 || !strings.Contains(out, "--no-install-recommends chromium") {
		t.Errorf("CHROMIUM_PATH naming nothing: exit %d\n%s", code, out)
	}
}

// TestGoAndNodeAreNotApt: Go and Node.js come from their own installers;
// the script says so instead of offering Debian's older packages.
func TestGoAndNodeAreNotApt(t *testing.T) {
	code, out := runDeps(t, "HEARTH_DEPS_HIDE=node", "HEARTH_DEPS_NO_INSTALL=1")
	if code != 1 || !strings.Contains(out, "Node.js 20+") || strings.Contains(out, "apt-get") {
		t.Errorf("node hidden: exit %d\n%s", code, out)
	}
}
