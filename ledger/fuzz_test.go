package ledger

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func FuzzFrames(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, 1, []byte(`{"a":1}`)), 2, nil))
	f.Add(appendFrame(nil, 3, []byte("x"))[:7])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(segHeader(42))
	f.Fuzz(func(t *testing.T, b []byte) {
		ents, end, err := parseFrameLog(b, 1<<20)
		if end > int64(len(b)) || (err == nil && end != int64(len(b))) {
			t.Fatalf("end %d of %d, err %v", end, len(b), err)
		}
		// Whatever parsed re-encodes to the same bytes.
		var re []byte
		for _, e := range ents {
			re = appendFrame(re, e.time, e.data)
		}
		if !bytes.Equal(re, b[:end]) {
			t.Fatal("frames do not round-trip")
		}
		if first, err := parseSegHeader(b); err == nil && !bytes.Equal(segHeader(first), b[:segHeaderSize]) {
			t.Fatal("segment header does not round-trip")
		}
		// The segment scanner agrees with the frame parser.
		if len(b) >= segHeaderSize {
			p := filepath.Join(t.TempDir(), segName(7))
			os.WriteFile(p, append(segHeader(7), b...), 0o644)
			res, err := scanSegment(p, 7, 1<<20)
			if err != nil || len(res.entries) != len(ents) {
				t.Fatalf("scanSegment found %d frames, parser %d (%v)", len(res.entries), len(ents), err)
			}
		}
	})
}

func FuzzCheckpoint(f *testing.F) {
	f.Add([]byte("example.com/log\n42\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\ntime 2026-01-01T00:00:00Z\n"))
	f.Add([]byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	f.Add([]byte("o\n-1\nAAAA\n\n"))
	f.Add([]byte("o\n01\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\next\n"))
	f.Add([]byte("o\n7\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\ntime 2026-01-01T00:00:00Z\ncadence every=16 interval=1s unsigned-max=32\nadopt 0 7 no-checkpoint\nshutdown\n"))
	f.Add([]byte("o\n7\nnND/nri/U0xuHUrYSy0HtMeal2vzD9V4k/BO79C+QeI=\ncadence every=x unsigned-max=-1\nadopt 9 3 over-bound\nadopt 1\n"))
	k := newKey(f, "fuzz.example/log")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCheckpoint(b)
		if err != nil {
			return
		}
		// Extension lines from untrusted checkpoints: never panic, and a
		// stated bound is positive.
		if cd := cadenceOf(c); cd.unsignedMax == 0 {
			t.Fatalf("cadence %+v from %q", cd, c.Extra)
		}
		for _, a := range adoptionsOf(c) {
			if a.To < a.From {
				t.Fatalf("adoption %+v", a)
			}
		}
		c2, err := ParseCheckpoint(c.Marshal())
		if err != nil || c2.Size != c.Size || c2.Root != c.Root || c2.Origin != c.Origin || !c2.Time.Equal(c.Time) || len(c2.Extra) != len(c.Extra) {
			t.Fatalf("checkpoint does not round-trip: %+v vs %+v (%v)", c, c2, err)
		}
		// Signed notes: signing then opening gives the same checkpoint.
		if signed, err := SignCheckpoint(c, k.signer); err == nil {
			c3, _, err := OpenCheckpoint(signed, note.VerifierList(k.verifier))
			if err != nil || c3.Size != c.Size || c3.Root != c.Root {
				t.Fatalf("signed checkpoint does not open: %v", err)
			}
		}
		// Arbitrary bytes as a signed note never panic.
		OpenCheckpoint(b, note.VerifierList(k.verifier))
		parseUnverified(b)
		parsePruneNote(b)
	})
}
