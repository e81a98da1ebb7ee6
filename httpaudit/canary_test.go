package httpaudit

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/redact"
	"github.com/trailguard/trailguard/sink"
)

// canaries are secrets planted in every place a request can carry them.
// None of these byte strings may appear in anything a sink receives.
var canaries = map[string]string{
	"password": "Tr0ub4dor-canary-pw",
	"jwt":      "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5",
	"card":     "4111111111111111",
	"aws":      "AKIAZZCANARY0000ZZZ1",
	"bearer":   "canaryBearerToken123456",
	"apikey":   "canary-apikey-value-77",
	"cookie":   "sessid-canary-cookie-9",
	"ssn":      "512-34-5678",
	"pem":      "MIIEcanaryPEMbodyQWERTY",
}

// leaks reports every canary, or recognisable part of one, found in out.
func leaks(out []byte) []string {
	var found []string
	for name, c := range canaries {
		probes := []string{c}
		if name == "card" {
			// Masking keeps the last four digits (PCI DSS 3.4.1); the rest
			// must never appear, grouped or not.
			probes = []string{"411111111111", "4111 1111 1111", "4111-1111-1111"}
		}
		for _, p := range probes {
			if bytes.Contains(out, []byte(p)) {
				found = append(found, name+" ("+p+")")
			}
		}
	}
	return found
}

func TestCanary(t *testing.T) {
	for _, mode := range []redact.Mode{redact.Remove, redact.Mask, redact.HMAC} {
		t.Run(mode.String(), func(t *testing.T) {
			red, err := redact.New(redact.Config{Mode: mode, Secret: []byte("0123456789abcdef-test-secret")})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			file, err := sink.OpenFile(sink.FileOptions{Dir: dir, MaxSize: 4096})
			if err != nil {
				t.Fatal(err)
			}
			var memBuf syncBuffer
			l, err := New(Config{
				Sink:       sink.Multi(sink.NewWriter(&memBuf), file),
				Redactor:   red,
				MaxBody:    4096,
				LogStart:   true,
				FailClosed: true,
				Headers:    []string{"Authorization", "Cookie", "X-API-Key", "X-Debug", "Referer", "Proxy-Authorization"},
			})
			if err != nil {
				t.Fatal(err)
			}
			appLog := slog.New(l.SlogHandler(nil))
			h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				ctx := r.Context()
				_ = Auth(ctx, Attempt{User: User{Name: canaries["jwt"]}, Reason: "rejected password=" + canaries["password"]})
				_ = Auth(ctx, Attempt{User: User{ID: "u1", Name: "alice"}, Success: true})
				_ = Audit(ctx, Op{
					Action:   event.ActionSensitiveUpdate,
					Resource: "card/" + canaries["card"],
					Reason:   "Bearer " + canaries["bearer"],
					Before:   map[string]any{"password": canaries["password"], "note": "ssn " + canaries["ssn"]},
					After:    map[string]any{"api_key": canaries["apikey"], "nested": map[string]any{"aws": canaries["aws"], "list": []any{canaries["card"]}}},
				})
				appLog.InfoContext(ctx, "charging "+canaries["card"], "api_key", canaries["apikey"],
					"cfg", map[string]any{"client_secret": canaries["password"]},
					"err", errors.New("auth header Bearer "+canaries["bearer"]),
					slog.Group("aws", "key", canaries["aws"]))
				appLog.Error("key dump -----BEGIN PRIVATE KEY-----\n" + canaries["pem"] + "\n-----END PRIVATE KEY-----")
				w.WriteHeader(200)
				w.Write(body[:0])
			}))

			q := url.Values{"password": {canaries["password"]}, "q": {canaries["card"]}, "access_token": {canaries["jwt"]}, "page": {"2"}}
			form := url.Values{"user": {"bob"}, "pwd": {canaries["password"]}, "note": {"key " + canaries["aws"]}}
			reqs := []*http.Request{
				httptest.NewRequest("POST", "/api/cards/"+canaries["card"]+"/charge?"+q.Encode(),
					strings.NewReader(`{"user":"alice","password":"`+canaries["password"]+`","payment":{"card_number":"`+canaries["card"]+`","cvv":"123"},"memo":"ssn `+canaries["ssn"]+`","tok":"`+canaries["jwt"]+`"}`)),
				httptest.NewRequest("POST", "/login", strings.NewReader(form.Encode())),
				// A percent-encoded path gets url.original; the secrets in it
				// (one with its first digit encoded) must not ride along.
				httptest.NewRequest("POST", "/files/%2e%2e/x%20"+canaries["jwt"]+"/%34"+canaries["card"][1:]+"?access_token="+canaries["bearer"], nil),
			}
			reqs[0].Header.Set("Content-Type", "application/json")
			reqs[1].Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for _, r := range reqs {
				r.Header.Set("Authorization", "Bearer "+canaries["bearer"])
				r.Header.Set("Proxy-Authorization", "Basic "+canaries["password"])
				r.Header.Set("Cookie", "sid="+canaries["cookie"])
				r.Header.Set("X-API-Key", canaries["apikey"])
				r.Header.Set("X-Debug", "jwt="+canaries["jwt"]+" aws="+canaries["aws"])
				r.Header.Set("User-Agent", "canary-agent "+canaries["jwt"])
				r.Header.Set("Referer", "https://app.example/cb?token="+canaries["bearer"])
				r.Header.Set("X-Request-ID", canaries["jwt"])
				h.ServeHTTP(httptest.NewRecorder(), r)
			}
			appLog.Warn("outside a request", "password", canaries["password"], "card", canaries["card"])
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}

			var disk bytes.Buffer
			files, err := sink.Files(dir, "trail")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range files {
				rc, err := sink.Open(f)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(&disk, rc)
				rc.Close()
			}
			mem := []byte(memBuf.String())
			if !bytes.Equal(mem, disk.Bytes()) {
				t.Fatalf("memory and file sinks differ: %d vs %d bytes", len(mem), disk.Len())
			}
			// The test must see what it checks: the events are all there.
			if n := bytes.Count(mem, []byte("\n")); n != 22 { // per request: start, access, 2 auth, audit, 2 slog; plus 1 slog
				t.Fatalf("%d events written, want 22:\n%s", n, mem)
			}
			for _, want := range []string{`page=2`, `"x-debug":`, `"authorization":`, `card/`, `user=bob`, `\"payment\":`, `"original":"/files/../x%20`} {
				if !bytes.Contains(mem, []byte(want)) {
					t.Errorf("expected %s in output:\n%s", want, mem)
				}
			}
			if found := leaks(mem); len(found) > 0 {
				t.Fatalf("secrets reached the sink: %v\n%s", found, mem)
			}
		})
	}
}
