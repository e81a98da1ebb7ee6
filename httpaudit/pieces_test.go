package httpaudit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/sink"
)

// gatedStream is the io.Writer under a *sink.Writer: its first Write
// waits for release (so that the events sent meanwhile queue up into one
// large batch), its failAt-th Write fails once, and it keeps every
// Write's size and what it wrote.
type gatedStream struct {
	release chan struct{}
	failAt  int

	mu     sync.Mutex
	writes []int
	out    bytes.Buffer
}

func (g *gatedStream) Write(p []byte) (int, error) {
	g.mu.Lock()
	n := len(g.writes)
	g.writes = append(g.writes, len(p))
	g.mu.Unlock()
	if n == 0 {
		<-g.release
	}
	if n == g.failAt {
		return 0, errors.New("write refused once")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.Write(p)
}

// TestStreamSinkWrittenInPieces checks that a batch larger than pieceBytes
// reaches a *sink.Writer in several writes of whole lines, none much
// larger than pieceBytes, every event once and in order — also when one
// piece's write fails and is retried. With the batch written whole (the
// piece check removed from run) the large batch is one write of ~250 KB.
func TestStreamSinkWrittenInPieces(t *testing.T) {
	for _, tc := range []struct {
		name   string
		failAt int
	}{{"all written", -1}, {"a piece refused once", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			g := &gatedStream{release: make(chan struct{}), failAt: tc.failAt}
			l, err := New(Config{Sink: sink.NewWriter(g), QueueSize: 4096, ErrorLog: newDiscardSlog()})
			if err != nil {
				t.Fatal(err)
			}
			h := l.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
			serve := func(i int) {
				h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/pieces/%d", i), nil))
			}
			serve(0)
			waitFor(t, "the writer in its first write", func() bool {
				g.mu.Lock()
				defer g.mu.Unlock()
				return len(g.writes) == 1
			})
			const n = 500 // one batch (BatchSize 512), ~250 KB encoded
			for i := 1; i <= n; i++ {
				serve(i)
			}
			close(g.release)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			var paths []string
			longest := 0
			sc := bufio.NewScanner(bytes.NewReader(g.out.Bytes()))
			for sc.Scan() {
				ev, err := event.Decode(sc.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				paths = append(paths, ev.Path)
				longest = max(longest, len(sc.Bytes())+1)
			}
			if len(paths) != n+1 {
				t.Fatalf("%d events written, want %d (stats %+v)", len(paths), n+1, l.Stats())
			}
			for i, p := range paths {
				if want := fmt.Sprintf("/pieces/%d", i); p != want {
					t.Fatalf("event %d is %s, want %s", i, p, want)
				}
			}
			if len(g.writes) < 5 {
				t.Errorf("%d writes %v: the large batch was not written in pieces", len(g.writes), g.writes)
			}
			for _, w := range g.writes {
				if w >= pieceBytes+longest {
					t.Errorf("a write of %d bytes: pieces are at most %d+%d (writes %v)", w, pieceBytes, longest, g.writes)
				}
			}
			if s := l.Stats(); s.Written != n+1 || s.Lost != 0 || s.Dropped != 0 {
				t.Errorf("stats %+v, want %d written", s, n+1)
			}
		})
	}
}
