package proxy

import (
	"io"
	"strings"
	"testing"
)

// TestTeeBodyWholeAtContentLength: a kept request body is whole once its
// declared Content-Length is read, whether or not the end was read after
// it: http.Transport reads that end in its writing goroutine, after the
// declared bytes, and an upstream that answered once it had them (every
// login form) can beat it. Before, finish took such a body for unread,
// and a login's event lost its user name (TestFlaskAppBehindGateway: alice's
// successful login recorded without her, once, at load 20-30). A body
// short of its length, or of unknown length without its end, is not whole.
func TestTeeBodyWholeAtContentLength(t *testing.T) {
	const body = `{"username":"alice","password":"wonderland-7"}`
	n := int64(len(body))
	for _, tc := range []struct {
		name   string
		length int64 // declared; -1: chunked
		read   int64 // bytes read before finish
		end    bool  // and then a read that sees the end
		whole  bool
	}{
		{"declared length read, end not yet", n, n, false, true},
		{"declared length read, then the end", n, n, true, true},
		{"short of the declared length", n, n - 1, false, false},
		{"unknown length, end not yet", -1, n, false, false},
		{"unknown length, then the end", -1, n, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tee := newTee(io.NopCloser(strings.NewReader(body)), 1024)
			tee.length = tc.length
			if _, err := io.ReadFull(tee, make([]byte, tc.read)); err != nil {
				t.Fatal(err)
			}
			if tc.end {
				if _, err := tee.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("the read after the body: %v, want EOF", err)
				}
			}
			got := tee.finish()
			if want := body[:tc.read]; tc.whole && string(got) != want || !tc.whole && got != nil {
				t.Errorf("finish: %q, want whole %v", got, tc.whole)
			}
			if _, err := tee.Read(make([]byte, 1)); err != errExchangeOver {
				t.Errorf("a read after finish: %v, want the exchange over", err)
			}
		})
	}
}
