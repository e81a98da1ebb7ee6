package ledger

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

// TestVerifyNamesDamagedFrames damages one frame of a closed segment whose
// .idx is intact, so verify splits it by the .idx and checks each frame
// after hashing it: the frame's checksum covers bytes the Merkle tree does
// not (its length and append time), so a frame damaged only there is
// found by the checksum alone, and every finding is the same as when the
// frames were checked before hashing.
func TestVerifyNamesDamagedFrames(t *testing.T) {
	k := newKey(t, testOrigin)
	const n, victim = 1000, 500
	base := buildLedger(t, k, n, nil)

	type want struct {
		kind  string
		index uint64
	}
	checksum := "frame checksum mismatch"
	cases := []struct {
		name string
		// tamper gets the segment, its .idx, and where the victim's frame
		// starts in the segment and its entry in the .idx.
		tamper func(seg, idx []byte, off, size, entry int)
		want   []want
		msg    string // in the finding of the victim's record
	}{
		{"record byte flipped, checksum stale", func(seg, idx []byte, off, size, entry int) {
			seg[off+frameHeader+3] ^= 0x20
		}, []want{{KindRecordModified, victim}}, checksum}, // the checksum named in the same finding
		{"checksum flipped, record intact", func(seg, idx []byte, off, size, entry int) {
			seg[off+size-1] ^= 1
		}, []want{{KindFrameCorrupt, victim}}, checksum},
		{"append time changed in the frame and the .idx", func(seg, idx []byte, off, size, entry int) {
			tm := binary.BigEndian.Uint64(seg[off+4:]) - 3600e9
			binary.BigEndian.PutUint64(seg[off+4:], tm)
			binary.BigEndian.PutUint64(idx[entry+8:], tm)
		}, []want{{KindFrameCorrupt, victim}}, checksum},
		{"append time changed in the frame only", func(seg, idx []byte, off, size, entry int) {
			binary.BigEndian.PutUint64(seg[off+4:], binary.BigEndian.Uint64(seg[off+4:])+1)
		}, []want{{KindIndexDamaged, victim}, {KindFrameCorrupt, victim}}, checksum},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			segs, err := listSegments(filepath.Join(dir, "seg"))
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(segs, func(s *segment) bool { return s.first > victim }) - 1
			if i < 0 || i+1 >= len(segs)-1 {
				t.Fatalf("record %d not in a closed segment before the last: segments %d", victim, len(segs))
			}
			s := segs[i]
			seg, err := os.ReadFile(s.path)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := os.ReadFile(idxPath(s.path))
			if err != nil {
				t.Fatal(err)
			}
			entry := int(victim-s.first) * idxEntrySize
			off := int(binary.BigEndian.Uint64(idx[entry:]))
			size, err := frameLen(seg[off:], maxFrameLen)
			if err != nil {
				t.Fatal(err)
			}
			tc.tamper(seg, idx, off, size, entry)
			if err := os.WriteFile(s.path, seg, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(idxPath(s.path), idx, 0o644); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}})
			if err != nil {
				t.Fatal(err)
			}
			var got []want
			said := false
			for _, f := range rep.Findings {
				got = append(got, want{f.Kind, f.Index})
				said = said || (f.Kind != KindIndexDamaged && strings.Contains(f.Message, tc.msg))
			}
			if !said {
				t.Errorf("no finding says %q\n%s", tc.msg, rep)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || rep.Records != n {
				t.Fatalf("findings %v, want %v\n%s", got, tc.want, rep)
			}
		})
	}
}
