package statefile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeState is a store behind a Saver: a fake clock that a save advances
// by took, and a record of what was written.
type fakeState struct {
	mu      sync.Mutex
	now     time.Time
	took    time.Duration // how long the next saves take
	failOne error         // the next Write fails with it
	badSnap error         // the next Snapshot fails with it
	during  func()        // called inside Write (a change while writing)
	writes  []time.Time   // when each successful Write began
	calls   int           // Writes tried
}

func (f *fakeState) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeState) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fakeState) saver(every time.Duration) *Saver {
	return &Saver{
		Every: every,
		Now:   f.clock,
		Snapshot: func() func() ([]byte, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			err := f.badSnap
			f.badSnap = nil
			return func() ([]byte, error) {
				if err != nil {
					return nil, err
				}
				return []byte("state"), nil
			}
		},
		Write: func([]byte) error {
			if f.during != nil {
				f.during()
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.calls++
			start := f.now
			f.now = f.now.Add(f.took)
			if err := f.failOne; err != nil {
				f.failOne = nil
				return err
			}
			f.writes = append(f.writes, start)
			return nil
		},
	}
}

// step is one moment of a table case: the clock moves to at (since the
// start), then what the step says happens.
type step struct {
	at      time.Duration
	mark    bool
	took    time.Duration // the saves from now on take this long
	failOne bool          // the next Write fails
	badSnap bool          // the next Snapshot fails
	flush   bool          // Flush instead of Tick
	// wantWrite: a save was tried at this step; wantErr: and failed;
	// wantDirty: the state is dirty after the step.
	wantWrite, wantErr, wantDirty bool
}

func TestSaverPacing(t *testing.T) {
	errDisk := errors.New("disk full")
	for _, tc := range []struct {
		name  string
		every time.Duration
		steps []step
	}{
		{"clean: nothing saved", time.Second, []step{
			{at: 0}, {at: 5 * time.Second}, {at: 5 * time.Second, flush: true},
		}},
		{"no more often than Every", time.Second, []step{
			{at: 0, mark: true, wantWrite: true},
			{at: 100 * time.Millisecond, mark: true, wantDirty: true},
			{at: 999 * time.Millisecond, wantDirty: true},
			{at: time.Second, wantWrite: true},
			{at: 1500 * time.Millisecond, mark: true, wantDirty: true},
			{at: 2 * time.Second, wantWrite: true},
		}},
		{"zero Every is DefaultEvery", 0, []step{
			{at: 0, mark: true, wantWrite: true},
			{at: DefaultEvery - time.Millisecond, mark: true, wantDirty: true},
			{at: DefaultEvery, wantWrite: true},
		}},
		{"a short save waits Every", time.Second, []step{
			// 20 × 10 ms = 200 ms < Every: Every from the save's end.
			{at: 0, mark: true, took: 10 * time.Millisecond, wantWrite: true},
			{at: 1009 * time.Millisecond, mark: true, wantDirty: true},
			{at: 1010 * time.Millisecond, wantWrite: true},
		}},
		{"a long save backs off to 20 times its length", time.Second, []step{
			// Ends at 300 ms; the next may start 20 × 300 ms = 6 s after.
			{at: 0, mark: true, took: 300 * time.Millisecond, wantWrite: true},
			{at: time.Second, mark: true, wantDirty: true},
			{at: 6299 * time.Millisecond, wantDirty: true},
			{at: 6300 * time.Millisecond, took: 0, wantWrite: true},
			// A quick save brings the pace back to Every.
			{at: 7299 * time.Millisecond, mark: true, wantDirty: true},
			{at: 7300 * time.Millisecond, wantWrite: true},
		}},
		{"idle time does not delay the next save", time.Second, []step{
			{at: 0, mark: true, wantWrite: true},
			{at: 10 * time.Second},
			{at: 10*time.Second + time.Millisecond, mark: true, wantWrite: true},
		}},
		{"a failed write stays dirty and is retried at the pace", time.Second, []step{
			{at: 0, mark: true, failOne: true, wantWrite: true, wantErr: true, wantDirty: true},
			{at: 500 * time.Millisecond, wantDirty: true},
			{at: time.Second, wantWrite: true},
			{at: 2 * time.Second},
		}},
		{"a failed snapshot stays dirty and is retried", time.Second, []step{
			{at: 0, mark: true, badSnap: true, wantErr: true, wantDirty: true},
			{at: time.Second, wantWrite: true},
		}},
		{"Flush saves once when dirty, whatever the pace", time.Second, []step{
			{at: 0, mark: true, wantWrite: true},
			{at: time.Millisecond, mark: true, flush: true, wantWrite: true},
			{at: 2 * time.Millisecond, flush: true},
			{at: 3 * time.Millisecond, mark: true, failOne: true, flush: true, wantWrite: true, wantErr: true, wantDirty: true},
			{at: 4 * time.Millisecond, flush: true, wantWrite: true},
			{at: 5 * time.Millisecond, flush: true},
		}},
		{"Flush does not move the pace", time.Second, []step{
			{at: 0, mark: true, wantWrite: true},
			{at: 500 * time.Millisecond, mark: true, flush: true, took: 200 * time.Millisecond, wantWrite: true},
			{at: time.Second, mark: true, wantWrite: true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			f := &fakeState{now: start}
			p := f.saver(tc.every)
			for i, s := range tc.steps {
				f.mu.Lock()
				if at := start.Add(s.at); at.After(f.now) {
					f.now = at
				}
				if s.took != 0 || s.wantWrite {
					f.took = s.took
				}
				if s.failOne {
					f.failOne = errDisk
				}
				if s.badSnap {
					f.badSnap = errDisk
				}
				calls := f.calls
				f.mu.Unlock()
				if s.mark {
					p.Mark()
				}
				var err error
				if s.flush {
					err = p.Flush()
				} else {
					err = p.Tick()
				}
				f.mu.Lock()
				wrote := f.calls > calls
				f.mu.Unlock()
				if wrote != s.wantWrite || (err != nil) != s.wantErr || p.Dirty() != s.wantDirty {
					t.Fatalf("step %d (at %v): wrote %v, err %v, dirty %v; want wrote %v, an error %v, dirty %v",
						i, s.at, wrote, err, p.Dirty(), s.wantWrite, s.wantErr, s.wantDirty)
				}
				if s.wantErr && !errors.Is(err, errDisk) {
					t.Fatalf("step %d: %v, want %v", i, err, errDisk)
				}
			}
		})
	}
}

// TestSaverChangeDuringSave: a change made while a save is being written
// is not counted as saved.
func TestSaverChangeDuringSave(t *testing.T) {
	f := &fakeState{now: time.Now()}
	p := f.saver(time.Second)
	f.during = p.Mark
	p.Mark()
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if !p.Dirty() {
		t.Fatal("a change made during the save is taken for saved")
	}
	f.during = nil
	if err := p.Flush(); err != nil || p.Dirty() || len(f.writes) != 2 {
		t.Fatalf("after a second flush: %v, dirty %v, %d writes", err, p.Dirty(), len(f.writes))
	}
}

// TestSaverConcurrent: changes from many goroutines, under the store's
// lock, while Tick and Flush save (-race): the last save holds the last
// change.
func TestSaverConcurrent(t *testing.T) {
	var (
		mu      sync.Mutex
		state   int
		written atomic.Int64
	)
	p := &Saver{
		Every: time.Nanosecond,
		Lock:  &mu,
		Snapshot: func() func() ([]byte, error) {
			n := state // copied under the lock; encoded after
			return func() ([]byte, error) { return strconv.AppendInt(nil, int64(n), 10), nil }
		},
		Write: func(data []byte) error {
			n, err := strconv.Atoi(string(data))
			written.Store(int64(n))
			return err
		},
	}
	stop := make(chan struct{})
	var savers sync.WaitGroup
	for i := range 2 {
		savers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if i == 0 {
					err = p.Tick()
				} else {
					err = p.Flush()
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var changers sync.WaitGroup
	for range 8 {
		changers.Go(func() {
			for range 500 {
				mu.Lock()
				state++
				p.Mark()
				mu.Unlock()
			}
		})
	}
	changers.Wait()
	close(stop)
	savers.Wait()
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := written.Load(); got != 8*500 || p.Dirty() {
		t.Fatalf("saved state %d, dirty %v; want %d, clean", got, p.Dirty(), 8*500)
	}
}

// TestSaverRun: Run calls each at its ticks, saves a change on a real
// clock, reports failures to Failed, and saves a last time when ctx ends.
func TestSaverRun(t *testing.T) {
	var (
		writes, ticks atomic.Int64
		failed        = make(chan error, 1)
		failNext      atomic.Bool
	)
	p := &Saver{
		Snapshot: func() func() ([]byte, error) { return func() ([]byte, error) { return nil, nil } },
		Write: func([]byte) error {
			if failNext.Swap(false) {
				return errors.New("disk full")
			}
			writes.Add(1)
			return nil
		},
		Failed: func(err error) {
			select {
			case failed <- err:
			default:
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx, func(time.Time) { ticks.Add(1) }) }()
	defer func() { cancel(); <-done }()

	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("Run did not %s in 30 s", what)
			}
		}
	}
	failNext.Store(true)
	p.Mark()
	select {
	case err := <-failed:
		if err == nil || err.Error() != "disk full" {
			t.Fatalf("Failed heard %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Failed did not hear of the failed save in 30 s")
	}
	wait("save again after a failure", func() bool { return writes.Load() == 1 && !p.Dirty() })
	if ticks.Load() == 0 {
		t.Fatal("each was not called")
	}

	// A change just before ctx ends, within Every of the last save, is
	// saved by the last Flush.
	p.Mark()
	cancel()
	<-done
	if writes.Load() != 2 || p.Dirty() {
		t.Fatalf("after Run: %d writes, dirty %v; want 2, clean", writes.Load(), p.Dirty())
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, data := range []string{`{"v":1}`, `{"v":2,"longer":true}`, `{}`} {
		if err := Write(path, []byte(data)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != data {
			t.Fatalf("read back %q, %v; want %q", got, err, data)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the temporary file is left: %v", err)
	}

	// A write that cannot happen (the temporary name is taken by a
	// directory) leaves the old content and names the file.
	if err := os.Mkdir(path+".tmp", 0o700); err != nil {
		t.Fatal(err)
	}
	err = Write(path, []byte("new"))
	if pe := (*os.PathError)(nil); !errors.As(err, &pe) || pe.Path != path+".tmp" {
		t.Fatalf("Write over a directory: %v, want an error naming %s", err, path+".tmp")
	}
	if got, _ := os.ReadFile(path); string(got) != "{}" {
		t.Fatalf("after a failed write the file holds %q", got)
	}
	if err := Write(filepath.Join(dir, "missing", "state.json"), nil); err == nil {
		t.Fatal("Write into a missing directory did not fail")
	}
}

// TestSaverEncodesOutsideTheLock: Snapshot runs with the store's lock
// held, the encoding it returns after the lock is released, so a store's
// changes do not wait for it.
func TestSaverEncodesOutsideTheLock(t *testing.T) {
	var mu sync.Mutex
	var during, encoded []bool // whether the lock was free then
	var written []byte
	p := &Saver{Lock: &mu,
		Snapshot: func() func() ([]byte, error) {
			free := mu.TryLock()
			if free {
				mu.Unlock()
			}
			during = append(during, free)
			return func() ([]byte, error) {
				free := mu.TryLock()
				if free {
					mu.Unlock()
				}
				encoded = append(encoded, free)
				return []byte("state"), nil
			}
		},
		Write: func(data []byte) error { written = data; return nil },
	}
	p.Mark()
	if err := p.Flush(); err != nil {
		t.Fatal(err)
	}
	p.Mark()
	if err := p.Tick(); err != nil {
		t.Fatal(err)
	}
	if string(written) != "state" || len(during) != 2 || len(encoded) != 2 {
		t.Fatalf("wrote %q after %d snapshots and %d encodings, want state after 2 of each", written, len(during), len(encoded))
	}
	for i := range during {
		if during[i] || !encoded[i] {
			t.Errorf("save %d: lock free during Snapshot %v (want false), during the encoding %v (want true)", i, during[i], encoded[i])
		}
	}
}
