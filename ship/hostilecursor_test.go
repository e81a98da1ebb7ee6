//go:build linux

package ship

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/regfile"
)

// TestHostileCursor: a FIFO planted at the cursor's name (whoever can
// write the data directory) is refused at once, naming the file; before,
// readCursor's open waited for a writer for ever, and with it the start.
// A link to /dev/zero and a sparse file of a tebibyte are refused without
// being read (they were read whole, until memory ran out).
func TestHostileCursor(t *testing.T) {
	for _, plant := range []string{"fifo", "zero", "sparse"} {
		p := filepath.Join(t.TempDir(), "cursor")
		switch plant {
		case "fifo":
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		case "zero":
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		case "sparse":
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(p, 1<<40); err != nil {
				t.Fatal(err)
			}
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := readCursor(p)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, regfile.ErrNotRegular) && !errors.Is(err, regfile.ErrTooLarge) {
				t.Errorf("%s: %v, want it refused as not a regular file or too large", plant, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: readCursor did not return in 10 s", plant)
		}
	}
}
