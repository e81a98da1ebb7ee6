//go:build !race

package detect

import (
	"bytes"
	"runtime"
	"testing"

	"github.com/trailguard/trailguard/detect/internal/benign"
	"github.com/trailguard/trailguard/internal/testenv"
)

// lineFeeder turns the generator's NDJSON into engine records as it is
// written, so a million events need no file.
type lineFeeder struct {
	e       *Engine
	partial []byte
	n       uint64
	emit    func(*Alert)
	peak    uint64 // live heap, sampled
	groups  int
}

func (f *lineFeeder) Write(p []byte) (int, error) {
	data := p
	if len(f.partial) > 0 {
		data = append(f.partial, p...)
	}
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		f.n++
		f.e.Process(Record{Index: f.n, Data: data[:i]}, f.emit)
		if f.n%200_000 == 0 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			f.peak = max(f.peak, m.HeapAlloc)
			f.groups = max(f.groups, f.e.Stats().Groups)
		}
		data = data[i+1:]
	}
	f.partial = append(f.partial[:0], data...)
	return len(p), nil
}

// TestBenignTraffic replays a million events of ordinary traffic with the
// mistakes people make (typos, forgotten passwords, expired sessions, 404s,
// refused viewers, a misconfigured integration): no brute-force, stuffing
// or spraying rule may fire. It reports the engine's memory.
func TestBenignTraffic(t *testing.T) {
	testenv.Long(t)
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	e := builtinEngine(t)
	credential := map[string]bool{"trailguard_brute_force_source": true, "trailguard_brute_force_user": true,
		"trailguard_credential_stuffing": true, "trailguard_password_spraying": true, "trailguard_login_after_failures": true}
	var alerts []*Alert
	f := &lineFeeder{e: e, emit: func(a *Alert) { alerts = append(alerts, a) }}
	st, err := benign.Generate(f, benign.Options{Events: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	e.Flush(f.emit)
	es := e.Stats()
	t.Logf("%d events (%d logins, %d failed, %d expired sessions, %d 404s, %d authz failures), %d alerts; live heap (engine and generator) at most %.1f MiB, %d correlation groups at most",
		st.Events, st.Logins, st.FailedLogins, st.Expired, st.NotFound, st.AuthzFail, len(alerts),
		float64(f.peak-m0.HeapAlloc)/(1<<20), f.groups)
	if es.Events != 1_000_000 || st.FailedLogins < 1000 || es.Matches < 10_000 {
		t.Fatalf("the replay did not exercise the rules: %d events, %d failed logins, %d matches", es.Events, st.FailedLogins, es.Matches)
	}
	for _, a := range alerts {
		if credential[a.Rule.Name] {
			t.Errorf("false positive: %s", a.Message())
		} else {
			t.Logf("other alert: %s", a.Message())
		}
	}
}
