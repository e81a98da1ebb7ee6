package server

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ship"
)

func TestRecentIDs(t *testing.T) {
	r := newRecentIDs(3)
	keys := func(r *recentIDs, ids ...string) []uint64 {
		var k []uint64
		for _, id := range ids {
			k = append(k, r.keyOfString(id))
		}
		return k
	}
	seen := func(r *recentIDs, id string) bool { return r.dups(keys(r, id))[0] }
	r.add(keys(r, "a", "b", "c"))
	for _, id := range []string{"a", "b", "c"} {
		if !seen(r, id) {
			t.Fatalf("%s not seen", id)
		}
	}
	r.add(keys(r, "d")) // evicts a
	if seen(r, "a") || !seen(r, "d") || !seen(r, "b") {
		t.Fatal("eviction order wrong")
	}
	r.add(keys(r, "d", "d")) // no double entry: b and c stay
	if !seen(r, "b") || !seen(r, "c") {
		t.Fatal("re-adding an id evicted others")
	}
	if got := fmt.Sprint(r.dups(keys(r, "b", "z", "", "z", "", "d"))); got != "[true false false true false true]" {
		t.Fatalf("dups = %s", got)
	}
	if r.keyOf([]byte("b")) != r.keyOfString("b") || r.keyOf(nil) != 0 {
		t.Fatal("keyOf and keyOfString disagree")
	}
	r.release(keys(r, "e", "f"), []bool{true, false}, true) // e was a duplicate: not added
	if seen(r, "e") || !seen(r, "f") {
		t.Fatal("release added a duplicate or missed a kept id")
	}
	var off *recentIDs
	if seen(off, "x") || fmt.Sprint(off.dups(keys(off, "x", "x"))) != "[false false]" {
		t.Fatal("disabled window saw an id")
	}
	off.add(keys(off, "x"))
}

// TestRecentIDsTable holds the open-addressing table (insert, backward-
// shift deletion on eviction, wrap-around) to a map and a FIFO, with keys
// chosen to collide: few distinct home slots in a small table.
func TestRecentIDsTable(t *testing.T) {
	for _, window := range []int{1, 2, 5, 64, 1000} {
		r := newRecentIDs(window)
		rng := rand.New(rand.NewPCG(uint64(window), 7))
		var fifo []uint64
		in := map[uint64]bool{}
		for step := range 20000 {
			// Keys from a small pool, so repeats, evictions and long
			// probe chains all happen.
			k := 1 + rng.Uint64N(uint64(3*window+8))
			if rng.IntN(4) == 0 {
				k = k<<40 | 1 // same low bits, other slots
			}
			want := in[k]
			if got := r.dups([]uint64{k})[0]; got != want {
				t.Fatalf("window %d step %d: dups(%d) = %v, want %v", window, step, k, got, want)
			}
			r.add([]uint64{k})
			if !in[k] {
				if len(fifo) == window {
					delete(in, fifo[0])
					fifo = fifo[1:]
				}
				fifo = append(fifo, k)
				in[k] = true
			}
			if step%64 == 0 || step == 19999 {
				n := 0
				for _, e := range r.table {
					if e != 0 {
						n++
						if !in[e] {
							t.Fatalf("window %d step %d: table holds evicted key %d", window, step, e)
						}
					}
				}
				if n != len(in) {
					t.Fatalf("window %d step %d: table holds %d keys, want %d", window, step, n, len(in))
				}
			}
		}
	}
}

// TestDuplicatesNotStoredTwice: a batch resent by a shipper that did not
// get the answer is acknowledged but stored once, on both ingest APIs.
func TestDuplicatesNotStoredTwice(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	mk := func(id string) string {
		e := &event.Event{Timestamp: time.Now().UTC(), Action: event.ActionLoginFail, ID: id, UserName: "u"}
		return string(e.AppendJSON(nil))
	}
	body := mk("dup-1") + "\n" + mk("dup-2") + "\n" + mk("dup-1") + "\n"
	before := ts.ledger.Size()
	status, out := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body))
	var r1 ingestResponse
	json.Unmarshal(out, &r1)
	if status != 200 || r1.Accepted != 2 || r1.Duplicates != 1 {
		t.Fatalf("first post: %d %s", status, out)
	}
	status, out = ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body))
	var r2 ingestResponse
	json.Unmarshal(out, &r2)
	if status != 200 || r2.Accepted != 0 || r2.Duplicates != 3 {
		t.Fatalf("resent post: %d %s", status, out)
	}
	bulk := `{"create":{}}` + "\n" + mk("dup-2") + "\n" + `{"create":{}}` + "\n" + mk("dup-3") + "\n"
	status, out = ts.do(t, "POST", "/_bulk", ts.ingest, strings.NewReader(bulk))
	if status != 200 || !strings.Contains(string(out), `"status":409`) || strings.Count(string(out), `"status":201`) != 1 {
		t.Fatalf("bulk: %d %s", status, out)
	}
	ts.waitAudited(t) // nothing left to append behind the events counted
	stored := map[string]int{}
	for e, err := range ts.ledger.Entries(before) {
		if err != nil {
			t.Fatal(err)
		}
		if id, ok := event.PeekID(e.Data); ok && strings.HasPrefix(id, "dup-") {
			stored[id]++
		}
	}
	if fmt.Sprint(stored) != "map[dup-1:1 dup-2:1 dup-3:1]" {
		t.Fatalf("stored %v", stored)
	}
}

