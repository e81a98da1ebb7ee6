// Package statefile keeps a store's state file on disk: Write replaces a
// file atomically and durably, and a Saver saves a state that changes
// often now and then, so that saving it costs a bounded share of the time
// however large the state grows.
//
// The stores that use a Saver (alerting's alerts.json, decision's
// decisions.json) hold state whose every change is durable in a ledger
// record first; their file is only where a start begins reading the
// ledger. Rewriting and syncing the whole file at every change, under the
// lock each change takes, made a change cost 80-700 ms at 10,000 alerts
// and 20-290 ms at 6,000 bans, and anyone who could provoke changes slowed
// every later one. With a Saver a change only marks the state dirty.
package statefile

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultEvery is the shortest time between two saves by Tick (and Run)
// when Saver.Every is zero.
const DefaultEvery = time.Second

// Backoff bounds the share of the time spent saving: after a save that
// took d, Tick waits max(Every, Backoff*d) before the next, so saving
// takes at most a twentieth of the time even when the state is so large
// (100,000 bans are some 35 MB) that a save takes longer than Every.
const Backoff = 20

// tick is how often Run looks whether a save is due, and so how late after
// Every a change may be saved.
const tick = 100 * time.Millisecond

// Saver saves a state now and then while it changes, and at once when
// asked (Flush). The store calls Mark at each change; Run (or Tick) saves
// when the state is dirty and the pacing allows. The state is copied by
// Snapshot under the store's own lock, and encoded and written by Write
// outside it, so changes go on while the file is encoded, written and
// synced; only one save runs at a time.
//
// Set the funcs before first use and do not copy a Saver after. Mark,
// Dirty, Flush and Tick are safe for concurrent use.
type Saver struct {
	// Lock is the store's lock, held while Snapshot runs; nil means
	// Snapshot takes what lock it needs itself.
	Lock sync.Locker
	// Snapshot takes a copy of the state, with Lock held, and returns
	// what encodes the copy into the file's content, which the Saver
	// calls after releasing Lock: the store's changes wait for the copy,
	// not for the encoding. Encoded under the lock, 100,000 bans held
	// every decision and bouncer poll for 0.4-2 s of JSON at each save.
	Snapshot func() (encode func() ([]byte, error))
	// Write stores the content durably, commonly with Write.
	Write func(data []byte) error
	// Every is the shortest time between two saves by Tick; zero means
	// DefaultEvery.
	Every time.Duration
	// Now is the clock that paces saves; nil means time.Now.
	Now func() time.Time
	// Failed, if not nil, hears of each save that Run fails; the state
	// stays dirty and is saved again later.
	Failed func(error)

	dirty atomic.Bool
	// saving is held by whoever saves; it guards next.
	saving sync.Mutex
	// next is the earliest time Tick saves again.
	next time.Time
}

// Mark says the state changed since it was last saved. It is cheap: call
// it at every change, with or without the store's lock held.
func (p *Saver) Mark() { p.dirty.Store(true) }

// Dirty reports whether the state changed since the content of the last
// save was taken (a save taken may still be being written).
func (p *Saver) Dirty() bool { return p.dirty.Load() }

// Flush saves the state now if it is dirty, whatever the pacing: at
// shutdown, or where the caller must know the change is on disk when it
// returns. A failed save leaves the state dirty.
func (p *Saver) Flush() error {
	p.saving.Lock()
	defer p.saving.Unlock()
	_, err := p.save()
	return err
}

// Tick saves the state if it is dirty and the last save by Tick was long
// enough ago: Every, or Backoff times as long as that save took. A failed
// save is paced as a successful one, so a disk that fails is retried, not
// hammered.
func (p *Saver) Tick() error {
	p.saving.Lock()
	defer p.saving.Unlock()
	if !p.dirty.Load() || p.now().Before(p.next) {
		return nil
	}
	took, err := p.save()
	every := p.Every
	if every == 0 {
		every = DefaultEvery
	}
	p.next = p.now().Add(max(every, Backoff*took))
	return err
}

// Run calls Tick every 100 ms until ctx ends, then Flush, reporting
// failures to Failed. At each tick it first calls each, if not nil, with
// the tick's time: a store's own upkeep, which may Mark.
func (p *Saver) Run(ctx context.Context, each func(now time.Time)) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.failed(p.Flush())
			return
		case now := <-t.C:
			if each != nil {
				each(now)
			}
			p.failed(p.Tick())
		}
	}
}

// save saves the state if it is dirty and reports how long it took (held:
// saving). The flag is cleared before the snapshot is taken: a change
// during the snapshot marks it again, and is saved next time if the
// snapshot missed it.
func (p *Saver) save() (time.Duration, error) {
	start := p.now()
	if !p.dirty.Swap(false) {
		return 0, nil
	}
	data, err := p.snapshot()
	if err == nil {
		err = p.Write(data)
	}
	if err != nil {
		p.dirty.Store(true)
	}
	return p.now().Sub(start), err
}

func (p *Saver) snapshot() ([]byte, error) {
	return p.take()()
}

// take runs Snapshot with Lock held.
func (p *Saver) take() func() ([]byte, error) {
	if p.Lock != nil {
		p.Lock.Lock()
		defer p.Lock.Unlock()
	}
	return p.Snapshot()
}

func (p *Saver) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Saver) failed(err error) {
	if err != nil && p.Failed != nil {
		p.Failed(err)
	}
}

// Write replaces the file at path with data so that, after a crash, path
// holds either its old content or all of data: it writes path+".tmp"
// (mode 0600), syncs it, renames it over path and syncs the directory;
// on an error path keeps its old content and the temporary file is removed.
// The directory's sync is best effort (some file systems refuse it); the
// rename has happened by then. Errors name the file, not the caller: wrap
// them.
func Write(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
