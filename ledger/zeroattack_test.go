package ledger

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAttackZeros: segments are zeroed ahead and after their records
// (zeroahead.go), so verify takes a frame of zeros in the last segment for
// the end of what was written (a torn tail after a crash). Someone with
// write access to the disk must not turn that into a way to hide records:
// zeros in a closed segment, or zeros (or a cut) where the last segment
// held records a signed checkpoint covers, are findings; zeros after the
// last segment's records alone (what a crash leaves) are only a notice.
func TestAttackZeros(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	const n = 1000
	dir := buildLedger(t, k, n, nil)
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several", len(segs))
	}
	last := segs[len(segs)-1]
	res, err := scanSegment(last.path, last.first, maxFrameLen)
	if err != nil || res.end != res.size {
		t.Fatalf("last segment: records end at %d of %d (%v)", res.end, res.size, err)
	}
	// The last segment's frames: the second one's offset.
	data, err := os.ReadFile(last.path)
	if err != nil {
		t.Fatal(err)
	}
	firstLen, err := frameLen(data[segHeaderSize:], maxFrameLen)
	if err != nil {
		t.Fatal(err)
	}
	second := int64(segHeaderSize + firstLen)

	zeros := func(path string, at, size int64) {
		t.Helper()
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(make([]byte, size), at); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		attack func(dir string)
		ok     bool
	}{
		{"zeros after the last records", func(dir string) { zeros(filepath.Join(dir, "seg", filepath.Base(last.path)), res.size, 64<<10) }, true},
		{"zeros after a closed segment's records", func(dir string) {
			zeros(filepath.Join(dir, "seg", filepath.Base(segs[0].path)), fileSize(t, segs[0].path), 4<<10)
		}, false},
		{"signed records of the last segment zeroed", func(dir string) {
			p := filepath.Join(dir, "seg", filepath.Base(last.path))
			zeros(p, second, res.size-second)
		}, false},
		{"signed records of the last segment zeroed and the file extended", func(dir string) {
			p := filepath.Join(dir, "seg", filepath.Base(last.path))
			zeros(p, second, res.size-second+16<<10)
		}, false},
		{"signed records of the last segment cut", func(dir string) {
			if err := os.Truncate(filepath.Join(dir, "seg", filepath.Base(last.path)), second); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"a signed record in the middle of the last segment zeroed", func(dir string) {
			p := filepath.Join(dir, "seg", filepath.Base(last.path))
			zeros(p, second, int64(frameOverhead))
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			copyTree(t, dir, d)
			tc.attack(d)
			rep := verifyDir(t, d, k, "")
			if rep.OK() != tc.ok {
				t.Fatalf("verify OK = %v, want %v:\n%s", rep.OK(), tc.ok, rep)
			}
			t.Logf("%s", rep)
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}
