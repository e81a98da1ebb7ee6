// Package benign generates a day of ordinary API traffic, with the
// mistakes real users and systems make, as the audit events httpaudit
// writes: the false-positive check of the detection rules replays it and
// expects no brute-force, stuffing or spraying alert.
//
// The model, per simulated day:
//   - Users log in and browse in sessions that start throughout the
//     working day (most between 08:00 and 18:00, some at night). A login
//     fails on a typo with probability TypoRate, and again after a typo
//     with probability RetypoRate; after three failures in a row half the
//     users give up (a forgotten password); 1 % of typos are in the user
//     name ("unknown user").
//   - Users sit behind addresses as offices do: 40 % share one of 50
//     office NAT addresses (20 to 400 users each), 20 % are on mobile
//     networks with a new address every session, the rest have a home
//     address of their own.
//   - Sessions expire: 3 % of sessions hit a 401 on an API call and log in
//     again. Browsing meets a few 404s (old bookmarks, favicon.ico,
//     crawlers), viewers are refused admin pages (authz_fail) now and then.
//   - Integrations call the API with tokens every few seconds; one of them,
//     left with an expired password after a rotation, fails to log in once
//     a minute for an hour. A load balancer checks /healthz every 10 s.
package benign

import (
	"bufio"
	"container/heap"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/trailguard/trailguard/event"
)

// Options tune the traffic.
type Options struct {
	// Events is how many events to write at least. Default 1,000,000.
	Events int
	// Start is the first day's midnight (UTC). Default 2026-02-02.
	Start time.Time
	// Seed makes the traffic reproducible. Default 1.
	Seed uint64
	// Users is the population. Default 20,000.
	Users int
	// TypoRate is the chance a login attempt fails; RetypoRate the chance
	// the next attempt fails too. Defaults 0.06 and 0.2.
	TypoRate, RetypoRate float64
}

// Stats counts what was written.
type Stats struct {
	Events, Logins, FailedLogins, UnknownUsers, GaveUp, Expired, NotFound, AuthzFail, Days int
	End                                                                                    time.Time
}

type user struct {
	name    string
	home    string // "" for mobile users
	office  int    // -1: not in an office
	viewer  bool   // may not use admin pages
	careful bool   // password manager: never mistypes
}

// agent is something that emits events over time: a session, an
// integration, the load balancer.
type agent struct {
	at   time.Time
	seq  uint64
	step func(g *gen) bool // emits one event and reschedules; false when done
}

type agents []*agent

func (a agents) Len() int { return len(a) }
func (a agents) Less(i, j int) bool {
	if !a[i].at.Equal(a[j].at) {
		return a[i].at.Before(a[j].at)
	}
	return a[i].seq < a[j].seq
}
func (a agents) Swap(i, j int)   { a[i], a[j] = a[j], a[i] }
func (a *agents) Push(x any)     { *a = append(*a, x.(*agent)) }
func (a *agents) Pop() any       { o := *a; x := o[len(o)-1]; *a = o[:len(o)-1]; return x }
func (g *gen) schedule(a *agent) { g.seq++; a.seq = g.seq; heap.Push(&g.q, a) }

type gen struct {
	o       Options
	r       *rand.Rand
	w       *bufio.Writer
	buf     []byte
	users   []user
	offices []string
	q       agents
	seq     uint64
	now     time.Time
	st      Stats
	ids     uint64
	err     error
}

// Generate writes NDJSON events to w, in time order, until Options.Events
// are written (whole days are simulated; the last one is cut short).
func Generate(w io.Writer, o Options) (Stats, error) {
	if o.Events <= 0 {
		o.Events = 1_000_000
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 2, 2, 0, 0, 0, 0, time.UTC)
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Users <= 0 {
		o.Users = 20_000
	}
	if o.TypoRate == 0 {
		o.TypoRate = 0.06
	}
	if o.RetypoRate == 0 {
		o.RetypoRate = 0.2
	}
	g := &gen{o: o, r: rand.New(rand.NewPCG(o.Seed, 0x5eed)), w: bufio.NewWriterSize(w, 1<<20)}
	g.population()
	for day := 0; g.st.Events < o.Events && g.err == nil; day++ {
		g.day(o.Start.Add(time.Duration(day) * 24 * time.Hour))
		g.st.Days++
	}
	if err := g.w.Flush(); g.err == nil {
		g.err = err
	}
	g.st.End = g.now
	return g.st, g.err
}

