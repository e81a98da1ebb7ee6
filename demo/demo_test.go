package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
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
	// The collector's rules saw the brute force and banned the attacker,
	// within a second of the failed login that crossed the threshold.
	var bf *DetectedAlert
	for i, a := range sum.Detection.Alerts {
		if a.Rule == "trailguard_brute_force_source" {
			bf = &sum.Detection.Alerts[i]
		}
	}
	if bf == nil || !strings.Contains(bf.Blocked, "203.0.113.66") || bf.Stored < 0 || bf.Decided < 0 || bf.Decided > time.Second {
		t.Errorf("brute force alert and ban: %+v (all: %+v)", bf, sum.Detection.Alerts)
	}
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
	rep, err := ledger.Verify(filepath.Join(c.DataDir, "ledger"), ledger.VerifyOptions{Verifiers: keys})
	// The ledger count the summary prints is the final checkpoint's, and the
	// offline verification finds exactly that many records.
	if err != nil || !rep.OK() || rep.Records != c.LedgerSize {
		t.Fatalf("ledger does not verify, or its size is not the printed %d: %v %+v", c.LedgerSize, err, rep)
	}
	if size, ok := checkpointSize([]byte(c.Checkpoint)); !ok || size != c.LedgerSize {
		t.Fatalf("printed ledger size %d, checkpoint says %d", c.LedgerSize, size)
	}

	// The attacker's story, from the trail: the script's figures exactly.
	st := sum.Story
	if st.Address != "203.0.113.66" || st.UserAgent != "python-requests/2.32.3" || st.TargetUser != "alice" ||
		st.BadPasswords != 35 || st.LoggedInAs != "alice" || st.UnknownUsers != 30 {
		t.Fatalf("story: %+v", st)
	}
	probes := strings.Join(st.Probes, "\n")
	for _, want := range []string{"GET /api/orders/1' OR '1'='1 → 404", "GET /api/orders?id=1 UNION SELECT password FROM users-- → 200", "GET /etc/passwd → 404"} {
		if !strings.Contains(probes, want) {
			t.Errorf("probes lack %q:\n%s", want, probes)
		}
	}
	var steps []string
	for _, s := range st.Steps {
		steps = append(steps, s.Text)
	}
	wantSteps := []string{"35 failed logins as alice (bad password)", "logged in as alice, after 35 failed attempts",
		"30 failed logins as 30 user names that do not exist", "GET /api/orders/1' OR '1'='1", "UNION SELECT", "GET /api/../../etc/passwd → 307, then GET /etc/passwd → 404"}
	if len(steps) != len(wantSteps) {
		t.Fatalf("story steps:\n%s", strings.Join(steps, "\n"))
	}
	for i, w := range wantSteps {
		if !strings.Contains(steps[i], w) {
			t.Errorf("step %d %q lacks %q", i, steps[i], w)
		}
	}

	var out strings.Builder
	sum.Print(&out)
	for _, want := range []string{"what 203.0.113.66 did", "trail:", "none of the", "a failed login, as stored",
		"what it is", "log                    (none)", "log lines have no outcome", "a request answered 4xx/5xx: 401 ×65",
		fmt.Sprintf("collector: %d records in its ledger", c.LedgerSize), fmt.Sprintf("tree size %d", c.LedgerSize)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

// TestDisplay: what the attacker typed is shown readably, and cannot drive
// the terminal.
func TestDisplay(t *testing.T) {
	for in, want := range map[string]string{
		"/api/orders/1%27%20OR%20%271%27=%271": "/api/orders/1' OR '1'='1",
		"/a%1b[31mred":                         `/a\x1b[31mred`,
		"/a%0d%0aforged: line":                 `/a\r\nforged: line`,
		"/caf%C3%A9":                           "/café",
		"/bad%ff":                              `/bad\xff`,
		"/rtl\u202eevil":                       `/rtl\u202eevil`,
		"/%zz":                                 "/%zz",
		strings.Repeat("x", 300):               strings.Repeat("x", 100) + "…",
	} {
		if got := display(in); got != want {
			t.Errorf("display(%q) = %q, want %q", in, got, want)
		}
	}
}
