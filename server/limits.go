package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/trailguard/trailguard/access"
)

// tokenSlots bounds the requests of one kind in progress, per token and in
// all: ingest requests each hold buffers (see the README's memory bound),
// so their number bounds the collector's memory; and one token cannot take
// every slot (or, for reports, fill the wait for the one report slot).
type tokenSlots struct {
	perToken, total int

	mu      sync.Mutex
	byToken map[string]int
	inUse   int
}

func newTokenSlots(perToken, total int) *tokenSlots {
	return &tokenSlots{perToken: perToken, total: total, byToken: map[string]int{}}
}

// acquire takes a slot for token, or returns the status to answer: 429
// when the token has perToken requests in progress, 503 when all slots
// are taken.
func (s *tokenSlots) acquire(token string) (release func(), status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byToken[token] >= s.perToken {
		return nil, http.StatusTooManyRequests
	}
	if s.inUse >= s.total {
		return nil, http.StatusServiceUnavailable
	}
	s.byToken[token]++
	s.inUse++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.byToken[token]--; s.byToken[token] <= 0 {
				delete(s.byToken, token)
			}
			s.inUse--
		})
	}, 0
}

// inProgress is the number of slots taken.
func (s *tokenSlots) inProgress() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse
}

// limitIngest wraps an ingest handler (behind requireRole) with the
// concurrency limits.
func (s *Server) limitIngest(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := r.Context().Value(tokenKey{}).(access.Token)
		release, status := s.slots.acquire(tok.ID)
		switch status {
		case http.StatusTooManyRequests:
			s.metrics.ingestLimited.Add(1)
			w.Header().Set("Retry-After", "1")
			writeError(w, status, fmt.Sprintf("this token already has %d ingest requests in progress (max_ingest_per_token); wait for their answers or retry after 1 s", s.slots.perToken))
			return
		case http.StatusServiceUnavailable:
			s.metrics.ingestLimited.Add(1)
			w.Header().Set("Retry-After", "1")
			writeError(w, status, fmt.Sprintf("the collector is busy: %d ingest requests in progress (max_ingest_requests); retry after 1 s", s.slots.total))
			return
		}
		defer release()
		h(w, r)
	}
}

// boundBodies puts a read deadline, body_read_timeout from its start, on
// every request that announces a body, cleared when the body has been
// read to its end (deadlineBody moves it further for ingest). A handler
// that refuses a request without reading its body (no token, a limit, an
// unknown path) leaves net/http to discard the body before it answers,
// and a client that announced a body and sends nothing would otherwise
// hold the connection, a goroutine and a file descriptor for ever.
func (s *Server) boundBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := s.cfg.BodyReadTimeout; d > 0 && r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(d)) == nil {
				r.Body = &clearAtEOF{ReadCloser: r.Body, rc: rc}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// clearAtEOF clears the connection's read deadline once its body is read:
// net/http's background read, which notices a client going away, must not
// time out while the handler works on the body.
type clearAtEOF struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *clearAtEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// deadlineBody enforces the body timeouts on a request body: each Read
// must make progress within idle, and the whole body must arrive before
// end. It moves the connection's read deadline, which net/http leaves to
// handlers (a server-wide ReadTimeout would also cut the live tail).
type deadlineBody struct {
	r           io.Reader
	rc          *http.ResponseController
	idle, total time.Duration
	end         time.Time
	done        bool
}

func newDeadlineBody(w http.ResponseWriter, r io.Reader, idle, total time.Duration) *deadlineBody {
	return &deadlineBody{r: r, rc: http.NewResponseController(w), idle: idle, total: total, end: time.Now().Add(total)}
}

// errBodyTimeout is wrapped by the error of a body cut by either timeout;
// the error says which, so that a client (and a test) can tell a stall
// from a trickle.
var errBodyTimeout = errors.New("request body too slow")

func (d *deadlineBody) Read(p []byte) (int, error) {
	if d.done {
		return d.r.Read(p)
	}
	dl := time.Now().Add(d.idle)
	if dl.After(d.end) {
		dl = d.end
	}
	// Not every ResponseWriter has a connection (httptest): then the
	// timeouts cannot apply, and there is no slow peer either.
	_ = d.rc.SetReadDeadline(dl)
	n, err := d.r.Read(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		if dl.Equal(d.end) {
			err = fmt.Errorf("%w: the body did not arrive within body_read_timeout (%v)", errBodyTimeout, d.total)
		} else {
			err = fmt.Errorf("%w: no byte arrived for body_idle_timeout (%v)", errBodyTimeout, d.idle)
		}
	}
	if err == io.EOF {
		d.finish()
	}
	return n, err
}

// finish clears the read deadline once the body is read: net/http's
// background read (which notices a client going away) must not time out
// while the handler waits for the ledger.
func (d *deadlineBody) finish() {
	if !d.done {
		d.done = true
		_ = d.rc.SetReadDeadline(time.Time{})
	}
}
