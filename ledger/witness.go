package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/internal/regfile"
)

// A Witness keeps copies of checkpoints outside the ledger's control, so
// that whoever runs the ledger (even holding the signing key) cannot later
// truncate or rewrite history below an exported checkpoint without verify
// --witness noticing, and so that Open refuses to start on a ledger that
// is behind or forks from what was exported.
type Witness interface {
	// Publish stores or sends one signed checkpoint.
	Publish(ctx context.Context, signed []byte) error
	// Latest returns the newest checkpoint the witness holds (the largest
	// tree size), or nil if it holds none yet. An error means the witness
	// could not be asked (unreachable, unmounted).
	Latest(ctx context.Context) ([]byte, error)
	// String names the witness in logs.
	String() string
}

// ErrWitness is returned (wrapped) by Open when the ledger is behind or
// forks from a witness's newest checkpoint, or a witness cannot be
// reached to check it (see Options.StartWithoutWitness).
var ErrWitness = errors.New("ledger: witness check failed")

// DirWitness returns a Witness that writes each checkpoint as a file
// <size>-<unix ns>.checkpoint in dir (typically a mount of other storage,
// such as WORM or another host's share). verify --witness reads such a
// directory.
func DirWitness(dir string) Witness { return dirWitness{dir} }

type dirWitness struct{ dir string }

func (d dirWitness) String() string { return "dir:" + d.dir }

func (d dirWitness) Publish(_ context.Context, signed []byte) error {
	c, err := parseUnverified(signed)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	name := fmt.Sprintf("%020d-%d.checkpoint", c.Size, c.Time.UnixNano())
	p := filepath.Join(d.dir, name)
	tmp := p + ".tmp"
	f, err := createFresh(tmp, os.O_WRONLY) // (plant.go)
	if err != nil {
		return err
	}
	if _, err := f.Write(signed); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// Latest returns the checkpoint file with the largest size (then time) in
// the directory. A missing directory is an error wrapping os.ErrNotExist
// (an unmounted witness must not pass for an empty one).
func (d dirWitness) Latest(context.Context) ([]byte, error) {
	f, err := os.Open(d.dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	best, bestSize, bestTime := "", uint64(0), int64(0)
	for {
		// In chunks: a directory may hold a checkpoint a second for years.
		names, err := f.Readdirnames(4096)
		for _, n := range names {
			base, ok := strings.CutSuffix(n, ".checkpoint")
			if !ok {
				continue
			}
			sz, ts, ok := strings.Cut(base, "-")
			size, err1 := strconv.ParseUint(sz, 10, 64)
			t, err2 := strconv.ParseInt(ts, 10, 64)
			if !ok || err1 != nil || err2 != nil {
				continue
			}
			if best == "" || size > bestSize || size == bestSize && t > bestTime {
				best, bestSize, bestTime = n, size, t
			}
		}
		if err == io.EOF || len(names) == 0 {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if best == "" {
		return nil, nil
	}
	// A regular file of a checkpoint's size at most (regfile): a FIFO
	// planted under the newest name would hang the collector's start and
	// every report, a link to /dev/zero take all their memory.
	b, err := regfile.Read(filepath.Join(d.dir, best), maxCheckpointSize)
	if errors.Is(err, regfile.ErrTooLarge) {
		return nil, fmt.Errorf("witness %s: %s is larger than a checkpoint", d.dir, best)
	}
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", d.dir, err)
	}
	return b, nil
}

// HTTPWitness returns a Witness that POSTs each checkpoint (Content-Type
// text/plain) to url and expects a 2xx answer. client may be nil.
//
// The protocol: POST url with a signed checkpoint as the body stores it
// (any 2xx); GET url returns the newest checkpoint stored (200, the signed
// note as the body) or 404 (or 204) if none is. Open asks with GET before
// the ledger starts.
func HTTPWitness(url string, client *http.Client) Witness {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return httpWitness{url, client}
}

type httpWitness struct {
	url    string
	client *http.Client
}

func (h httpWitness) String() string { return "http:" + h.url }

func (h httpWitness) Publish(ctx context.Context, signed []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(signed))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("witness %s: HTTP %s", h.url, resp.Status)
	}
	return nil
}

func (h httpWitness) Latest(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusNoContent:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, nil
	case resp.StatusCode != http.StatusOK:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("witness %s: GET: HTTP %s", h.url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxCheckpointSize+1))
	if err != nil {
		return nil, fmt.Errorf("witness %s: GET: %w", h.url, err)
	}
	if len(b) > maxCheckpointSize {
		return nil, fmt.Errorf("witness %s: GET: answer larger than a checkpoint", h.url)
	}
	return b, nil
}

