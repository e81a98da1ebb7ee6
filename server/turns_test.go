package server

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// waiters is how many requests wait for a turn.
func (t *prepTurns) waiters() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.waiting)
}

// freeTurns is how many turns no request holds.
func (t *prepTurns) freeTurns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.free
}

// TestPrepTurnsOldestFirst: a request that gave its turn up (to read more
// of its body) gets the next one before a request that asked first but
// started after it; with plain first-come-first-served the later request
// would go first and requests would finish together.
func TestPrepTurnsOldestFirst(t *testing.T) {
	ts := newPrepTurns(1)
	a, b, d := ts.newTurn(), ts.newTurn(), ts.newTurn()
	a.take() // a started first
	a.give() // and reads more of its body
	b.take()
	// got says who had a turn, in order; gave that the turn was given up
	// (which follows the send on got: the free turn is counted after both).
	got, gave := make(chan string, 2), make(chan struct{}, 2)
	go func() { d.take(); got <- "d"; d.give(); gave <- struct{}{} }()
	waitFor(t, 30*time.Second, "d to wait", func() bool { return ts.waiters() == 1 })
	go func() { a.take(); got <- "a"; a.give(); gave <- struct{}{} }()
	waitFor(t, 30*time.Second, "a to wait", func() bool { return ts.waiters() == 2 })
	b.give()
	if first, second := <-got, <-got; first != "a" || second != "d" {
		t.Fatalf("turns went to %s then %s, want a (the older request) then d", first, second)
	}
	<-gave
	<-gave
	if ts.freeTurns() != 1 || ts.waiters() != 0 {
		t.Fatalf("after all gave their turns up: %d free, %d waiting; want 1, 0", ts.freeTurns(), ts.waiters())
	}
}

// TestPrepTurnsBound: no more than n requests hold a turn at once.
func TestPrepTurnsBound(t *testing.T) {
	ts := newPrepTurns(2)
	us := []*turn{ts.newTurn(), ts.newTurn(), ts.newTurn()}
	us[0].take()
	us[1].take()
	done := make(chan struct{})
	go func() { us[2].take(); close(done) }()
	waitFor(t, 30*time.Second, "the third to wait", func() bool { return ts.waiters() == 1 })
	select {
	case <-done:
		t.Fatal("a third request got a turn while two held theirs")
	default:
	}
	us[1].give()
	<-done
	us[0].give()
	us[2].give()
	us[2].give() // giving up a turn not held does nothing
	if ts.freeTurns() != 2 {
		t.Fatalf("%d turns free after all were given up, want 2", ts.freeTurns())
	}
}

// turnCheckReader fails the test if it is read while u holds a turn.
type turnCheckReader struct {
	t     *testing.T
	r     io.Reader
	u     *turn
	reads int
}

func (c *turnCheckReader) Read(p []byte) (int, error) {
	c.reads++
	if c.u.held {
		c.t.Error("the body was read while holding a turn")
	}
	// Small reads: the line reader's buffer fills over several.
	if len(p) > 7000 {
		p = p[:7000]
	}
	return c.r.Read(p)
}

// failOnce fails its first read after the body with err, then reports
// io.EOF, as a body read again after its error may.
type failOnce struct {
	r      io.Reader
	err    error
	failed bool
}

func (f *failOnce) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF && !f.failed {
		f.failed = true
		return n, f.err
	}
	return n, err
}

// TestForLinesTurn: forLines with a turn gives fn the same lines, in the
// same calls, as without, holds the turn in fn and never while reading,
// and reports the body's error.
func TestForLinesTurn(t *testing.T) {
	const max = 100
	long := strings.Repeat("x", 250)
	line := func(i int) string { return strings.Repeat(string(rune('a'+i%26)), 10+i%80) }
	var many strings.Builder
	for i := range 300 {
		many.WriteString(line(i) + "\n")
	}
	errBody := errors.New("body broke")
	for _, tc := range []struct {
		name    string
		body    string
		fail    error
		stopAt  int // fn returns false at this line (0: never)
		wantErr error
	}{
		{name: "lines across many buffer fills", body: many.String()},
		{name: "no newline at the end", body: many.String() + "last"},
		{name: "blank and CRLF lines", body: "a\r\n\n  \nb\r\n" + many.String()},
		{name: "too long lines", body: "a\n" + long + "\nb\n" + long + "\n" + long},
		{name: "a line exactly the buffer", body: strings.Repeat("y", max) + "\n" + strings.Repeat("z", max+1) + "\nc\n"},
		{name: "stopped by fn", body: many.String(), stopAt: 123},
		{name: "body fails", body: many.String(), fail: errBody, wantErr: errBody},
		{name: "body fails mid-line", body: many.String() + "partial", fail: errBody, wantErr: errBody},
		{name: "empty", body: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type call struct {
				n       int
				line    string
				tooLong bool
			}
			run := func(u *turn) ([]call, error) {
				var r io.Reader = strings.NewReader(tc.body)
				if tc.fail != nil {
					r = &failOnce{r: r, err: tc.fail}
				}
				if u != nil {
					r = &turnCheckReader{t: t, r: r, u: u}
				}
				var calls []call
				err := forLines(r, max, u, func(n int, l []byte, tooLong bool) bool {
					if u != nil && !u.held {
						t.Errorf("line %d: fn called without the turn", n)
					}
					calls = append(calls, call{n, string(l), tooLong})
					return n != tc.stopAt
				})
				if u != nil && u.held {
					t.Error("forLines returned holding the turn")
				}
				return calls, err
			}
			want, wantErr := run(nil)
			ts := newPrepTurns(1)
			got, err := run(ts.newTurn())
			if !errors.Is(wantErr, tc.wantErr) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("errors: without a turn %v, with one %v; want %v", wantErr, err, tc.wantErr)
			}
			if len(got) != len(want) {
				t.Fatalf("with a turn %d calls, without %d", len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("call %d: with a turn %+v, without %+v", i, got[i], want[i])
				}
			}
			if ts.freeTurns() != 1 {
				t.Fatalf("the turn was not given back: %d free", ts.freeTurns())
			}
		})
	}
}
