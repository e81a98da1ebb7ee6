package forward

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/ledger"
)

const testOrigin = "test.trailguard.example/forward"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// openLedger opens a real ledger in a temporary directory.
func openLedger(t testing.TB, dir string, mod func(*ledger.Options)) *ledger.Ledger {
	t.Helper()
	skey, _, err := ledger.GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	opts := ledger.Options{Origin: testOrigin, Signer: signer, Logger: quiet}
	if mod != nil {
		mod(&opts)
	}
	l, err := ledger.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testEvent is event number i: a small ECS event with its own event.id.
func testEvent(i int, ts time.Time) []byte {
	return fmt.Appendf(nil, `{"@timestamp":"%s","event":{"kind":"event","category":["authentication"],"type":["start"],"action":"authn_login_fail","outcome":"failure","id":"ev-%08d","dataset":"trailguard.auth"},"source":{"ip":"203.0.113.%d"},"user":{"name":"user%d"},"service":{"name":"api-%d"}}`,
		ts.UTC().Format(time.RFC3339Nano), i, i%250, i%100, i%3)
}

// appendEvents appends events [from, from+n) in batches.
func appendEvents(t testing.TB, l *ledger.Ledger, from, n int, ts time.Time) {
	t.Helper()
	for i := from; i < from+n; {
		k := min(1000, from+n-i)
		recs := make([][]byte, k)
		for j := range recs {
			recs[j] = testEvent(i+j, ts)
		}
		if _, err := l.Append(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
		i += k
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statsOf(m *Manager, name string) Stats {
	for _, s := range m.Stats() {
		if s.Name == name {
			return s
		}
	}
	return Stats{}
}