// witnessQueue delivers checkpoints to one witness in order, off the
// write path, retrying with backoff. If the witness falls far behind, the
// oldest undelivered checkpoints are dropped: the newest is the one that
// matters against truncation.
type witnessQueue struct {
	w      Witness
	log    *slog.Logger
	mu     sync.Mutex
	queue  [][]byte
	wake   chan struct{}
	closed chan struct{}
	done   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
}

const witnessQueueMax = 256

func newWitnessQueue(w Witness, log *slog.Logger) *witnessQueue {
	ctx, cancel := context.WithCancel(context.Background())
	q := &witnessQueue{w: w, log: log, wake: make(chan struct{}, 1), closed: make(chan struct{}), done: make(chan struct{}), ctx: ctx, cancel: cancel}
	go q.run()
	return q
}

func (q *witnessQueue) enqueue(signed []byte) {
	q.mu.Lock()
	if len(q.queue) >= witnessQueueMax {
		q.log.Warn("ledger: witness behind, dropping oldest checkpoint", "witness", q.w.String())
		q.queue = q.queue[1:]
	}
	q.queue = append(q.queue, signed)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *witnessQueue) run() {
	defer close(q.done)
	backoff := 100 * time.Millisecond
	for {
		q.mu.Lock()
		var next []byte
		if len(q.queue) > 0 {
			next = q.queue[0]
		}
		q.mu.Unlock()
		if next == nil {
			select {
			case <-q.wake:
				continue
			case <-q.closed:
				return
			}
		}
		ctx, cancel := context.WithTimeout(q.ctx, 10*time.Second)
		err := q.w.Publish(ctx, next)
		cancel()
		if err != nil {
			q.log.Error("ledger: witness failed", "witness", q.w.String(), "err", err)
			select {
			case <-time.After(backoff):
			case <-q.ctx.Done():
				return
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		q.mu.Lock()
		q.queue = q.queue[1:]
		q.mu.Unlock()
	}
}

// close waits until the queue is delivered or ctx ends.
func (q *witnessQueue) close(ctx context.Context) {
	close(q.closed)
	select {
	case <-q.done:
	case <-ctx.Done():
		q.log.Error("ledger: witness did not receive the final checkpoints", "witness", q.w.String())
		q.cancel()
		<-q.done
	}
	q.cancel()
}

// checkWitnesses runs at Open, after recovery and before anything is
// signed: the ledger must hold every record each witness's newest
// checkpoint covers, with the same root (proved with a consistency proof
// from the witnessed size to the ledger's).
func (l *Ledger) checkWitnesses() error {
	if len(l.opts.Witnesses) == 0 {
		return nil
	}
	size, root := l.w.tree.size, l.w.tree.root()
	hr := tlog.TileHashReader(tlog.Tree{N: int64(size), Hash: root}, memTileReader{l.tiles, l.w.tree})
	known := l.knownKeys()
	for _, w := range l.opts.Witnesses {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		signed, err := w.Latest(ctx)
		cancel()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && len(l.latest) == 0 {
				continue // a new ledger with a new witness directory
			}
			if l.opts.StartWithoutWitness {
				l.opts.Logger.Error("ledger: starting WITHOUT checking a witness that cannot be reached (StartWithoutWitness): a ledger behind or forked from it would go unnoticed until verify --witness",
					"dir", l.dir, "witness", w.String(), "err", err)
				continue
			}
			hint := "fix or mount the witness"
			if errors.Is(err, os.ErrNotExist) {
				hint = "mount it, or create the directory if this witness is new"
			}
			return fmt.Errorf("%w: witness %s cannot be reached to compare checkpoints: %v; %s, or start once with --start-without-witness (Options.StartWithoutWitness) to skip this check", ErrWitness, w, err, hint)
		}
		if signed == nil {
			continue
		}
		c, _, err := OpenCheckpoint(signed, known)
		if err != nil {
			return fmt.Errorf("%w: witness %s holds a checkpoint that does not verify with this ledger's keys (%v): someone else wrote to the witness, or the ledger's key changed (pass the old key in Options.PreviousKeys)", ErrWitness, w, err)
		}
		if c.Origin != l.opts.Origin {
			return fmt.Errorf("%w: witness %s holds a checkpoint of origin %q, this ledger's is %q", ErrWitness, w, c.Origin, l.opts.Origin)
		}
		if c.Size > size {
			return fmt.Errorf("%w: the ledger is behind witness %s: it holds %d records but the witness has a signed checkpoint of size %d (time %s): records were deleted or an old copy was restored; restore the missing records (trailguard verify %s --witness … names them) before starting",
				ErrWitness, w, size, c.Size, c.Time.UTC().Format(time.RFC3339), l.dir)
		}
		if c.Size == 0 {
			continue
		}
		proof, err := tlog.ProveTree(int64(size), int64(c.Size), hr)
		if err == nil {
			err = tlog.CheckTree(proof, int64(size), root, int64(c.Size), c.Root)
		}
		if err != nil {
			return fmt.Errorf("%w: the ledger forks from witness %s: its first %d records do not have the root of the witnessed checkpoint (time %s): history was rewritten after it was exported (%v); run trailguard verify %s --witness …",
				ErrWitness, w, c.Size, c.Time.UTC().Format(time.RFC3339), err, l.dir)
		}
		l.opts.Logger.Info("ledger: consistent with witness", "witness", w.String(), "witnessed", c.Size, "size", size)
	}
	return nil
}

// knownKeys are the keys whose checkpoints this writer trusts: its own
// (checked by signing the same text again: Ed25519 is deterministic), the
// handover key and Options.PreviousKeys.
func (l *Ledger) knownKeys() note.Verifiers {
	vs := []note.Verifier{signerVerifier{l.opts.Signer}}
	if l.opts.HandoverSigner != nil {
		vs = append(vs, signerVerifier{l.opts.HandoverSigner})
	}
	return note.VerifierList(append(vs, l.opts.PreviousKeys...)...)
}

// signerVerifier verifies signatures made by a signer whose public key is
// not at hand, by making the signature again.
type signerVerifier struct{ s note.Signer }

func (v signerVerifier) Name() string    { return v.s.Name() }
func (v signerVerifier) KeyHash() uint32 { return v.s.KeyHash() }
func (v signerVerifier) Verify(msg, sig []byte) bool {
	again, err := v.s.Sign(msg)
	return err == nil && bytes.Equal(again, sig)
}

// memTileReader reads tiles from disk, except the tree's partial tiles,
// which recovery holds in memory (they are written with the next
// checkpoint).
type memTileReader struct {
	s *tileStore
	t *tree
}

func (r memTileReader) Height() int { return tileHeight }

func (r memTileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if t.L < len(r.t.levels) && uint64(t.N) == (r.t.size>>(tileHeight*t.L))/tileWidth && t.W <= len(r.t.levels[t.L]) {
			out[i] = hashesBytes(r.t.levels[t.L][:t.W])
			continue
		}
		b, err := r.s.read(t.L, uint64(t.N), t.W)
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (r memTileReader) SaveTiles([]tlog.Tile, [][]byte) {}
