package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCheckECS(t *testing.T) {
	tests := []struct {
		doc   string
		field string // "" when valid
		want  string // in the message
	}{
		// The cases: nothing may sit under an ECS name with the
		// wrong type.
		{`{"http":{"response":{"status_code":{"$gt":1}}}}`, "http.response.status_code", "wants an integer (long), got an object"},
		{`{"http.response.status_code":{"$gt":1}}`, "http.response.status_code", "wants an integer (long), got an object"},
		{`{"source":{"ip":"not-an-ip"}}`, "source.ip", "an IP address"},
		{`{"user":"alice"}`, "user", "an object (user.* fields)"},
		{`{"user":["alice"]}`, "user", "an object"},
		{`{"http":{"response":{"status_code":-1}}}`, "http.response.status_code", "100-599"},
		{`{"http":{"response":{"status_code":700}}}`, "http.response.status_code", "100-599"},
		{`{"source":{"port":70000}}`, "source.port", "0-65535"},
		{`{"event":{"duration":-5}}`, "event.duration", "zero or more"},
		{`{"@timestamp":"1969-12-31T23:59:59Z"}`, "@timestamp", "from 1970"},
		// Fields Event does not model, checked against the table.
		{`{"destination":{"ip":"300.1.1.1"}}`, "destination.ip", "an IP address"},
		{`{"destination":{"port":"80"}}`, "destination.port", "an integer"},
		{`{"url":{"port":80.5}}`, "url.port", "an integer"},
		{`{"process":{"pid":{"x":1}}}`, "process.pid", "an object (with process.pid.x)"},
		{`{"event":{"created":"yesterday"}}`, "event.created", "RFC 3339"},
		{`{"event":{"created":"0001-01-02T00:00:00Z"}}`, "event.created", "RFC 3339"},
		{`{"file":{"size":true}}`, "file.size", "an integer"},
		{`{"host":{"ip":["10.0.0.1","nope"]}}`, "host.ip", "or an array of them"},
		{`{"process":{"args_count":1},"process.exit_code":"0"}`, "process.exit_code", "an integer"},
		{`{"tls":{"established":"yes"}}`, "tls.established", "true or false"},
		{`{"client":{"geo":{"location":{"lat":"north","lon":1}}}}`, "client.geo.location.lat", "a number"},
		{`{"client":{"geo":{"location":{"alt":1}}}}`, "client.geo.location", "geo point"},
		{`{"network":"tcp"}`, "network", "an object"},
		{`{"http":{"request":{"bytes":1e30}}}`, "http.request.bytes", "an integer"},
		// Valid: ECS values of the right type, arrays of them, and fields
		// ECS does not define (kept as sent).
		{`{"destination":{"ip":"2001:db8::1","port":443},"host":{"ip":["10.0.0.1","::1"]}}`, "", ""},
		{`{"input":{"type":"filestream"},"agent":{"type":"filebeat"},"myapp":{"anything":{"$gt":1}}}`, "", ""},
		{`{"user":{"name":"alice","custom_flag":true},"http":{"response":{"status_code":401}}}`, "", ""},
		{`{"client":{"geo":{"location":{"lat":52.5,"lon":13.4}}},"source":{"geo":{"location":"52.5,13.4"}}}`, "", ""},
		{`{"event":{"created":"2026-11-25T10:00:00Z","risk_score":3.5},"file":{"size":0},"tls":{"established":false}}`, "", ""},
		{`{"email":{"attachments":[{"file":{"name":"a.pdf"}}]},"container":{"labels":{"k":"v"}}}`, "", ""},
		{`{"@timestamp":"2026-11-25T10:00:00Z","tags":["a","b"],"labels":{"env":"prod"}}`, "", ""},
	}
	for _, tt := range tests {
		ev, err := Decode([]byte(tt.doc))
		if err == nil {
			err = ev.CheckECS()
		}
		var fe *FieldError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: %v", tt.doc, err)
		case tt.field == "":
		case err == nil:
			t.Errorf("%s: accepted, want an error on %s", tt.doc, tt.field)
		case errors.As(err, &fe):
			if fe.Field != tt.field || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: %v; want field %s, %q", tt.doc, err, tt.field, tt.want)
			}
		case !strings.Contains(err.Error(), tt.field) || !strings.Contains(err.Error(), tt.want):
			// Decode's own type errors (fields Event models).
			t.Errorf("%s: %v; want %s, %q", tt.doc, err, tt.field, tt.want)
		}
	}
}