func (g *gen) population() {
	for i := range 50 {
		g.offices = append(g.offices, fmt.Sprintf("198.18.%d.%d", i/200, 1+i%200))
	}
	// Office sizes from 20 to 400 users, the big ones rare.
	sizes := make([]int, len(g.offices))
	for i := range sizes {
		sizes[i] = 20 + int(380*math.Pow(g.r.Float64(), 3))
	}
	for i := range g.o.Users {
		u := user{name: fmt.Sprintf("user%05d@example.com", i), office: -1, viewer: g.r.IntN(5) == 0, careful: g.r.IntN(4) == 0}
		home := fmt.Sprintf("100.%d.%d.%d", 64+i/65536%64, i/256%256, 1+i%250)
		switch k := g.r.Float64(); {
		case k < 0.4:
			// An office with room left, else home.
			u.home = home
			for tries := 0; tries < len(sizes); tries++ {
				if o := g.r.IntN(len(sizes)); sizes[o] > 0 {
					sizes[o]--
					u.office, u.home = o, ""
					break
				}
			}
		case k < 0.6:
			// mobile: a new address each session
		default:
			u.home = home
		}
		g.users = append(g.users, u)
	}
}

// day schedules one day's agents and runs them.
func (g *gen) day(midnight time.Time) {
	// Sessions: about two per user per day, most in working hours.
	for i := range g.users {
		n := 1 + g.r.IntN(3)
		for range n {
			var at time.Time
			if g.r.IntN(10) < 8 {
				at = midnight.Add(8*time.Hour + time.Duration(g.r.Float64()*float64(10*time.Hour)))
			} else {
				at = midnight.Add(time.Duration(g.r.Float64() * float64(24*time.Hour)))
			}
			g.schedule(g.session(i, at))
		}
	}
	// Integrations: token calls every few seconds during the day.
	for k := range 20 {
		ip := fmt.Sprintf("10.20.0.%d", 10+k)
		name := fmt.Sprintf("svc-integration-%02d", k)
		at := midnight.Add(time.Duration(g.r.IntN(3600)) * time.Second)
		end := midnight.Add(24 * time.Hour)
		a := &agent{at: at}
		a.step = func(g *gen) bool {
			path := []string{"/api/orders", "/api/products", "/api/inventory/sync"}[g.r.IntN(3)]
			g.access(ip, name, "GET", path, "", 200)
			a.at = a.at.Add(time.Duration(2+g.r.IntN(8)) * time.Second)
			return a.at.Before(end)
		}
		g.schedule(a)
	}
	// The integration whose password expired: one failed login a minute
	// for an hour, from 14:00.
	{
		a := &agent{at: midnight.Add(14 * time.Hour)}
		stop := a.at.Add(time.Hour)
		a.step = func(g *gen) bool {
			g.login("10.20.0.99", "svc-reporting", false, "password expired")
			a.at = a.at.Add(time.Minute)
			return a.at.Before(stop)
		}
		g.schedule(a)
	}
	// The load balancer.
	{
		a := &agent{at: midnight}
		end := midnight.Add(24 * time.Hour)
		a.step = func(g *gen) bool {
			g.access("10.0.0.5", "", "GET", "/healthz", "", 200)
			a.at = a.at.Add(10 * time.Second)
			return a.at.Before(end)
		}
		g.schedule(a)
	}
	// Search engine crawlers: a few hundred pages, a handful of old ones
	// gone, spread over the day.
	for k := range 3 {
		ip := fmt.Sprintf("66.249.66.%d", 1+k)
		a := &agent{at: midnight.Add(time.Duration(g.r.IntN(86400)) * time.Second)}
		pages := 300
		a.step = func(g *gen) bool {
			status, path := 200, fmt.Sprintf("/products/%d", g.r.IntN(5000))
			if g.r.IntN(40) == 0 {
				status, path = 404, []string{"/old-catalog.html", "/sitemap_old.xml", "/robots.txt", fmt.Sprintf("/products/discontinued-%d", g.r.IntN(20))}[g.r.IntN(4)]
			}
			g.accessUA(ip, "", "GET", path, "", status, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)")
			a.at = a.at.Add(time.Duration(20+g.r.IntN(200)) * time.Second)
			pages--
			return pages > 0
		}
		g.schedule(a)
	}
	for g.q.Len() > 0 && g.err == nil && g.st.Events < g.o.Events {
		a := heap.Pop(&g.q).(*agent)
		g.now = a.at
		if a.step(g) {
			g.schedule(a)
		}
	}
	g.q = g.q[:0]
}

