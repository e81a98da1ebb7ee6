package access

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzCheck presents arbitrary strings, and one-byte changes of real
// tokens, to Check: only an issued token's exact text authenticates, as
// that token; a revoked one is told apart; anything else is malformed or
// unknown, and no answer carries the presented text.
func FuzzCheck(f *testing.F) {
	s, err := Open(filepath.Join(f.TempDir(), "tokens.json"))
	if err != nil {
		f.Fatal(err)
	}
	live, liveSecret, err := s.Create("shipper", RoleIngest)
	if err != nil {
		f.Fatal(err)
	}
	dead, deadSecret, err := s.Create("old", RoleRead)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := s.Revoke("old"); err != nil {
		f.Fatal(err)
	}
	for _, tok := range []string{liveSecret, deadSecret, "", "tg_", "tg__", "tg_aaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		liveSecret + "x", strings.ToUpper(liveSecret), " " + liveSecret, "tg_" + live.ID + "_" + strings.Repeat("a", 32)} {
		f.Add(tok, uint16(0), byte(0))
	}
	f.Add("", uint16(5), byte('b'))
	f.Add("", uint16(40), byte('\x00'))
	f.Fuzz(func(t *testing.T, presented string, at uint16, b byte) {
		// An empty input stands for a mutation of the live token: one
		// byte replaced, the nearest miss an attacker can make.
		if presented == "" && int(at) < len(liveSecret) {
			m := []byte(liveSecret)
			m[at] = b
			presented = string(m)
		}
		tok, err := s.Check(presented)
		switch {
		case presented == liveSecret:
			if err != nil || tok.ID != live.ID || tok.Role != RoleIngest {
				t.Fatalf("the live token: %+v, %v", tok, err)
			}
		case presented == deadSecret:
			if !errors.Is(err, ErrRevoked) || tok.ID != dead.ID {
				t.Fatalf("the revoked token: %+v, %v", tok, err)
			}
		default:
			if err == nil || errors.Is(err, ErrRevoked) || !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknown) {
				t.Fatalf("Check(%q) = %+v, %v: accepted or misreported", presented, tok, err)
			}
			if tok != (Token{}) {
				t.Fatalf("Check(%q) returned token %+v with %v", presented, tok, err)
			}
		}
		if err != nil && len(presented) > 3 && strings.Contains(err.Error(), presented) {
			t.Fatalf("error %q echoes the presented token", err)
		}
	})
}
