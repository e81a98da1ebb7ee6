package ledger

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// TestVerifySinceTilesAlteredStops: an incremental verify (Since) whose
// hash tiles at the earlier size do not give the earlier root returns at
// once with that finding. It returned while the producer and the hash
// workers it had started went on: they read the segments on, mapped them
// (never unmapped: the chunks holding them were never consumed) and
// wrote the report (the segments' notices, Records) after Verify had
// handed it to the caller — a data race under -race, and mappings of every
// segment left in the process. Nothing may be left running or mapped when
// Verify returns.
func TestVerifySinceTilesAlteredStops(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/maps")
	}
	k := newKey(t, testOrigin)
	dir := buildLedger(t, k, 2500, nil)
	segs, err := listSegments(filepath.Join(dir, "seg"))
	if err != nil || len(segs) < 10 {
		t.Fatalf("%d segments (%v), want many: the producer has work left when Verify returns", len(segs), err)
	}
	// The checkpoint an earlier verify kept, of a size inside a tile.
	var since *Checkpoint
	files, err := listCPLogs(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, cf := range files {
		ents, _, err := readFrameLog(cf.path, maxCheckpointSize)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if c, err := parseUnverified(e.data); err == nil && c.Size == 300 {
				since = &c
			}
		}
	}
	if since == nil {
		t.Fatal("no checkpoint of size 300 in the history")
	}
	// A leaf hash of the partial tile at that size, altered.
	h0 := filepath.Join(dir, "hashes", "0")
	f, err := os.OpenFile(h0, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 260*HashSize); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 1
	if _, err := f.WriteAt(b, 260*HashSize); err != nil {
		t.Fatal(err)
	}
	f.Close()

	for round := range 3 {
		rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{k.verifier}, Since: since})
		if err != nil {
			t.Fatal(err)
		}
		// Read as any caller reads a report (under -race: a write by a
		// goroutine of Verify after it returned is a race).
		kinds := []string{}
		for _, f := range rep.Findings {
			kinds = append(kinds, f.Kind)
		}
		records, notices := rep.Records, len(rep.Notices)
		if len(kinds) != 1 || kinds[0] != KindHashTilesAltered {
			t.Fatalf("round %d: findings %v, want %s alone\n%s", round, kinds, KindHashTilesAltered, rep)
		}
		// Whatever Verify started has had time to map segments by now.
		time.Sleep(200 * time.Millisecond)
		if rep.Records != records || len(rep.Notices) != notices {
			t.Fatalf("round %d: the report changed after Verify returned: records %d → %d, notices %d → %d", round, records, rep.Records, notices, len(rep.Notices))
		}
		maps, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		var left []string
		for _, line := range strings.Split(string(maps), "\n") {
			if strings.Contains(line, filepath.Join(dir, "seg")) {
				left = append(left, line)
			}
		}
		if len(left) > 0 {
			t.Fatalf("round %d: %d segment mapping(s) left after Verify returned, e.g.\n%s", round, len(left), left[0])
		}
	}
}
