package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/redact"
	"github.com/trailguard/trailguard/report"
	"github.com/trailguard/trailguard/retention"
	"github.com/trailguard/trailguard/server"
	"github.com/trailguard/trailguard/ship"
	"github.com/trailguard/trailguard/sink"
)

// Options configures Run.
type Options struct {
	// Dir is where the demo writes: the shop's trail (Dir/trail), the
	// collector's data (Dir/collector), the witness copies of its
	// checkpoints (Dir/witness), the gateway's spool (Dir/gateway) and the
	// PCI DSS report (Dir/report-pci-dss.pdf and .json). Empty means a new
	// temporary directory; a directory that exists must be empty (an
	// earlier run's blocks and alerts would make another story).
	Dir string
	// Duration is how long the users' traffic goes on; default 3s. Each
	// simulated party first plays a fixed minimum of rounds, and each
	// attacker goes on until the gateway blocks it, however long that
	// takes.
	Duration time.Duration
	// Log receives progress lines and, as they happen, the alerts and
	// blocks; nil discards them.
	Log io.Writer
	// KeepRunning, if set, is called once the attacks are over and the
	// report written, with the summary so far (all but the ledger's final
	// checkpoint and verification: see PrintLedger), the web UI's address
	// and a token to sign in with; the collector stays up until it
	// returns.
	KeepRunning func(sum *Summary, ui, token string)
}

// Summary describes what a demo run left.
type Summary struct {
	Dir        string         // the data directory
	TrailDir   string         // where the shop's trail files are
	Files      []string       // trail files, oldest first
	Bytes      int64          // total size on disk
	Events     int            // events in the shop's trail
	Requests   int            // access events (one per completed request)
	Counts     map[string]int // events by "action outcome"
	Stats      httpaudit.Stats
	Ship       ship.Stats // the shop's shipper: everything reached the collector
	Collector  Collector  // what the collector holds and answers
	Secrets    int        // credentials and card numbers the traffic sent
	Leaked     []string   // any of them found in the shop's trail or the ledger (must be empty)
	SampleFail []byte     // one failed-login event, as written
	Duration   time.Duration
	// FailedStatus counts the failed requests (http_request failure) by
	// status code, to explain that row of the table.
	FailedStatus map[int]int
	// Detection is what the collector's rules raised: alerts and bans,
	// timed by the ledger's append times.
	Detection Detection
	// Happenings are the alerts, blocks and refusals the live view showed.
	Happenings []Happening
	// Stories are what each blocked address did, from the trail; Others
	// the addresses alerts named but no rule blocked.
	Stories, Others []Story
	// Gateway, API and UI are the addresses the parts listened on.
	Gateway, API, UI string
	// Verified is the offline verification of the collector's ledger.
	Verified *ledger.Report
	// Report is the PCI DSS report written at the end.
	Report ReportFiles
	// LedgerBy counts the ledger's records by who wrote them: service.name,
	// or "detection" for alerts and block decisions.
	LedgerBy map[string]int
}

// ReportFiles are the report's forms on disk.
type ReportFiles struct {
	PDF, JSON, Sum string
	Met, Gaps      int
	Findings       []string
}

// Collector describes the in-process collector after the run.
type Collector struct {
	URL          string   // where it listened
	DataDir      string   // its data directory (the ledger is DataDir/ledger)
	VerifierKey  string   // the public key auditors verify with
	LedgerSize   uint64   // records in the ledger (the shop's events and the collector's own), per the final checkpoint
	Checkpoint   string   // the final signed checkpoint
	Failures401  int64    // 401 answers of the shop per the collector's query API
	TopAttackers []string // top client.ip of failed logins, "ip (count)"
}

