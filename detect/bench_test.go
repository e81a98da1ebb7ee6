package detect

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
)

// mixedEvents returns n encoded events of ordinary API traffic, as httpaudit
// writes them: mostly access events, some logins (a few failed), a few
// 404s, 401s and authorization failures, one second of traffic spread
// over many clients.
func mixedEvents(n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 1))
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	paths := []string{"/api/orders", "/api/orders/1042", "/api/users/me", "/api/cart", "/api/products", "/api/products/77/reviews", "/healthz", "/static/app.js"}
	uas := []string{"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
		"demo-mobile/2.4 (Android 15)", "okhttp/4.12.0", "python-requests/2.32.3"}
	out := make([][]byte, n)
	for i := range out {
		ev := &event.Event{
			Timestamp: t0.Add(time.Duration(i) * 100 * time.Microsecond), Kind: event.KindEvent,
			ID: fmt.Sprintf("01a2c9e0-0000-7000-8000-%012d", i), HostName: "api-1", ServiceName: "shop",
			RequestID: fmt.Sprintf("01a2c9e0-0001-7000-8000-%012d", i),
			SourceIP:  "10.0.0.2", SourcePort: 40000 + i%20000,
			ClientIP:  fmt.Sprintf("198.51.%d.%d", r.IntN(200), r.IntN(250)),
			UserAgent: uas[r.IntN(len(uas))],
		}
		switch k := r.IntN(100); {
		case k < 3: // a login
			ev.Category, ev.Type, ev.Dataset = []string{event.CategoryAuthentication}, []string{event.TypeStart}, event.DatasetAuth
			ev.Method, ev.Path = "POST", "/api/login"
			ev.UserName = fmt.Sprintf("user%d", r.IntN(5000))
			if k == 0 {
				ev.Action, ev.Outcome, ev.Reason = event.ActionLoginFail, event.OutcomeFailure, "bad password"
			} else {
				ev.Action, ev.Outcome = event.ActionLoginSuccess, event.OutcomeSuccess
			}
		case k < 4:
			ev.Category, ev.Type, ev.Dataset = []string{event.CategoryIAM}, []string{event.TypeDenied}, event.DatasetAudit
			ev.Action, ev.Outcome, ev.StatusCode = event.ActionAuthzFail, event.OutcomeFailure, 403
			ev.Method, ev.Path, ev.UserName = "PUT", "/api/users/7/role", fmt.Sprintf("user%d", r.IntN(5000))
		default:
			ev.Category, ev.Type, ev.Dataset = []string{event.CategoryWeb}, []string{event.TypeAccess}, event.DatasetAccess
			ev.Action, ev.Outcome = event.ActionHTTPRequest, event.OutcomeSuccess
			ev.Method, ev.Path, ev.StatusCode = "GET", paths[r.IntN(len(paths))], 200
			ev.Duration = time.Duration(r.IntN(5000)) * time.Microsecond
			ev.ResponseBodyBytes = int64(r.IntN(4000))
			if r.IntN(3) == 0 {
				ev.Query = fmt.Sprintf("page=%d&sort=created_at&limit=50", r.IntN(10))
			}
			ev.UserName = fmt.Sprintf("user%d", r.IntN(5000))
			switch {
			case k < 6:
				ev.StatusCode, ev.Outcome, ev.Path = 404, event.OutcomeFailure, fmt.Sprintf("/api/orders/%d/invoice.pdf", r.IntN(99999))
			case k < 8:
				ev.StatusCode, ev.Outcome, ev.UserName = 401, event.OutcomeFailure, ""
			}
		}
		out[i] = ev.AppendJSON(nil)
	}
	return out
}

