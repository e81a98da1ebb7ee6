package demo

import (
	"cmp"
	"fmt"
	"io"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/trailguard/trailguard/event"
)

// Story is what the most active source of failed logins did, told from the
// trail alone: nothing in it comes from the traffic generator's script.
type Story struct {
	Address   string // client.ip (or source.ip) with the most failed logins
	UserAgent string // the first one it used
	Steps     []Step
	// Figures for the summary and the tests.
	BadPasswords int      // failed logins naming an existing user
	TargetUser   string   // the user those were for (the most tried)
	UnknownUsers int      // distinct user names tried that do not exist
	LoggedInAs   string   // user of its first successful login, if any
	Probes       []string // its other requests, as "METHOD target → status"
}

// Step is one thing the attacker did.
type Step struct {
	At, Until time.Duration // since the trail's first event
	Text      string        // for a person; attacker-controlled text escaped
}

// request is one HTTP request of the attacker, from its events (the access
// event and whatever the application recorded for it).
type request struct {
	at                   time.Time
	method, target       string
	status               int
	ua                   string
	login                *event.Event // authn_login_fail or authn_login_success
	reasons              []string     // of other events (input_validation_fail, authz_fail…)
	cleanPath, rawTarget string
}

// tellStory reconstructs the attacker's story from the trail's events.
// start is the time of the trail's first event.
func tellStory(evs []*event.Event, start time.Time) Story {
	addr := func(e *event.Event) string { return cmp.Or(e.ClientIP, e.SourceIP) }
	fails := map[string]int{}
	for _, e := range evs {
		if e.Action == event.ActionLoginFail {
			fails[addr(e)]++
		}
	}
	var st Story
	best := 0
	for a, n := range fails {
		if n > best || n == best && a < st.Address {
			st.Address, best = a, n
		}
	}
	if st.Address == "" {
		return st
	}
	byID := map[string]*request{}
	var reqs []*request
	for _, e := range evs {
		if addr(e) != st.Address {
			continue
		}
		id := cmp.Or(e.RequestID, e.ID)
		r := byID[id]
		if r == nil {
			r = &request{at: e.Timestamp}
			byID[id] = r
			reqs = append(reqs, r)
		}
		if e.Timestamp.Before(r.at) {
			r.at = e.Timestamp
		}
		switch e.Action {
		case event.ActionHTTPRequest:
			r.method, r.status, r.ua = e.Method, e.StatusCode, e.UserAgent
			r.rawTarget = cmp.Or(e.Original, e.Path+query(e.Query))
			r.target = display(r.rawTarget)
			r.cleanPath = path.Clean(e.Path)
		case event.ActionLoginFail, event.ActionLoginSuccess:
			r.login = e
		default:
			if e.Reason != "" {
				r.reasons = append(r.reasons, e.Action+": "+e.Reason)
			}
		}
	}
	slices.SortStableFunc(reqs, func(a, b *request) int { return a.at.Compare(b.at) })
	if len(reqs) > 0 {
		st.UserAgent = reqs[0].ua
	}

	// Consecutive requests of one kind make one step.
	kind := func(r *request) string {
		switch {
		case r.login == nil:
			return "request"
		case r.login.Action == event.ActionLoginSuccess:
			return "success " + r.login.UserName
		case r.login.Reason == "unknown user":
			return "unknown"
		default:
			return "fail " + r.login.UserName + " " + r.login.Reason
		}
	}
	perUser := map[string]int{}
	unknown := map[string]bool{}
	since := func(t time.Time) time.Duration { return t.Sub(start) }
	ua := st.UserAgent
	for i := 0; i < len(reqs); {
		k := kind(reqs[i])
		j := i + 1
		for k != "request" && !strings.HasPrefix(k, "success") && j < len(reqs) && kind(reqs[j]) == k {
			j++
		}
		group := reqs[i:j]
		step := Step{At: since(group[0].at), Until: since(group[len(group)-1].at)}
		first := group[0]
		switch {
		case strings.HasPrefix(k, "fail "):
			user := first.login.UserName
			perUser[user] += len(group)
			step.Text = fmt.Sprintf("%d failed logins as %s (%s)", len(group), display(user), display(first.login.Reason))
		case k == "unknown":
			names := make([]string, 0, len(group))
			for _, r := range group {
				if !unknown[r.login.UserName] {
					unknown[r.login.UserName] = true
					names = append(names, r.login.UserName)
				}
			}
			step.Text = fmt.Sprintf("%d failed logins as %d user names that do not exist (%s … %s): credential stuffing",
				len(group), len(names), display(names[0]), display(names[len(names)-1]))
		case strings.HasPrefix(k, "success "):
			user := first.login.UserName
			if st.LoggedInAs == "" {
				st.LoggedInAs = user
			}
			step.Text = fmt.Sprintf("logged in as %s", display(user))
			if n := perUser[user]; n > 0 {
				step.Text += fmt.Sprintf(", after %d failed attempts for that account", n)
			}
		default:
			line := fmt.Sprintf("%s %s → %d", first.method, first.target, first.status)
			st.Probes = append(st.Probes, line)
			// A redirect followed at once (the application's router
			// cleaning ../) reads as one step.
			if first.status >= 300 && first.status < 400 && j < len(reqs) && kind(reqs[j]) == "request" &&
				reqs[j].cleanPath == first.cleanPath && reqs[j].rawTarget != first.rawTarget {
				next := reqs[j]
				j++
				st.Probes = append(st.Probes, fmt.Sprintf("%s %s → %d", next.method, next.target, next.status))
				line += fmt.Sprintf(", then %s %s → %d", next.method, next.target, next.status)
				step.Until = since(next.at)
			}
			if len(first.reasons) > 0 {
				line += " (" + display(strings.Join(first.reasons, "; ")) + ")"
			}
			step.Text = line
		}
		if first.ua != "" && first.ua != ua {
			step.Text += ", user agent now " + display(first.ua)
			ua = first.ua
		}
		st.Steps = append(st.Steps, step)
		i = j
	}
	for u, n := range perUser {
		if n > st.BadPasswords {
			st.TargetUser, st.BadPasswords = u, n
		}
	}
	st.UnknownUsers = len(unknown)
	return st
}

func query(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

// display makes untrusted text from the trail fit to print on a terminal:
// percent-escapes decoded so that a probe reads as the attacker meant it,
// then every control or invisible character escaped (CWE-117 applies to
// terminals too), and long values cut.
func display(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		s = d
	}
	var b strings.Builder
	n := 0
	for i, r := range s {
		if n == 100 {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			b.WriteString(`\x` + strconv.FormatUint(uint64(s[i]), 16))
		case unicode.IsGraphic(r) && (r == ' ' || !unicode.IsSpace(r)):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

// Print writes the story as a short timeline.
func (st Story) Print(w io.Writer) {
	if st.Address == "" {
		return
	}
	fmt.Fprintf(w, "\nwhat %s did (user agent %s), as the shop's trail tells it:\n", display(st.Address), display(st.UserAgent))
	for _, s := range st.Steps {
		when := fmt.Sprintf("+%.2fs", s.At.Seconds())
		if s.Until-s.At >= 10*time.Millisecond {
			when += fmt.Sprintf("–%.2fs", s.Until.Seconds())
		}
		fmt.Fprintf(w, "  %-14s %s\n", when, s.Text)
	}
}
