package ledger

import (
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// TestVerifySignedDuring: Verify of a running collector's directory reads
// the checkpoint history first and the newest segment last; the collector
// goes on writing and signing meanwhile. More records than its writer can
// leave unsigned after the newest checkpoint read, or records after a
// clean shutdown's checkpoint when the collector starts again meanwhile,
// were reported 'unsigned-records' / 'records-after-shutdown'. Verify now
// reads the history again and judges the tail from the newest checkpoint
// signed since, whose root must match the records (a notice says so); a
// validly signed checkpoint added meanwhile whose root does not match is a
// finding. (An unsigned tail beyond the bound in a directory nobody
// writes stays a finding: TestAttackUnsignedTailBeyondBound,
// TestAttackRecordAfterShutdown.)
func TestVerifySignedDuring(t *testing.T) {
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.SegmentSize = 1 << 20 // one segment: the newest, read last
	opts.CheckpointEvery = 50  // unsigned bound 100
	opts.DisableCompression = true
	// other is a key Verify knows (a retired one, say) that signed
	// nothing in the history.
	other := newKey(t, testOrigin)
	appendSigned := func(t *testing.T, l *Ledger, from int) {
		for i := range 6 { // 180 records, more than the bound, signed as they go
			appendN(t, l, from+30*i, 30)
		}
	}
	// forgeNewest writes and signs 180 records, closes l, cuts the
	// history back to what Verify read and appends the newest
	// checkpoint, changed by change and signed by signer.
	forgeNewest := func(t *testing.T, dir string, l *Ledger, change func(*Checkpoint), signer note.Signer) {
		appendSigned(t, l, 400)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		files, _ := listCPLogs(dir)
		p := files[len(files)-1].path
		ents, _, err := readFrameLog(p, maxCheckpointSize)
		if err != nil {
			t.Fatal(err)
		}
		last, err := parseUnverified(ents[len(ents)-1].data)
		if err != nil {
			t.Fatal(err)
		}
		keep := 0
		for keep < len(ents) {
			if c, _ := parseUnverified(ents[keep].data); c.Size > 400 {
				break
			}
			keep++
		}
		if err := os.Truncate(p, ents[keep].off); err != nil {
			t.Fatal(err)
		}
		change(&last)
		signed, err := SignCheckpoint(last, signer)
		if err != nil {
			t.Fatal(err)
		}
		if err := appendFrameLog(p, time.Now().UnixNano(), signed, datasync); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		// during runs while Verify reads the newest segment, l the open
		// ledger (nil: it was closed cleanly before Verify).
		during func(t *testing.T, dir string, l *Ledger) (closeIt func())
		kind   string // the finding wanted; "" clean, with a NoticeSignedDuring
	}{
		{name: "records written and signed while verify reads", during: func(t *testing.T, dir string, l *Ledger) func() {
			appendSigned(t, l, 400)
			return func() {}
		}},
		{name: "collector started again after a clean shutdown", during: func(t *testing.T, dir string, _ *Ledger) func() {
			l, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			appendSigned(t, l, 400)
			return func() { l.Close() }
		}},
		{name: "attack: checkpoint added meanwhile, validly signed, another root", kind: KindRecordsAltered, during: func(t *testing.T, dir string, l *Ledger) func() {
			forgeNewest(t, dir, l, func(c *Checkpoint) { c.Root[0] ^= 1 }, k.signer)
			return func() {}
		}},
		{name: "attack: checkpoint added meanwhile, right root, signed only by a key the history does not use", kind: KindUnsignedRecords, during: func(t *testing.T, dir string, l *Ledger) func() {
			forgeNewest(t, dir, l, func(*Checkpoint) {}, other.signer)
			return func() {}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			appendN(t, l, 0, 400)
			open := l
			if strings.Contains(tc.name, "shutdown") {
				if err := l.Close(); err != nil {
					t.Fatal(err)
				}
				open = nil
			} else {
				defer l.Close()
			}
			vopts := VerifyOptions{Verifiers: []note.Verifier{k.verifier, other.verifier}}
			done := false
			vopts.segHook = func(segs []*segment, si int) {
				if si == len(segs)-1 && !done {
					done = true
					defer tc.during(t, dir, open)()
				}
			}
			rep, err := Verify(dir, vopts)
			if err != nil || !done {
				t.Fatalf("verify: %v (changed: %t)", err, done)
			}
			if rep.Records != 580 {
				t.Fatalf("%d records read, want the 580 written\n%s", rep.Records, rep)
			}
			if tc.kind != "" {
				if rep.OK() || rep.Findings[0].Kind != tc.kind {
					t.Fatalf("want %s\n%s", tc.kind, rep)
				}
				return
			}
			if !rep.OK() || countKind(rep.Notices, NoticeSignedDuring) != 1 {
				t.Fatalf("want a clean report, the records signed meanwhile named\n%s", rep)
			}
			if after, err := Verify(dir, VerifyOptions{Verifiers: vopts.Verifiers}); err != nil || !after.OK() || after.Records != rep.Records {
				t.Fatalf("verify after: %v\n%s", err, after)
			}
		})
	}
}