var browsers = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
	"shop-mobile/3.2 (iPhone; iOS 18.1)",
	"shop-mobile/3.2 (Android 15)",
}

var pages = []string{"/api/products", "/api/products/%d", "/api/products/%d/reviews", "/api/cart", "/api/orders",
	"/api/orders/%d", "/api/users/me", "/api/search", "/static/app.%d.js", "/api/recommendations"}

// session is one user's visit: log in (with typos), browse, maybe hit an
// expired session and log in again, leave.
func (g *gen) session(ui int, at time.Time) *agent {
	u := &g.users[ui]
	ip := u.home
	if u.office >= 0 {
		ip = g.offices[u.office]
	}
	if ip == "" {
		ip = fmt.Sprintf("172.%d.%d.%d", 16+g.r.IntN(16), g.r.IntN(256), 1+g.r.IntN(250))
	}
	ua := browsers[g.r.IntN(len(browsers))]
	a := &agent{at: at}
	fails, requests := 0, 10+g.r.IntN(40)
	loggedIn, expireAt := false, -1
	if g.r.IntN(100) < 3 {
		expireAt = g.r.IntN(requests)
	}
	a.step = func(g *gen) bool {
		if !loggedIn {
			typo := !u.careful && (fails == 0 && g.r.Float64() < g.o.TypoRate || fails > 0 && g.r.Float64() < g.o.RetypoRate)
			name, reason := u.name, "bad password"
			if typo && g.r.IntN(100) == 0 {
				name, reason = typoName(g.r, u.name), "unknown user"
				g.st.UnknownUsers++
			}
			g.loginUA(ip, name, !typo, reason, ua)
			if typo {
				fails++
				if fails >= 5 || fails >= 3 && g.r.IntN(2) == 0 {
					g.st.GaveUp++
					return false
				}
				a.at = a.at.Add(time.Duration(3+g.r.IntN(20)) * time.Second)
				return true
			}
			loggedIn, fails = true, 0
			a.at = a.at.Add(time.Duration(1+g.r.IntN(5)) * time.Second)
			return true
		}
		if requests == expireAt {
			g.st.Expired++
			g.accessUA(ip, "", "GET", "/api/orders", "", 401, ua)
			loggedIn, expireAt = false, -1
			a.at = a.at.Add(time.Duration(2+g.r.IntN(10)) * time.Second)
			return true
		}
		requests--
		if requests < 0 {
			g.accessUA(ip, u.name, "POST", "/api/logout", "", 204, ua)
			return false
		}
		status, method, query := 200, "GET", ""
		path := fmt.Sprintf(pages[g.r.IntN(len(pages))], g.r.IntN(3000))
		switch k := g.r.IntN(200); {
		case k < 2:
			status, path = 404, []string{"/favicon.ico", "/api/orders/0", "/api/product/12", fmt.Sprintf("/api/orders/%d", 90000+g.r.IntN(5000))}[g.r.IntN(4)]
		case k < 3 && u.viewer:
			status, method, path = 403, "PUT", fmt.Sprintf("/api/users/%d/role", g.r.IntN(100))
			g.authzFail(ip, u.name, path)
		case k < 20:
			method, status = "POST", 201
			path = "/api/cart"
		case k < 40:
			path, query = "/api/search", fmt.Sprintf("q=%s&page=%d", []string{"red+shoes", "o%27neill+jacket", "union+square+store", "laptop+and+bag", "100%25+cotton"}[g.r.IntN(5)], 1+g.r.IntN(3))
		}
		g.accessUA(ip, u.name, method, path, query, status, ua)
		a.at = a.at.Add(time.Duration(1+g.r.IntN(30)) * time.Second)
		return true
	}
	return a
}