// TestDecodeZeroTimestamp: @timestamp of year 1 would read as "not sent"
// and be replaced; it is an error.
func TestDecodeZeroTimestamp(t *testing.T) {
	if _, err := Decode([]byte(`{"@timestamp":"0001-01-01T00:00:00Z"}`)); err == nil || !strings.Contains(err.Error(), "zero time") {
		t.Fatalf("zero @timestamp: %v", err)
	}
}

// FuzzCheckECS: whatever CheckECS accepts, once encoded, has every ECS
// field at its ECS type by the reference validator (Validate, which
// decodes every value with encoding/json); only fields ECS does not
// define may remain, as sent.
func FuzzCheckECS(f *testing.F) {
	for _, s := range []string{
		`{"http":{"response":{"status_code":{"$gt":1}}}}`,
		`{"source":{"ip":"not-an-ip"},"user":"alice"}`,
		`{"destination":{"ip":"10.0.0.1","port":443},"host":{"ip":["10.0.0.1"]}}`,
		`{"client":{"geo":{"location":{"lat":1,"lon":2}}},"event":{"created":"2026-01-01T00:00:00Z"}}`,
		`{"email":{"attachments":[{"file":{"name":"a"}}]},"process":{"pid":1,"args":["a"]}}`,
		`{"myapp":{"x":[1,{"y":2}]},"tls.established":true,"file.size":12}`,
		`{"url":{"port":1.0},"event.risk_score":1e3,"host.uptime":-1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		ev, err := Decode(doc)
		if err != nil || ev.CheckECS() != nil {
			return
		}
		enc := ev.AppendJSON(nil)
		// Fields outside ECS may stay, but never where ECS has a value or
		// an object.
		var root map[string]json.RawMessage
		if err := json.Unmarshal(enc, &root); err != nil {
			t.Fatalf("encoded %s: %v", enc, err)
		}
		walkFields("", root, 0, func(name string, v json.RawMessage) {
			if _, ok := ecsFields[name]; ok || strings.HasPrefix(name, "trailguard.") || strings.HasPrefix(name, "labels.") {
				return
			}
			if objectPaths[name] {
				t.Fatalf("CheckECS accepted %s: a value where ECS has the object %s", doc, name)
			}
			for i := len(name) - 1; i > 0; i-- {
				if name[i] == '.' {
					if f, ok := ecsFields[name[:i]]; ok && !container(f.typ) && f.typ != "geo_point" {
						t.Fatalf("CheckECS accepted %s: %s sits under the ECS %s %s", doc, name, f.typ, name[:i])
					}
				}
			}
		})
		if err := Validate(enc); err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				msg := e.Error()
				if strings.Contains(msg, "is not in ECS") || strings.Contains(msg, "@timestamp missing") {
					continue
				}
				t.Fatalf("CheckECS accepted %s\nencoded %s\nbut: %v", doc, enc, e)
			}
		}
	})
}

// BenchmarkCheckECS checks a Filebeat-like event with fields Event does
// not model (each looked up in the ECS table); compare with
// BenchmarkDecodeFilebeat, the decoding CheckECS follows.
func BenchmarkCheckECS(b *testing.B) {
	ev, err := Decode([]byte(filebeatDoc))
	if err != nil || len(ev.Extra) < 10 {
		b.Fatalf("%v, %d extra fields", err, len(ev.Extra))
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ev.CheckECS(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeFilebeat(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode([]byte(filebeatDoc)); err != nil {
			b.Fatal(err)
		}
	}
}

const filebeatDoc = `{"@timestamp":"2026-11-25T12:00:00.000Z","agent":{"type":"filebeat","version":"8.19.0","name":"web-1","id":"a1"},"ecs":{"version":"8.0.0"},"host":{"name":"web-1","ip":["10.0.0.5","fe80::1"],"os":{"family":"debian"}},"input":{"type":"filestream"},"log":{"file":{"path":"/var/log/nginx/access.log"},"offset":12345},"event":{"kind":"event","category":["web"],"type":["access"],"outcome":"success","created":"2026-11-25T12:00:00.100Z","dataset":"nginx.access"},"source":{"ip":"203.0.113.9","port":51234,"geo":{"location":{"lat":52.5,"lon":13.4}}},"destination":{"ip":"10.0.0.5","port":443},"http":{"request":{"method":"GET"},"response":{"status_code":200,"body":{"bytes":512}},"version":"1.1"},"url":{"path":"/api/orders","port":443,"domain":"shop.example"},"user_agent":{"original":"Mozilla/5.0"},"tags":["nginx"]}`
