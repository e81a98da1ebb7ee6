package server

import (
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
)

// TestShipperCredentials sends every credential form shippers use to a
// real collector: each one naming a valid token ingests, each one naming
// a wrong or missing token is refused and challenged.
func TestShipperCredentials(t *testing.T) {
	ts := startServer(t, t.TempDir(), func(c *Config) { c.AuthFailBurst = 100 })
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	wrong := "tg_aaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	tests := []struct {
		name, auth string
		status     int
	}{
		{"bearer", "Bearer " + ts.ingest, 200},
		{"bearer lower-case scheme", "bearer " + ts.ingest, 200},
		{"raw api key", "ApiKey " + ts.ingest, 200},
		{"es api key id:key", "ApiKey " + b64("shipper:"+ts.ingest), 200},
		{"es api key, any id", "ApiKey " + b64("whatever:"+ts.ingest), 200},
		{"es api key unpadded", "ApiKey " + strings.TrimRight(b64("id1:"+ts.ingest), "="), 200},
		{"basic, token name as user", "Basic " + b64("shipper:"+ts.ingest), 200},
		{"basic, any user", "Basic " + b64("rsyslog:"+ts.ingest), 200},
		{"basic, empty user", "Basic " + b64(":"+ts.ingest), 200},
		{"basic, wrong password", "Basic " + b64("shipper:"+wrong), 401},
		{"basic, token as user", "Basic " + b64(ts.ingest+":x"), 401},
		{"basic, no colon", "Basic " + b64(ts.ingest), 401},
		{"basic, not base64", "Basic " + ts.ingest, 401},
		{"api key, wrong key", "ApiKey " + b64("shipper:"+wrong), 401},
		{"api key, read role", "ApiKey " + b64("analyst:"+ts.read), 403},
		{"none", "", 401},
		{"scheme only", "Basic", 401},
		{"unknown scheme", "Digest " + ts.ingest, 401},
		{"oversized", "Basic " + strings.Repeat("A", 5000), 401},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("POST", ts.url+"/v1/events", strings.NewReader(ev("authn_login_fail", "failure", "eve", "203.0.113.9", 401)+"\n"))
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.status)
		}
		if resp.StatusCode == 401 {
			ch := strings.Join(resp.Header.Values("WWW-Authenticate"), " | ")
			if !strings.Contains(ch, "Bearer") || !strings.Contains(ch, "Basic") {
				t.Errorf("%s: challenge %q lacks Bearer or Basic", tt.name, ch)
			}
		}
	}
}

func FuzzPresentedToken(f *testing.F) {
	for _, s := range []string{"Bearer tg_x", "ApiKey dXNlcjpwYXNz", "Basic dXNlcjpwYXNz", "Basic", "ApiKey tg_a_b", "basic Og==", "Basic ====", ""} {
		f.Add(s, "user", "tg_12345678_abc")
	}
	f.Fuzz(func(t *testing.T, header, user, pass string) {
		r, _ := http.NewRequest("GET", "http://x/", nil)
		r.Header.Set("Authorization", header)
		tok, ok := presentedToken(r) // must not panic on anything
		if ok && len(tok) > maxCredentialBytes {
			t.Fatalf("token of %d bytes from a bounded header", len(tok))
		}
		// Round trip: what a shipper encodes is what we read back.
		if strings.Contains(user, ":") || strings.TrimSpace(pass) != pass || pass == "" || strings.ContainsAny(pass+user, "\r\n") {
			return
		}
		enc := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		if len(enc) > maxCredentialBytes {
			return
		}
		for _, scheme := range []string{"Basic ", "ApiKey "} {
			r.Header.Set("Authorization", scheme+enc)
			if got, ok := presentedToken(r); !ok || got != pass {
				t.Fatalf("%s%q: got %q %v, want %q", scheme, user+":"+pass, got, ok, pass)
			}
		}
	})
}
