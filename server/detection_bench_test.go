package server

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/trailguard/trailguard/decision"
	"github.com/trailguard/trailguard/event"
)

// BenchmarkAttackToDecision measures, in process, the time from the
// failed login that crosses the brute-force threshold being appended to
// the ledger (Append returned: durable) to the block decision being served
// on the bouncer stream: detection, the alert's durable append, the
// decision's durable append. It reports the median and the 99th
// percentile.
func BenchmarkAttackToDecision(b *testing.B) {
	cfg := Defaults()
	cfg.DataDir = b.TempDir()
	cfg.Origin = "bench/trailguard"
	srv, err := New(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	login := func(ip string, i int) []byte {
		e := &event.Event{Timestamp: time.Now().UTC(), Kind: event.KindEvent, Category: []string{event.CategoryAuthentication},
			Action: event.ActionLoginFail, Outcome: event.OutcomeFailure, UserName: "alice", ClientIP: ip, SourceIP: ip,
			ID: fmt.Sprintf("%s-%d", ip, i)}
		return e.AppendJSON(nil)
	}
	st := srv.Decisions()
	st.Stream("bench", true, nil)
	var lat []time.Duration
	n := 0
	for b.Loop() {
		n++
		ip := fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
		var first [][]byte
		for i := range 9 {
			first = append(first, login(ip, i))
		}
		if _, err := srv.Ledger().Append(ctx, first...); err != nil {
			b.Fatal(err)
		}
		// Let detection reach the ninth before the timed tenth.
		for srv.DetectionNext() < srv.Ledger().Size() {
			time.Sleep(time.Millisecond)
		}
		if _, err := srv.Ledger().Append(ctx, login(ip, 9)); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		deadline := start.Add(30 * time.Second)
		for {
			changed := st.Changed()
			added, _ := st.Stream("bench", false, nil)
			if slices.ContainsFunc(added, func(d decision.Decision) bool { return d.Value == ip }) {
				break
			}
			select {
			case <-changed:
			case <-time.After(time.Until(deadline)):
				b.Fatalf("no decision for %s after 10s", ip)
			}
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}
