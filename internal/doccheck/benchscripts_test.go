package doccheck

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBenchSettingsBeforeScript: the bench scripts take their settings
// from the environment, so a command the documents give names them before
// the script (`NETHTTP=1 BASE=9eb99c0 bash bench/proxy.sh`). Written after
// it (`bench/proxy.sh NETHTTP=1 BASE=9eb99c0`, as docs/performance.md once
// had it) they were arguments the script ignored: a reader ran the plain
// bench and took it for the comparison. Each script now refuses arguments,
// before it builds anything.
func TestBenchSettingsBeforeScript(t *testing.T) {
	texts := docs(t)
	texts["bench/README.md"] = read(t, "bench/README.md")
	after := regexp.MustCompile(`bench/[a-z-]+\.sh +[A-Z][A-Z0-9_]*=`)
	for name, text := range texts {
		for _, m := range after.FindAllString(text, -1) {
			t.Errorf("%s: %q: a setting after the script is an argument it refuses; put it first (NAME=value bash bench/….sh)", name, m)
		}
	}
	scripts, err := filepath.Glob(filepath.Join(root, "bench", "*.sh"))
	if err != nil || len(scripts) < 4 {
		t.Fatalf("bench scripts: %v %v", scripts, err)
	}
	for _, s := range scripts {
		cmd := exec.Command("bash", s, "RUNS=1")
		cmd.Env = append(cmd.Environ(), "PATH=/usr/bin:/bin") // no go: a script that went on to build fails another way
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), "settings are environment variables") {
			t.Errorf("bash %s RUNS=1: exit %d (%v), want 2 and the reason:\n%s", s, code, err, out)
		}
	}
}
