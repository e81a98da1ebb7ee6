package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

func computeDataset(t *testing.T, d *dataset, std string) *Report {
	t.Helper()
	rep, err := Compute(context.Background(), d.w.l, Options{Standard: std, From: d.from, To: d.to, Verifiers: []note.Verifier{d.w.verif},
		Now: d.to.Add(2 * time.Hour), Workers: 3,
		State: State{Retention: RetentionInfo{Profile: "pci-dss", RetainDays: 365, HotDays: 90},
			Detection: Detection{Enabled: true, Rules: []Rule{{ID: "bf", Title: "Brute force", Level: "medium", Block: true}}},
			Tokens:    []Token{{Name: "auditor", Role: "read", Created: t0}}}})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestComputeExact computes reports over a generated ledger whose content
// is known event by event (buildDataset) and checks every figure.
func TestComputeExact(t *testing.T) {
	t.Parallel()
	d := buildDataset(t, t.TempDir())
	defer d.w.l.Close()
	rep := computeDataset(t, d, PCIDSS)
	f := rep.Figures

	if rep.Range.First != 10 || rep.Range.End != 234 || rep.Checkpoint.TreeSize != 234 || !rep.Checkpoint.Time.Equal(at(60, 0)) {
		t.Fatalf("range %+v, checkpoint %+v", rep.Range, rep.Checkpoint)
	}
	if !rep.State.Integrity.CheckpointVerified || !rep.State.Integrity.ConsistentWithNewest || !rep.State.Integrity.StartConsistent || rep.State.Integrity.NewestSize != 239 {
		t.Fatalf("integrity %+v", rep.State.Integrity)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("records", f.Records, uint64(224))
	check("events", f.Events, uint64(222))
	check("alert documents", f.AlertDocs, uint64(2))
	check("undecodable", f.Undecodable, uint64(0))
	var cov []uint64
	for _, c := range f.Coverage {
		cov = append(cov, c.Count)
	}
	check("coverage 10.2.1.1-7", cov, []uint64{5, 9, 3, 58, 2, 4, 0})
	check("10.2.1.4 by action", f.Coverage[3].Actions, []Count{{"authn_login_fail", 55}, {"authz_fail", 3}})
	check("http 401", f.HTTP401, uint64(40))
	c := f.Completeness
	check("auditable", c.Auditable, uint64(78))
	var app, pres []uint64
	for _, fc := range c.Fields {
		app, pres = append(app, fc.Applicable), append(pres, fc.Present)
	}
	check("applicable", app, []uint64{74, 78, 78, 78, 78, 78})
	check("present", pres, []uint64{73, 78, 78, 77, 77, 78})
	check("user missing by service", c.Fields[0].MissingBy, []Count{{"legacy", 1}})
	if len(c.Examples) != 2 || c.Examples[0].Action != "user_role_change" || !reflect.DeepEqual(c.Examples[0].Missing, []string{"success or failure"}) ||
		c.Examples[1].Service != "legacy" || !reflect.DeepEqual(c.Examples[1].Missing, []string{"user identification", "origination"}) {
		t.Errorf("examples %+v", c.Examples)
	}
	af := f.AuthFailures
	check("failed logins", af.Total, uint64(55))
	check("successes", af.Successes, uint64(5))
	check("chart interval", af.Interval, Duration(time.Minute))
	check("chart buckets", len(af.Buckets), 60)
	check("chart minute 1 and 2", af.Buckets[1:3], []uint64{40, 15})
	check("top sources", af.TopSources, []Count{{"203.0.113.66", 40}, {"198.18.0.5", 15}})
	check("distinct users", af.Users, uint64(16))
	check("reads", f.Reads, Reads{Total: 3, ByReader: []Count{{"auditor", 3}}, Refused: 0})
	al := f.Alerts
	check("alerts raised/acked/resolved/open/overdue", []uint64{al.Raised, al.Acknowledged, al.Resolved, al.Open, al.Overdue}, []uint64{2, 1, 0, 1, 0})
	check("ack median", al.AckMedian, Duration(10*time.Minute))
	check("detection delay", []Duration{al.DelayMedian, al.DelayMax}, []Duration{Duration(50 * time.Millisecond), Duration(50 * time.Millisecond)})
	check("alerts by level", al.ByLevel, []Count{{"high", 1}, {"medium", 1}})
	check("blocks", []uint64{f.Blocks.Created, f.Blocks.Deleted}, []uint64{1, 0})
	check("lifecycle", []uint64{f.Lifecycle.Starts, f.Lifecycle.Stops, f.Lifecycle.Unclean}, []uint64{3, 1, 1})
	check("unrecorded", []uint64{f.Failures.Unrecorded, f.Failures.UnrecordedEvents}, []uint64{7, 1})
	// The rows name the service and host of their record (starts and
	// stops pair by them).
	for _, r := range f.Lifecycle.List {
		check("lifecycle row's service and host", []string{r.Service, r.Host}, []string{collectorService, "h1"})
	}
	for _, r := range f.Failures.List {
		check("failure row's service", r.Service, collectorService)
	}
	tf := f.Time
	check("time", []uint64{tf.WithTimestamp, tf.Ahead, tf.Delayed, tf.Outside}, []uint64{222, 1, 1, 1})
	check("max ahead", tf.MaxAhead, Duration(time.Minute))
	check("max delay", tf.MaxDelay, Duration(10*time.Minute))
	cp := f.Checkpoints
	check("checkpoints", []uint64{cp.Count, cp.Gaps, cp.PlannedStops}, []uint64{97, 1, 1}) // 1 opening the period, 7, 1 at the restart, 88
	check("largest gap", cp.LargestGap, Duration(6*time.Minute+40*time.Second))

	status := map[string]string{}
	for _, it := range rep.Items {
		status[it.ID] = it.Status
	}
	check("statuses", status, map[string]string{"10.2.1.1": "met", "10.2.1.2": "met", "10.2.1.3": "met", "10.2.1.4": "met",
		"10.2.1.5": "met", "10.2.1.6": "met", "10.2.1.7": "gap", "10.2.2": "gap", "10.3": "gap", "10.4.1 / 10.4.1.1": "met",
		"10.5.1": "met", "10.6": "gap", "10.7.2": "gap"})
	check("summary", []int{rep.Summary.Met, rep.Summary.Gaps}, []int{8, 5})

	// The same figures whatever the number of workers.
	one, err := Compute(context.Background(), d.w.l, Options{Standard: PCIDSS, From: d.from, To: d.to, Verifiers: []note.Verifier{d.w.verif},
		Now: rep.Generated, Workers: 1, State: rep.State, keepState: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(one.Figures, rep.Figures) {
		t.Error("figures differ with one worker")
	}
}

// TestStandards: SOC 2 and HIPAA items from the same data.
func TestStandards(t *testing.T) {
	t.Parallel()
	d := buildDataset(t, t.TempDir())
	defer d.w.l.Close()
	for std, want := range map[string]map[string]string{
		SOC2:  {"CC6.1": "met", "CC7.2": "met", "CC7.3": "met", "CC7.2 retention": "met"},
		HIPAA: {"164.312(b)": "met", "164.308(a)(1)(ii)(D)": "met", "164.316(b)(2)": "gap"},
	} {
		rep := computeDataset(t, d, std)
		got := map[string]string{}
		for _, it := range rep.Items {
			got[it.ID] = it.Status
			if it.Evidence == "" || it.Requirement == "" {
				t.Errorf("%s %s: no evidence or requirement text", std, it.ID)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", std, got, want)
		}
	}
}

// TestRetentionStated: each standard judges the stated retention against
// its own period — PCI DSS one year (three months at hand), SOC 2 one
// year by common practice, HIPAA six years — and says so in the report.
func TestRetentionStated(t *testing.T) {
	t.Parallel()
	d := buildDataset(t, t.TempDir())
	defer d.w.l.Close()
	rep := computeDataset(t, d, PCIDSS)
	item := map[string]string{PCIDSS: "10.5.1", SOC2: "CC7.2 retention", HIPAA: "164.316(b)(2)"}
	for _, tc := range []struct {
		ret              RetentionInfo
		pci, soc2, hipaa string
	}{
		{RetentionInfo{}, "met", "met", "met"}, // kept for ever
		{RetentionInfo{Profile: "pci-dss", RetainDays: 365, HotDays: 90}, "met", "met", "gap"},
		{RetentionInfo{Profile: "soc2", RetainDays: 365}, "met", "met", "gap"},
		{RetentionInfo{Profile: "hipaa", RetainDays: 2190}, "met", "met", "met"},
		{RetentionInfo{Profile: "custom:364", RetainDays: 364}, "gap", "gap", "gap"},
		// 365 days are a day short of twelve months across a 29 February.
		{RetentionInfo{Profile: "custom:365", RetainDays: 365}, "gap", "gap", "gap"},
		{RetentionInfo{Profile: "custom:366", RetainDays: 366}, "met", "met", "gap"},
		{RetentionInfo{Profile: "custom:2191", RetainDays: 2191}, "met", "met", "gap"},
		{RetentionInfo{Profile: "custom:2192", RetainDays: 2192}, "met", "met", "met"},
		{RetentionInfo{Profile: "custom:90", RetainDays: 90, LegalHold: true}, "met", "met", "met"}, // a hold deletes nothing
	} {
		for std, want := range map[string]string{PCIDSS: tc.pci, SOC2: tc.soc2, HIPAA: tc.hipaa} {
			r := *rep
			r.Standard, r.State.Retention = std, tc.ret
			build(&r)
			found := false
			for _, it := range r.Items {
				if it.ID != item[std] {
					continue
				}
				found = true
				if it.Status != want {
					t.Errorf("%s, retention %+v: %s is %s, want %s (%s)", std, tc.ret, it.ID, it.Status, want, it.Evidence)
				}
				if tc.ret.Profile != "" && !strings.Contains(it.Facts[0].Value, strconv.Itoa(tc.ret.RetainDays)+" days") {
					t.Errorf("%s: retention stated as %q", std, it.Facts[0].Value)
				}
				if want := map[string]string{"pci-dss": "at least one calendar year", "soc2": "at least one calendar year", "hipaa": "at least 6 calendar years"}[tc.ret.Profile]; !strings.Contains(it.Facts[0].Value, want) {
					t.Errorf("%s: retention %q does not say it keeps whole calendar years (%q)", std, it.Facts[0].Value, want)
				}
				// Plain words: no hold is not a failure ("NO" is kept for
				// failed checks), and the oldest record reads as such.
				if hold := it.Facts[1].Value; hold != map[bool]string{true: "yes: retention deletes nothing", false: "no"}[tc.ret.LegalHold] {
					t.Errorf("%s: legal hold stated as %q", std, hold)
				}
				if !regexp.MustCompile(`^record \d+, @timestamp \d{4}-`).MatchString(it.Facts[2].Value) {
					t.Errorf("%s: oldest record stated as %q", std, it.Facts[2].Value)
				}
			}
			if !found {
				t.Errorf("%s: no retention item %s", std, item[std])
			}
		}
	}
}

// TestSignedRoundTrip: the signed JSON verifies, recomputes without a
// difference, and each kind of tampering is caught and named.
func TestSignedRoundTrip(t *testing.T) {
	t.Parallel()
	d := buildDataset(t, t.TempDir())
	defer d.w.l.Close()
	rep := computeDataset(t, d, PCIDSS)
	file, sum, err := Sign(rep, d.w.signer)
	if err != nil {
		t.Fatal(err)
	}
	keys := []note.Verifier{d.w.verif}
	got, sum2, err := Open(file, keys)
	if err != nil || sum2 != sum {
		t.Fatalf("open: %v (%s vs %s)", err, sum2, sum)
	}
	rc, err := Recompute(context.Background(), d.w.l, got, keys)
	if err != nil || !rc.CheckpointOK || len(rc.Differences) != 0 {
		t.Fatalf("recompute: %v %+v", err, rc)
	}

	// An edited figure without a new signature: the hash no longer matches.
	edited := bytes.Replace(file, []byte(`"id":"10.2.1.4","count":58`), []byte(`"id":"10.2.1.4","count":57`), 1)
	if bytes.Equal(edited, file) {
		t.Fatal("figure not found in the file")
	}
	if _, _, err := Open(edited, keys); !errors.Is(err, ErrTampered) {
		t.Fatalf("edited file: %v", err)
	}
	// Another key: the signature does not verify.
	_, vkey, _ := ledger.GenerateKey("test.trailguard/report")
	other, _ := note.NewVerifier(vkey)
	if _, _, err := Open(file, []note.Verifier{other}); !errors.Is(err, ErrSignature) {
		t.Fatalf("other key: %v", err)
	}
	// The key holder re-signs a report with a changed figure: the
	// signature verifies, the recomputation names the figure.
	var fake Report
	if err := json.Unmarshal(mustReport(t, file), &fake); err != nil {
		t.Fatal(err)
	}
	fake.Figures.Coverage[3].Count = 57
	fake.Figures.AuthFailures.TopSources[0].Count = 39
	file2, _, err := Sign(&fake, d.w.signer)
	if err != nil {
		t.Fatal(err)
	}
	got2, _, err := Open(file2, keys)
	if err != nil {
		t.Fatal(err)
	}
	rc, err = Recompute(context.Background(), d.w.l, got2, keys)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, df := range rc.Differences {
		paths = append(paths, df.String())
	}
	want := []string{"figures.authentication_failures.top_sources[0].count: the report says 39, the ledger gives 40",
		"figures.coverage[10.2.1.4].count: the report says 57, the ledger gives 58"}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("differences:\n%s", strings.Join(paths, "\n"))
	}
}

func mustReport(t *testing.T, file []byte) []byte {
	var s Signed
	if err := json.Unmarshal(file, &s); err != nil {
		t.Fatal(err)
	}
	return s.Report
}

// TestComputeLedgerBegan: a period that starts before the ledger was
// created counts no gap in the checkpoint cadence for the time before it
// (there was no trail to fail); the report says when the trail began. A
// silence after the start is still a gap.
func TestComputeLedgerBegan(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	w := newWriter(t, t.TempDir(), start) // signs the empty tree at start
	defer func() { w.l.Close() }()
	for m := 1; m <= 10; m++ {
		if m == 6 {
			continue // a silence of two minutes: over the 2-minute limit
		}
		if m == 7 {
			w.at(start.Add(7*time.Minute + 30*time.Second))
		} else {
			w.at(start.Add(time.Duration(m) * time.Minute))
		}
		w.append(ev(w.clock(), event.Event{Action: event.ActionLoginSuccess, Outcome: "success", Category: []string{"authentication"},
			UserName: "alice", ClientIP: "198.51.100.7", ServiceName: "shop", ID: fmt.Sprintf("e%d", m)}))
		w.checkpoint()
	}
	from, to := start.Add(-time.Hour), start.Add(10*time.Minute+30*time.Second)
	rep, err := Compute(context.Background(), w.l, Options{Standard: PCIDSS, From: from, To: to, Verifiers: []note.Verifier{w.verif}, Now: to})
	if err != nil {
		t.Fatal(err)
	}
	cp := rep.Figures.Checkpoints
	if !cp.Began.Equal(start) || cp.Gaps != 1 || len(cp.List) != 1 || !cp.List[0].After.Equal(start.Add(5*time.Minute)) {
		t.Fatalf("checkpoints %+v", cp)
	}
	for _, it := range rep.Items {
		if it.ID == "10.7.2" && (!strings.Contains(it.Evidence, "1 unexplained gap in") || !strings.Contains(it.Evidence, "The trail began in the period, at 2026-11-02")) {
			t.Errorf("10.7.2: %s", it.Evidence)
		}
	}
}

// TestUnnamedService: events without a service.name (the collector's
// block decisions) are named as such, not printed as a bare count, and
// not counted as a service.
func TestUnnamedService(t *testing.T) {
	t.Parallel()
	d := buildDataset(t, t.TempDir())
	defer d.w.l.Close()
	r := *computeDataset(t, d, HIPAA)
	r.Figures.Services = []Count{{"shop", 9}, {"", 4}}
	build(&r)
	it := r.Items[0]
	if it.ID != "164.312(b)" || it.Facts[1].Value != "shop 9, (no service.name) 4" || !strings.Contains(it.Evidence, "from 1 service were") {
		t.Errorf("%s: %q; %s", it.ID, it.Facts[1].Value, it.Evidence)
	}
}

// TestDur: durations read as a person writes them ("24h", not "24h0m0s").
func TestDur(t *testing.T) {
	for d, want := range map[time.Duration]string{
		24 * time.Hour: "24h", 30 * time.Minute: "30m", 2 * time.Minute: "2m", 6*time.Minute + 40*time.Second: "6m40s",
		90 * time.Minute: "1h30m", time.Hour + 5*time.Second: "1h0m5s", 90 * time.Second: "1m30s", 500 * time.Millisecond: "500ms", 0: "0",
	} {
		if got := dur(Duration(d)); got != want {
			t.Errorf("dur(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestImpossibleDate: a record whose @timestamp names no real instant (a
// day its month lacks, second 60) has no timestamp in the report, as
// time.Parse and ingest hold it: five forged "2026-02-31" login failures
// are not charted on March 3 and count as lacking @timestamp in 10.2.2.
// Before, the report's reader took day 31 in every month and time.Date
// moved the date to March 3.
func TestImpossibleDate(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)
	for _, forged := range []string{"2026-02-31T10:00:0%d.000000000Z", "2026-03-02T23:59:60.00000000%dZ", "2026-02-31T10:00:0%dZ"} {
		t.Run(forged, func(t *testing.T) {
			t.Parallel()
			w := newWriter(t, t.TempDir(), from.Add(-10*time.Minute))
			defer w.l.Close()
			w.append(ev(from.Add(-time.Minute), event.Event{Action: event.ActionHTTPRequest, Outcome: "success", ServiceName: "shop"}))
			w.at(from.Add(-30 * time.Second))
			w.checkpoint()
			w.at(from.Add(10 * time.Hour))
			fail := func(at time.Time, i int) []byte {
				return ev(at, event.Event{Action: "authn_login_fail", Outcome: "failure", ServiceName: "shop",
					UserName: fmt.Sprint("user", i), ClientIP: "203.0.113.9"})
			}
			for i := range 5 {
				real := from.Add(10*time.Hour + time.Duration(i)*time.Second)
				w.append(fail(real, i))
				rec := fail(real, 5+i)
				stamp := []byte(real.Format(event.TimeFormat))
				if !bytes.Contains(rec, stamp) {
					t.Fatalf("%s not in %s", stamp, rec)
				}
				w.append(bytes.Replace(rec, stamp, fmt.Appendf(nil, forged, i), 1))
			}
			w.at(from.Add(23 * time.Hour))
			w.checkpoint()
			rep, err := Compute(context.Background(), w.l, Options{Standard: PCIDSS, From: from, To: from.Add(24 * time.Hour),
				Verifiers: []note.Verifier{w.verif}, Now: from.Add(25 * time.Hour), Workers: 1})
			if err != nil {
				t.Fatal(err)
			}
			f := rep.Figures
			var charted uint64
			for _, n := range f.AuthFailures.Buckets {
				charted += n
			}
			if f.AuthFailures.Total != 10 || charted != 5 {
				t.Errorf("failed logins %d, charted %d; want 10, 5 (the forged dates on no day)", f.AuthFailures.Total, charted)
			}
			if f.Time.WithTimestamp != 5 || f.Time.Outside != 0 {
				t.Errorf("time figures %+v; want 5 events with a timestamp, none outside", f.Time)
			}
			for _, fc := range f.Completeness.Fields {
				if fc.Field == "@timestamp" || fc.Source == "@timestamp" {
					if fc.Applicable != 10 || fc.Present != 5 {
						t.Errorf("10.2.2 %s: present %d of %d, want 5 of 10", fc.Field, fc.Present, fc.Applicable)
					}
					return
				}
			}
			t.Errorf("no @timestamp among the required fields %+v", f.Completeness.Fields)
		})
	}
}
