//go:build linux

package forward

import (
	"path/filepath"
	"testing"

	"github.com/trailguard/trailguard/internal/hostilefile"
)

// TestHostileCursor: a FIFO planted at the cursor's name (whoever can
// write the data directory) is refused at once, naming the file; before,
// readCursor's open waited for a writer for ever, and with it the start.
// A link to /dev/zero and a sparse file of a tebibyte are refused without
// being read (they were read whole, until memory ran out).
func TestHostileCursor(t *testing.T) {
	hostilefile.Refused(t, filepath.Join(t.TempDir(), "cursor"), func(p string) error {
		_, _, err := readCursor(p)
		return err
	})
}
