package redact

import (
	"strings"
	"testing"
)

// TestDottedKeysScrubbedAsNested: a key written with dots is the ECS form
// of the nested objects ("http.request.headers.authorization" is
// {"http":{"request":{"headers":{"authorization":…}}}}; shippers and
// OpenTelemetry flatten names so), and its value is scrubbed whenever the
// nested form's is: a segment that is a sensitive name on its own
// (authorization, auth, pin, session, jwt…), or joined to the segment
// before it. Before, a dotted key was only matched whole, with the dots
// dropped, so exact names hidden in it passed: a Basic credential under
// "http.request.headers.authorization" reached the disk.
func TestDottedKeysScrubbedAsNested(t *testing.T) {
	const secret = "s3cr3tVALUE"
	for _, cfg := range []Config{{}, {Keys: []string{"name"}}, {Mode: Mask}} {
		r := mustNew(t, cfg)
		tok := r.NewTokens()
		for _, path := range []string{
			"http.request.headers.authorization", "user.pin", "request.auth", "client.session", "labels.jwt",
			"a.b.bearer", "card.pan", "api.key", "x.api.key", "user.credentials.x", "auth.x", "session.id",
		} {
			segs := strings.Split(path, ".")
			nested := `"` + secret + `"`
			for i := len(segs) - 1; i >= 0; i-- {
				nested = `{"` + segs[i] + `":` + nested + `}`
			}
			out, err := r.JSON(nil, []byte(nested))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(out), secret) {
				continue // the nested form keeps it: nothing to compare
			}
			for _, dotted := range []string{
				`{"` + path + `":"` + secret + `"}`,
				`{"` + segs[0] + `":{"` + strings.Join(segs[1:], ".") + `":"` + secret + `"}}`,
			} {
				if len(segs) < 2 {
					continue
				}
				out, err := r.JSON(nil, []byte(dotted))
				if err != nil {
					t.Fatal(err)
				}
				if strings.Contains(string(out), secret) {
					t.Errorf("%+v: %s keeps the value %s scrubs: %s", cfg.Keys, dotted, nested, out)
				}
			}
			// Tokens answers as JSON does for the dotted key.
			parent, key := "", path
			if !tok.Sensitive(nil, []byte(key)) {
				t.Errorf("%+v: Tokens.Sensitive(nil, %q) = false, JSON scrubs it", cfg.Keys, key)
			}
			if i := strings.IndexByte(path, '.'); i > 0 {
				parent, key = path[:i], path[i+1:]
				if strings.Contains(key, ".") && !tok.Sensitive([]byte(parent), []byte(key)) {
					t.Errorf("%+v: Tokens.Sensitive(%q, %q) = false, JSON scrubs it", cfg.Keys, parent, key)
				}
			}
		}
	}
	// Names that are not sensitive stay so when dotted.
	r := mustNew(t, Config{})
	for _, doc := range []string{`{"event.action":"login"}`, `{"user.name":"bob"}`, `{"http.request.id":"r1"}`, `{"token_type.x":"bearerish"}`} {
		if out, _ := r.JSON(nil, []byte(doc)); string(out) != doc {
			t.Errorf("%s scrubbed to %s", doc, out)
		}
	}
}
