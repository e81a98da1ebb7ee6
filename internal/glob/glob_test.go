package glob

import (
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/trailguard/trailguard/internal/stalltest"
)

// parts reads a test pattern: * and ? are wildcards, every other byte is
// literal (the callers' escapes are theirs to test).
func parts(p string) []Part {
	var out []Part
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '*':
			out = append(out, Part{Star: true})
		case '?':
			out = append(out, Part{One: true})
		default:
			if n := len(out); n > 0 && !out[n-1].Star && !out[n-1].One {
				out[n-1].Lit += p[i : i+1]
			} else {
				out = append(out, Part{Lit: p[i : i+1]})
			}
		}
	}
	return out
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		p, s       string
		fold, want bool
	}{
		{p: "", s: "", want: true},
		{p: "", s: "a", want: false},
		{p: "*", s: "", want: true},
		{p: "**", s: "abc", want: true},
		{p: "?", s: "", want: false},
		{p: "?", s: "é", want: true},             // one character, two bytes
		{p: "??", s: "é", want: false},           // not two
		{p: "?", s: "\xff", want: true},          // an invalid byte is one
		{p: "a?c", s: "a\xe2\x82c", want: false}, // a cut rune is two invalid bytes
		{p: "a??c", s: "a\xe2\x82c", want: true},
		{p: "a*b*c", s: "aXbYc", want: true},
		{p: "a*b*c", s: "aXbY", want: false},
		{p: "a*b", s: "abXb", want: true}, // the star takes "bX"
		{p: "*a*a*a*a*b", s: strings.Repeat("a", 200), want: false},
		{p: "*ab", s: "aab", want: true},
		{p: "a*", s: "A", want: false},
		{p: "a*", s: "A", fold: true, want: true},
		{p: "*LOGIN*", s: "authn_login_fail", fold: true, want: true},
		{p: "*LOGIN*", s: "authn_login_fail", want: false},
		{p: "?É", s: "xé", fold: true, want: false}, // ASCII case only
		{p: "x[", s: "X{", fold: true, want: false}, // '[' is not '{' folded
		{p: "ab", s: "a", fold: true, want: false},
	} {
		if got := Match(parts(tc.p), tc.s, tc.fold); got != tc.want {
			t.Errorf("Match(%q, %q, fold %v) = %v, want %v", tc.p, tc.s, tc.fold, got, tc.want)
		}
	}
}

// TestMatchLinear: a pattern that backtracking at every star would take
// exponential time on answers at once.
func TestMatchLinear(t *testing.T) {
	p := parts(strings.Repeat("*a", 30) + "*b")
	s := strings.Repeat("a", 10000)
	if Match(p, s, false) || Match(p, s, true) {
		t.Fatal("matched")
	}
}

// TestMatchLongLiteral: a long literal that almost occurs all along a long
// value costs a search of the value, not a comparison at each of its
// characters (a read token's query against 256 KiB records took about a
// second a record; here several seconds a case before, milliseconds now).
func TestMatchLongLiteral(t *testing.T) {
	lit := strings.Repeat("a", 16<<10)
	s := strings.Repeat("a", 4<<20)
	for _, tc := range []struct {
		name, p, s string
		want       bool
	}{
		{"a substring that does not occur", "*" + lit + "b*", s, false},
		{"a substring that occurs at the end", "*" + lit + "b*", s + "b", true},
		{"a suffix that does not end it", "*" + lit, s + "b", false},
		{"a suffix that ends it", "*" + lit, s, true},
		{"literals in turn, the last missing", "*a*" + lit + "b*", s, false},
	} {
		matchWithin(t, tc.name, tc.p, tc.s, tc.want)
	}
}

// FuzzMatch checks Match against regexp: * is (?s:.*), ? is (?s:.), which
// takes an invalid byte as one character too; with fold, both sides are
// lower-cased (ASCII) first, since (?i) folds beyond ASCII. Patterns are
// valid UTF-8 without U+FFFD: regexp reads its pattern as text, and reads
// an invalid byte of the input as U+FFFD, which a literal compares byte for
// byte.
func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{{"a*b?c", "aXXbéc"}, {"*", ""}, {"?", "\xff"}, {"*A*", "xax"}, {"**?", "\xe2\x82"}} {
		f.Add(s[0], s[1], false)
		f.Add(s[0], s[1], true)
	}
	f.Fuzz(func(t *testing.T, p, s string, fold bool) {
		if len(p) > 64 || len(s) > 256 || !utf8.ValidString(p) || strings.ContainsRune(p, utf8.RuneError) {
			return
		}
		ps := parts(p)
		re, rs := p, s
		if fold {
			re, rs = lower(p), lower(s)
		}
		var b strings.Builder
		b.WriteString(`^(?s:`)
		for _, q := range parts(re) {
			switch {
			case q.Star:
				b.WriteString(`.*`)
			case q.One:
				b.WriteString(`.`)
			default:
				b.WriteString(regexp.QuoteMeta(q.Lit))
			}
		}
		b.WriteString(`)$`)
		want := regexp.MustCompile(b.String()).MatchString(rs)
		if got := Match(ps, s, fold); got != want {
			t.Fatalf("Match(%q, %q, fold %v) = %v, regexp %s says %v", p, s, fold, got, b.String(), want)
		}
		if got := match(ps, s, fold, 0); got != want {
			t.Fatalf("match(%q, %q, fold %v) with shiftAnd = %v, regexp %s says %v", p, s, fold, got, b.String(), want)
		}
	})
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// TestMatchWildcardSegment: a segment between stars that holds ? (a
// read token's free-text "*a?a?…b*") is searched in one pass over a long
// value, not tried at each of its characters (1.6 s over 100 KiB before,
// the query's 4,096 bytes over a 1 MiB record half a minute: a search's
// and a live tail's bounds are checked between records).
func TestMatchWildcardSegment(t *testing.T) {
	seg := strings.Repeat("a?", 1000)
	s := strings.Repeat("a", 256<<10)
	for _, tc := range []struct {
		name, p, s string
		want       bool
	}{
		{"a segment that does not occur", "*" + seg + "b*", s, false},
		{"a segment that occurs at the end", "*" + seg + "b*", s + "b", true},
		{"a segment that ends it", "*" + seg, s, true},
		{"a segment that does not end it", "*" + seg + "?b", s + "bc", false},
		{"segments in turn, the last missing", "*a?a*" + seg + "c*", s + "b", false},
		{"non-ASCII", "*é?" + strings.Repeat("é?", 500) + "ü*", strings.Repeat("é", 128<<10) + "üx", true},
	} {
		matchWithin(t, tc.name, tc.p, tc.s, tc.want)
	}
}

// matchWithin checks that p matches s as want says, with and without case
// folding, each within a second of CPU time: the match's own, which a
// loaded machine does not make longer (the wall clock does: at load 14 on
// two cores, 0.1 s matches took 1-5 s with no stall over 0.3 s).
func matchWithin(t *testing.T, name, p, s string, want bool) {
	t.Helper()
	for _, fold := range []bool{false, true} {
		var got bool
		cpu, ok := stalltest.RunCPU(func() { got = Match(parts(p), s, fold) }, time.Second)
		if !ok {
			t.Fatalf("%s (fold %v): still matching after %v of CPU time", name, fold, cpu)
		}
		if got != want {
			t.Errorf("%s (fold %v): %v, want %v", name, fold, got, want)
		}
	}
}
