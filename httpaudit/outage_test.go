package httpaudit

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
)

// TestFailingSinkLogSummarised: a sink that fails for good (a full disk
// nobody frees) is retried every second; the error log must get its first
// failure, then one line per failLogEvery with the counts, and one when
// writes succeed again — not one line per retry (a collector on a full
// disk logged once a second for as long as the disk stayed full).
func TestFailingSinkLogSummarised(t *testing.T) {
	cases := []struct {
		name     string
		every    time.Duration
		failures uint64 // retries to wait for before the sink recovers
		check    func(t *testing.T, failed, stillFailing, resumed int, log string)
	}{
		{"one line per outage", time.Hour, 8, func(t *testing.T, failed, still, resumed int, log string) {
			if failed != 1 || still != 0 || resumed != 1 {
				t.Errorf("%d first-failure lines, %d summaries, %d recoveries; want 1, 0, 1:\n%s", failed, still, resumed, log)
			}
		}},
		{"summaries while it lasts", 150 * time.Millisecond, 10, func(t *testing.T, failed, still, resumed int, log string) {
			if failed != 1 || still < 1 || still > 8 || resumed != 1 {
				t.Errorf("%d first-failure lines, %d summaries, %d recoveries; want 1, 1-8, 1:\n%s", failed, still, resumed, log)
			}
			if !strings.Contains(log, "failures=") || !strings.Contains(log, "events_waiting=") {
				t.Errorf("summaries without counts:\n%s", log)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func(d time.Duration) { failLogEvery = d }(failLogEvery)
			failLogEvery = c.every
			var buf syncBuffer
			sk := &brokenSink{}
			sk.broken.Store(true)
			l, err := New(Config{Sink: sk, ErrorLog: slog.New(slog.NewTextHandler(&buf, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if err := l.Log(context.Background(), &event.Event{Action: event.ActionSensitiveRead}); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(30 * time.Second)
			for l.Stats().Failed < c.failures {
				if time.Now().After(deadline) {
					t.Fatalf("only %d failed writes in 30 s", l.Stats().Failed)
				}
				time.Sleep(10 * time.Millisecond)
			}
			sk.broken.Store(false)
			for l.Stats().Failing || sk.n.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the sink recovered but the logger did not: %+v", l.Stats())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			log := buf.String()
			c.check(t, strings.Count(log, "sink write failed, retrying"), strings.Count(log, "sink still failing"),
				strings.Count(log, "sink writes succeed again"), log)
		})
	}
}
