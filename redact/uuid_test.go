package redact

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestUUIDShapedNeverScrubbed holds String's shortcut for canonical UUIDs
// to what the detectors say: none of them finds anything in a UUID, under
// every mode and with every optional detector on, including UUIDs made
// only of digits whose groups pass for cards (Luhn-valid, a payment
// network's first digit) and SSN-like digit groups. Near misses are not
// taken for UUIDs.
func TestUUIDShapedNeverScrubbed(t *testing.T) {
	rs := append(fuzzRedactors(t), mustNew(t, Config{Keys: []string{"*ab*", "*01*", "*f0*", "a*"}, Emails: true}))
	rng := rand.New(rand.NewPCG(7, 9))
	const hexd, digits = "0123456789abcdefABCDEF", "0123456789"
	uuid := func(alphabet string) string {
		var b strings.Builder
		for i := range 36 {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				b.WriteByte('-')
				continue
			}
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	var ids []string
	for range 20000 {
		ids = append(ids, uuid(hexd), uuid(digits))
	}
	// Digit-only UUIDs whose first three groups (8-4-4, sixteen digits)
	// are a Luhn-valid Visa number: a card to cardAt on its own.
	cards := 0
	for len(ids) < 60000 {
		id := "4" + uuid(digits)[1:]
		if luhn(id[:18]) {
			ids = append(ids, id)
			cards++
		}
	}
	ids = append(ids, "00000000-0000-0000-0000-000000000000", "41111111-1111-1111-1111-111111111111",
		"12345678-1234-1234-1234-123456789012", "eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee")
	for _, id := range ids {
		if !uuidShaped(id) {
			t.Fatalf("uuidShaped(%q) = false", id)
		}
		for _, r := range rs {
			if out, changed := scrub(r, nil, id); changed {
				t.Fatalf("%v: the detectors rewrite UUID %q to %q: the shortcut in String would keep it", r.Mode(), id, out)
			}
		}
	}
	if cards == 0 {
		t.Fatal("no card-like UUIDs tested")
	}
	for _, s := range []string{
		"", "41111111-1111-1111-1111-11111111111", "41111111-1111-1111-1111-1111111111111",
		"411111111-111-1111-1111-111111111111", "41111111-1111-1111-1111-11111111111g",
		"41111111 1111 1111 1111 111111111111", "eyJhbGci-1111-1111-1111-111111111111",
		"AKIAAAAA-1111-1111-1111-111111111111",
	} {
		if uuidShaped(s) {
			t.Errorf("uuidShaped(%q) = true", s)
		}
	}
	// The detectors do fire on the digits of a card-like UUID once the
	// dashes no longer make it an identifier: the test above is not
	// vacuous.
	r := rs[0]
	if got := r.String(strings.ReplaceAll("41111111-1111-1111-1111-111111111111", "-", " ")); !strings.Contains(got, "REDACTED") {
		t.Fatalf("card digits without the UUID shape kept: %q", got)
	}
}