// CheckDir reports why dir cannot hold a run of the demo, or nil: it must
// be a directory, new or empty, where this process can write. One that
// does not exist is made, as Run would. Run checks it too; a caller that
// prints before Run (trailguard demo's banner) checks first, so that a
// directory the demo cannot use is one plain line before anything else.
func CheckDir(dir string) error {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return fmt.Errorf("demo: %s is not a directory: give a new or empty directory", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("demo: cannot create %s: %w: give a new or empty directory where you can write", dir, err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("demo: cannot read %s: %w", dir, err)
	}
	if len(ents) > 0 {
		// An earlier run's collector would start with its blocks still in
		// force and its alerts in the ledger: the attackers would be
		// refused at once and the story told would be the old one.
		return fmt.Errorf("demo: %s is not empty (an earlier run?): give a new or empty directory, or remove it", dir)
	}
	f, err := os.CreateTemp(dir, ".write-check-")
	if err != nil {
		return fmt.Errorf("demo: cannot write in %s: %w: give a new or empty directory where you can write", dir, err)
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// Run starts the collector, the gateway and the sample API on loopback
// ports in this process, drives users and attackers through the gateway,
// shows the alerts and blocks as they happen, writes a PCI DSS report,
// shuts everything down cleanly, verifies the ledger and summarises.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	if opts.Duration <= 0 {
		opts.Duration = 3 * time.Second
	}
	logw := opts.Log
	if logw == nil {
		logw = io.Discard
	}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "trailguard-demo-")
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		dir = d
	} else if err := CheckDir(dir); err != nil {
		return nil, err
	}
	start := time.Now()
	// The collector runs in this process, as `trailguard serve` would on
	// its own host: the shop and the gateway ship their events to it.
	col, colURL, stopCollector, err := startCollector(filepath.Join(dir, "collector"), logw)
	if err != nil {
		return nil, err
	}
	defer stopCollector()
	toks, err := makeTokens(col)
	if err != nil {
		return nil, err
	}
	shipper, err := ship.New(ship.Options{
		URL:           colURL + "/v1/events",
		Token:         toks.shop,
		SpoolDir:      filepath.Join(dir, "spool"),
		FlushInterval: 20 * time.Millisecond,
		OnError:       func(err error) { fmt.Fprintln(logw, "ship:", err) },
	})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}

	trailDir := filepath.Join(dir, "trail")
	file, err := sink.OpenFile(sink.FileOptions{
		Dir:       trailDir,
		MaxSize:   256 << 10, // small, so a few seconds of traffic shows rotation
		Compress:  true,
		Retention: retention.PCIDSS,
	})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	red, err := redact.New(redact.Config{Mode: redact.Mask})
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	audit, err := httpaudit.New(httpaudit.Config{
		Sink:           sink.Multi(file, shipper),
		Redactor:       red,
		ServiceName:    "demo-shop",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		MaxBody:        4096,
		Headers:        []string{"Authorization", "Content-Type"},
		FailClosed:     true,
		Skip:           func(r *http.Request) bool { return r.URL.Path == "/healthz" },
		ErrorLog:       slog.New(slog.NewTextHandler(logw, nil)),
	})
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	app := newAPI(slog.New(audit.SlogHandler(nil)))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		audit.Close()
		return nil, fmt.Errorf("demo: listen: %w", err)
	}
	srv := &http.Server{Handler: audit.Middleware(app.routes()), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	apiURL := "http://" + ln.Addr().String()
	_, gwURL, stopGateway, err := startGateway(filepath.Join(dir, "gateway"), apiURL, colURL, toks.gateway, toks.bouncer, logw)
	if err != nil {
		audit.Close()
		return nil, err
	}
	defer stopGateway()

	fmt.Fprintf(logw, "collector %s  (ledger, detection, web UI; data in %s)\n", colURL, filepath.Join(dir, "collector"))
	fmt.Fprintf(logw, "gateway   %s  (records every request, enforces the collector's blocks)\n", gwURL)
	fmt.Fprintf(logw, "shop API  %s  (records logins, role changes and orders with httpaudit)\n", apiURL)
	fmt.Fprintf(logw, "\nfour users browse and buy through the gateway for %v; three attackers join them:\n"+
		"  203.0.113.66 guesses alice's password, 198.18.7.23 tries leaked passwords, 192.0.2.77 probes for injection.\n"+
		"as the collector stores them (time since start):\n", opts.Duration)

	// The live view: alerts, blocks and refusals as the collector stores them.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w := newWatcher(start, logw)
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); w.run(watchCtx, col.Ledger(), 0) }()

	secrets := &secretSet{m: map[string]bool{}}
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	newClient := func(ip, ua string) *client {
		return &client{base: gwURL, ip: ip, ua: ua, http: &http.Client{Transport: transport, Timeout: 10 * time.Second}, secrets: secrets}
	}
	tctx, cancel := context.WithTimeout(ctx, opts.Duration)
	var wg sync.WaitGroup
	goRun := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	browser := "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
	pw := map[string]string{}
	for name, u := range app.users {
		pw[name] = u.password
	}
	p := pace{hard: ctx, soft: tctx}
	goRun(func() { admin(p, newClient("198.51.100.10", browser), pw["alice"]) })
	goRun(func() { snoop(p, newClient("198.51.100.13", browser), pw["bob"]) })
	goRun(func() { shopper(p, newClient("198.51.100.11", browser), "carol", pw["carol"]) })
	goRun(func() { shopper(p, newClient("198.51.100.12", "demo-mobile/2.4 (Android 15)"), "dave", pw["dave"]) })
	wordlist := []string{"123456", "password1", "qwerty", "letmein", "dragon", "monkey", "abc123", "111111",
		"iloveyou", "admin", "welcome", "sunshine", "princess", "football", "master", "shadow", "baseball",
		"superman", "trustno1", "hello123", "freedom", "whatever", "michael", "ninja", "mustang", "passw0rd",
		"starwars", "batman", "zaq1zaq1", "qazwsx", "654321", "jordan23", "harley", "ranger", "buster"}
	goRun(func() { bruteForcer(ctx, newClient("203.0.113.66", "python-requests/2.32.3"), wordlist) })
	goRun(func() {
		stuffer(ctx, newClient("198.18.7.23", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"))
	})
	goRun(func() { prober(ctx, newClient("192.0.2.77", "sqlmap/1.8.4#stable (https://sqlmap.org)")) })
	wg.Wait()
	cancel()

	// Everything the shop and the gateway recorded reaches the collector;
	// then detection has seen it all.
	shutCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	shutErr := srv.Shutdown(shutCtx)
	transport.CloseIdleConnections()
	closeErr := audit.Close()
	gwErr := stopGateway()
	if err := errors.Join(shutErr, closeErr, gwErr); err != nil {
		return nil, fmt.Errorf("demo: shutdown: %w", err)
	}
	waitDetected(shutCtx, col)
	sum, err := summarize(trailDir, secrets.list())
	if err != nil {
		return nil, err
	}
	sum.Dir, sum.Gateway, sum.API, sum.UI = dir, gwURL, apiURL, colURL+"/ui/"
	sum.Stats = audit.Stats()
	sum.Ship = shipper.Stats()
	if sum.Collector, err = queryCollector(col, colURL, toks.read); err != nil {
		return nil, err
	}
	sum.Detection = collectDetection(col)
	stopWatch()
	<-watchDone
	w.flush()
	sum.Happenings = w.happenings()

	// The PCI DSS report over the demo, from the collector (as GET
	// /v1/reports makes it).
	if sum.Report, err = writeReport(ctx, col, dir, start); err != nil {
		return nil, err
	}
	if err := sum.readLedger(col.Ledger(), start, secrets.list()); err != nil {
		return nil, err
	}
	sum.Duration = time.Since(start)
	if opts.KeepRunning != nil {
		opts.KeepRunning(sum, sum.UI, toks.admin)
	}
	if err := stopCollector(); err != nil {
		return nil, fmt.Errorf("demo: collector shutdown: %w", err)
	}
	signed, _ := os.ReadFile(filepath.Join(dir, "collector", "ledger", "checkpoint"))
	sum.Collector.Checkpoint = string(signed)
	// The collector wrote its own stop into the ledger after the queries:
	// the final checkpoint has the ledger's last word on its size.
	if size, ok := checkpointSize(signed); ok {
		sum.Collector.LedgerSize = size
	}
	if err := sum.verifyLedger(start, secrets.list()); err != nil {
		return nil, err
	}
	return sum, nil
}

// waitDetected waits until detection has evaluated every record stored
// (its alerts and decisions are records too, which it skips).
func waitDetected(ctx context.Context, col *server.Server) {
	for ctx.Err() == nil && col.DetectionNext() < col.Ledger().Size() {
		time.Sleep(10 * time.Millisecond)
	}
}

// writeReport writes the PCI DSS report over the demo's period as PDF and
// signed JSON.
func writeReport(ctx context.Context, col *server.Server, dir string, start time.Time) (ReportFiles, error) {
	sg, sum, err := col.Report(ctx, report.Options{Standard: report.PCIDSS, From: start.Add(-time.Minute)})
	if err != nil {
		return ReportFiles{}, fmt.Errorf("demo: report: %w", err)
	}
	pdf, err := report.PDF(sg.Report, sum)
	if err != nil {
		return ReportFiles{}, err
	}
	rf := ReportFiles{PDF: filepath.Join(dir, "report-pci-dss.pdf"), JSON: filepath.Join(dir, "report-pci-dss.json"), Sum: sum,
		Met: sg.Report.Summary.Met, Gaps: sg.Report.Summary.Gaps, Findings: sg.Report.Summary.TopFindings}
	if err := errors.Join(os.WriteFile(rf.PDF, pdf, 0o644), os.WriteFile(rf.JSON, sg.JSON, 0o644)); err != nil {
		return rf, fmt.Errorf("demo: report: %w", err)
	}
	return rf, nil
}

// verifyLedger verifies the collector's stopped ledger offline with the
// public key and the witness copies, and reads it again to the end.
func (s *Summary) verifyLedger(start time.Time, secrets []string) error {
	c := s.Collector
	keys, err := ledger.LoadVerifiers(c.VerifierKey)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	ldir := filepath.Join(c.DataDir, "ledger")
	if s.Verified, err = ledger.Verify(ldir, ledger.VerifyOptions{Verifiers: keys, WitnessDir: filepath.Join(s.Dir, "witness")}); err != nil {
		return fmt.Errorf("demo: verify: %w", err)
	}
	l, err := ledger.OpenReadOnly(ldir)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer l.Close()
	return s.readLedger(l, start, secrets)
}

// readLedger reads the collector's ledger for the attackers' stories and
// who wrote what, and checks that no secret the traffic sent is in it.
func (s *Summary) readLedger(l *ledger.Ledger, start time.Time, secrets []string) error {
	var recs [][]byte
	s.LedgerBy = map[string]int{}
	for e, err := range l.Entries(0) {
		if err != nil {
			return fmt.Errorf("demo: read the ledger: %w", err)
		}
		recs = append(recs, e.Data)
		s.LedgerBy[writer(e.Data)]++
		for _, sec := range secrets {
			if containsSecret(e.Data, sec) && !slices.Contains(s.Leaked, sec) {
				s.Leaked = append(s.Leaked, sec)
			}
		}
	}
	s.Stories, s.Others = readTrail(recs).stories(start)
	return nil
}

// writer names who wrote a ledger record: "detection" for the
// collector's alerts and block decisions, else its service.name. The
// fields are decoded, not searched for: the collector's record of an
// ingest request names the shipper's token ("user":{"name":"demo-shop"}),
// which a substring match took for the shop's own event.
func writer(rec []byte) string {
	var ev struct {
		Event   struct{ Dataset string } `json:"event"`
		Service struct{ Name string }    `json:"service"`
	}
	if json.Unmarshal(rec, &ev) != nil {
		return ""
	}
	if ev.Event.Dataset == "trailguard.alert" || ev.Event.Dataset == "trailguard.decision" {
		return "detection"
	}
	return ev.Service.Name
}

func summarize(trailDir string, secrets []string) (*Summary, error) {
	files, err := sink.Files(trailDir, sink.DefaultName)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	s := &Summary{TrailDir: trailDir, Files: files, Counts: map[string]int{}, Secrets: len(secrets), FailedStatus: map[int]int{}}
	var all bytes.Buffer
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			s.Bytes += fi.Size()
		}
		rc, err := sink.Open(f)
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		_, err = io.Copy(&all, rc)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("demo: read %s: %w", f, err)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(all.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		ev, err := event.Decode(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("demo: trail line %d: %w", s.Events+1, err)
		}
		s.Events++
		if ev.Action == event.ActionHTTPRequest {
			s.Requests++
			if ev.Outcome == event.OutcomeFailure {
				s.FailedStatus[ev.StatusCode]++
			}
		}
		s.Counts[ev.Action+" "+ev.Outcome]++
		if ev.Action == event.ActionLoginFail && s.SampleFail == nil && ev.UserName == "alice" {
			s.SampleFail = append([]byte(nil), sc.Bytes()...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	for _, sec := range secrets {
		if containsSecret(all.Bytes(), sec) {
			s.Leaked = append(s.Leaked, sec)
		}
	}
	return s, nil
}

// containsSecret reports whether sec appears in data as a value of its
// own: not inside a longer run of letters and digits, where a short
// password such as "111111" turns up by chance (in a timestamp's
// nanoseconds, an id) without having leaked.
func containsSecret(data []byte, sec string) bool {
	if len(sec) < 6 {
		return false
	}
	alnum := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	for off := 0; ; {
		i := bytes.Index(data[off:], []byte(sec))
		if i < 0 {
			return false
		}
		i += off
		end := i + len(sec)
		if (i == 0 || !alnum(data[i-1]) || !alnum(sec[0])) && (end == len(data) || !alnum(data[end]) || !alnum(sec[len(sec)-1])) {
			return true
		}
		off = i + 1
	}
}

// checkpointSize reads the tree size of a signed checkpoint (its second
// line).
func checkpointSize(signed []byte) (uint64, bool) {
	lines := strings.SplitN(string(signed), "\n", 3)
	if len(lines) < 3 {
		return 0, false
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	return n, err == nil
}

// meanings explain the rows of the count table to someone who has never
// seen the trail; keyed by "action outcome".
var meanings = map[string]string{
	"http_request success":          "a request answered 1xx-3xx: one access event per request",
	"http_request failure":          "a request answered 4xx/5xx",
	"authn_login_fail failure":      "a failed login, with why (bad password, unknown user)",
	"authn_login_success success":   "a login",
	"log ":                          "a line the shop logged with slog, scrubbed like the rest; log lines have no outcome",
	"authz_fail failure":            "a request refused for lack of a role (403)",
	"sensitive_create success":      "an order created; the card number in its record is masked",
	"sensitive_read success":        "an admin listed the users",
	"input_validation_fail failure": "an invalid order or role change refused (400)",
	"user_role_change success":      "an admin changed a role; the record keeps before and after",
	"session_logout success":        "a logout",
}

// Print writes the summary for a person.
func (s *Summary) Print(w io.Writer) {
	for _, st := range s.Stories {
		st.Print(w)
	}
	if len(s.Others) > 0 {
		fmt.Fprintln(w, "\nalerts about addresses no rule blocked (users trying what their role does not allow):")
		for _, st := range s.Others {
			fmt.Fprintf(w, "  %s: %s\n", display(st.Address), display(strings.Join(slices.Compact(slices.Sorted(slices.Values(st.Alerts))), "; ")))
		}
	}
	fmt.Fprintf(w, "\nthe shop's own trail: %s (%d files, %.1f KiB; rotated files are gzipped)\n", s.TrailDir, len(s.Files), float64(s.Bytes)/1024)
	fmt.Fprintf(w, "events:  %d in %v (%d requests; %d dropped, %d lost)\n", s.Events, s.Duration.Round(time.Millisecond), s.Requests, s.Stats.Dropped, s.Stats.Lost)
	keys := make([]string, 0, len(s.Counts))
	for k := range s.Counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if s.Counts[keys[i]] != s.Counts[keys[j]] {
			return s.Counts[keys[i]] > s.Counts[keys[j]]
		}
		return keys[i] < keys[j]
	})
	fmt.Fprintf(w, "\n  %-22s %-8s %6s  %s\n", "event.action", "outcome", "count", "what it is")
	for _, k := range keys {
		action, outcome, _ := strings.Cut(k, " ")
		meaning := meanings[k]
		if k == "http_request failure" && len(s.FailedStatus) > 0 {
			meaning += ": " + statusBreakdown(s.FailedStatus)
		}
		shown := outcome
		if shown == "" {
			shown = "(none)"
		}
		fmt.Fprintf(w, "  %-22s %-8s %6d  %s\n", action, shown, s.Counts[k], meaning)
	}
	if len(s.Leaked) == 0 {
		fmt.Fprintf(w, "\nsecrets: none of the %d passwords, bearer tokens and card numbers sent is in the trail or the ledger\n", s.Secrets)
	} else {
		fmt.Fprintf(w, "\nsecrets: LEAKED %d of %d: %q\n", len(s.Leaked), s.Secrets, s.Leaked)
	}
	if s.SampleFail != nil {
		fmt.Fprintf(w, "\na failed login, as stored:\n%s\n", s.SampleFail)
	}
	r := s.Report
	fmt.Fprintf(w, "\nPCI DSS report over the run: %s met, %s\n  %s\n  %s (signed; its sha256 %s is printed on every page)\n",
		plural(r.Met, "requirement"), plural(r.Gaps, "gap"), r.PDF, r.JSON, r.Sum)
	for _, f := range r.Findings {
		fmt.Fprintf(w, "  gap %s\n", f)
	}
}

// PrintLedger writes what the collector's ledger holds once it stopped:
// its final signed checkpoint and the offline verification.
func (s *Summary) PrintLedger(w io.Writer) {
	c := s.Collector
	by := s.LedgerBy
	fmt.Fprintf(w, "\ncollector: %d records in its ledger at %s: the shop's %d events, the gateway's %d, %d alerts and block decisions,\n"+
		"  and %d of its own (its start and stop, one per request it answered)\n",
		c.LedgerSize, c.DataDir, by["demo-shop"], by["demo-gateway"], by["detection"], by["trailguard-collector"])
	fmt.Fprintf(w, "  the analyst's queries: the shop answered %d requests with 401; top sources of failed logins: %s\n", c.Failures401, strings.Join(c.TopAttackers, ", "))
	if c.Checkpoint != "" {
		fmt.Fprintf(w, "  final signed checkpoint (origin, tree size %d, root hash, time, signature):\n    %s\n", c.LedgerSize,
			strings.ReplaceAll(strings.TrimSpace(c.Checkpoint), "\n", "\n    "))
	}
	if v := s.Verified; v != nil {
		if v.OK() {
			fmt.Fprintf(w, "  verified offline with the public key alone: %d records, %d checkpoints (ledger and witness copies), no finding\n", v.Records, v.Checkpoints)
		} else {
			fmt.Fprintf(w, "  VERIFICATION FAILED:\n%s", v)
		}
	}
	r := s.Report
	addr := ""
	if len(s.Stories) > 0 {
		addr = s.Stories[0].Address
	}
	fmt.Fprintf(w, "\nread it:   zcat -f %s/*.jsonl* | jq -c 'select(.client.ip==\"%s\")'\n", s.TrailDir, addr)
	fmt.Fprintf(w, "verify it: go run ./cmd/trailguard verify --data %s   (the key is in %s)\n", c.DataDir, c.VerifierKey)
	fmt.Fprintf(w, "check the report: go run ./cmd/trailguard verify-report %s --key %s --data %s\n", r.JSON, c.VerifierKey, c.DataDir)
}

// statusBreakdown lists status codes by count: "401 ×65, 403 ×45".
func statusBreakdown(m map[int]int) string {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Slice(codes, func(i, j int) bool {
		if m[codes[i]] != m[codes[j]] {
			return m[codes[i]] > m[codes[j]]
		}
		return codes[i] < codes[j]
	})
	parts := make([]string, len(codes))
	for i, c := range codes {
		parts[i] = fmt.Sprintf("%d ×%d", c, m[c])
	}
	return strings.Join(parts, ", ")
}
