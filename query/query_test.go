package query

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/trailguard/trailguard/internal/glob"
)

func TestParseCanonical(t *testing.T) {
	tests := []struct{ in, want string }{
		{`user.name:alice`, `user.name:alice`},
		{`  user.name : alice  `, `user.name:alice`},
		{`user.name:alice and event.outcome:failure and not source.ip:10.0.0.0/8`, `user.name:alice and event.outcome:failure and not source.ip:10.0.0.0/8`},
		{`A AND b Or NOT c`, `A and b or not c`},
		{`a or b and c`, `a or b and c`},
		{`(a or b) and c`, `(a or b) and c`},
		{`a and (b and c)`, `a and b and c`},
		{`((a))`, `a`},
		{`not (a or b)`, `not (a or b)`},
		{`not not a`, `not not a`},
		{`url.path:/api/*`, `url.path:/api/*`},
		{`url.path:/a\*b`, `url.path:"/a*b"`},
		{`url.path:/a\*b*`, `url.path:/a\*b*`},
		{`user.name:"alice smith"`, `user.name:"alice smith"`},
		{`user.name:"a \"q\" \\ b"`, `user.name:"a \"q\" \\ b"`},
		{`user.name:"and"`, `user.name:"and"`},
		{`user.name:"*"`, `user.name:"*"`},
		{`user.name:*`, `user.name:*`},
		{`user.name:(*)`, `user.name:*`},
		{`user.name:(a or b or c)`, `user.name:(a or b or c)`},
		{`user.name:a or user.name:b`, `user.name:(a or b)`},
		{`user.name:(a and not b)`, `user.name:(a and not b)`},
		{`not user.name:(a or b)`, `not user.name:(a or b)`},
		{`user.name:(a or b) and c`, `user.name:(a or b) and c`},
		{`user.name:(a and b) or c`, `user.name:(a and b) or c`},
		{`http.response.status_code >= 400`, `http.response.status_code >= 400`},
		{`http.response.status_code<500`, `http.response.status_code < 500`},
		{`http.response.status_code:401`, `http.response.status_code:401`},
		{`@timestamp >= 2026-01-01T00:00:00Z and @timestamp < "2026-01-02T00:00:00.5+01:00"`, `@timestamp >= 2026-01-01T00:00:00Z and @timestamp < 2026-01-02T00:00:00.5+01:00`},
		{`@timestamp > 2026-01-01`, `@timestamp > 2026-01-01`},
		{`source.ip:2001:db8::/32`, `source.ip:2001:db8::/32`},
		{`client.ip:203.0.113.*`, `client.ip:203.0.113.*`},
		{`brute`, `brute`},
		{`"brute force"`, `"brute force"`},
		{`admin*`, `admin*`},
		{`"a:b"`, `"a:b"`},
		{`a\:b`, `"a:b"`},
		{`labels.env:prod`, `labels.env:prod`},
		{`trailguard.x >= 10`, `trailguard.x >= 10`},
		{`user.name > m`, `user.name > m`},
		{"a\tand\nb", `a and b`},
		{`héllo`, `héllo`},
		{`f:(a or (b and c))`, `f:(a or b and c)`},
		{"f:(" + strings.Repeat("not ", 31) + "x or y) and f:c", "f:((" + strings.Repeat("not ", 31) + "x or y) and c)"},
	}
	for _, tt := range tests {
		e, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := e.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		e2, err := Parse(e.String())
		if err != nil || e2.String() != e.String() {
			t.Errorf("re-parse of %q: %v, %v", e.String(), e2, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		in  string
		pos int
		msg string
	}{
		{``, 0, "empty query"},
		{`   `, 3, "empty query"},
		{`user.name:`, 10, "expected a value after ':'"},
		{`event.outcome:failure and user.name:`, 36, "expected a value after ':'"},
		{`user.name: )`, 11, "expected a value after ':'"},
		{`a b`, 2, `found "b"`},
		{`a and`, 5, "unexpected end of query"},
		{`a or or b`, 5, `expected a term, found "or"`},
		{`and a`, 0, `expected a term, found "and"`},
		{`(a or b`, 7, "expected ')' to close '(' at position 0"},
		{`(a b)`, 3, `expected 'and', 'or' or ')', found "b"`},
		{`a)`, 1, "unexpected ')'"},
		{`)`, 0, "unexpected ')'"},
		{`()`, 1, "empty parentheses"},
		{`"abc`, 0, "unterminated quoted string"},
		{`user.name:"abc`, 10, "unterminated quoted string"},
		{`a\`, 1, "backslash at the end"},
		{`"a\`, 2, "backslash at the end"},
		{`us*er:x`, 0, `invalid field name "us*er"`},
		{`a..b:x`, 0, `invalid field name "a..b"`},
		{`not>0`, 0, `"not" is an operator, not a field name`},
		{`a and OR<=1`, 6, `"OR" is an operator, not a field name`},
		{`and:x`, 0, `"and" is an operator, not a field name`},
		{`:x`, 0, "expected a term"},
		{`x >`, 3, "expected a value after '>'"},
		{`x >= (`, 5, "expected a value after '>='"},
		{`x > a*`, 4, "wildcards are not allowed in a range"},
		{`http.response.status_code:abc`, 26, "needs a number"},
		{`http.response.status_code >= 4xx`, 29, "needs a number"},
		{`http.response.status_code:4*`, 26, "wildcards are not allowed"},
		{`@timestamp > yesterday`, 13, "RFC 3339"},
		{`@timestamp:2026-13-01T00:00:00Z`, 11, "RFC 3339"},
		{`source.ip:10.0.0.0/33`, 10, "IP address or CIDR"},
		{`source.ip:localhost`, 10, "IP address or CIDR"},
		{`source.ip > 10.0.0.1`, 10, "use a CIDR network"},
		{`url.path:(a or`, 14, "unexpected end of query"},
		{`not`, 3, "unexpected end of query"},
		{strings.Repeat("(", 33) + "a" + strings.Repeat(")", 33), 32, "nesting deeper than 32"},
		{strings.Repeat("not ", 33) + "a", 128, "nesting deeper than 32"},
		// Within the limit as written, but its canonical form,
		// f:((not … x or y) and c), nests one deeper.
		{"f:(" + strings.Repeat("not ", 32) + "x or y) and f:c", 127, "nesting deeper than 32 once the terms on one field are written as one group"},
		{strings.Repeat("a", MaxLen+1), MaxLen, "longer than 4096 bytes"},
		// 4092 bytes as written, but the canonical form quotes each
		// value ("a b" for a\ b): 4604 bytes, which Parse would refuse.
		{strings.Repeat(`a\ b or `, 511) + `a\ b`, 0, "longer than 4096 bytes as written canonically (4604 bytes)"},
	}
	for _, tt := range tests {
		_, err := Parse(tt.in)
		var qe *Error
		if !errors.As(err, &qe) {
			t.Errorf("Parse(%.40q) error = %v, want *Error", tt.in, err)
			continue
		}
		if qe.Pos != tt.pos || !strings.Contains(qe.Msg, tt.msg) {
			t.Errorf("Parse(%.40q) = %v, want position %d and %q", tt.in, err, tt.pos, tt.msg)
		}
		if !strings.HasPrefix(err.Error(), "query: position ") {
			t.Errorf("error text %q", err)
		}
	}
	// The limits are exactly the limits.
	ok := []string{
		strings.Repeat("(", 32) + "a" + strings.Repeat(")", 32),
		strings.Repeat("not ", 32) + "a",
		strings.Repeat("a", MaxLen),
		`a\ b or ` + strings.Repeat("c", MaxLen-9), // canonically "a b" or ccc…, MaxLen bytes
	}
	for _, s := range ok {
		if _, err := Parse(s); err != nil {
			t.Errorf("Parse(%.40q…): %v", s, err)
		}
	}
}

const sample = `{"@timestamp":"2026-11-25T17:40:49.935709667Z","event":{"kind":"event","category":["authentication","web"],
"action":"authn_login_fail","outcome":"failure","reason":"Bad Password","duration":1500000,"id":"e1"},
"http":{"request":{"id":"r1","method":"POST"},"response":{"status_code":401}},"url":{"path":"/api/login"},
"source":{"ip":"10.1.2.3","port":55358},"client":{"ip":"::ffff:203.0.113.66"},"user":{"name":"alice","roles":[]},
"host":{"ip":["192.168.1.5","fe80::1"]},"labels":{"env":"prod","flag":"true"},"destination.ip":"2001:db8::7",
"trailguard":{"attrs":{"ok":true,"n":7,"items":[{"k":"a"},{"k":"b"}],"nothing":null,"msg":"x*y?z"}}}`

func TestMatch(t *testing.T) {
	doc, err := Flatten([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		q    string
		want bool
	}{
		{`user.name:alice`, true},
		{`user.name:Alice`, false},
		{`user.name:bob`, false},
		{`user.name:alice and event.outcome:failure`, true},
		{`user.name:alice and not event.outcome:failure`, false},
		{`user.name:bob or event.outcome:failure`, true},
		{`not user.name:bob`, true},
		{`not missing.field:x`, true},
		{`user.name:(bob or alice)`, true},
		{`user.name:(bob or carol)`, false},
		{`user.name:(not bob and not carol)`, true},
		{`user.name:*`, true},
		{`user.roles:*`, false},
		{`trailguard.attrs.nothing:*`, false},
		{`missing:*`, false},
		{`url.path:/api/*`, true},
		{`url.path:/api/log?n`, true},
		{`url.path:/api/log?`, false},
		{`url.path:*/login`, true},
		{`url.path:/API/*`, false},
		{`url.path:"/api/*"`, false},
		{`trailguard.attrs.msg:x\*y\?z`, true},
		{`trailguard.attrs.msg:"x*y?z"`, true},
		{`trailguard.attrs.msg:x\*a*`, false},
		{`http.response.status_code:401`, true},
		{`http.response.status_code:401.0`, true},
		{`http.response.status_code:402`, false},
		{`http.response.status_code >= 400`, true},
		{`http.response.status_code > 401`, false},
		{`http.response.status_code <= 401`, true},
		{`http.response.status_code < 401`, false},
		{`event.duration >= 1e6`, true},
		{`@timestamp >= 2026-11-25T17:40:49Z`, true},
		{`@timestamp > 2026-11-25T17:40:49.935709667Z`, false},
		{`@timestamp >= 2026-11-25T18:40:49.935709667+01:00`, true},
		{`@timestamp:2026-11-25T17:40:49.935709667Z`, true},
		{`@timestamp < 2026-11-26`, true},
		{`source.ip:10.0.0.0/8`, true},
		{`source.ip:10.1.2.3`, true},
		{`source.ip:10.1.2.4`, false},
		{`not source.ip:10.0.0.0/8`, false},
		{`source.ip:192.168.0.0/16`, false},
		{`client.ip:203.0.113.0/24`, true},
		{`client.ip:::ffff:203.0.113.0/120`, true},
		{`host.ip:192.168.0.0/16`, true},
		{`host.ip:fe80::/10`, true},
		{`host.ip:10.0.0.0/8`, false},
		{`destination.ip:2001:db8::/32`, true},
		{`source.ip:10.1.*`, true},
		{`event.category:web`, true},
		{`event.category:(authentication and web)`, true},
		{`event.category:iam`, false},
		{`labels.env:prod`, true},
		{`labels.flag:true`, true},
		{`trailguard.attrs.ok:true`, true},
		{`trailguard.attrs.ok:"true"`, true},
		{`trailguard.attrs.n:7`, true},
		{`trailguard.attrs.n > 6`, true},
		{`trailguard.attrs.n > seven`, false},
		{`trailguard.attrs.items.k:b`, true},
		{`user.name > alic`, true},
		{`user.name >= b`, false},
		{`alice`, true},
		{`ALICE`, true},
		{`"bad password"`, true},
		{`login`, true},
		{`log*fail`, true},
		{`logx*`, false},
		{`401`, true},
		{`1500000`, true},
		{`reason`, false},
		{`authentication`, true},
		{`zzz`, false},
		{`event.kind:event and (user.name:bob or http.request.method:POST) and not source.ip:10.1.2.3`, false},
		{`event.kind:event and (user.name:bob or http.request.method:POST) and not source.ip:10.1.2.4`, true},
	}
	for _, tt := range tests {
		e, err := Parse(tt.q)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.q, err)
			continue
		}
		if got := e.Match(doc); got != tt.want {
			t.Errorf("%q.Match = %v, want %v", tt.q, got, tt.want)
		}
	}
}

func TestFlatten(t *testing.T) {
	d, err := Flatten([]byte(`{"a":{"b":1},"a.c":"x","l":[1,[2,{"m":3}]],"e":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d["a.b"] != jsonNum("1") || d["a.c"] != "x" || len(d["l"].([]any)) != 2 || d["l.m"] != jsonNum("3") {
		t.Fatalf("Flatten = %#v", d)
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{"a":1} {}`, `{"a":`, strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)} {
		if _, err := Flatten([]byte(bad)); err == nil {
			t.Errorf("Flatten(%.30q) succeeded", bad)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"?", "", false}, {"?", "é", true}, {"a*b*c", "aXbYc", true},
		{"a*b*c", "aXbY", false}, {"*a*a*a*a*b", strings.Repeat("a", 200), false},
		{"ab", "ab", true}, {"a?", "ab", true}, {"a\\*", "a*", true}, {"a\\*", "ab", false},
	}
	for _, tt := range tests {
		if got := glob.Match(Pattern(tt.p), tt.s, false); got != tt.want {
			t.Errorf("glob(%q, %q) = %v", tt.p, tt.s, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{`user.name:alice and not source.ip:10.0.0.0/8`, `url.path:/api/*`, `x >= 4`,
		`f:("a\"b" or c\ d)`, `not (a or b) and c`, `@timestamp > 2026-01-01T00:00:00Z`, `"x" y`, `a\:b`, `f:(not (a or b))`} {
		f.Add(s)
	}
	doc, err := Flatten([]byte(sample))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := Parse(s)
		if err != nil {
			var qe *Error
			if !errors.As(err, &qe) || qe.Pos < 0 || qe.Pos > len(s) {
				t.Fatalf("Parse(%q): bad error %v", s, err)
			}
			return
		}
		e.Match(doc)
		c := e.String()
		e2, err := Parse(c)
		if err != nil {
			t.Fatalf("Parse(%q) ok, but its String %q does not parse: %v", s, c, err)
		}
		if c2 := e2.String(); c2 != c {
			t.Fatalf("Parse(%q).String() = %q, re-parsed gives %q", s, c, c2)
		}
		if utf8.ValidString(s) && e2.Match(doc) != e.Match(doc) {
			t.Fatalf("%q and its canonical form %q match differently", s, c)
		}
	})
}

func jsonNum(s string) any { return json.Number(s) }

// canonical is a Doc with every value as a sorted list of its values, so
// that two Docs compare equal when Match cannot tell them apart.
func canonical(d Doc) map[string][]string {
	out := map[string][]string{}
	for k, v := range d {
		l, isList := v.([]any)
		if !isList {
			l = []any{v}
		}
		var s []string
		for _, x := range l {
			s = append(s, fmt.Sprintf("%T:%v", x, x))
		}
		slices.Sort(s)
		out[k] = s
	}
	return out
}

// checkFlatten fails unless the one-pass Flatten gives what decoding into
// maps gives, whenever it does not decline.
func checkFlatten(t *testing.T, data []byte) (fast bool) {
	t.Helper()
	slow, serr := flattenSlow(data)
	doc, ok := flattenFast(data)
	if !ok {
		return false
	}
	if serr != nil {
		t.Fatalf("%q: fast path succeeded where decoding fails: %v", data, serr)
	}
	if a, b := canonical(doc), canonical(slow); !reflect.DeepEqual(a, b) {
		t.Fatalf("%q:\nfast %v\nslow %v", data, a, b)
	}
	return true
}

var flattenSeeds = []string{
	`{"a":{"b":1},"a.c":"x","l":[1,[2,{"m":3}]],"e":[]}`,
	`{"@timestamp":"2026-11-25T17:40:49.9Z","event":{"kind":"event","category":["authentication"],"id":"x"},"http":{"request":{"id":"r"},"response":{"status_code":401}},"user":{"name":"al\"ice","roles":[]},"n":null,"b":true,"f":false,"x":-1.5e3}`,
	`{"a":{"b":1},"a.b":2}`, `{"a":[],"a":1}`, `{"a":{"b":1},"a":{"c":2}}`, `{"x":{"a":[]},"x.a":1}`, `{"a":[[],[[]]]}`, `{"":{"":""}}`,
	`{"u\u0073er":"\u00e9\ud83d\ude00\n","bad":"\xff"}`, `{"a":{"b":{}}}`, ` {"a":1} `, `{"a":1}x`, `[]`, `"s"`, `{`,
	`{"k":` + strings.Repeat(`[`, 40) + strings.Repeat(`]`, 40) + `}`,
	`{"k":` + strings.Repeat(`{"a":`, 31) + `1` + strings.Repeat(`}`, 31) + `}`,
}

func TestFlattenFastAgrees(t *testing.T) {
	for _, s := range flattenSeeds {
		checkFlatten(t, []byte(s))
	}
	if !checkFlatten(t, []byte(flattenSeeds[1])) {
		t.Fatal("the fast path declined an ordinary event")
	}
	// Many keys stay cheap, and a repeated one among them is noticed.
	var b strings.Builder
	b.WriteString(`{`)
	for i := range 5000 {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	b.WriteString(`"k17":0}`)
	if _, ok := flattenFast([]byte(b.String())); ok {
		t.Fatal("a repeated key among many was not noticed")
	}
}

func FuzzFlatten(f *testing.F) {
	for _, s := range flattenSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFlatten(t, data)
	})
}

func BenchmarkFlatten(b *testing.B) {
	data := []byte(flattenSeeds[1])
	for b.Loop() {
		d, err := Flatten(data)
		if err != nil || d["user.name"] != `al"ice` {
			b.Fatal(d, err)
		}
	}
}

// BenchmarkMatchWildcard is the search-result check of wildcard terms and
// free text (which tests every value of the event, ignoring case).
func BenchmarkMatchWildcard(b *testing.B) {
	doc, err := Flatten([]byte(sample))
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{`url.path:/api/*n`, `PASSWORD`, `ali*e`} {
		e, err := Parse(q)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(q, func(b *testing.B) {
			for b.Loop() {
				if !e.Match(doc) {
					b.Fatal(q)
				}
			}
		})
	}
}
