package demo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/redact"
	"github.com/trailguard/trailguard/retention"
	"github.com/trailguard/trailguard/ship"
	"github.com/trailguard/trailguard/sink"
)

// Options configures Run.
type Options struct {
	// Dir is where the trail is written (under Dir/trail). Empty means a
	// new temporary directory.
	Dir string
	// Duration is how long traffic is driven; default 5s. Each simulated
	// party first plays a fixed minimum of rounds, however long they take.
	Duration time.Duration
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Summary describes the trail a demo run left.
type Summary struct {
	Dir        string         // the data directory
	TrailDir   string         // where the trail files are
	Files      []string       // trail files, oldest first
	Bytes      int64          // total size on disk
	Events     int            // events in the trail
	Requests   int            // access events (one per completed request)
	Counts     map[string]int // events by "action outcome"
	Stats      httpaudit.Stats
	Ship       ship.Stats // the shipper's counters: everything reached the collector
	Collector  Collector  // what the collector holds and answers
	Secrets    int        // credentials and card numbers the traffic sent
	Leaked     []string   // any of them found in the trail (must be empty)
	SampleFail []byte     // one failed-login event, as written
	Duration   time.Duration
	// FailedStatus counts the failed requests (http_request failure) by
	// status code, to explain that row of the table.
	FailedStatus map[int]int
	// Story is what the attacker did, reconstructed from the trail.
	Story Story
	// Detection is what the collector's rules raised: alerts and bans.
	Detection Detection
}

// Collector describes the in-process collector after the run.
type Collector struct {
	URL          string   // where it listened
	DataDir      string   // its data directory (the ledger is DataDir/ledger)
	VerifierKey  string   // the public key auditors verify with
	LedgerSize   uint64   // records in the ledger (the shop's events and the collector's own), per the final checkpoint
	Checkpoint   string   // the final signed checkpoint
	Failures401  int64    // 401 responses per the collector's query API
	TopAttackers []string // top client.ip of failed logins, "ip (count)"
}

// Run starts the sample API on a loopback port, drives traffic against it
// for opts.Duration, shuts everything down cleanly and summarises the
// trail.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	if opts.Duration <= 0 {
		opts.Duration = 5 * time.Second
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
	}
	// The collector runs in this process, as `trailguard serve` would on
	// its own host: the shop ships its events to it over HTTP.
	col, colURL, stopCollector, err := startCollector(filepath.Join(dir, "collector"), logw)
	if err != nil {
		return nil, err
	}
	defer stopCollector()
	_, ingestToken, err := col.Tokens().Create("demo-shop", access.RoleIngest)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	shipper, err := ship.New(ship.Options{
		URL:           colURL + "/v1/events",
		Token:         ingestToken,
		SpoolDir:      filepath.Join(dir, "spool"),
		FlushInterval: 100 * time.Millisecond,
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
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(logw, "collector on %s (data in %s)\n", colURL, filepath.Join(dir, "collector"))
	fmt.Fprintf(logw, "sample API on %s, shipping its audit events to the collector; driving traffic for %v\n", base, opts.Duration)

	start := time.Now()
	secrets := &secretSet{m: map[string]bool{}}
	transport := &http.Transport{MaxIdleConnsPerHost: 16}
	newClient := func(ip, ua string) *client {
		return &client{base: base, ip: ip, ua: ua, http: &http.Client{Transport: transport, Timeout: 10 * time.Second}, secrets: secrets}
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
	goRun(func() { attacker(p, newClient("203.0.113.66", "python-requests/2.32.3"), wordlist, pw["alice"]) })
	wg.Wait()
	cancel()

	shutCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	shutErr := srv.Shutdown(shutCtx)
	transport.CloseIdleConnections()
	closeErr := audit.Close()
	if err := errors.Join(shutErr, closeErr); err != nil {
		return nil, fmt.Errorf("demo: shutdown: %w", err)
	}
	sum, err := summarize(trailDir, secrets.list())
	if err != nil {
		return nil, err
	}
	sum.Dir = dir
	sum.Stats = audit.Stats()
	sum.Ship = shipper.Stats()
	if sum.Collector, err = queryCollector(col, colURL); err != nil {
		return nil, err
	}
	sum.Detection = collectDetection(col)
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
	sum.Duration = time.Since(start)
	return sum, nil
}

func summarize(trailDir string, secrets []string) (*Summary, error) {
	files, err := sink.Files(trailDir, sink.DefaultName)
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	s := &Summary{TrailDir: trailDir, Files: files, Counts: map[string]int{}, Secrets: len(secrets), FailedStatus: map[int]int{}}
	var evs []*event.Event
	var first time.Time
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
		if first.IsZero() || ev.Timestamp.Before(first) {
			first = ev.Timestamp
		}
		evs = append(evs, ev)
		s.Counts[ev.Action+" "+ev.Outcome]++
		if ev.Action == event.ActionLoginFail && s.SampleFail == nil && ev.UserName == "alice" {
			s.SampleFail = append([]byte(nil), sc.Bytes()...)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	s.Story = tellStory(evs, first)
	for _, sec := range secrets {
		if len(sec) >= 6 && bytes.Contains(all.Bytes(), []byte(sec)) {
			s.Leaked = append(s.Leaked, sec)
		}
	}
	return s, nil
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
	s.Story.Print(w)
	fmt.Fprintf(w, "\ntrail:   %s (%d files, %.1f KiB; rotated files are gzipped)\n", s.TrailDir, len(s.Files), float64(s.Bytes)/1024)
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
		fmt.Fprintf(w, "\nsecrets: none of the %d passwords, bearer tokens and card numbers sent is in the trail\n", s.Secrets)
	} else {
		fmt.Fprintf(w, "\nsecrets: LEAKED %d of %d into the trail: %q\n", len(s.Leaked), s.Secrets, s.Leaked)
	}
	if s.SampleFail != nil {
		fmt.Fprintf(w, "\na failed login, as stored:\n%s\n", s.SampleFail)
	}
	s.Detection.Print(w)
	c := s.Collector
	own := int64(c.LedgerSize) - int64(s.Ship.Shipped)
	fmt.Fprintf(w, "\ncollector: %d records in its ledger at %s: the shop's %d events (shipped: %d, dead-lettered: %d) and %d of its own\n"+
		"  (its start and stop, and one per request it answered: the shop's batches, the analyst's queries)\n",
		c.LedgerSize, c.DataDir, s.Events, s.Ship.Shipped, s.Ship.DeadLettered, own)
	fmt.Fprintf(w, "  the analyst's queries: %d responses were 401; top sources of failed logins: %s\n", c.Failures401, strings.Join(c.TopAttackers, ", "))
	if c.Checkpoint != "" {
		fmt.Fprintf(w, "  final signed checkpoint (origin, tree size %d, root hash, time, signature):\n    %s\n", c.LedgerSize,
			strings.ReplaceAll(strings.TrimSpace(c.Checkpoint), "\n", "\n    "))
	}
	fmt.Fprintf(w, "\nread it:   zcat -f %s/*.jsonl* | jq -c 'select(.client.ip==\"%s\")'\n", s.TrailDir, s.Story.Address)
	fmt.Fprintf(w, "verify it: go run ./cmd/trailguard verify --data %s   (the key is in %s)\n", c.DataDir, c.VerifierKey)
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