// TestShipperToCollector ships through the real shipper, in both
// protocols, and checks every event is stored exactly once.
func TestShipperToCollector(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	for _, proto := range []ship.Protocol{ship.NDJSON, ship.Bulk} {
		t.Run(proto.String(), func(t *testing.T) {
			url := ts.url + "/v1/events"
			if proto == ship.Bulk {
				url = ts.url + "/logs/_bulk"
			}
			sh, err := ship.New(ship.Options{URL: url, Protocol: proto, Token: ts.ingest, SpoolDir: t.TempDir(), FlushInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			var recs [][]byte
			for i := range 500 {
				e := &event.Event{Timestamp: time.Now().UTC(), Action: event.ActionHTTPRequest, ID: fmt.Sprintf("%s-%d", proto, i), StatusCode: 200}
				recs = append(recs, e.AppendJSON(nil))
			}
			if err := sh.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			// The same records again, as after a crash before the cursor
			// was saved.
			if err := sh.Write(context.Background(), recs); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := sh.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			st := sh.Stats()
			sh.Close()
			if st.DeadLettered != 0 || st.Shipped < 1000 {
				t.Fatalf("shipper stats %+v", st)
			}
			n := 0
			for e, err := range ts.ledger.Entries(0) {
				if err != nil {
					t.Fatal(err)
				}
				if id, ok := event.PeekID(e.Data); ok && strings.HasPrefix(id, proto.String()+"-") {
					n++
				}
			}
			if n != 500 {
				t.Fatalf("%d events stored, want 500 exactly", n)
			}
		})
	}
}

// BenchmarkRecentIDs is the resend window's work for one batch of 1,000
// new event.ids, as ingest does it: claim before the append, release
// after (which evicts the oldest of the full default window). Between the
// two, and between batches, the collector's other work (the append, the
// followers, compaction) runs through the caches: cold streams 32 MiB
// there, as they would, outside the figure. cpu-ns/id is the CPU time of
// claim and release alone, per id.
func BenchmarkRecentIDs(b *testing.B) {
	for _, cold := range []bool{false, true} {
		b.Run(fmt.Sprintf("cold=%v", cold), func(b *testing.B) {
			r := newRecentIDs(Defaults().DedupWindow)
			rng := rand.New(rand.NewPCG(1, 2))
			keys := make([]uint64, 1000)
			fill := func() {
				for i := range keys {
					keys[i] = r.keyOfString(fmt.Sprint(rng.Uint64()))
				}
			}
			for range Defaults().DedupWindow / len(keys) {
				fill()
				r.add(keys)
			}
			var other []byte
			if cold {
				other = make([]byte, 32<<20)
			}
			thrash := func() {
				for i := 0; i < len(other); i += 64 {
					other[i]++
				}
			}
			var cpu, cpuDups time.Duration
			ids := 0
			for b.Loop() {
				fill()
				thrash()
				var dup []bool
				d := testenv.ThreadCPU(func() { dup = r.claim(keys) })
				cpu += d
				cpuDups += d
				thrash()
				cpu += testenv.ThreadCPU(func() { r.release(keys, dup, true) })
				for _, d := range dup {
					if d {
						b.Fatal("a new id was taken for a duplicate")
					}
				}
				ids += len(keys)
			}
			if !r.full || !r.dups(keys[len(keys)-1:])[0] {
				b.Fatal("the window is not full or forgot the last id added")
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(ids), "cpu-ns/id")
			b.ReportMetric(float64(cpuDups.Nanoseconds())/float64(ids), "dups-cpu-ns/id")
		})
	}
}

// TestConcurrentResendsStoredOnce: the same batch posted by several
// clients at once — a shipper's resend while its first try is still being
// stored (the collector paused, then resumed, while the gateway restarted
// and shipped its spool again) — is stored once. The window was checked
// when a request began and filled when it had stored: two requests with
// the same ids both passed the check and both stored them
// (TestProxyCollectorShutdown/collector_frozen=true: "2 events at the
// collector, want 1").
func TestConcurrentResendsStoredOnce(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	before := ts.ledger.Size()
	const rounds, perBatch, senders = 12, 200, 4
	for r := range rounds {
		var b strings.Builder
		for i := range perBatch {
			e := &event.Event{Timestamp: time.Now().UTC(), Action: event.ActionHTTPRequest, ID: fmt.Sprintf("resend-%d-%d", r, i), StatusCode: 200}
			b.Write(e.AppendJSON(nil))
			b.WriteByte('\n')
		}
		body := b.String()
		var wg sync.WaitGroup
		for range senders {
			wg.Go(func() {
				if status, out := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body)); status != 200 {
					t.Errorf("round %d: %d %s", r, status, out)
				}
			})
		}
		wg.Wait()
	}
	ts.waitAudited(t)
	stored := map[string]int{}
	for e, err := range ts.ledger.Entries(before) {
		if err != nil {
			t.Fatal(err)
		}
		if id, ok := event.PeekID(e.Data); ok && strings.HasPrefix(id, "resend-") {
			stored[id]++
		}
	}
	twice := 0
	for _, n := range stored {
		if n > 1 {
			twice++
		}
	}
	if len(stored) != rounds*perBatch || twice > 0 {
		t.Fatalf("%d ids stored of %d, %d of them more than once", len(stored), rounds*perBatch, twice)
	}
}