func typoName(r *rand.Rand, name string) string {
	b := []byte(name)
	i := r.IntN(len(b) - 13)
	b[i], b[i+1] = b[i+1], b[i]
	return string(b)
}

func (g *gen) base(ip, ua string) *event.Event {
	g.ids++
	ev := &event.Event{
		Timestamp: g.now, Kind: event.KindEvent, ServiceName: "shop", HostName: "api-1",
		ID: fmt.Sprintf("019c0000-0000-7000-8000-%012x", g.ids), RequestID: fmt.Sprintf("019c0000-0001-7000-8000-%012x", g.ids),
		SourceIP: "10.0.0.2", SourcePort: 30000 + int(g.ids%30000), ClientIP: ip, UserAgent: ua,
	}
	return ev
}

func (g *gen) write(ev *event.Event) {
	if g.err != nil {
		return
	}
	g.buf = append(ev.AppendJSON(g.buf[:0]), '\n')
	_, g.err = g.w.Write(g.buf)
	g.st.Events++
}

func (g *gen) access(ip, user, method, path, query string, status int) {
	g.accessUA(ip, user, method, path, query, status, "reporting-client/1.4 (+integration)")
}

func (g *gen) accessUA(ip, user, method, path, query string, status int, ua string) {
	ev := g.base(ip, ua)
	ev.Category, ev.Type, ev.Dataset = []string{event.CategoryWeb}, []string{event.TypeAccess}, event.DatasetAccess
	ev.Action, ev.Method, ev.Path, ev.Query, ev.StatusCode, ev.UserName = event.ActionHTTPRequest, method, path, query, status, user
	ev.Outcome = event.OutcomeSuccess
	if status >= 400 {
		ev.Outcome = event.OutcomeFailure
	}
	if status == 404 {
		g.st.NotFound++
	}
	ev.Duration = time.Duration(1+g.r.IntN(80)) * time.Millisecond
	ev.ResponseBodyBytes = int64(100 + g.r.IntN(8000))
	g.write(ev)
}

func (g *gen) login(ip, user string, ok bool, reason string) {
	g.loginUA(ip, user, ok, reason, "reporting-client/1.4 (+integration)")
}

// loginUA writes what httpaudit writes for a login: the authentication
// event and the access event of the request.
func (g *gen) loginUA(ip, user string, ok bool, reason, ua string) {
	g.st.Logins++
	ev := g.base(ip, ua)
	ev.Category, ev.Dataset = []string{event.CategoryAuthentication}, event.DatasetAuth
	ev.Method, ev.Path, ev.UserName = "POST", "/api/login", user
	status := 200
	if ok {
		ev.Type, ev.Action, ev.Outcome = []string{event.TypeStart, event.TypeAllowed}, event.ActionLoginSuccess, event.OutcomeSuccess
	} else {
		g.st.FailedLogins++
		ev.Type, ev.Action, ev.Outcome, ev.Reason = []string{event.TypeStart, event.TypeDenied}, event.ActionLoginFail, event.OutcomeFailure, reason
		status = 401
	}
	g.write(ev)
	g.accessUA(ip, "", "POST", "/api/login", "", status, ua)
}

func (g *gen) authzFail(ip, user, path string) {
	g.st.AuthzFail++
	ev := g.base(ip, browsers[0])
	ev.Category, ev.Type, ev.Dataset = []string{event.CategoryIAM}, []string{event.TypeDenied}, event.DatasetAudit
	ev.Action, ev.Outcome, ev.Reason = event.ActionAuthzFail, event.OutcomeFailure, "role viewer may not change roles"
	ev.Method, ev.Path, ev.UserName, ev.StatusCode = "PUT", path, user, 403
	g.write(ev)
}
