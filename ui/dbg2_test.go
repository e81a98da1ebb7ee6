package ui_test

import (
	"net/url"
	"testing"
	"time"
)

func BenchmarkDbgAPI(b *testing.B) {
	c, from, to := benchData(b)
	f, t := from.Format(time.RFC3339), to.Format(time.RFC3339)
	warm := from.Add(-5 * time.Hour).Format(time.RFC3339)
	qs := []string{
		"/v1/stats?interval=1m&from=" + f + "&to=" + t,
		"/v1/stats?interval=1m&q=" + url.QueryEscape("event.category:web and http.response.status_code:401") + "&from=" + warm + "&to=" + t,
		"/v1/stats?interval=1m&q=" + url.QueryEscape("event.action:authz_fail") + "&from=" + warm + "&to=" + t,
		"/v1/stats?interval=1m&q=" + url.QueryEscape("event.category:authentication and event.outcome:success") + "&from=" + f + "&to=" + t,
		"/v1/stats?interval=1m&q=" + url.QueryEscape("event.category:authentication and event.outcome:failure") + "&from=" + f + "&to=" + t,
		"/v1/stats?top=source.ip&n=10&from=" + f + "&to=" + t,
		"/v1/stats?top=user.name&n=10&q=" + url.QueryEscape("event.category:authentication and event.outcome:failure") + "&from=" + f + "&to=" + t,
		"/v1/stats?top=service.name&n=50&from=" + f + "&to=" + t,
		"/v1/events?limit=500&q=" + url.QueryEscape("event.kind:alert and trailguard.alert.rule_name:trailguard_401_rate_of_rise") + "&from=" + f + "&to=" + t,
		"/v1/alerts?status=open&limit=20",
		"/v1/decisions",
		"/v1/events?limit=100&from=" + f + "&to=" + t,
		"/v1/stats?interval=10m&from=" + f + "&to=" + t,
	}
	for _, q := range qs {
		var best time.Duration
		for i := range 3 {
			st := time.Now()
			code, body := c.api(b, "GET", q, c.read, nil)
			d := time.Since(st)
			if code != 200 {
				b.Fatalf("%s: %d %s", q, code, body)
			}
			if i == 0 || d < best {
				best = d
			}
		}
		b.Logf("%6.1f ms  %s", float64(best.Microseconds())/1000, q[:min(len(q), 120)])
	}
}
