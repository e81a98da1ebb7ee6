package httpaudit

import (
	"encoding/binary"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/redact"
)

// TestHex8 checks the byte-parallel hex test against a byte-by-byte one:
// every byte value in every position (the others valid), in both modes,
// and random words.
func TestHex8(t *testing.T) {
	ref := func(b []byte, anyCase bool) bool {
		for _, c := range b {
			lc := c
			if anyCase && 'A' <= c && c <= 'F' {
				lc = c + 'a' - 'A'
			}
			if !('0' <= lc && lc <= '9' || 'a' <= lc && lc <= 'f') {
				return false
			}
		}
		return true
	}
	check := func(b []byte) {
		x := binary.LittleEndian.Uint64(b)
		for _, anyCase := range []bool{false, true} {
			if got, want := hex8(x, anyCase), ref(b, anyCase); got != want {
				t.Fatalf("hex8(%q, anyCase %v) = %v, want %v", b, anyCase, got, want)
			}
		}
	}
	for pos := range 8 {
		for c := range 256 {
			b := []byte("0a9fA0F5")
			b[pos] = byte(c)
			check(b)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const near = "0123456789abcdefABCDEFgG/:@`\x00\x7f\x80\xff\x10\x19"
	for range 200000 {
		var b [8]byte
		for i := range b {
			b[i] = near[rng.IntN(len(near))]
		}
		check(b[:])
	}
}

// TestUUIDIDsSkipOnlyWhatTheRedactorKeeps: an incoming id that uuidShaped
// lets through without validRequestID and the redactor is one they would
// have kept too, under the most eager redactors (every detector, extra
// keys, each mode); and uuidShaped accepts exactly the canonical form.
func TestUUIDIDsSkipOnlyWhatTheRedactorKeeps(t *testing.T) {
	var reds []*redact.Redactor
	for _, cfg := range []redact.Config{
		{},
		{Mode: redact.Mask, Emails: true, Keys: []string{"*ab*", "*01*", "a*"}},
		{Mode: redact.HMAC, Secret: []byte("0123456789abcdef0123456789abcdef"), Emails: true},
	} {
		r, err := redact.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		reds = append(reds, r)
	}
	canonical := regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	rng := rand.New(rand.NewPCG(3, 4))
	gen := func(alphabet string) string {
		b := make([]byte, 36)
		for i := range b {
			if i == 8 || i == 13 || i == 18 || i == 23 {
				b[i] = '-'
			} else {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
		}
		return string(b)
	}
	ids := []string{"41111111-1111-1111-1111-111111111111", "00000000-0000-0000-0000-000000000000", "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e"}
	for range 20000 {
		ids = append(ids, gen("0123456789abcdefABCDEF"), gen("0123456789"), gen("0123456789abcdef"))
	}
	for _, id := range ids {
		if !uuidShaped(id) {
			t.Fatalf("uuidShaped(%q) = false", id)
		}
		if !validRequestID(id) {
			t.Fatalf("validRequestID(%q) = false", id)
		}
		for _, r := range reds {
			if out := r.String(id); out != id {
				t.Fatalf("%v redactor rewrites UUID %q to %q: uuidShaped must not keep it", r.Mode(), id, out)
			}
		}
	}
	// Near misses, and random strings of UUID length from a near alphabet.
	base := "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1e"
	near := []string{"", base[:35], base + "0", strings.Replace(base, "-", "_", 1), "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1g",
		"5f2b6c1e8-a3d-4e7b-9c10-2d4f6a8b0c1e", "{5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c}", "5f2b6c1e-8a3d-4e7b-9c10-2d4f6a8b0c1\x00"}
	for range 50000 {
		near = append(near, gen("0123456789abcdefABCDEF-gG:/@` \x00"))
	}
	for _, id := range near {
		if got, want := uuidShaped(id), canonical.MatchString(id); got != want {
			t.Fatalf("uuidShaped(%q) = %v, want %v", id, got, want)
		}
	}
}
