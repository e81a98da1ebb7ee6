package stalltest

import (
	"net"
	"testing"
	"time"
)

// TestReadCut: ReadCut returns what came before the peer closed, with a
// nil error, and a connection never cut times out with a deadline error
// after its wait (a stall figure is never negative).
func TestReadCut(t *testing.T) {
	w := Start(t)
	for _, tc := range []struct {
		name  string
		close bool
	}{{"cut", true}, {"never cut", false}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			go func() {
				b.Write([]byte("partial"))
				if tc.close {
					b.Close()
				}
			}()
			got, took, stalled, err := ReadCut(a, a, w, 200*time.Millisecond)
			if got != "partial" || stalled < 0 {
				t.Errorf("got %q, stalled %v", got, stalled)
			}
			if tc.close && err != nil {
				t.Errorf("cut connection: %v", err)
			}
			if !tc.close && (err == nil || took < 200*time.Millisecond) {
				t.Errorf("connection never cut: err %v after %v, want a deadline error after 200ms", err, took)
			}
		})
	}
}

// TestAwaitAndRun: Await returns the value sent and ok, or !ok after its
// wait when none comes; Run reports whether f returned in time.
func TestAwaitAndRun(t *testing.T) {
	w := Start(t)
	ch := make(chan int, 1)
	ch <- 7
	if v, _, stalled, ok := Await(ch, w, time.Second); !ok || v != 7 || stalled < 0 {
		t.Errorf("Await with a value ready: %d %v (stalled %v)", v, ok, stalled)
	}
	if _, took, _, ok := Await(ch, w, 100*time.Millisecond); ok || took < 100*time.Millisecond {
		t.Errorf("Await with no value: ok %v after %v", ok, took)
	}
	if took, _, ok := Run(func() { time.Sleep(50 * time.Millisecond) }, w, 5*time.Second); !ok || took < 50*time.Millisecond {
		t.Errorf("Run of a 50ms call: ok %v after %v", ok, took)
	}
	block := make(chan struct{})
	defer close(block)
	if _, _, ok := Run(func() { <-block }, w, 100*time.Millisecond); ok {
		t.Error("Run of a call that never returns: ok")
	}
}
