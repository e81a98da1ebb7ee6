package report

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/event"
)

// testCacheKey stands for the key derived from the collector's signing key.
var testCacheKey = []byte("report cache key of the tests, 32")

// TestChunkCache: a second report over the same records merges the whole
// chunks the first one kept, with the same figures. A cache file altered
// on disk (a figure edited with its tag left, an authentic file moved to
// another chunk's place, one tagged with another key) is not used: the
// report's figures are the ledger's, it counts the chunks rejected, the
// files are moved aside and kept again; without the key the cache is not
// used at all.
func TestChunkCache(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWriter(t, dir, t0)
	n := 2*chunkSize + 1000
	fails := (n + 9) / 10 // every tenth record
	for done := 0; done < n; {
		k := min(10000, n-done)
		recs := make([][]byte, k)
		for i := range recs {
			j := done + i
			e := event.Event{Action: event.ActionHTTPRequest, Outcome: "success", ServiceName: "api", ClientIP: "198.51.100.1", UserName: "u", Path: "/x"}
			if j%10 == 0 {
				e = event.Event{Category: []string{"authentication"}, Action: event.ActionLoginFail, Outcome: "failure", ServiceName: "api",
					ClientIP: fmt.Sprintf("203.0.113.%d", j%7), UserName: "alice", Path: "/login"}
			}
			recs[i] = ev(t0.Add(time.Duration(j)*time.Millisecond), e)
		}
		done += k
		w.at(t0.Add(time.Duration(done) * time.Millisecond))
		w.append(recs...)
		w.checkpoint()
	}
	defer w.l.Close()
	// Warm keeps the whole chunks with the default parameters, as the
	// collector does in the background; a report then reads only the rest.
	warmDir := filepath.Join(dir, "warm")
	done := map[uint64]bool{}
	if n, err := Warm(context.Background(), w.l, warmDir, testCacheKey, done, nil); err != nil || n != 2 || len(done) != 2 {
		t.Fatalf("warm: %d chunks, %v", n, err)
	}
	if n, _ := Warm(context.Background(), w.l, warmDir, testCacheKey, map[uint64]bool{}, nil); n != 0 {
		t.Fatalf("warm again: %d chunks read", n)
	}
	warm, err := Compute(context.Background(), w.l, Options{Standard: PCIDSS, From: t0.Add(-time.Minute), To: t0.Add(2 * time.Minute),
		Verifiers: []note.Verifier{w.verif}, Now: t0.Add(time.Hour), Cache: warmDir, CacheKey: testCacheKey})
	if err != nil || warm.State.Integrity.SummarisedEarlier != 2*chunkSize {
		t.Fatalf("after warming: %v, %+v", err, warm.State.Integrity)
	}
	cache := filepath.Join(dir, "cache")
	runKey := func(key []byte) *Report {
		rep, err := Compute(context.Background(), w.l, Options{Standard: PCIDSS, From: t0.Add(-time.Minute), To: t0.Add(2 * time.Minute),
			Verifiers: []note.Verifier{w.verif}, Now: t0.Add(time.Hour), Cache: cache, CacheKey: key})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	run := func() *Report { return runKey(testCacheKey) }
	// Without the key (an auditor's public key only) nothing is kept.
	if rep := runKey(nil); rep.State.Integrity.SummarisedEarlier != 0 {
		t.Fatalf("without a key: %d records summarised earlier", rep.State.Integrity.SummarisedEarlier)
	}
	if files, _ := filepath.Glob(filepath.Join(cache, "*")); len(files) != 0 {
		t.Fatalf("without a key the cache was written: %v", files)
	}
	first := run()
	second := run()
	if first.Figures.Records != uint64(n) || first.Figures.AuthFailures.Total != uint64(fails) {
		t.Fatalf("first report: %d records, %d failed logins", first.Figures.Records, first.Figures.AuthFailures.Total)
	}
	if first.State.Integrity.SummarisedEarlier != 0 || second.State.Integrity.SummarisedEarlier != 2*chunkSize {
		t.Fatalf("summarised earlier: %d then %d", first.State.Integrity.SummarisedEarlier, second.State.Integrity.SummarisedEarlier)
	}
	if !reflect.DeepEqual(first.Figures, second.Figures) || !reflect.DeepEqual(first.Figures, warm.Figures) {
		t.Fatal("the cached chunks give other figures")
	}
	if rep := runKey(nil); rep.State.Integrity.SummarisedEarlier != 0 || !reflect.DeepEqual(rep.Figures, first.Figures) {
		t.Fatalf("without a key the kept chunks were used: %d records", rep.State.Integrity.SummarisedEarlier)
	}
	files, _ := filepath.Glob(filepath.Join(cache, "*.chunk"))
	if len(files) != 2 {
		t.Fatalf("%d cache files", len(files))
	}
	slices.Sort(files)
	good0, _ := os.ReadFile(files[0])
	good1, _ := os.ReadFile(files[1])
	// Someone edits a figure of a cache file (fewer failed logins),
	// leaving the root and the tag as they were.
	edit := func(data []byte) []byte {
		var cf chunkFile
		body := data[32 : len(data)-cacheTagSize]
		if err := gob.NewDecoder(bytes.NewReader(body)).Decode(&cf); err != nil {
			t.Fatal(err)
		}
		cf.AuthFail -= 100
		var b bytes.Buffer
		b.Write(data[:32])
		gob.NewEncoder(&b).Encode(&cf)
		return append(b.Bytes(), data[len(data)-cacheTagSize:]...)
	}
	other := newChunkCache(cache, []byte("another collector's key"), &computeParams{})
	for _, c := range []struct {
		name  string
		file  string
		plant []byte
	}{
		{"a figure edited", files[0], edit(good0)},
		{"chunk 0's authentic file in chunk 1's place", files[1], good0},
		{"tagged with another key", files[0], append(append([]byte(nil), good0[:len(good0)-cacheTagSize]...),
			other.tag(0, tlog.Hash(good0[:32]), good0[32:len(good0)-cacheTagSize])...)},
		{"tag cut off", files[1], good1[:len(good1)-cacheTagSize]},
	} {
		if err := os.WriteFile(c.file, c.plant, 0o600); err != nil {
			t.Fatal(err)
		}
		got := run()
		in := got.State.Integrity
		if !reflect.DeepEqual(got.Figures, first.Figures) || in.CacheRejected != 1 || in.SummarisedEarlier != chunkSize {
			t.Fatalf("%s: %d failed logins (want %d), %d chunks rejected, %d records summarised earlier", c.name,
				got.Figures.AuthFailures.Total, fails, in.CacheRejected, in.SummarisedEarlier)
		}
		if aside, err := os.ReadFile(c.file + ".rejected"); err != nil || !bytes.Equal(aside, c.plant) {
			t.Fatalf("%s: the rejected file was not kept aside: %v", c.name, err)
		}
		var notes []string
		for _, it := range got.Items {
			notes = append(notes, it.Notes...)
		}
		if !strings.Contains(strings.Join(notes, "\n"), "1 chunks of figures kept by an earlier report failed their authentication") {
			t.Fatalf("%s: the report does not say it read them again:\n%s", c.name, strings.Join(notes, "\n"))
		}
		// Kept again from the ledger: the next report uses it.
		if again := run(); again.State.Integrity.CacheRejected != 0 || again.State.Integrity.SummarisedEarlier != 2*chunkSize {
			t.Fatalf("%s: after the rejection %+v", c.name, again.State.Integrity)
		}
	}
	// The warmer too: it summarises the chunk again and says why.
	if err := os.WriteFile(filepath.Join(warmDir, filepath.Base(files[0])), edit(good0), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := Warm(context.Background(), w.l, warmDir, testCacheKey, map[uint64]bool{}, nil); n != 1 || !errors.Is(err, ErrCacheRejected) {
		t.Fatalf("warm over an edited file: %d chunks, %v", n, err)
	}
}

// TestWarmLedgerEndsAtChunk: Warm reads a chunk through the ledger's
// appended tail when it holds it (as the collector's ledger does) or from
// disk, and in both cases stops at the chunk's last record even when it is
// the ledger's last (the follower would otherwise wait for the next
// record); the figures it keeps are those a report computes from the
// ledger.
func TestWarmLedgerEndsAtChunk(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		tailBytes int
	}{{"from the appended tail", 64 << 20}, {"read back", 0}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			w := newWriterWith(t, dir, t0, c.tailBytes)
			defer w.l.Close()
			recs := make([][]byte, chunkSize)
			for j := range recs {
				e := event.Event{Action: event.ActionHTTPRequest, Outcome: "success", ServiceName: "api", ClientIP: "198.51.100.1", UserName: "u", Path: "/x"}
				if j%7 == 0 {
					e = event.Event{Category: []string{"authentication"}, Action: event.ActionLoginFail, Outcome: "failure", ServiceName: "api",
						ClientIP: fmt.Sprintf("203.0.113.%d", j%5), UserName: "bob", Path: "/login"}
				}
				recs[j] = ev(t0.Add(time.Duration(j)*time.Millisecond), e)
			}
			w.at(t0.Add(time.Minute))
			w.append(recs...)
			w.checkpoint()
			// The deadline only stops a Warm that waits for a record after
			// the chunk (it would wait forever): the work under it took
			// 1.6-3.2 s on one CPU at load 10 (race detector), so 30 s left
			// a loaded 2-core run too little room to tell slowness from a
			// wait.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			warmDir := filepath.Join(dir, "warm")
			if n, err := Warm(ctx, w.l, warmDir, testCacheKey, map[uint64]bool{}, nil); err != nil || n != 1 {
				t.Fatalf("warm: %d chunks, %v (want 1 without waiting for a record after the chunk)", n, err)
			}
			opts := Options{Standard: PCIDSS, From: t0.Add(-time.Minute), To: t0.Add(2 * time.Minute),
				Verifiers: []note.Verifier{w.verif}, Now: t0.Add(time.Hour)}
			fresh, err := Compute(ctx, w.l, opts)
			if err != nil {
				t.Fatal(err)
			}
			opts.Cache, opts.CacheKey = warmDir, testCacheKey
			warm, err := Compute(ctx, w.l, opts)
			if err != nil || warm.State.Integrity.SummarisedEarlier != chunkSize {
				t.Fatalf("after warming: %v, %+v", err, warm.State.Integrity)
			}
			if !reflect.DeepEqual(fresh.Figures, warm.Figures) || fresh.Figures.AuthFailures.Total != (chunkSize+6)/7 {
				t.Fatalf("figures from the warmed chunk %+v, from the ledger %+v", warm.Figures, fresh.Figures)
			}
		})
	}
}

// TestCounterRepeats: a counter counts keys repeated (its last-key path),
// alternating and new, the empty key among them, as a plain map does, and
// a counter read back from its saved form goes on counting alike.
func TestCounterRepeats(t *testing.T) {
	keys := []string{"a", "a", "b", "a", "", "", "b", "b", "c", "a", "", "c", "c"}
	var c counter
	want := map[string]uint64{}
	for i, k := range keys {
		c.add([]byte(k), uint64(i+1))
		want[k] += uint64(i + 1)
		if i == 6 {
			c = fc(cf(&c)) // saved and read back mid-way
		}
	}
	got := map[string]uint64{}
	for _, kc := range c.top(0) {
		got[kc.Value] = kc.Count
	}
	if !maps.Equal(got, want) || c.distinct() != uint64(len(want)) {
		t.Fatalf("counter %v (%d distinct), want %v", got, c.distinct(), want)
	}
	var merged counter
	merged.add([]byte("a"), 100)
	merged.merge(&c)
	if got := merged.top(1); got[0] != (Count{"a", want["a"] + 100}) {
		t.Fatalf("merged: %v, want a %d", got, want["a"]+100)
	}
}
