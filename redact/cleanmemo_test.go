package redact

import (
	"fmt"
	"hash/maphash"
	"strings"
	"testing"
)

// TestMemo: a memo answers as its redactor does, for clean values (which
// it then remembers), for values with secrets (which it must not), for a
// value clean for String but not for Query, and for values too long to
// remember; and a clean value stays clean when asked again.
func TestMemo(t *testing.T) {
	r := mustNew(t, Config{})
	m := r.NewMemo()
	long := strings.Repeat("a", MemoMaxLen) + "Bearer abcdef0123456789"
	cases := []string{
		"/api/v1/orders",
		"page=2&sort=desc",
		"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
		"token=abc",
		"%70assword=x", // clean as free text, a sensitive parameter as a query
		"auth=x&page=1",
		"/cb/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
		"Bearer abcdef0123456789",
		"4111 1111 1111 1111",
		long,
		"",
	}
	for round := range 3 {
		for _, s := range cases {
			if got, want := m.String(s), r.String(s); got != want {
				t.Errorf("round %d: String(%q) = %q, want %q", round, s, got, want)
			}
			if got, want := m.Query(s), r.Query(s); got != want {
				t.Errorf("round %d: Query(%q) = %q, want %q", round, s, got, want)
			}
		}
	}
	// Only clean values were remembered, each under its method.
	n := 0
	for i := range m.slots {
		sl := &m.slots[i]
		if sl.method == 0 {
			continue
		}
		n++
		v := string(sl.b[:sl.n])
		var out string
		if sl.method == memoString {
			out = r.String(v)
		} else {
			out = r.Query(v)
		}
		if out != v {
			t.Errorf("memo remembers %q as clean for method %d; the redactor gives %q", v, sl.method, out)
		}
	}
	if n == 0 {
		t.Fatal("memo remembered nothing")
	}
}

// TestMemoEvicts: values that share a slot replace each other and are
// still answered right; the table never grows.
func TestMemoEvicts(t *testing.T) {
	r := mustNew(t, Config{})
	m := r.NewMemo()
	for i := range 4 * MemoSlots {
		for _, s := range []string{"/p/" + strings.Repeat("x", i%50) + string(rune('a'+i%26)), "password=" + strings.Repeat("y", i%40+1)} {
			if got, want := m.Query(s), r.Query(s); got != want {
				t.Fatalf("Query(%q) = %q, want %q", s, got, want)
			}
			if got, want := m.String(s), r.String(s); got != want {
				t.Fatalf("String(%q) = %q, want %q", s, got, want)
			}
		}
	}
	if len(m.slots) != MemoSlots {
		t.Fatalf("%d slots, want %d", len(m.slots), MemoSlots)
	}
}

// TestMemoSets: two values of one set both stay remembered; a third
// replaces the one used least recently.
func TestMemoSets(t *testing.T) {
	r := mustNew(t, Config{})
	m := r.NewMemo()
	setOf := func(s string) uint64 { return (maphash.String(m.seed, s) + memoString) % (MemoSlots / 2) }
	var same []string
	for i := 0; len(same) < 3; i++ {
		s := fmt.Sprintf("/api/v%d/items", i)
		if len(same) == 0 || setOf(s) == setOf(same[0]) {
			same = append(same, s)
		}
	}
	a, b, c := same[0], same[1], same[2]
	hit := func(s string) bool { _, _, ok := m.lookup(memoString, s); return ok }
	m.String(a)
	m.String(b)
	if !hit(a) || !hit(b) || !hit(a) {
		t.Fatalf("two values of one set evict each other")
	}
	m.String(c) // b was used least recently
	if !hit(a) || hit(b) || !hit(c) {
		t.Fatalf("a third value did not replace the least recently used: a %v b %v c %v", hit(a), hit(b), hit(c))
	}
}

