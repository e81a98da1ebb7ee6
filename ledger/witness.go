package ledger

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// A Witness keeps copies of checkpoints outside the ledger's control, so
// that whoever runs the ledger (even holding the signing key) cannot later
// truncate or rewrite history below an exported checkpoint without verify
// --witness noticing.
type Witness interface {
	// Publish stores or sends one signed checkpoint.
	Publish(ctx context.Context, signed []byte) error
	// String names the witness in logs.
	String() string
}

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
	f, err := os.Create(tmp)
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

// HTTPWitness returns a Witness that POSTs each checkpoint (Content-Type
// text/plain) to url and expects a 2xx answer. client may be nil.
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