func benchEngine(b *testing.B, e *Engine, evs [][]byte) {
	b.Helper()
	var bytes int64
	for _, ev := range evs {
		bytes += int64(len(ev))
	}
	alerts := 0
	emit := func(*Alert) { alerts++ }
	b.SetBytes(bytes / int64(len(evs)))
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu0 := time.Now(), testenv.CPUTime()
	n := 0
	for b.Loop() {
		e.Process(Record{Index: uint64(n), Data: evs[n%len(evs)]}, emit)
		n++
	}
	wall, cpu := time.Since(start), testenv.CPUTime()-cpu0
	b.StopTimer()
	b.ReportMetric(float64(n)/wall.Seconds(), "events/s")
	if cpu > 0 {
		// Events per second of CPU time: what one core sustains.
		b.ReportMetric(float64(n)/cpu.Seconds(), "events/cpu-s")
	}
	// The benchmark must have evaluated what it timed: every event read,
	// the rules matched some of them.
	st := e.Stats()
	if st.Events+st.Skipped != uint64(n) || st.Malformed != 0 {
		b.Fatalf("engine read %d of %d events (%d malformed)", st.Events, n, st.Malformed)
	}
	if n >= len(evs) && st.Matches == 0 {
		b.Fatalf("no rule matched %d events", n)
	}
}

// BenchmarkBuiltinRules evaluates every built-in rule over mixed traffic:
// JSON field extraction, detection, correlation state, all included.
func BenchmarkBuiltinRules(b *testing.B) {
	e, errs := NewEngine(Builtin(), Options{})
	if len(errs) > 0 {
		b.Fatal(errs[0])
	}
	benchEngine(b, e, mixedEvents(100_000, 1))
}

// generatedRules writes n Sigma detection rules of the kinds public rule
// sets hold: user agents, URI fragments, methods with paths, status codes,
// and some regular expressions, over the web taxonomy and ECS names.
func generatedRules(n int) string {
	r := rand.New(rand.NewPCG(7, 7))
	word := func() string {
		const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
		b := make([]byte, 5+r.IntN(8))
		for i := range b {
			b[i] = letters[r.IntN(len(letters))]
		}
		return string(b)
	}
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteString("---\n")
		}
		fmt.Fprintf(&sb, "title: generated rule %d\nid: gen-%d\nlogsource:\n    category: webserver\ndetection:\n", i, i)
		switch i % 5 {
		case 0:
			fmt.Fprintf(&sb, "    sel:\n        c-useragent|contains:\n            - '%s'\n            - '%s/'\n            - '%s'\n    condition: sel\n", word(), word(), word())
		case 1:
			fmt.Fprintf(&sb, "    sel:\n        cs-method: POST\n        c-uri|contains:\n            - '/%s/'\n            - '%s.php'\n    filter:\n        sc-status: 404\n    condition: sel and not filter\n", word(), word())
		case 2:
			fmt.Fprintf(&sb, "    sel:\n        c-uri|endswith:\n            - '/%s'\n            - '.%s'\n        sc-status:\n            - 200\n            - 302\n    condition: sel\n", word(), word()[:3])
		case 3:
			fmt.Fprintf(&sb, "    sel_path:\n        cs-uri-stem|startswith: '/%s'\n    sel_q:\n        cs-uri-query|contains|all:\n            - '%s='\n            - '%s'\n    condition: all of sel_*\n", word(), word(), word())
		case 4:
			fmt.Fprintf(&sb, "    sel:\n        c-uri|contains: '%s'\n    re:\n        c-uri|re: '%s[0-9]{2,}'\n    condition: sel and re\n", word(), word())
		}
		sb.WriteString("level: medium\n")
	}
	return sb.String()
}