// FuzzMemo: through one memo, a sequence of values (each asked twice, so
// that the second answer may come from the memo) gets the redactor's
// answers in every mode.
func FuzzMemo(f *testing.F) {
	f.Add("/api/v1/orders", "page=2&sort=desc", "token=abc&x=Bearer abcdef0123456789")
	f.Add("Mozilla/5.0", "a=4111111111111111", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln")
	f.Add("", "%70assword=x", "AKIAIOSFODNN7EXAMPLE")
	f.Add("q=a&page=1", "q=4111111111111111&page=2", "password=x&q=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln")
	rs := fuzzRedactors(f)
	memos := make([]*Memo, len(rs))
	for i, r := range rs {
		memos[i] = r.NewMemo()
	}
	f.Fuzz(func(t *testing.T, a, b, c string) {
		for i, r := range rs {
			m := memos[i]
			for _, s := range []string{a, b, c, a, b, c} {
				if got, want := m.String(s), r.String(s); got != want {
					t.Fatalf("%v: String(%q) = %q, want %q", r.Mode(), s, got, want)
				}
				if got, want := m.Query(s), r.Query(s); got != want {
					t.Fatalf("%v: Query(%q) = %q, want %q", r.Mode(), s, got, want)
				}
				if got, _, noted := m.StringHitNote(s, evenLen); got != r.String(s) || noted && !evenLen(s) {
					t.Fatalf("%v: StringHitNote(%q) = %q, %v; want %q", r.Mode(), s, got, noted, r.String(s))
				}
				if got, want := m.QueryScan(s), r.Query(s); got != want {
					t.Fatalf("%v: QueryScan(%q) = %q, want %q", r.Mode(), s, got, want)
				}
			}
		}
	})
}

// BenchmarkMemo is the writer's scrubbing of a repeated request's user
// agent and query, through the memo and without it.
func BenchmarkMemo(b *testing.B) {
	r := mustNew(b, Config{})
	const ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
	const q = "page=2&sort=desc"
	run := func(b *testing.B, str, query func(string) string) {
		b.ReportAllocs()
		for range b.N {
			if str(ua) != ua || query(q) != q {
				b.Fatal("scrubbed a clean value")
			}
		}
	}
	b.Run("memo", func(b *testing.B) { m := r.NewMemo(); run(b, m.String, m.Query) })
	b.Run("redactor", func(b *testing.B) { run(b, r.String, r.Query) })
}

// TestMemoQueryNames: the memo's verdicts on parameter names are the
// redactor's for those exact bytes. Each secret here is found only by the
// query scrubber, in a parameter whose name (or one like it: same length,
// same hash slot after many names) the memo saw before with a harmless
// value. A memo keyed on anything less than the name's bytes, or that
// remembered a parameter's verdict rather than its name's, lets one
// through.
func TestMemoQueryNames(t *testing.T) {
	r := mustNew(t, Config{})
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlX2hlcmU"
	steps := []struct{ q, gone string }{
		{"page=1&q=hello", ""},
		{"page=2&q=" + jwt, jwt},                          // name seen with a harmless value
		{"page=3&q=4111111111111111", "4111111111111111"}, // a card number
		{"username=bob&sort=desc", ""},
		{"password=hunter2&sort=desc", "hunter2"}, // same length as username
		{"api_key=&id=7", ""},
		{"api_key=k3y-s3cr3t&id=8", "k3y-s3cr3t"}, // seen before with an empty value
		{"apikey=x1&id=9", "x1"},
		{"passwore=fine&id=10", ""},
		{"passwore=fine&password=hunter3", "hunter3"},
	}
	for _, scan := range []bool{false, true} {
		m := r.NewMemo()
		// Fill every name slot with harmless names first.
		for i := range 4 * nameSlots {
			q := fmt.Sprintf("n%d=v%d", i, i)
			if got := m.QueryScan(q); got != q {
				t.Fatalf("QueryScan(%q) = %q", q, got)
			}
		}
		for _, st := range steps {
			var got string
			if scan {
				got = m.QueryScan(st.q)
			} else {
				got = m.Query(st.q)
			}
			if want := r.Query(st.q); got != want {
				t.Errorf("scan %v: memo Query(%q) = %q, redactor %q", scan, st.q, got, want)
			}
			if st.gone != "" && strings.Contains(got, st.gone) {
				t.Errorf("scan %v: %q kept %q: %q", scan, st.q, st.gone, got)
			}
		}
	}
	// One name only: two would share a slot in 1 of nameSlots memos (the
	// seed is random), and the second would take it.
	m := r.NewMemo()
	m.QueryScan("q=hello")
	if _, known := m.nameVerdict("q"); !known {
		t.Fatal("the memo remembered no name")
	}
}

// BenchmarkMemoQuery is a query string whose values change on every
// request (never a whole-string hit): scanned by the redactor, and through
// the memo's name verdicts.
func BenchmarkMemoQuery(b *testing.B) {
	r := mustNew(b, Config{})
	qs := make([]string, 1024)
	for i := range qs {
		qs[i] = fmt.Sprintf("page=%d&sort=desc", i+1)
	}
	run := func(b *testing.B, query func(string) string) {
		b.ReportAllocs()
		for i := range b.N {
			if q := qs[i%len(qs)]; query(q) != q {
				b.Fatal("scrubbed a clean value")
			}
		}
	}
	b.Run("names", func(b *testing.B) { run(b, r.NewMemo().QueryScan) })
	b.Run("redactor", func(b *testing.B) { run(b, r.Query) })
}

func evenLen(s string) bool { return len(s)%2 == 0 }

// TestMemoNote: StringHitNote gives the note of the value it answers for
// (asked once, when the value is remembered), never one of another value
// or of a String entry, and none for a value it does not remember.
func TestMemoNote(t *testing.T) {
	r := mustNew(t, Config{})
	m := r.NewMemo()
	calls := 0
	note := func(s string) bool { calls++; return evenLen(s) }
	m.String("ab") // a String entry is not a noted one
	for round := range 3 {
		for _, v := range []string{"ab", "abc", "abcd", "Bearer abcdef0123456789", strings.Repeat("x", MemoMaxLen+2)} {
			out, hit, noted := m.StringHitNote(v, note)
			if out != r.String(v) {
				t.Fatalf("StringHitNote(%q) = %q, want %q", v, out, r.String(v))
			}
			remembered := out == v && len(v) <= MemoMaxLen
			if hit != (round > 0 && remembered) {
				t.Fatalf("round %d: %q hit %v", round, v, hit)
			}
			if want := remembered && evenLen(v); noted != want {
				t.Fatalf("round %d: %q noted %v, want %v", round, v, noted, want)
			}
		}
	}
	if calls != 3 {
		t.Fatalf("note asked %d times, want once per remembered value (3)", calls)
	}
}
