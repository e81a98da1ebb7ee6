package server

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeStartSays: what trailguard serve prints on start answers
// where the data is (absolute paths, found from any directory), where to
// look (the web UI) and how to stop it (the signal and this process's
// pid; before, the start message did not say how to stop).
func TestServeStartSays(t *testing.T) {
	dir := t.TempDir()
	p := startProc(t, dir)
	p.stop(t, 30*time.Second)
	out := p.output()
	for _, w := range []string{
		"  data:         " + dir + "\n",
		"  verifier key: " + filepath.Join(dir, "keys", "signer.pub") + "\n",
		"  web UI:       " + p.url + "/ui/",
		fmt.Sprintf("  stop:         Ctrl-C or SIGTERM to pid %d (writes a final signed checkpoint)\n", p.cmd.Process.Pid),
	} {
		if !strings.Contains(out, w) {
			t.Errorf("start message lacks %q:\n%s", w, out)
		}
	}
}