// BenchmarkGeneratedRules evaluates 100 generated Sigma detection rules.
func BenchmarkGeneratedRules(b *testing.B) {
	rs := ParseRules("generated.yml", []byte(generatedRules(100)), "custom")
	if len(rs.Errors) > 0 || len(rs.Rules) != 100 {
		b.Fatalf("%d rules, errors %v", len(rs.Rules), rs.Errors)
	}
	// One rule that matches, so the benchmark can tell it evaluated.
	rs.Rules = append(rs.Rules, ParseRules("x.yml", []byte("title: any 404\nlogsource:\n    category: webserver\ndetection:\n    sel:\n        sc-status: 404\n    condition: sel\n"), "custom").Rules...)
	e, errs := NewEngine(rs, Options{})
	if len(errs) > 0 {
		b.Fatal(errs[0])
	}
	benchEngine(b, e, mixedEvents(100_000, 2))
}

// BenchmarkBuiltinRulesSpans is BenchmarkBuiltinRules as the collector
// runs it: every record with the spans ingest located, so the fields are
// not parsed and the rules' own work is most of the time.
func BenchmarkBuiltinRulesSpans(b *testing.B) {
	e, errs := NewEngine(Builtin(), Options{})
	if len(errs) > 0 {
		b.Fatal(errs[0])
	}
	evs := mixedEvents(100_000, 1)
	recs := make([]Record, len(evs))
	now := time.Date(2026, 11, 30, 9, 0, 5, 0, time.UTC)
	for i, ev := range evs {
		sp := new(event.Spans)
		rec, _, ok := event.AppendNormalizedSpans(nil, ev, now, event.AppendID, sp)
		if !ok || !sp.OK() {
			b.Fatalf("event %d not normalised with spans", i)
		}
		recs[i] = Record{Data: rec, Spans: sp}
	}
	alerts := 0
	emit := func(*Alert) { alerts++ }
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := testenv.CPUTime()
	n := 0
	for b.Loop() {
		r := recs[n%len(recs)]
		r.Index = uint64(n)
		e.Process(r, emit)
		n++
	}
	cpu := testenv.CPUTime() - cpu0
	b.StopTimer()
	if cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "events/cpu-s")
	}
	if st := e.Stats(); st.Events != uint64(n) || (n >= len(recs) && st.Matches == 0) {
		b.Fatalf("engine read %d of %d events, %d matches", st.Events, n, st.Matches)
	}
}

// BenchmarkWildcardRules evaluates 40 rules whose values hold wildcards in
// the middle, which neither a prefix, a suffix nor a substring test
// decides: the engine finds their longest literal in the value, then
// matches the whole pattern, on most events here, and most of those fail
// near the end.
func BenchmarkWildcardRules(b *testing.B) {
	var sb strings.Builder
	for i := range 40 {
		if i > 0 {
			sb.WriteString("---\n")
		}
		fmt.Fprintf(&sb, "title: wildcard rule %d\nid: wild-%d\nlogsource:\n    category: webserver\ndetection:\n    sel:\n", i, i)
		switch d := i / 5; i % 5 {
		case 0:
			fmt.Fprintf(&sb, "        c-useragent: '*mozilla/?.? (*) applewebkit/*chrome/1%d*edg/*'\n", d)
		case 1:
			fmt.Fprintf(&sb, "        c-uri: '/api/*/%d*/admin'\n", d)
		case 2:
			fmt.Fprintf(&sb, "        c-uri: '/api/orders/*%d/invoice.???'\n", d)
		case 3:
			fmt.Fprintf(&sb, "        cs-uri-query: 'page=?&sort=*&limit=%d*&debug=*'\n", d)
		case 4:
			fmt.Fprintf(&sb, "        c-useragent|cased: '*/?.%d* (Android ??)'\n", d)
		}
		sb.WriteString("    condition: sel\nlevel: low\n")
	}
	rs := ParseRules("wildcard.yml", []byte(sb.String()), "custom")
	if len(rs.Errors) > 0 || len(rs.Rules) != 40 {
		b.Fatalf("%d rules, errors %v", len(rs.Rules), rs.Errors)
	}
	e, errs := NewEngine(rs, Options{})
	if len(errs) > 0 {
		b.Fatal(errs[0])
	}
	benchEngine(b, e, mixedEvents(100_000, 3))
}
