package demo

import (
	"bytes"
	"cmp"
	"encoding/json"
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

// Story is what one attacking address did, told from the collector's
// trail alone (the shop's events, the gateway's, the alerts and the block
// decisions): nothing in it comes from the traffic generator's script.
type Story struct {
	Address   string // client.ip (or source.ip)
	UserAgent string // the first one it used
	Steps     []Step
	// Figures for the summary and the tests.
	BadPasswords int      // failed logins naming an existing user
	TargetUser   string   // the user those were for (the most tried)
	UnknownUsers int      // distinct user names tried that do not exist
	LoggedInAs   string   // user of its first successful login, if any
	Probes       []string // its other requests, as "METHOD target → status"
	Alerts       []string // titles of the alerts raised about it
	Blocked      bool     // a block decision was made against it
	Refused      int      // its requests the gateway refused
	// Withheld counts its requests that were in flight when the block came:
	// the gateway answered 403 instead of the shop's answer (which the
	// trail keeps), so that the last guesses never learn their result.
	Withheld int
}

// Step is one thing the attacker did, or one thing done about it.
type Step struct {
	At, Until time.Duration // since the demo's start
	Text      string        // for a person; attacker-controlled text escaped
}

// request is one HTTP request of the attacker, from its events (the
// gateway's and the shop's access events and whatever the shop recorded
// for it).
type request struct {
	at                   time.Time
	method, target       string
	status               int
	ua                   string
	login                *event.Event // authn_login_fail or authn_login_success
	refused              bool         // the gateway refused it (request_blocked)
	withheld             bool         // the gateway withheld the shop's answer (response_withheld)
	withheldAt           time.Time    // when it did (after the block; the request started before)
	reasons              []string     // of other events (input_validation_fail, authz_fail…)
	cleanPath, rawTarget string
}

// mark is an alert or a block decision about an address.
type mark struct {
	at   time.Time
	text string
}

// trail is the collector's records, decoded for the story.
type trail struct {
	events []*event.Event
	marks  map[string][]mark // by address
	order  []string          // addresses with alerts, by first alert
}

func addrOf(e *event.Event) string { return cmp.Or(e.ClientIP, e.SourceIP) }

// readTrail decodes the records of a ledger for the stories.
func readTrail(recs [][]byte) *trail {
	t := &trail{marks: map[string][]mark{}}
	for _, data := range recs {
		if bytes.Contains(data, []byte(`"trailguard.alert"`)) || bytes.Contains(data, []byte(`"block_decision_`)) {
			var r record
			if json.Unmarshal(data, &r) != nil || r.Client.IP == "" {
				continue
			}
			a := r.Client.IP
			// An alert and the block it asks for are stored together, in
			// either order: the first of them names the address.
			if len(t.marks[a]) == 0 && (r.Event.Kind == "alert" || r.Event.Action == "block_decision_created") {
				t.order = append(t.order, a)
			}
			switch {
			case r.Event.Kind == "alert":
				t.marks[a] = append(t.marks[a], mark{r.TS, "alert: " + r.Rule.Name})
			case r.Event.Action == "block_decision_created":
				t.marks[a] = append(t.marks[a], mark{r.TS, "blocked for " + shortDur(r.TG.Decision.Duration) + " (" + r.Rule.Name + ")"})
			}
			continue
		}
		e, err := event.Decode(data)
		if err != nil {
			continue
		}
		t.events = append(t.events, e)
	}
	return t
}

// stories tells what each address that was blocked did; others is what
// was raised about the addresses that were not blocked (users poking at
// what their role does not allow: those rules ask for no block).
func (t *trail) stories(start time.Time) (blocked []Story, others []Story) {
	for _, a := range t.order {
		st := t.tell(a, start)
		if st.Blocked {
			blocked = append(blocked, st)
		} else {
			others = append(others, st)
		}
	}
	return blocked, others
}

// tell reconstructs one address's story.
func (t *trail) tell(address string, start time.Time) Story {
	st := Story{Address: address}
	byID := map[string]*request{}
	var reqs []*request
	for _, e := range t.events {
		if addrOf(e) != address || e.ServiceName == "trailguard-collector" {
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
			if r.method == "" || e.ServiceName == "demo-shop" {
				r.method, r.status, r.ua = e.Method, e.StatusCode, e.UserAgent
				r.rawTarget = cmp.Or(e.Original, e.Path+query(e.Query))
				r.target = display(r.rawTarget)
				r.cleanPath = path.Clean(e.Path)
			}
		case event.ActionLoginFail, event.ActionLoginSuccess:
			r.login = e
		case "request_blocked":
			r.refused = true
		case "response_withheld":
			r.withheld, r.withheldAt = true, e.Timestamp
		default:
			if e.Reason != "" {
				r.reasons = append(r.reasons, e.Action+": "+e.Reason)
			}
		}
	}
	// A withheld answer is told when the gateway gave it, after the block
	// that caused it, not when its request started.
	for _, r := range reqs {
		if r.withheld {
			r.at = r.withheldAt
		}
	}
	slices.SortStableFunc(reqs, func(a, b *request) int { return a.at.Compare(b.at) })
	if len(reqs) > 0 {
		st.UserAgent = reqs[0].ua
	}
	marks := slices.Clone(t.marks[address])
	slices.SortStableFunc(marks, func(a, b mark) int { return a.at.Compare(b.at) })
	for _, m := range marks {
		if strings.HasPrefix(m.text, "alert: ") {
			st.Alerts = append(st.Alerts, strings.TrimPrefix(m.text, "alert: "))
		} else {
			st.Blocked = true
		}
	}

	// Consecutive requests of one kind make one step, unless an alert or a
	// block comes between them.
	kind := func(r *request) string {
		switch {
		case r.refused:
			return "refused"
		case r.withheld:
			return "withheld"
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
	mi := 0
	flushMarks := func(before time.Time) {
		for mi < len(marks) && (before.IsZero() || marks[mi].at.Before(before)) {
			st.Steps = append(st.Steps, Step{At: since(marks[mi].at), Until: since(marks[mi].at), Text: strings.ToUpper(marks[mi].text[:1]) + display(marks[mi].text[1:])})
			mi++
		}
	}
	for i := 0; i < len(reqs); {
		flushMarks(reqs[i].at)
		k := kind(reqs[i])
		j := i + 1
		for k != "request" && !strings.HasPrefix(k, "success") && j < len(reqs) && kind(reqs[j]) == k &&
			(mi >= len(marks) || reqs[j].at.Before(marks[mi].at)) {
			j++
		}
		group := reqs[i:j]
		step := Step{At: since(group[0].at), Until: since(group[len(group)-1].at)}
		first := group[0]
		switch {
		case k == "refused":
			st.Refused += len(group)
			step.Text = plural(len(group), "request") + " refused by the gateway (403)"
		case k == "withheld":
			st.Withheld += len(group)
			step.Text = plural(len(group), "request") + " in flight when the block came: the gateway withheld the shop's answer (403 instead)"
		case strings.HasPrefix(k, "fail "):
			user := first.login.UserName
			perUser[user] += len(group)
			step.Text = fmt.Sprintf("%s as %s (%s)", plural(len(group), "failed login"), display(user), display(first.login.Reason))
		case k == "unknown":
			names := make([]string, 0, len(group))
			for _, r := range group {
				if !unknown[r.login.UserName] {
					unknown[r.login.UserName] = true
					names = append(names, r.login.UserName)
				}
			}
			switch len(names) {
			case 0:
				step.Text = plural(len(group), "failed login") + " as user names that do not exist"
			case 1:
				step.Text = fmt.Sprintf("%s as %s, which does not exist", plural(len(group), "failed login"), display(names[0]))
			default:
				// The attacker's requests overlap, so their order is not
				// the list's: show its first and last names.
				slices.Sort(names)
				step.Text = fmt.Sprintf("%s as %d user names that do not exist (%s … %s)", plural(len(group), "failed login"), len(names),
					display(names[0]), display(names[len(names)-1]))
			}
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
	flushMarks(time.Time{})
	for u, n := range perUser {
		if n > st.BadPasswords {
			st.TargetUser, st.BadPasswords = u, n
		}
	}
	st.UnknownUsers = len(unknown)
	return st
}

// plural says "1 request", "3 requests".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
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

// maxSteps bounds a printed story; the rest is counted.
const maxSteps = 16

// Print writes the story as a short timeline.
func (st Story) Print(w io.Writer) {
	if st.Address == "" {
		return
	}
	fmt.Fprintf(w, "\nwhat %s did (user agent %s), as the trail tells it:\n", display(st.Address), display(st.UserAgent))
	steps := st.Steps
	if len(steps) > maxSteps {
		steps = steps[:maxSteps]
	}
	for _, s := range steps {
		when := fmt.Sprintf("+%.2fs", s.At.Seconds())
		if s.Until-s.At >= 10*time.Millisecond {
			when += fmt.Sprintf("–%.2fs", s.Until.Seconds())
		}
		fmt.Fprintf(w, "  %-14s %s\n", when, s.Text)
	}
	if n := len(st.Steps) - len(steps); n > 0 {
		fmt.Fprintf(w, "  … and %d more steps\n", n)
	}
}
