package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/report"
	"github.com/trailguard/trailguard/sink"
)

// TestRun runs the whole demo — collector, gateway and shop in process,
// users and three attackers through the gateway — and checks what it tells
// against the trail. Nothing depends on timing luck: the users play a
// fixed minimum of rounds (Duration 1ms adds none), and each attacker goes
// on until the gateway blocks it; the assertions are about what happened,
// in order, not about how fast.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	var live strings.Builder
	// --keep-running: the UI address and token printed let one sign in.
	var signedIn int
	keep := func(_ *Summary, ui, token string) {
		req, _ := http.NewRequest("POST", strings.TrimSuffix(ui, "/ui/")+"/ui/api/session", strings.NewReader(`{"token":"`+token+`"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", strings.TrimSuffix(ui, "/ui/"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("sign in: %v", err)
			return
		}
		resp.Body.Close()
		signedIn = resp.StatusCode
	}
	sum, err := Run(context.Background(), Options{Dir: dir, Duration: time.Millisecond, Log: &live, KeepRunning: keep})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Leaked) > 0 {
		t.Fatalf("secrets leaked into the trail or the ledger: %q", sum.Leaked)
	}
	if signedIn != http.StatusOK && signedIn != http.StatusCreated && signedIn != http.StatusNoContent {
		t.Errorf("signing in to the web UI with the token the demo prints: status %d", signedIn)
	}
	// What every run sends whatever the timing: four users' passwords and
	// session tokens, a card number, and at least ten guesses from each of
	// the brute force and the stuffing run (their blocks come at the tenth
	// failed login at the earliest); more when their blocks come later.
	if sum.Secrets < 28 {
		t.Fatalf("only %d secrets sent: the leak check checked too little", sum.Secrets)
	}
	if sum.Stats.Dropped != 0 || sum.Stats.Lost != 0 || int(sum.Stats.Written) != sum.Events {
		t.Fatalf("stats %+v, %d events in the trail", sum.Stats, sum.Events)
	}
	mins := map[string]int{
		"authn_login_fail failure":      20, // brute force and stuffing, each at least to the threshold
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
	// Every line of the shop's trail is one valid ECS document.
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
		}
	}
	if int(sum.Ship.Shipped) != sum.Events || sum.Ship.DeadLettered != 0 {
		t.Fatalf("shipped %d of %d events (dead-lettered %d)", sum.Ship.Shipped, sum.Events, sum.Ship.DeadLettered)
	}

	// Each attacker was detected, blocked and then refused by the gateway,
	// in that order, as the trail tells it.
	stories := map[string]Story{}
	for _, st := range sum.Stories {
		stories[st.Address] = st
	}
	bf, cs, pr := stories["203.0.113.66"], stories["198.18.7.23"], stories["192.0.2.77"]
	if len(sum.Stories) != 3 {
		t.Fatalf("stories of %d blocked addresses, want the 3 attackers: %+v\nothers: %+v\nlive:\n%s", len(sum.Stories), sum.Stories, sum.Others, live.String())
	}
	if bf.TargetUser != "alice" || bf.BadPasswords < 10 || bf.UserAgent != "python-requests/2.32.3" || !slices.Contains(bf.Alerts, "Brute force from one address") {
		t.Errorf("brute force story: %+v", bf)
	}
	if cs.UnknownUsers < 10 || !(slices.Contains(cs.Alerts, "Credential stuffing from one address") || slices.Contains(cs.Alerts, "Brute force from one address")) {
		t.Errorf("credential stuffing story: %+v", cs)
	}
	if !slices.Contains(pr.Alerts, "Attack tool user agent") || len(pr.Probes) == 0 || !strings.Contains(pr.Probes[0], "GET /api/orders/1' OR '1'='1 → ") {
		t.Errorf("probe story: %+v", pr)
	}
	for _, st := range []Story{bf, cs, pr} {
		// The block ends the attack at the gateway: requests refused, or
		// (those in flight when it came) their answers withheld.
		if !st.Blocked || st.Refused+st.Withheld < 1 {
			t.Errorf("%s: blocked %v, %d requests refused, %d answers withheld", st.Address, st.Blocked, st.Refused, st.Withheld)
		}
		var alertAt, blockAt, refusedAt time.Duration = -1, -1, -1
		for _, s := range st.Steps {
			switch {
			case strings.HasPrefix(s.Text, "Alert: ") && alertAt < 0:
				alertAt = s.At
			case strings.HasPrefix(s.Text, "Blocked for ") && blockAt < 0:
				blockAt = s.At
			case (strings.Contains(s.Text, "refused by the gateway") || strings.Contains(s.Text, "the gateway withheld")) && refusedAt < 0:
				refusedAt = s.At
			}
		}
		if alertAt < 0 || blockAt < alertAt || refusedAt < blockAt {
			t.Errorf("%s: alert at %v, block at %v, first refusal at %v", st.Address, alertAt, blockAt, refusedAt)
		}
	}
	// The live view showed an alert, a block and a refusal for each, with
	// their delays from the record that completed the attack.
	seen := map[string]int{}
	for _, h := range sum.Happenings {
		if stories[h.Address].Address != "" {
			seen[h.Address+" "+h.Kind]++
		}
		if h.Delay < 0 {
			t.Errorf("negative delay: %+v", h)
		}
	}
	for _, a := range []string{"203.0.113.66", "198.18.7.23", "192.0.2.77"} {
		for _, k := range []string{"alert", "block", "refused"} {
			if seen[a+" "+k] == 0 {
				t.Errorf("live view showed no %s for %s:\n%s", k, a, live.String())
			}
		}
	}
	var bfAlert *DetectedAlert
	for i, a := range sum.Detection.Alerts {
		if a.Rule == "trailguard_brute_force_source" && strings.Contains(a.Message, "203.0.113.66") {
			bfAlert = &sum.Detection.Alerts[i]
		}
	}
	if bfAlert == nil || !strings.Contains(bfAlert.Blocked, "203.0.113.66") || bfAlert.Stored < 0 || bfAlert.Decided < 0 {
		t.Errorf("brute force alert and ban: %+v (all: %+v)", bfAlert, sum.Detection.Alerts)
	}

	// The ledger verifies offline with the public key and the witness
	// copies; its size is the final checkpoint's.
	c := sum.Collector
	if v := sum.Verified; v == nil || !v.OK() || v.Records != c.LedgerSize {
		t.Fatalf("ledger verification: %v (ledger size %d)", v, c.LedgerSize)
	}
	if size, ok := checkpointSize([]byte(c.Checkpoint)); !ok || size != c.LedgerSize {
		t.Fatalf("printed ledger size %d, checkpoint says %d", c.LedgerSize, size)
	}
	// Who wrote the ledger's records, as the demo prints them: each record
	// counted once, and the shop's are exactly the events its own trail
	// holds (every one was shipped). A substring match on the service name
	// also took the collector's records of the shop's ingest requests
	// (their user.name is the shop's token) for the shop's events.
	total := 0
	for _, n := range sum.LedgerBy {
		total += n
	}
	if uint64(total) != uint64(c.LedgerSize) || sum.LedgerBy["demo-shop"] != sum.Events || sum.LedgerBy[""] != 0 ||
		sum.LedgerBy["detection"] < 6 || sum.LedgerBy["trailguard-collector"] < 2 || sum.LedgerBy["demo-gateway"] == 0 {
		t.Errorf("ledger records by writer %v: want %d in all, the shop's %d", sum.LedgerBy, c.LedgerSize, sum.Events)
	}
	if c.Failures401 < 20 || len(c.TopAttackers) == 0 {
		t.Fatalf("collector view: %+v", c)
	}

	// The PCI DSS report: signed, recomputed from the ledger without a
	// difference, and it saw the attacks.
	keys, err := ledger.LoadVerifiers(c.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(sum.Report.JSON)
	if err != nil {
		t.Fatal(err)
	}
	rep, hash, err := report.Open(file, keys)
	if err != nil || hash != sum.Report.Sum {
		t.Fatalf("report: %v", err)
	}
	l, err := ledger.OpenReadOnly(filepath.Join(c.DataDir, "ledger"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rc, err := report.Recompute(context.Background(), l, rep, keys)
	if err != nil || !rc.CheckpointOK || len(rc.Differences) != 0 {
		t.Fatalf("report recomputed: %v %+v", err, rc)
	}
	status := map[string]string{}
	for _, it := range rep.Items {
		status[it.ID] = it.Status
	}
	if status["10.2.1.4"] != "met" || status["10.3"] != "met" || status["10.4.1 / 10.4.1.1"] != "met" || status["10.2.2"] != "met" ||
		rep.Figures.Alerts.Raised < 3 || rep.Figures.Blocks.Created < 3 || uint64(sum.Counts["authn_login_fail failure"]) > rep.Figures.AuthFailures.Total {
		t.Errorf("report: %v, alerts %d, blocks %d, failed logins %d", status, rep.Figures.Alerts.Raised, rep.Figures.Blocks.Created, rep.Figures.AuthFailures.Total)
	}
	// The analyst's queries count events, not the alerts that copy their
	// fields: they agree with the shop's own trail and with the report
	// (an alert's http.response.status_code made "40 requests with 401"
	// of the trail's 39, and its client.ip made 29 failed logins of 27).
	if c.Failures401 != int64(sum.FailedStatus[401]) {
		t.Errorf("the collector's query counts %d 401s of the shop, its trail %d", c.Failures401, sum.FailedStatus[401])
	}
	for _, src := range rep.Figures.AuthFailures.TopSources {
		if want := fmt.Sprintf("%s (%d)", src.Value, src.Count); !slices.Contains(c.TopAttackers, want) {
			t.Errorf("top sources of failed logins %v, the report says %s", c.TopAttackers, want)
		}
	}
	if pdf, err := os.ReadFile(sum.Report.PDF); err != nil || !bytes.HasPrefix(pdf, []byte("%PDF-")) {
		t.Errorf("report PDF: %v", err)
	}

	var out strings.Builder
	sum.Print(&out)
	sum.PrintLedger(&out)
	for _, want := range []string{"what 203.0.113.66 did", "what 198.18.7.23 did", "what 192.0.2.77 did", "refused by the gateway",
		"none of the", "a failed login, as stored", "what it is", "log                    (none)", "log lines have no outcome",
		fmt.Sprintf("collector: %d records in its ledger", c.LedgerSize), fmt.Sprintf("tree size %d", c.LedgerSize),
		"verified offline with the public key alone", "PCI DSS report over the run", sum.Report.Sum, "verify-report"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	for _, want := range []string{"ALERT", "BLOCK 203.0.113.66", "REFUSED at the gateway"} {
		if !strings.Contains(live.String(), want) {
			t.Errorf("live output lacks %q:\n%s", want, live.String())
		}
	}
}

// TestContainsSecret: a secret is found as a value, not by chance inside
// a longer run of digits or letters.
func TestContainsSecret(t *testing.T) {
	for _, c := range []struct {
		data, sec string
		want      bool
	}{
		{`{"password":"111111"}`, "111111", true},
		{`"@timestamp":"2026-11-30T03:16:54.683111111Z"`, "111111", false},
		{`"id":"01a22a74-111111x"`, "111111", false},
		{`card 4111 1111 1111 1111 end`, "4111 1111 1111 1111", true},
		{`Bearer tg_abc123def`, "tg_abc123def", true},
		{`x` + "hunter2-but-longer" + `y`, "hunter2-but-longer", false},
		{`"hunter2-but-longer"`, "hunter2-but-longer", true},
		{`12345`, "12345", false}, // too short to tell
	} {
		if got := containsSecret([]byte(c.data), c.sec); got != c.want {
			t.Errorf("containsSecret(%q, %q) = %v", c.data, c.sec, got)
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

// TestStoryWithheld: a request in flight when the block came is answered
// 403 by the gateway instead of the shop's answer (response_withheld, not
// request_blocked); an attacker whose every later request was such is
// still told as stopped at the gateway, after its block.
func TestStoryWithheld(t *testing.T) {
	start := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	const addr = "198.18.7.23"
	var recs [][]byte
	login := func(ms, i int, svc string) {
		rid := fmt.Sprintf("req-%d", i)
		recs = append(recs,
			enc(event.Event{Timestamp: at(ms), Kind: "event", Action: event.ActionHTTPRequest, Outcome: "failure", RequestID: rid, ID: rid + "-a-" + svc,
				Method: "POST", Path: "/api/login", StatusCode: 401, ClientIP: addr, ServiceName: svc}))
		if svc == "demo-shop" {
			recs = append(recs, enc(event.Event{Timestamp: at(ms), Kind: "event", Action: event.ActionLoginFail, Outcome: "failure", Reason: "unknown user",
				RequestID: rid, ID: rid + "-l", UserName: fmt.Sprintf("user%03d@example.com", i), ClientIP: addr, ServiceName: svc}))
		}
	}
	for i := range 12 {
		login(10*i, i, "demo-gateway")
		login(10*i, i, "demo-shop")
	}
	recs = append(recs,
		fmt.Appendf(nil, `{"@timestamp":%q,"event":{"kind":"alert","dataset":"trailguard.alert","action":"x"},"rule":{"name":"Credential stuffing from one address"},"client":{"ip":%q}}`, ts(at(125)), addr),
		fmt.Appendf(nil, `{"@timestamp":%q,"event":{"kind":"event","action":"block_decision_created"},"rule":{"name":"trailguard_credential_stuffing"},"client":{"ip":%q},"trailguard":{"decision":{"duration":"4h"}}}`, ts(at(130)), addr))
	// Three requests in flight at the block: the shop's verdicts recorded,
	// the answers withheld.
	for i := 12; i < 15; i++ {
		login(128, i, "demo-shop")
		rid := fmt.Sprintf("req-%d", i)
		recs = append(recs, enc(event.Event{Timestamp: at(140), Kind: "event", Action: "response_withheld", Outcome: "failure", RequestID: rid, ID: rid + "-w",
			Reason: "blocked by decision trailguard_credential_stuffing; blocked while its request was in flight", ClientIP: addr, ServiceName: "demo-gateway"}))
	}
	blocked, _ := readTrail(recs).stories(start)
	if len(blocked) != 1 {
		t.Fatalf("stories: %+v", blocked)
	}
	st := blocked[0]
	if !st.Blocked || st.Refused != 0 || st.Withheld != 3 || st.UnknownUsers < 12 {
		t.Fatalf("story: %+v", st)
	}
	last := st.Steps[len(st.Steps)-1]
	if !strings.Contains(last.Text, "3 requests in flight when the block came: the gateway withheld the shop's answer") {
		t.Errorf("last step %q; steps %+v", last.Text, st.Steps)
	}
	// The live view shows the first withheld answer as the refusal.
	var out strings.Builder
	w := newWatcher(start, &out)
	for i, r := range recs {
		w.record(nil, ledger.Entry{Index: uint64(i), Time: at(200), Data: r})
	}
	var refused []Happening
	for _, h := range w.seen {
		if h.Kind == "refused" {
			refused = append(refused, h)
		}
	}
	if len(refused) != 1 || refused[0].Address != addr || !strings.Contains(refused[0].Text, "withheld") {
		t.Errorf("live view: %+v\n%s", w.seen, out.String())
	}
}

func enc(e event.Event) []byte { return e.AppendJSON(nil) }

func ts(t time.Time) string { return t.UTC().Format(event.TimeFormat) }

// TestRunUsedDir: --data naming an earlier run's directory is refused
// before anything starts (its blocks would still be in force).
func TestRunUsedDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "collector"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), Options{Dir: dir, Duration: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Fatalf("Run over a used directory: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("Run wrote into the used directory: %v", ents)
	}
}
