package redact

import (
	"strings"
	"testing"
)

// TestQuickClean: the shortcut String takes for text with no anchor but
// short digit runs (paths with ids in them) answers for the paths it is
// for, and every secret below is still found: each is one only the full
// scan finds, at the edge of what the shortcut lets through (a 13-digit
// card is the shortest digit run that is a secret; an SSN and a grouped
// card need the ' ' or '-' that joins digit groups; the other detectors
// their anchors).
func TestQuickClean(t *testing.T) {
	r := mustNew(t, Config{Emails: true, Tokens: true})
	for _, s := range []string{"/api/v1/orders/734213", "/", "", "/v2/users/12345678/posts", "/static/app.js"} {
		if !r.quickClean(s) {
			t.Errorf("quickClean(%q) = false: the shortcut is not taken for a path with short ids", s)
		}
		if got := r.String(s); got != s {
			t.Errorf("String(%q) = %q", s, got)
		}
	}
	for _, tc := range []struct{ s, secret string }{
		{"/cards/4222222222222", "4222222222222"}, // 13 digits, Luhn-valid Visa
		{"/cards/4111111111111111/charge", "4111111111111111"},
		{"/cards/4111 1111 1111 1111", "4111 1111 1111 1111"},
		{"/cards/4111-1111-1111-1111", "4111-1111-1111-1111"},
		{"/people/123-45-6789", "123-45-6789"},
		{"/t/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJzdWIiOiIxIn0"},
		{"/k/AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"},
		{"/a/bearer abcdef0123456789abcdef", "abcdef0123456789abcdef"},
		{"/u/alice@example.com", "alice@example.com"},
		{"/p/password=hunter22", "hunter22"},
		{"/tok/tg_abcdefgh_abcdefghijklmnopqrstuvwxyz234567", "abcdefghijklmnopqrstuvwxyz234567"},
	} {
		if got := r.String(tc.s); strings.Contains(got, tc.secret) {
			t.Errorf("String(%q) = %q: the secret survived", tc.s, got)
		}
	}
}

// FuzzQuickClean holds the shortcut to the full scan: whatever text it
// lets through, the detectors find nothing in, under every configuration
// of the detectors that changes the anchors.
func FuzzQuickClean(f *testing.F) {
	for _, s := range []string{"/api/v1/orders/734213", "/cards/4222222222222", "/people/123-45-6789",
		"a@b.co", "x=1", "4111111111111111", "12345678", "bearer 0123456789abcdef", "tg_a_b", "/eyJ", "AKIA"} {
		f.Add(s)
	}
	rs := append(fuzzRedactors(f),
		mustNew(f, Config{Tokens: true}),
		mustNew(f, Config{Disable: []Kind{KindCard}}),
		mustNew(f, Config{Disable: []Kind{KindCard, KindSSN}}),
		mustNew(f, Config{Disable: []Kind{KindPrivateKey, KindKeyValue}}),
	)
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range rs {
			if !r.quickClean(s) {
				continue
			}
			if out, found := scrub(r, nil, s); found {
				t.Fatalf("quickClean(%q) = true, but the full scan replaces something: %q", s, out)
			}
		}
	})
}

// TestQueryClean: the shortcut urlencoded takes for plain query strings
// answers for the writer's common case, and each secret below, one only
// the full scan finds, is still found: in a value after a second '=' (the
// key-value detector's), under a sensitive name, in a digit run of 13
// (the shortest card), in groups joined by '+', ' ' or '-', behind an
// anchor.
func TestQueryClean(t *testing.T) {
	r := mustNew(t, Config{})
	m := r.NewMemo()
	for _, q := range []string{"page=123&sort=desc", "a", "a&c=&d=1", "page=2&per_page=50&lang=en", "=1"} {
		if !r.queryClean(q, nil) || !r.queryClean(q, m) {
			t.Errorf("queryClean(%q) = false: the shortcut is not taken", q)
		}
	}
	for _, tc := range []struct{ q, secret string }{
		{"q=password=hunter22", "hunter22"},
		{"page=1&q=x=1&q=secret=hunter22", "hunter22"},
		{"=password=hunter22", "hunter22"},
		{"page=1&password=hunter22", "hunter22"},
		{"page=1&api_key=k3yk3yk3y", "k3yk3yk3y"},
		{"id=4222222222222", "4222222222222"},
		{"card=4111+1111+1111+1111&x=1", "1111+1111+1111"},
		{"card=4111-1111-1111-1111", "4111-1111-1111-1111"},
		{"ssn=123-45-6789", "123-45-6789"},
		{"t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "eyJzdWIiOiIxIn0"},
		{"k=AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"},
		{"q=%34111111111111111", "%34111111111111111"},
	} {
		for _, scrub := range []func(string) string{r.Query, m.QueryScan, m.Query} {
			if got := scrub(tc.q); strings.Contains(got, tc.secret) {
				t.Errorf("%q -> %q: the secret survived", tc.q, got)
			}
		}
	}
}
