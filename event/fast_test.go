package event

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// plainRef is what plain8 must say of one byte.
func plainRef(c byte) bool { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' }

// TestPlain8 checks the word-at-a-time test against the byte-by-byte rule:
// every byte value at every position among plain neighbours, next to each
// kind of special byte (whose borrows and carries must not hide it), and
// random words.
func TestPlain8(t *testing.T) {
	check := func(w [8]byte) {
		t.Helper()
		want := true
		for _, c := range w {
			want = want && plainRef(c)
		}
		if got := plain8(load8(string(w[:]), 0)); got != want {
			t.Fatalf("plain8(%q) = %v, want %v", w[:], got, want)
		}
	}
	for _, fill := range []byte{'a', ' ', '~', '!', '#', '[', ']'} {
		for c := range 256 {
			for p := range 8 {
				var w [8]byte
				for i := range w {
					w[i] = fill
				}
				w[p] = byte(c)
				check(w)
				// Every pair: a special byte below can borrow or carry
				// into the byte above.
				for _, d := range []byte{0, 0x1f, 0x20, '"', '#', '\\', ']', 0x7e, 0x7f, 0x80, 0xff} {
					for q := range 8 {
						if q != p {
							w2 := w
							w2[q] = d
							check(w2)
						}
					}
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		var w [8]byte
		for i := range w {
			w[i] = byte(rng.IntN(256))
			if rng.IntN(4) > 0 {
				w[i] = byte(0x20 + rng.IntN(0x5f)) // mostly printable
			}
		}
		check(w)
	}
}

func TestIDSource(t *testing.T) {
	g := NewIDSource()
	seen := map[string]bool{}
	now := time.UnixMilli(1764460800123)
	var buf [36]byte
	for range 5000 {
		id := string(g.Append(buf[:0], now))
		if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' ||
			id[14] != '7' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("not a UUIDv7: %s", id)
		}
		if strings.Trim(id, "0123456789abcdef-") != "" {
			t.Fatalf("not lower-case hex: %s", id)
		}
		if got, want := id[:13], string(appendUUIDv7(nil, now))[:13]; got != want {
			t.Fatalf("time prefix %s, want %s", got, want)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
	if a, b := string(NewIDSource().Append(nil, now)), string(NewIDSource().Append(nil, now)); a == b {
		t.Fatalf("two sources minted the same first id %s: not seeded", a)
	}
	// Every one of the 74 random bits varies.
	var and, or [16]byte
	for i := range and {
		and[i] = 0xff
	}
	for range 256 {
		id := g.Append(nil, now)
		var u [16]byte
		j := 0
		for i := 0; i < 36; i++ {
			if id[i] == '-' {
				continue
			}
			v := strings.IndexByte(hex, id[i])
			u[j/2] |= byte(v) << (4 * (1 - j%2))
			j++
		}
		for i := range u {
			and[i] &= u[i]
			or[i] |= u[i]
		}
	}
	for i := 6; i < 16; i++ {
		mask := byte(0xff)
		switch i {
		case 6:
			mask = 0x0f // version nibble above
		case 8:
			mask = 0x3f // variant bits above
		}
		if (or[i]&^and[i])&mask != mask {
			t.Errorf("byte %d: random bits stuck (and %08b, or %08b)", i, and[i], or[i])
		}
	}
}

func BenchmarkIDSource(b *testing.B) {
	g := NewIDSource()
	now := time.Now()
	var buf [36]byte
	b.ReportAllocs()
	for b.Loop() {
		g.Append(buf[:0], now)
	}
}

// TestPlainString checks the whole-string test at every length and every
// position of a byte that needs attention, including the overlapped last
// word.
func TestPlainString(t *testing.T) {
	for n := 0; n <= 40; n++ {
		base := strings.Repeat("a", n)
		if !plainString(base) {
			t.Fatalf("plainString(%q) = false", base)
		}
		for p := 0; p < n; p++ {
			for _, c := range []byte{0, '\n', '"', '\\', 0x7f, 0x80, 0xe2, 0xff} {
				s := base[:p] + string([]byte{c}) + base[p+1:]
				if plainString(s) {
					t.Fatalf("plainString(%q) = true", s)
				}
				if got, want := string(appendString(nil, s)), string(appendStringRef(s)); got != want {
					t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
				}
			}
		}
	}
}

// appendStringRef is the byte-by-byte escaper appendString must agree with.
func appendStringRef(s string) []byte {
	out := []byte{'"'}
	for _, r := range strings.ToValidUTF8(s, "\ufffd") {
		switch {
		case r == '"' || r == '\\':
			out = append(out, '\\', byte(r))
		case r == '\n':
			out = append(out, `\n`...)
		case r == '\r':
			out = append(out, `\r`...)
		case r == '\t':
			out = append(out, `\t`...)
		case r < 0x20 || r == 0x7f || r == 0x85 || r == 0x2028 || r == 0x2029 || r == 0xfffd:
			out = append(out, '\\', 'u', hex[r>>12], hex[(r>>8)&0xf], hex[(r>>4)&0xf], hex[r&0xf])
		default:
			out = append(out, string(r)...)
		}
	}
	return append(out, '"')
}
