package redact

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// apiBody is a realistic 1 KiB request body: a password, a bearer JWT,
// nested objects and arrays, numbers, dates and prose.
var apiBody = []byte(`{
  "request_id": "7f3c2a9e-4b1d-4c8e-9a2f-1e5d6c7b8a90", "timestamp": "2026-11-25T17:24:06.123Z",
  "user": {"id": 48213, "username": "alice.smith", "email": "alice@example.com",
    "roles": ["admin", "billing"], "created_at": "2024-03-11T09:15:00Z", "mfa": true},
  "password": "correct horse battery staple",
  "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
  "client": {"ip": "203.0.113.42", "port": 51234,
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
    "geo": {"country": "DE", "city": "Berlin", "lat": 52.52, "lon": 13.405}},
  "items": [
    {"sku": "SKU-1042", "qty": 2, "price": 19.99, "description": "Wireless mouse, 2.4 GHz, black"},
    {"sku": "SKU-2210", "qty": 1, "price": 249.0, "description": "Mechanical keyboard with brown switches"}
  ],
  "shipping": {"city": "Berlin", "postal_code": "10117", "express": false},
  "notes": "Please deliver after 6pm.",
  "tokens_used": 1532, "page": 1, "per_page": 50, "total": 1234567
}`)

func TestAPIBodySize(t *testing.T) {
	if n := len(apiBody); n < 1000 || n > 1100 {
		t.Fatalf("benchmark body is %d bytes, want about 1 KiB", n)
	}
	r := mustNew(t, Config{})
	out, err := r.JSON(nil, apiBody)
	if err != nil || !json.Valid(out) {
		t.Fatalf("JSON(apiBody) = %s, %v", out, err)
	}
	for _, secret := range []string{"correct horse", "eyJhbGci"} {
		if bytes.Contains(out, []byte(secret)) {
			t.Errorf("output still holds %q", secret)
		}
	}
}

func BenchmarkJSON1KiB(b *testing.B) {
	for _, m := range []Mode{Remove, Mask, HMAC} {
		b.Run(m.String(), func(b *testing.B) {
			r := mustNew(b, Config{Mode: m, Secret: []byte("0123456789abcdef0123456789abcdef")})
			buf := make([]byte, 0, 2*len(apiBody))
			b.SetBytes(int64(len(apiBody)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = r.JSON(buf[:0], apiBody); err != nil {
					b.Fatal(err)
				}
			}
			if !json.Valid(buf) {
				b.Fatalf("scrubbed body is not JSON: %s", buf)
			}
			checkScrubbed(b, string(buf), string(apiBody), []string{"correct horse", "eyJhbGci"})
		})
	}
}

// BenchmarkJSON1KiBPeer measures what the walker is compared with: the
// standard library's cheapest full pass (json.Compact, which only validates
// and copies) and the obvious alternative (decode to any, scrub the tree,
// encode).
func BenchmarkJSON1KiBPeer(b *testing.B) {
	b.Run("encoding-json-compact", func(b *testing.B) {
		var buf bytes.Buffer
		b.SetBytes(int64(len(apiBody)))
		b.ReportAllocs()
		for b.Loop() {
			buf.Reset()
			if err := json.Compact(&buf, apiBody); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json-decode-value-encode", func(b *testing.B) {
		r := mustNew(b, Config{})
		b.SetBytes(int64(len(apiBody)))
		b.ReportAllocs()
		for b.Loop() {
			var v any
			if err := json.Unmarshal(apiBody, &v); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(r.Value("", v)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkString(b *testing.B) {
	clean := "GET /api/v1/orders?page=2 200 OK 12.4ms user=alice.smith ip=203.0.113.42 " +
		"ua=\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\" request_id=7f3c2a9e-4b1d-4c8e-9a2f-1e5d6c7b8a90 at 2026-11-25T17:24:06Z"
	dirty := "POST /login failed for alice password=hunter2 card 4111 1111 1111 1111 " +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl key AKIAIOSFODNN7EXAMPLE ssn 123-45-6789"
	secrets := []string{"hunter2", "4111 1111 1111 1111", "eyJzdWIiOiIxMjM0In0", "AKIAIOSFODNN7EXAMPLE", "123-45-6789"}
	for _, tc := range []struct {
		name, s string
		gone    []string // must not survive scrubbing (none: the text must come back unchanged)
	}{{"clean", clean, nil}, {"secrets", dirty, secrets}, {"path", "/api/v1/orders/734213", nil}} {
		b.Run(tc.name, func(b *testing.B) {
			r := mustNew(b, Config{Emails: true})
			b.SetBytes(int64(len(tc.s)))
			b.ReportAllocs()
			var out string
			for b.Loop() {
				out = r.String(tc.s)
			}
			checkScrubbed(b, out, tc.s, tc.gone)
		})
	}
}

// checkScrubbed fails a benchmark whose last result is not what the timed
// call must produce: in unchanged when nothing in it is secret, otherwise
// a text without any of the secrets.
func checkScrubbed(b *testing.B, out, in string, gone []string) {
	b.Helper()
	if len(gone) == 0 {
		if out != in {
			b.Fatalf("clean input changed:\n in: %s\nout: %s", in, out)
		}
		return
	}
	if out == in {
		b.Fatalf("nothing scrubbed in %s", in)
	}
	for _, s := range gone {
		if strings.Contains(out, s) {
			b.Fatalf("output still holds %q: %s", s, out)
		}
	}
}

func BenchmarkQuery(b *testing.B) {
	for _, tc := range []struct {
		name, q string
		gone    []string
	}{
		{"clean", "page=2&per_page=50&sort=-created_at&filter%5Bstatus%5D=open&q=wireless+mouse", nil},
		{"secrets", "page=2&per_page=50&access_token=ya29.a0AfH6SMBx3&client_secret=s3cr3t&q=wireless+mouse",
			[]string{"ya29.a0AfH6SMBx3", "s3cr3t"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := mustNew(b, Config{})
			b.SetBytes(int64(len(tc.q)))
			b.ReportAllocs()
			var out string
			for b.Loop() {
				out = r.Query(tc.q)
			}
			checkScrubbed(b, out, tc.q, tc.gone)
		})
	}
}

func BenchmarkHeader(b *testing.B) {
	const auth, ua = "Bearer abc.def.ghi", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36"
	r := mustNew(b, Config{})
	b.ReportAllocs()
	var outAuth, outUA string
	for b.Loop() {
		outAuth = r.Header("Authorization", auth)
		outUA = r.Header("User-Agent", ua)
	}
	checkScrubbed(b, outAuth, auth, []string{"abc.def.ghi"})
	checkScrubbed(b, outUA, ua, nil)
}

func mustNew(tb testing.TB, cfg Config) *Redactor {
	tb.Helper()
	r, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}
