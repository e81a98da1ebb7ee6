package ship

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpoolDirTightened: a spool directory made beforehand open to other
// users (0777 on a shared volume, 0755 from mkdir) is set to 0700 with a
// warning. Its records are sent as this shipper's and a collector signs
// them into its ledger, so a local user who could add a segment (CRC-32C
// is no secret) injected events the trail then vouched for; MkdirAll kept
// the directory's mode.
func TestSpoolDirTightened(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o755, 0o750, 0o700} {
		dir := filepath.Join(t.TempDir(), "spool")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		s, err := New(Options{URL: "http://127.0.0.1:1", SpoolDir: dir, DrainTimeout: -1, Log: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("spool dir made %#o: now %#o, want 0700", mode, got)
		}
		if warned := strings.Contains(logs.String(), "spool directory was open to other users"); warned != (mode != 0o700) {
			t.Errorf("spool dir made %#o: warned %v; log: %s", mode, warned, logs.String())
		}
	}
}
