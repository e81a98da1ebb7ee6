package ledger

import (
	"os"
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
	// history back to what Verify read (keepBetween: to the newest
	// checkpoint's size, the ones signed before it kept) and appends the
	// newest checkpoint, changed by change and signed by signer.
	forgeNewest := func(t *testing.T, dir string, l *Ledger, keepBetween bool, change func(*Checkpoint), signer note.Signer) {
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
			if c, _ := parseUnverified(ents[keep].data); c.Size > 400 && (!keepBetween || c.Size >= last.Size) {
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
		notice string // a notice wanted besides, in this verify and the next
		closed bool   // the ledger is closed cleanly before Verify
	}{
		{name: "records written and signed while verify reads", during: func(t *testing.T, dir string, l *Ledger) func() {
			appendSigned(t, l, 400)
			return func() {}
		}},
		{name: "collector started again after a clean shutdown", closed: true, during: func(t *testing.T, dir string, _ *Ledger) func() {
			l, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			appendSigned(t, l, 400)
			return func() { l.Close() }
		}},
		{name: "attack: checkpoint added meanwhile, validly signed, another root", kind: KindRecordsAltered, during: func(t *testing.T, dir string, l *Ledger) func() {
			forgeNewest(t, dir, l, true, func(c *Checkpoint) { c.Root[0] ^= 1 }, k.signer)
			return func() {}
		}},
		// A known key the history does not use, taking over without a
		// handover (a restart with a new key), is named as the history
		// read names it: it was a finding here and a notice in the next
		// verify.
		{name: "checkpoint added meanwhile, signed by another known key without a handover", notice: NoticeKeyChanged, during: func(t *testing.T, dir string, l *Ledger) func() {
			forgeNewest(t, dir, l, true, func(*Checkpoint) {}, other.signer)
			return func() {}
		}},
		// The checkpoints added meanwhile are judged as the history's
		// are: signing more records at once than the bound (the ones
		// between deleted) was accepted from the history read again.
		{name: "attack: checkpoints added meanwhile deleted but the newest, which signs more than the bound at once", kind: KindUnsignedRecords, during: func(t *testing.T, dir string, l *Ledger) func() {
			forgeNewest(t, dir, l, false, func(*Checkpoint) {}, k.signer)
			return func() {}
		}},
		// A handover signed meanwhile retires the outgoing key: a
		// checkpoint after it signed by that key alone (a leaked old
		// key) was taken, the handover unseen.
		{name: "attack: handover signed meanwhile, then a checkpoint signed by the retired key alone", kind: KindCheckpointRetiredKey, during: func(t *testing.T, dir string, l *Ledger) func() {
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			ho := testOpts(other)
			ho.SegmentSize, ho.CheckpointEvery, ho.DisableCompression = opts.SegmentSize, opts.CheckpointEvery, true
			ho.HandoverSigner = k.signer
			l2, err := Open(dir, ho)
			if err != nil {
				t.Fatal(err)
			}
			forgeNewest(t, dir, l2, false, func(*Checkpoint) {}, k.signer)
			return func() {}
		}},
		// Records planted after a clean shutdown, adopted by the
		// operator while Verify runs: signed by the collector, but
		// vouched for by nobody as they were written — the adoption
		// must be named (records-adopted, always), as it is from the
		// history read first.
		{name: "records planted after a clean shutdown, adopted while verify runs", closed: true, notice: NoticeAdopted, during: func(t *testing.T, dir string, _ *Ledger) func() {
			var recs [][]byte
			for i := range 180 {
				recs = append(recs, record(400+i))
			}
			forgeAppend(t, dir, recs...)
			ao := opts
			ao.AdoptUnsigned = 580
			l, err := Open(dir, ao)
			if err != nil {
				t.Fatal(err)
			}
			return func() { l.Close() }
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
			if tc.closed {
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
			if tc.notice != "" && countKind(rep.Notices, tc.notice) != 1 {
				t.Fatalf("want a %s notice\n%s", tc.notice, rep)
			}
			after, err := Verify(dir, VerifyOptions{Verifiers: vopts.Verifiers})
			if err != nil || !after.OK() || after.Records != rep.Records || (tc.notice != "" && countKind(after.Notices, tc.notice) != 1) {
				t.Fatalf("verify after: %v\n%s", err, after)
			}
		})
	}
}
