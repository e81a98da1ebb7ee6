package ipnet

import "testing"

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" for an error
	}{
		{"10.0.0.1", "10.0.0.1/32"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"10.0.0.1/32", "10.0.0.1/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/32", "2001:db8::/32"},
		{"fe80::1%eth0", "fe80::1/128"},
		{"::ffff:10.1.2.3", "10.1.2.3/32"},
		{"::ffff:10.1.2.3/128", "10.1.2.3/32"},
		{"::ffff:10.1.2.3/104", "10.0.0.0/8"},
		{"::ffff:0.0.0.0/96", "0.0.0.0/0"},
		{"::ffff:0.0.0.0/80", ""},
		{"fe80::1%eth0/64", ""},
		{"10.0.0.0/33", ""},
		{"10.0.0", ""},
		{"", ""},
		{" 10.0.0.1", ""},
	} {
		p, err := Parse(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("Parse(%q) = %v, want an error", tc.in, p)
		case tc.want != "" && (err != nil || p.String() != tc.want):
			t.Errorf("Parse(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
		case tc.want != "" && !p.IsValid():
			t.Errorf("Parse(%q) = an invalid prefix", tc.in)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "::ffff:10.0.0.0/104", "fe80::1%eth0", "::ffff:0.0.0.0/80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		// What Parse accepts is a valid, masked, unmapped, zoneless prefix
		// that reads back as itself.
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("Parse(%q) = %v", s, p)
		}
		if q, err := Parse(p.String()); err != nil || q != p {
			t.Fatalf("Parse(%q) = %v, read back %v, %v", s, p, q, err)
		}
	})
}
