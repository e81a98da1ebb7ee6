package ledger

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestFollowAppended: a follower of FollowAppended sees every record once,
// in order, with the bytes and append time the checked read path gives,
// while concurrent appenders finish out of order and the follower falls
// behind the kept tail (disk) and catches up with it (memory) again.
func TestFollowAppended(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.TailBytes = 16 << 10 // about a hundred records: the follower overtakes it
	opts.SegmentSize = 64 << 10
	l, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const appenders, per, total = 8, 60, 8 * 60 * 5
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make(chan []Entry, 1)
	go func() {
		var seen []Entry
		for e, err := range l.FollowAppended(ctx, 0) {
			if err != nil {
				t.Error(err)
				break
			}
			seen = append(seen, e)
			if len(seen)%97 == 0 {
				time.Sleep(20 * time.Millisecond) // fall behind now and then
			}
			if len(seen) == total {
				break
			}
		}
		got <- seen
	}()
	var wg sync.WaitGroup
	for a := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range total / appenders / per {
				recs := make([][]byte, per)
				for i := range recs {
					recs[i] = record(a*100000 + b*1000 + i)
				}
				// Half the appends carry their records as aux: the
				// follower must get each with its own record.
				var aux any
				if b%2 == 0 {
					aux = recs
				}
				if _, err := l.AppendAux(ctx, aux, recs...); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	seen := <-got
	if len(seen) != total {
		t.Fatalf("follower saw %d records, want %d", len(seen), total)
	}
	withAux := 0
	for _, e := range seen {
		if e.Aux == nil {
			if e.AuxPos != 0 {
				t.Fatalf("record %d: AuxPos %d without Aux", e.Index, e.AuxPos)
			}
			continue
		}
		withAux++
		if recs := e.Aux.([][]byte); !bytes.Equal(recs[e.AuxPos], e.Data) {
			t.Fatalf("record %d: aux at %d is %q, record %q", e.Index, e.AuxPos, recs[e.AuxPos], e.Data)
		}
	}
	// Some come with aux (from memory), not all (half were appended
	// without, and the follower fell behind the tail).
	if withAux == 0 || withAux > total/2 {
		t.Fatalf("%d of %d records followed with aux", withAux, total)
	}
	i := 0
	for e, err := range l.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		f := seen[i]
		if f.Index != e.Index || !bytes.Equal(f.Data, e.Data) || !f.Time.Equal(e.Time) {
			t.Fatalf("record %d: followed %d %q %v, stored %d %q %v", i, f.Index, f.Data, f.Time, e.Index, e.Data, e.Time)
		}
		i++
	}
	if i != total {
		t.Fatalf("ledger holds %d records, want %d", i, total)
	}
}

// TestFollowAppendedFromMemory: records in the tail are not read back
// (a record altered on disk afterwards is still followed as appended: the
// bytes its leaf commits to), records beyond it are, and checked (the
// alteration is found, as Follow finds it).
func TestFollowAppendedFromMemory(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		tailBytes int
		wantErr   bool
	}{
		{"held in the tail", 1 << 20, false},
		{"evicted from the tail", 3 * len(record(5)), true},
		{"no tail", 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			k := newKey(t, testOrigin)
			opts := testOpts(k)
			opts.TailBytes = c.tailBytes
			dir := t.TempDir()
			l, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i := range 10 {
				if _, err := l.Append(ctx, record(i)); err != nil {
					t.Fatal(err)
				}
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "seg", "*.seg"))
			if len(segs) != 1 {
				t.Fatalf("segments %v", segs)
			}
			b, err := os.ReadFile(segs[0])
			if err != nil {
				t.Fatal(err)
			}
			at := bytes.Index(b, []byte(`"ev-5","action":"login"`))
			if at < 0 {
				t.Fatal("record 5 not found in its segment")
			}
			b[at+len(`"ev-5","action":"`)] = 'L' // "Login": CRC and leaf no longer match
			if err := os.WriteFile(segs[0], b, 0o644); err != nil {
				t.Fatal(err)
			}
			fctx, fcancel := context.WithCancel(ctx)
			defer fcancel()
			var recs [][]byte
			var ferr error
			for e, err := range l.FollowAppended(fctx, 0) {
				if err != nil {
					ferr = err
					break
				}
				recs = append(recs, e.Data)
				if len(recs) == 10 {
					break
				}
			}
			if c.wantErr {
				if ferr == nil || len(recs) != 5 {
					t.Fatalf("read back and checked: got %d records and %v, want 5 and the alteration found", len(recs), ferr)
				}
				return
			}
			if ferr != nil || len(recs) != 10 {
				t.Fatalf("followed %d records, then %v", len(recs), ferr)
			}
			for i, r := range recs {
				if !bytes.Equal(r, record(i)) {
					t.Fatalf("record %d followed as %q, appended as %q", i, r, record(i))
				}
			}
			// The checked path still finds the alteration (a frame
			// checksum or leaf mismatch).
			n := 0
			for _, err := range l.Follow(fctx, 0) {
				if err != nil {
					if n != 5 || errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("Follow: %v after %d records, want the alteration of record 5 found", err, n)
					}
					return
				}
				n++
			}
		})
	}
}

// TestFollowAppendedWokenFromTail: a follower waiting for the next record
// is woken once it is durable and finds it in the tail, never reading it
// back from disk (the tail is filled before followers are told).
func TestFollowAppendedWokenFromTail(t *testing.T) {
	t.Parallel()
	k := newKey(t, testOrigin)
	opts := testOpts(k)
	opts.TailBytes = 1 << 20
	l, err := Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 50
	got := make(chan uint64)
	go func() {
		defer close(got)
		for e, err := range l.FollowAppended(ctx, 0) {
			if err != nil {
				return
			}
			got <- e.Index
			if e.Index == n-1 {
				return
			}
		}
	}()
	for i := range n {
		if _, err := l.Append(ctx, record(i)); err != nil {
			t.Fatal(err)
		}
		// Wait for the follower each time, so that it is waiting again
		// when the next record becomes durable.
		if idx, ok := <-got; !ok || idx != uint64(i) {
			t.Fatalf("followed %d (%v), want %d", idx, ok, i)
		}
	}
	if rb := l.tail.readBack.Load(); rb != 0 {
		t.Fatalf("%d of %d records followed as they were appended were read back from disk", rb, n)
	}
}
