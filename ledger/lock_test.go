package ledger

import (
	"testing"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestReopenWhileForking: a ledger closed and opened again while the
// process starts other programs opens. A child being started holds copies
// of the process's descriptors, the ledger's lock among them, until its
// exec closes them; the lock was taken without a wait, so such a child
// made Open fail with "locked by another process" (TestZeroTailAtOpen,
// once, while parallel tests started crash children).
func TestReopenWhileForking(t *testing.T) {
	t.Parallel()
	opts := testOpts(newKey(t, testOrigin))
	dir := t.TempDir()
	testenv.KeepForking(t)
	for i := range 100 {
		l, err := Open(dir, opts)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
