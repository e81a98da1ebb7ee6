package redact

import (
	"strings"
	"testing"
)

// TestTokensUnchanged: Tokens answers as JSON's walk over the same token
// (strings with and without escapes, JSON inside a string at a depth, card
// numbers as integers, invalid tokens), and keeps no large scratch.
func TestTokensUnchanged(t *testing.T) {
	r := mustNew(t, Config{MaxDepth: 4})
	tok := r.NewTokens()
	for _, c := range []struct {
		tok   string
		depth int
		want  bool
	}{
		{`"plain"`, 1, true},
		{`"card 4111 1111 1111 1111"`, 1, false},
		{`"caf\u00e9"`, 1, true},
		{`"\u0034111111111111111"`, 1, false},
		{`"{\"password\":\"x\"}"`, 1, false},
		// The document inside the string is too deep for what is left of
		// the limit: scrubbed as text, where nothing is found.
		{`"{\"a\":{\"b\":{\"c\":1}}}"`, 2, true},
		{`4111111111111111`, 1, false},
		{`1834000`, 1, true},
		{`"unterminated`, 1, false},
		{`01`, 1, false},
		{`{}`, 1, false},
	} {
		if got := tok.Unchanged([]byte(c.tok), c.depth); got != c.want {
			t.Errorf("Unchanged(%s, %d) = %v, want %v", c.tok, c.depth, got, c.want)
		}
		// Containers are not tokens: Tokens says "changed" for them, always.
		if out, err := r.JSON(nil, []byte(`{"k":`+c.tok+`}`)); err == nil && c.depth == 1 && c.tok[0] != '{' {
			if same := string(out) == `{"k":`+c.tok+`}`; same != c.want {
				t.Errorf("%s: JSON leaves it unchanged %v, Unchanged says %v", c.tok, same, c.want)
			}
		}
	}
	huge := `"` + strings.Repeat(`\u0041`, 100_000) + `"`
	tok.Unchanged([]byte(huge), 1)
	if n := cap(tok.w.dec) + cap(tok.w.tmp) + cap(tok.w.out); n > maxTokensScratch {
		t.Fatalf("Tokens keeps %d bytes of scratch after a huge string, want at most %d", n, maxTokensScratch)
	}
	if !tok.UnchangedText([]byte("GET")) || tok.UnchangedText([]byte("Bearer abcdef123456")) {
		t.Fatal("UnchangedText disagrees with the detectors")
	}
	if !tok.Sensitive([]byte("api"), []byte("key")) || !tok.Sensitive(nil, []byte("password")) || tok.Sensitive([]byte("user"), []byte("name")) {
		t.Fatal("Sensitive disagrees with the key rules")
	}
}
