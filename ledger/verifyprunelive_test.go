package ledger

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/internal/verifyhook"
)

// TestVerifyPrunedLive: Verify of a running collector's directory from
// another process (no HoldRetention: it cannot reach the collector) while
// the collector's retention deletes segments. Retention appends its signed
// record to pruned.log, then deletes the segments; Verify read pruned.log
// before it listed and read the segments, so it finds records missing that
// retention deleted meanwhile: it reads pruned.log again and reports them
// pruned, exactly as a Verify after the pass does (it reported them
// 'record-deleted' without a retention record before). A pass placed after
// pruned.log is read, after the listing, while a closed segment or the
// newest is read; a torn frame at the end of pruned.log (an append under
// way) completed after it was read. What retention does not justify stays
// a finding, the same as when it is done before Verify: a segment deleted
// without a retention record, with a record signed by an unknown key or
// one that retention does not allow, pruned.log rewritten (not appended
// to) meanwhile, a torn frame never completed.
func TestVerifyPrunedLive(t *testing.T) {
	k := newKey(t, testOrigin)
	stranger := newKey(t, testOrigin)
	const afterPruned = -2 // verifyhook.AfterPruned, not segHook
	type env struct {
		l    *Ledger
		dir  string
		segs []*segment // as listed before Verify
		// deleted is what the pass under Verify deleted.
		deleted []PruneRecord
		floor   *atomic.Uint64
		torn    []byte // cut from the end of pruned.log before Verify
	}
	prune := func(t *testing.T, e *env) {
		e.floor.Store(1 << 40)
		got, err := e.l.Prune()
		if err != nil || len(got) == 0 {
			t.Fatalf("the pass under Verify deleted %+v (%v)", got, err)
		}
		e.deleted = got
	}
	removeSeg := func(t *testing.T, s *segment) {
		t.Helper()
		p, _ := s.source()
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		os.Remove(idxPath(p))
	}
	// appendPrune appends a retention record for the oldest segment left,
	// signed by key, made at, and deletes that segment.
	appendPrune := func(t *testing.T, e *env, key testKey, at time.Time) {
		segs, err := listSegments(filepath.Join(e.dir, "seg"))
		if err != nil {
			t.Fatal(err)
		}
		pr := PruneRecord{Origin: testOrigin, Start: e.l.Pruned(), End: segs[1].first, Policy: "pci-dss", Newest: at.Add(-400 * 24 * time.Hour), At: at}
		signed, err := note.Sign(&note.Note{Text: string(pr.marshal())}, key.signer)
		if err != nil {
			t.Fatal(err)
		}
		if err := appendFrameLog(filepath.Join(e.dir, "pruned.log"), at.UnixNano(), signed, datasync); err != nil {
			t.Fatal(err)
		}
		removeSeg(t, segs[0])
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) // expiredLedger's first checkpoints
	type want int
	const (
		asAfter     want = iota // the report of a Verify after the change
		rewritten               // pruned.log changed, not appended to
		tornRemains             // a torn frame at the end of pruned.log: a finding
	)
	for _, tc := range []struct {
		name string
		// early: a pass before Verify deletes the two oldest segments
		// (pruned.log holds records when Verify reads it); tear: the
		// last frame of pruned.log is then cut in half.
		early, tear bool
		at          int // segHook's si, or afterPruned
		act         func(t *testing.T, e *env)
		want        want
		kinds       []string // findings the report must have (none: clean)
	}{
		{name: "pass after pruned.log is read", at: afterPruned, act: prune},
		{name: "pass after the listing", at: -1, act: prune},
		{name: "pass while the second segment is read", at: 1, act: prune},
		{name: "pass while the newest segment is read", at: 3, act: prune},
		{name: "pass after pruned.log is read, after an earlier one", early: true, at: afterPruned, act: prune},
		{name: "torn frame of pruned.log completed after it is read", early: true, tear: true, at: afterPruned, act: func(t *testing.T, e *env) {
			f, err := os.OpenFile(filepath.Join(e.dir, "pruned.log"), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.Write(e.torn); err != nil {
				t.Fatal(err)
			}
		}},

		{name: "attack: oldest segment deleted, no retention record", at: -1, act: func(t *testing.T, e *env) { removeSeg(t, e.segs[0]) },
			kinds: []string{KindRecordDeleted}},
		{name: "attack: deleted, retention record signed by an unknown key", at: afterPruned, act: func(t *testing.T, e *env) { appendPrune(t, e, stranger, start.Add(400*24*time.Hour)) },
			kinds: []string{KindPruneRecordInvalid, KindRecordDeleted}},
		{name: "attack: deleted, retention record retention does not allow", at: afterPruned, act: func(t *testing.T, e *env) { appendPrune(t, e, k, start.Add(24*time.Hour)) },
			kinds: []string{KindPrunedEarly}},
		{name: "attack: pruned.log rewritten as a pass deletes", early: true, at: afterPruned, want: rewritten, act: func(t *testing.T, e *env) {
			prune(t, e)
			p := filepath.Join(e.dir, "pruned.log")
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(b, []byte("pci-dss"))
			b[i] ^= 0x20 // the first record's policy: its signature fails
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, kinds: []string{KindPruneRecordInvalid, KindRecordDeleted}},
		{name: "torn frame of pruned.log never completed", early: true, tear: true, at: afterPruned, act: func(*testing.T, *env) {},
			want: tornRemains, kinds: []string{KindPruneRecordInvalid, KindRecordDeleted}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &env{floor: new(atomic.Uint64)}
			e.floor.Store(1 << 40)
			e.l, e.dir = expiredLedger(t, k, func() uint64 { return e.floor.Load() })
			if tc.early {
				e.l.segMu.RLock()
				e.floor.Store(e.l.segs[2].first)
				e.l.segMu.RUnlock()
				if got, err := e.l.Prune(); err != nil || len(got) != 2 {
					t.Fatalf("the earlier pass deleted %+v (%v), want two segments", got, err)
				}
			}
			if tc.tear {
				p := filepath.Join(e.dir, "pruned.log")
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				ents, _, err := readFrameLog(p, maxCheckpointSize)
				if err != nil || len(ents) != 2 {
					t.Fatalf("pruned.log: %d records (%v)", len(ents), err)
				}
				cut := ents[1].off + (int64(len(b))-ents[1].off)/2
				e.torn = slices.Clone(b[cut:])
				if err := os.Truncate(p, cut); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if e.segs, err = listSegments(filepath.Join(e.dir, "seg")); err != nil || len(e.segs) < 4 {
				t.Fatalf("%d segments (%v)", len(e.segs), err)
			}
			if tc.at > len(e.segs)-1 {
				t.Fatalf("hook at segment %d of %d", tc.at, len(e.segs))
			}
			opts := VerifyOptions{Verifiers: []note.Verifier{k.verifier}}
			var done atomic.Bool
			act := func() {
				if !done.Swap(true) {
					tc.act(t, e)
				}
			}
			if tc.at == afterPruned {
				defer verifyhook.SetAfterPruned(func(d string) {
					if d == e.dir {
						act()
					}
				})()
			} else {
				at := tc.at
				if at == 3 {
					at = len(e.segs) - 1 // the newest
				}
				opts.segHook = func(_ []*segment, si int) {
					if si == at {
						act()
					}
				}
			}
			got, err := Verify(e.dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			if !done.Load() {
				t.Fatal("nothing changed under Verify")
			}
			after, err := Verify(e.dir, VerifyOptions{Verifiers: opts.Verifiers})
			if err != nil {
				t.Fatal(err)
			}
			for _, kind := range tc.kinds {
				if countKind(got.Findings, kind) == 0 {
					t.Errorf("no %s finding", kind)
				}
			}
			if len(tc.kinds) == 0 && (!got.OK() || got.Pruned != e.l.Pruned() || got.Records != e.l.Size()) {
				t.Errorf("want a clean report, records below %d pruned, of %d records", e.l.Pruned(), e.l.Size())
			}
			switch tc.want {
			case asAfter:
				if got.Records != after.Records || got.Pruned != after.Pruned || !sameFindings(got.Findings, after.Findings) || !sameFindings(got.Notices, after.Notices) {
					t.Errorf("not the report of a Verify after the change; that one is\n%s", after)
				}
			case rewritten:
				if !slices.ContainsFunc(got.Findings, func(f Finding) bool {
					return f.Kind == KindPruneRecordInvalid && strings.Contains(f.Message, "changed while verify read")
				}) {
					t.Error("pruned.log rewritten under Verify: not named")
				}
			case tornRemains:
				if !slices.ContainsFunc(got.Findings, func(f Finding) bool {
					return f.Kind == KindPruneRecordInvalid && strings.Contains(f.Message, "torn frame")
				}) {
					t.Error("the torn frame of pruned.log is not named")
				}
			}
			if t.Failed() || testing.Verbose() {
				t.Logf("report:\n%s", got)
			}
		})
	}
}

// sameFindings reports whether a and b hold the same findings, in any
// order.
func sameFindings(a, b []Finding) bool {
	key := func(fs []Finding) []string {
		var out []string
		for _, f := range fs {
			out = append(out, fmt.Sprintf("%s|%d|%d|%d|%s|%s", f.Kind, f.Index, f.Count, f.Size, f.File, f.Message))
		}
		slices.Sort(out)
		return out
	}
	return slices.Equal(key(a), key(b))
}
