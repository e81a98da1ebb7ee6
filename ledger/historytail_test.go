package ledger

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHistoryUnwrittenTail: a power loss can leave the newest checkpoint
// frame of the history counted in the file's size but not on the disk,
// whole (zeros) or past its first sectors: the file system committed the
// new size (another file's fsync commits the journal) before the frame,
// appended and not yet synced, was written back. TestPowerLoss met it at
// load: verify called the 312 zero bytes a forged checkpoint, while Open
// cuts them as a crash's tail. Now that signature is a torn-tail notice;
// every near miss (a flipped bit, garbage, zeros from inside a sector,
// zeros followed by a valid frame) is still a finding.
func TestHistoryUnwrittenTail(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	base := buildLedger(t, k, 350, nil)
	files, err := listCPLogs(base)
	if err != nil || len(files) == 0 {
		t.Fatalf("history files %v, %v", files, err)
	}
	rel := filepath.Join(cpDir, filepath.Base(files[len(files)-1].path))
	orig, err := os.ReadFile(filepath.Join(base, rel))
	if err != nil {
		t.Fatal(err)
	}
	ents, dmg := scanFrames(orig, maxCheckpointSize, validCheckpoint)
	if len(ents) < 3 || len(dmg) != 0 {
		t.Fatalf("%d checkpoints, damage %v", len(ents), dmg)
	}
	lastFrame := orig[ents[len(ents)-1].off:]
	// A new frame long enough to cross a sector boundary, as appended.
	next := appendFrame(nil, time.Now().UnixNano(), bytes.Repeat([]byte("checkpoint text "), 80))
	size := int64(len(orig))
	boundary := int((size+frameHeader+sectorSize)/sectorSize*sectorSize - size) // in next
	if boundary >= len(next) {
		t.Fatalf("the frame does not cross a sector boundary")
	}
	zeroAfter := func(fr []byte, at int) []byte {
		fr = bytes.Clone(fr)
		clear(fr[at:])
		return fr
	}
	// One that ends 300 bytes past the boundary, inside the next sector.
	short := appendFrame(nil, time.Now().UnixNano(), bytes.Repeat([]byte("c"), boundary+300-frameOverhead))
	oneAfter := zeroAfter(next, boundary)
	oneAfter[len(oneAfter)-1] = 1
	flipped := bytes.Clone(orig)
	flipped[len(flipped)-len(lastFrame)/2] ^= 0x04
	for _, tc := range []struct {
		name   string
		file   []byte
		notice bool // a torn-tail notice; else a checkpoint-forged finding
	}{
		{"never written: zeros", append(bytes.Clone(orig), make([]byte, 312)...), true},
		{"first sectors written", append(bytes.Clone(orig), zeroAfter(next, boundary)...), true},
		{"ends early (torn)", append(bytes.Clone(orig), next[:boundary+7]...), true},
		{"zeros from inside a sector", append(bytes.Clone(orig), zeroAfter(short, boundary+100)...), false},
		{"a byte after the zeros", append(bytes.Clone(orig), oneAfter...), false},
		{"garbage", append(bytes.Clone(orig), bytes.Repeat([]byte{0xff}, 312)...), false},
		{"a bit flipped in the newest", flipped, false},
		{"zeros, then a valid frame", append(append(bytes.Clone(orig), make([]byte, 312)...), lastFrame...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			if err := os.WriteFile(filepath.Join(dir, rel), tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			rep := verifyDir(t, dir, k, "")
			var forged, torn bool
			for _, f := range rep.Findings {
				forged = forged || f.Kind == KindCheckpointForged
			}
			for _, f := range rep.Notices {
				torn = torn || f.Kind == NoticeTornTail && f.File == rel
			}
			if tc.notice && (!rep.OK() || !torn) {
				t.Errorf("want a torn-tail notice and OK:\n%s", rep)
			}
			if !tc.notice && (rep.OK() || !forged || torn) {
				t.Errorf("want a checkpoint-forged finding:\n%s", rep)
			}
			if tc.notice && tc.name != "ends early (torn)" && !strings.Contains(rep.String(), "not written") {
				t.Errorf("the notice does not say the bytes were not written:\n%s", rep)
			}
		})
	}
}
