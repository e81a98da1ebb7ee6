package demo

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/sink"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	// Only the parties' minimum rounds: the counts below follow from them,
	// not from random think times fitting in a duration.
	sum, err := Run(context.Background(), Options{Dir: dir, Duration: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Leaked) > 0 {
		t.Fatalf("secrets leaked into the trail: %q", sum.Leaked)
	}
	if sum.Secrets < 40 {
		t.Fatalf("only %d secrets sent: the leak check checked too little", sum.Secrets)
	}
	if sum.Stats.Dropped != 0 || sum.Stats.Lost != 0 || int(sum.Stats.Written) != sum.Events {
		t.Fatalf("stats %+v, %d events in the trail", sum.Stats, sum.Events)
	}
	mins := map[string]int{
		"authn_login_fail failure":      30, // the brute-force burst
		"authn_login_success success":   4,
		"authz_fail failure":            3,
		"user_role_change success":      1,
		"sensitive_create success":      3,
		"input_validation_fail failure": 1,
		"http_request success":          50,
		"http_request failure":          30,
	}
	for k, min := range mins {
		if sum.Counts[k] < min {
			t.Errorf("%s: %d events, want ≥ %d (counts %v)", k, sum.Counts[k], min, sum.Counts)
		}
	}
	// Every line on disk is one valid ECS document; failed logins of the
	// attacker carry its forwarded address.
	var attacker int
	for _, f := range sum.Files {
		rc, err := sink.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if err := event.Validate(sc.Bytes()); err != nil {
				t.Fatalf("%s: %v", sc.Bytes(), err)
			}
			ev, _ := event.Decode(sc.Bytes())
			if ev.Action == event.ActionLoginFail && ev.ClientIP == "203.0.113.66" && ev.SourceIP == "127.0.0.1" {
				attacker++
			}
		}
	}
	if attacker < 30 {
		t.Fatalf("%d failed logins attributed to the attacker, want ≥ 30", attacker)
	}
	// Everything reached the collector, which answers queries about it, and
	// its ledger verifies offline with the public key alone.
	c := sum.Collector
	if int(sum.Ship.Shipped) != sum.Events || sum.Ship.DeadLettered != 0 {
		t.Fatalf("shipped %d of %d events (dead-lettered %d)", sum.Ship.Shipped, sum.Events, sum.Ship.DeadLettered)
	}
	if c.LedgerSize < uint64(sum.Events) || c.Failures401 < 30 || len(c.TopAttackers) == 0 || !strings.HasPrefix(c.TopAttackers[0], "203.0.113.66 ") {
		t.Fatalf("collector view: %+v", c)
	}
	keys, err := ledger.LoadVerifiers(c.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ledger.Verify(c.DataDir, ledger.VerifyOptions{Verifiers: keys})
	if err != nil || !rep.OK() || rep.Records < c.LedgerSize {
		t.Fatalf("ledger does not verify: %v %+v", err, rep)
	}
	var out strings.Builder
	sum.Print(&out)
	for _, want := range []string{"trail:", "authn_login_fail", "none of the", "a failed login, as stored"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}
