package sink

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// badBatches are batches no sink may write, not even in part.
var badBatches = []struct {
	name    string
	records [][]byte
}{
	{"newline", [][]byte{[]byte(`{"a":"x` + "\n" + `{"forged":true}"}`)}},
	{"newline after good record", [][]byte{[]byte(`{"ok":1}`), []byte("{\"a\":1}\n")}},
	{"carriage return", [][]byte{[]byte("{\"a\":\"x\r\"}")}},
	{"empty record", [][]byte{[]byte(`{"ok":1}`), {}}},
}

func TestWriterRejectsLineBreaks(t *testing.T) {
	for _, tt := range badBatches {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewWriter(&buf)
			err := w.Write(context.Background(), tt.records)
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("Write = %v, want ErrInvalidRecord", err)
			}
			if buf.Len() != 0 {
				t.Fatalf("wrote %q for a rejected batch", buf.String())
			}
		})
	}
}

// callRecorder keeps every Write call separately, to check that a batch is
// one call.
type callRecorder struct {
	mu    sync.Mutex
	calls []string
}

func (c *callRecorder) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, string(p))
	return len(p), nil
}

func TestWriterConcurrentBatchesAreOneCall(t *testing.T) {
	rec := &callRecorder{}
	w := NewWriter(rec)
	const writers, batches = 8, 50
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for b := range batches {
				recs := [][]byte{
					fmt.Appendf(nil, `{"w":%d,"b":%d,"i":0}`, g, b),
					fmt.Appendf(nil, `{"w":%d,"b":%d,"i":1}`, g, b),
				}
				if err := w.Write(context.Background(), recs); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if len(rec.calls) != writers*batches {
		t.Fatalf("%d Write calls, want %d", len(rec.calls), writers*batches)
	}
	seen := map[string]bool{}
	for _, c := range rec.calls {
		var g, b int
		if _, err := fmt.Sscanf(c, `{"w":%d,"b":%d,"i":0}`, &g, &b); err != nil {
			t.Fatalf("call %q: %v", c, err)
		}
		want := fmt.Sprintf("{\"w\":%d,\"b\":%d,\"i\":0}\n{\"w\":%d,\"b\":%d,\"i\":1}\n", g, b, g, b)
		if c != want || seen[c] {
			t.Fatalf("call %q, want %q once", c, want)
		}
		seen[c] = true
	}
}

type errWriter struct{ n int }

func (e errWriter) Write(p []byte) (int, error) { return min(e.n, len(p)), errors.New("disk on fire") }

func TestWriterErrorsAndClose(t *testing.T) {
	ctx := context.Background()
	if err := NewWriter(errWriter{3}).Write(ctx, [][]byte{[]byte(`{"a":1}`)}); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Write to failing writer = %v", err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	w := NewWriter(bw)
	if err := w.Write(canceled, [][]byte{[]byte(`{"a":1}`)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write with canceled ctx = %v", err)
	}
	if err := w.Write(ctx, [][]byte{[]byte(`{"a":2}`)}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Fatal("bufio.Writer flushed early; test is not testing Close's flush")
	}
	for range 2 {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got := buf.String(); got != "{\"a\":2}\n" {
		t.Fatalf("after Close: %q", got)
	}
	if err := w.Write(ctx, [][]byte{[]byte(`{"a":3}`)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
}

// stubSink is a real Sink with scripted failures, to observe Multi.
type stubSink struct {
	mu      sync.Mutex
	err     error
	writes  int
	closed  bool
	closeEr error
}

func (s *stubSink) Write(context.Context, [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.writes++
	return s.err
}

func (s *stubSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.closeEr
}

func TestMulti(t *testing.T) {
	ctx := context.Background()
	errA, errB := errors.New("replica A down"), errors.New("replica B full")
	var buf1, buf2 bytes.Buffer
	a := &stubSink{err: errA, closeEr: errors.New("close A")}
	b := &stubSink{err: errB}
	m := Multi(NewWriter(&buf1), a, nil, NewWriter(&buf2), b)
	rec := [][]byte{[]byte(`{"a":1}`)}

	err := m.Write(ctx, rec)
	if !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Fatalf("Multi.Write = %v, want both failures joined", err)
	}
	if buf1.String() != "{\"a\":1}\n" || buf2.String() != "{\"a\":1}\n" || a.writes != 1 || b.writes != 1 {
		t.Fatalf("a failure stopped the fan-out: %q %q %d %d", buf1.String(), buf2.String(), a.writes, b.writes)
	}
	if err := Multi(NewWriter(&buf1)).Write(ctx, rec); err != nil {
		t.Fatalf("healthy Multi.Write = %v", err)
	}
	if err := m.Write(ctx, [][]byte{[]byte("a\nb")}); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("Multi.Write of a bad record = %v", err)
	}

	if err := m.Close(); err == nil || !strings.Contains(err.Error(), "close A") {
		t.Fatalf("Multi.Close = %v, want close A's error", err)
	}
	if !a.closed || !b.closed {
		t.Fatal("Multi.Close did not close every sink")
	}
	if err := m.Write(ctx, rec); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
}
