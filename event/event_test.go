package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2026, 11, 25, 17, 22, 36, 123456789, time.UTC)

// samples holds one event of every kind trailguard emits.
func samples() map[string]*Event {
	return map[string]*Event{
		"access": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryWeb}, Type: []string{TypeAccess},
			Action: ActionHTTPRequest, Outcome: OutcomeSuccess, Duration: 1500 * time.Microsecond,
			ID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Dataset: DatasetAccess,
			RequestID: "req-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
			Method: "GET", Path: "/api/orders/42", Query: "page=2&token=[REDACTED]",
			RequestBodyBytes: 0, StatusCode: 200, ResponseBodyBytes: 512,
			SourceIP: "10.0.0.7", SourcePort: 51234, ClientIP: "203.0.113.9",
			UserID: "u-1", UserName: "alice", UserRoles: []string{"admin", "billing"},
			UserAgent: "Mozilla/5.0", ServiceName: "orders-api", HostName: "web-1",
			Labels: map[string]string{"env": "prod"},
		},
		"probe": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryWeb}, Type: []string{TypeAccess},
			Action: ActionHTTPRequest, Outcome: OutcomeFailure, ID: "id-10", Dataset: DatasetAccess,
			Method: "GET", Path: "/files/../../etc/passwd", Query: "q=%27%20OR%201=1--",
			Original: "/files/%2e%2e/%2e%2e/etc/passwd?q=%27%20OR%201=1--", StatusCode: 404,
		},
		"start": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryWeb}, Type: []string{TypeStart},
			Action: ActionHTTPRequestStart, ID: "id-2", Dataset: DatasetAccess, RequestID: "req-1",
			Method: "POST", Path: "/login", ServiceName: "api",
		},
		"login-fail": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryAuthentication}, Type: []string{TypeStart},
			Action: ActionLoginFail, Outcome: OutcomeFailure, Reason: "bad password", ID: "id-3",
			Dataset: DatasetAuth, RequestID: "req-2", UserName: "mallory", SourceIP: "198.51.100.4",
			StatusCode: 401, ServiceName: "api",
		},
		"login-success": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryAuthentication}, Type: []string{TypeStart, TypeAllowed},
			Action: ActionLoginSuccess, Outcome: OutcomeSuccess, ID: "id-4", Dataset: DatasetAuth,
			UserID: "u-1", UserName: "alice",
		},
		"role-change": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryIAM}, Type: []string{TypeChange, TypeAdmin},
			Action: ActionUserRoleChange, Outcome: OutcomeSuccess, ID: "id-5", Dataset: DatasetAudit,
			UserID: "u-1", UserName: "alice", TargetUserID: "u-2", TargetUserName: "bob",
			Audit: &Audit{Resource: "user/u-2", Before: json.RawMessage(`{"roles":["viewer"]}`), After: json.RawMessage(`{"roles":["viewer","admin"]}`)},
		},
		"authz-fail": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryIAM}, Type: []string{TypeDenied},
			Action: ActionAuthzFail, Outcome: OutcomeFailure, Reason: "role viewer lacks orders:delete",
			ID: "id-6", Dataset: DatasetAudit, StatusCode: 403, Path: "/api/orders/7",
		},
		"input-validation": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryWeb}, Type: []string{TypeDenied},
			Action: ActionInputValidationFail, Outcome: OutcomeFailure, ID: "id-7", StatusCode: 400,
		},
		"panic": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryWeb}, Type: []string{TypeAccess, TypeError},
			Action: ActionHTTPRequest, Outcome: OutcomeFailure, ID: "id-8", StatusCode: 500,
			ErrorMessage: "panic: runtime error: index out of range", LogLevel: "error",
		},
		"slog": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryWeb}, Type: []string{TypeInfo},
			Action: ActionLog, ID: "id-9", Dataset: DatasetApp, Message: "cache warmed", LogLevel: "info",
			Severity: 0, Attrs: json.RawMessage(`{"entries":12}`),
		},
		"alert": {
			Timestamp: t0, Kind: KindAlert, Category: []string{CategoryIntrusion, CategoryAuthentication},
			Type: []string{TypeInfo}, Action: ActionLoginFailMax, ID: "id-10", SourceIP: "198.51.100.4",
			Ingested: t0.Add(time.Second),
		},
		"rate-limit": {
			Timestamp: t0, Kind: KindEvent, Category: []string{CategoryWeb}, Type: []string{TypeDenied},
			Action: ActionRateLimitExceeded, Outcome: OutcomeFailure, ID: "id-11", StatusCode: 429,
		},
	}
}

func TestSamplesAreECS(t *testing.T) {
	for name, ev := range samples() {
		t.Run(name, func(t *testing.T) {
			doc := ev.AppendJSON(nil)
			if err := Validate(doc); err != nil {
				t.Fatalf("Validate(%s):\n%v", doc, err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unknown field", `{"@timestamp":"2026-01-01T00:00:00Z","http":{"request":{"secret_header":"x"}}}`, "http.request.secret_header is not in ECS"},
		{"wrong type long", `{"@timestamp":"2026-01-01T00:00:00Z","http":{"response":{"status_code":"200"}}}`, "want an integer"},
		{"wrong ip", `{"@timestamp":"2026-01-01T00:00:00Z","source":{"ip":"not-an-ip"}}`, "want an IP address"},
		{"disallowed outcome", `{"@timestamp":"2026-01-01T00:00:00Z","event":{"outcome":"ok"}}`, `value "ok" is not one ECS allows`},
		{"disallowed category", `{"@timestamp":"2026-01-01T00:00:00Z","event":{"category":["web","hacking"]}}`, `value "hacking"`},
		{"bad date", `{"@timestamp":"yesterday"}`, "want an RFC 3339 date"},
		{"no timestamp", `{"message":"x"}`, "@timestamp missing"},
		{"dotted unknown", `{"@timestamp":"2026-01-01T00:00:00Z","user.password":"x"}`, "user.password is not in ECS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate(%s) = %v, want error containing %q", tt.doc, err, tt.want)
			}
		})
	}
	if err := Validate([]byte(`{"@timestamp":"2026-01-01T00:00:00Z","trailguard":{"anything":{"goes":1}},"labels":{"a":"b"}}`)); err != nil {
		t.Fatalf("own namespace rejected: %v", err)
	}
}

func TestEncodeGolden(t *testing.T) {
	got := string(samples()["role-change"].AppendJSON(nil))
	want := `{"@timestamp":"2026-11-25T17:22:36.123456789Z","event":{"kind":"event","category":["iam"],"type":["change","admin"],"action":"user_role_change","outcome":"success","id":"id-5","dataset":"trailguard.audit"},"user":{"id":"u-1","name":"alice","target":{"id":"u-2","name":"bob"}},"trailguard":{"audit":{"resource":"user/u-2","before":{"roles":["viewer"]},"after":{"roles":["viewer","admin"]}}}}`
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := string((&Event{}).AppendJSON(nil)); got != "{}" {
		t.Fatalf("empty event = %s", got)
	}
	local := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	if got := string((&Event{Timestamp: local}).AppendJSON(nil)); got != `{"@timestamp":"2026-01-02T02:04:05.000000000Z"}` {
		t.Fatalf("timestamp not UTC with 9 digits: %s", got)
	}
}

func TestRoundTrip(t *testing.T) {
	for name, ev := range samples() {
		t.Run(name, func(t *testing.T) {
			doc := ev.AppendJSON(nil)
			back, err := Decode(doc)
			if err != nil {
				t.Fatalf("Decode(%s): %v", doc, err)
			}
			if !reflect.DeepEqual(back, ev) {
				t.Fatalf("round trip differs:\n got %+v\nwant %+v", back, ev)
			}
			if again := back.AppendJSON(nil); !bytes.Equal(again, doc) {
				t.Fatalf("re-encoding differs:\n%s\n%s", again, doc)
			}
		})
	}
}

func TestDecodeDottedAndExtra(t *testing.T) {
	doc := `{"@timestamp":"2026-11-25T10:00:00.5+01:00","event.action":"authn_login_fail","http":{"request.method":"POST","version":"1.1"},"host":{"name":"h","os":{"name":"linux"}},"tags":["a","b"],"labels.team":"sec","event.category":"authentication"}`
	ev, err := Decode([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Action != ActionLoginFail || ev.Method != "POST" || ev.HostName != "h" || ev.Labels["team"] != "sec" {
		t.Fatalf("modelled fields: %+v", ev)
	}
	if !reflect.DeepEqual(ev.Category, []string{"authentication"}) {
		t.Fatalf("single-string category: %v", ev.Category)
	}
	if !ev.Timestamp.Equal(time.Date(2026, 11, 25, 9, 0, 0, 5e8, time.UTC)) || ev.Timestamp.Location() != time.UTC {
		t.Fatalf("timestamp: %v", ev.Timestamp)
	}
	wantExtra := map[string]string{"http.version": `"1.1"`, "host.os.name": `"linux"`, "tags": `["a","b"]`}
	if len(ev.Extra) != len(wantExtra) {
		t.Fatalf("extra = %v", ev.Extra)
	}
	for k, v := range wantExtra {
		if string(ev.Extra[k]) != v {
			t.Errorf("extra[%s] = %s, want %s", k, ev.Extra[k], v)
		}
	}
	if err := Validate(ev.AppendJSON(nil)); err != nil {
		t.Fatalf("re-encoded extra fields are not ECS: %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	deep := strings.Repeat(`{"a":`, MaxDecodeDepth+2) + "1" + strings.Repeat("}", MaxDecodeDepth+2)
	tests := []struct{ name, doc, want string }{
		{"not json", `{"a":`, "event: decode"},
		{"array", `[1,2]`, "event: decode"},
		{"null", `null`, "null"},
		{"status string", `{"http":{"response":{"status_code":"x"}}}`, "http.response.status_code"},
		{"bad timestamp", `{"@timestamp":"noon"}`, "@timestamp"},
		// RFC 3339 as sent, but not once written in UTC (AppendJSON).
		{"timestamp before year 0 in UTC", `{"@timestamp":"0000-01-01T00:00:00+01:00"}`, "year -1 in UTC"},
		{"ingested after year 9999 in UTC", `{"event":{"ingested":"9999-12-31T23:00:00-01:00"}}`, "year 10000 in UTC"},
		{"roles number", `{"user":{"roles":5}}`, "user.roles"},
		{"too deep", deep, "nesting deeper"},
		{"empty key", `{"":1}`, "empty field name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode(%.60s) = %v, want error containing %q", tt.doc, err, tt.want)
			}
		})
	}
}

// TestLogInjection plants line-breaking and line-forging input in every
// string field and checks the output is one valid JSON line that decodes
// back to exactly the input (CWE-117).
func TestLogInjection(t *testing.T) {
	hostile := []string{
		"alice\n{\"event\":{\"action\":\"authn_login_success\"}}",
		"a\rb", "tab\there", "nul\x00byte", "esc\x1b[31mred", "del\x7f",
		"quote\"and\\backslash", "line\u2028sep", "para\u2029sep", "nel\u0085x",
		"bad utf8 \xff\xfe", "}\"],{", "</script><script>alert(1)</script>",
	}
	for _, h := range hostile {
		ev := &Event{Timestamp: t0, Action: h, Path: h, UserName: h, UserAgent: h, Query: h, Message: h,
			Labels: map[string]string{h: h}, Audit: &Audit{Resource: h, Before: json.RawMessage("{\n\"k\":\n1}")}}
		out := ev.AppendJSON(nil)
		for i, c := range out {
			if c < 0x20 || c == 0x7f {
				t.Fatalf("raw control byte %#x at %d in %q", c, i, out)
			}
		}
		for _, sep := range []string{"\u2028", "\u2029", "\u0085"} {
			if bytes.Contains(out, []byte(sep)) {
				t.Fatalf("raw %q in %s", sep, out)
			}
		}
		if !utf8.Valid(out) || !json.Valid(out) {
			t.Fatalf("invalid output for %q: %s", h, out)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatal(err)
		}
		want := string([]rune(h))
		if back.UserName != want || back.Path != want || back.Labels[want] != want {
			t.Fatalf("value changed: got %q want %q", back.UserName, want)
		}
		if string(back.Audit.Before) != `{"k":1}` {
			t.Fatalf("raw whitespace not compacted: %s", back.Audit.Before)
		}
	}
}

// TestDecodeEscapesAsEncodingJSON: an escaped string reads as
// encoding/json reads it, also around a surrogate that is not half of a
// pair, so that detection, scrubbing and the stored event agree on the
// characters an attacker sent.
func TestDecodeEscapesAsEncodingJSON(t *testing.T) {
	for _, esc := range []string{
		`a\u00e9\ud83d\ude00`,
		`\ud800`, `\udc00x`, `\ud800\u0041`, `\ud800\ud800`,
		`\ud800\ud83d\ude00`, `\udc00\ud83d\ude00`, `\ud83d\ud83d\ude00`,
		`\ud800\ufffd`, `\ud800\\u0041`,
	} {
		doc := `{"user":{"name":"` + esc + `"}}`
		var std struct {
			User struct {
				Name string `json:"name"`
			} `json:"user"`
		}
		if err := json.Unmarshal([]byte(doc), &std); err != nil {
			t.Fatalf("%s: encoding/json: %v", doc, err)
		}
		ev, err := Decode([]byte(doc))
		if err != nil {
			t.Fatalf("%s: %v", doc, err)
		}
		if ev.UserName != std.User.Name {
			t.Errorf("%s: user.name %q, encoding/json reads %q", doc, ev.UserName, std.User.Name)
		}
	}
}

func TestRawInvalidKeptAsString(t *testing.T) {
	ev := &Event{Attrs: json.RawMessage(`{not json`)}
	if got := string(ev.AppendJSON(nil)); got != `{"trailguard":{"attrs":"{not json"}}` {
		t.Fatalf("got %s", got)
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	prev := ""
	for i := 0; i < 2000; i++ {
		id := NewID()
		if len(id) != 36 || id[14] != '7' || !strings.ContainsRune("89ab", rune(id[19])) {
			t.Fatalf("not a UUIDv7: %s", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
		if id[:13] < prev {
			t.Fatalf("ids not time-ordered: %s after %s", id, prev)
		}
		prev = id[:13]
	}
	a := string(appendUUIDv7(nil, time.UnixMilli(1000)))
	b := string(appendUUIDv7(nil, time.UnixMilli(2000)))
	if !(a < b) || a[:13] != "00000000-03e8" {
		t.Fatalf("timestamp prefix wrong: %s %s", a, b)
	}
}

func FuzzEncodeDecode(f *testing.F) {
	f.Add("alice", "/p?q\n", "Mozilla", `{"a":1}`)
	f.Add("\x00\xff", "\u2028", "}", `[1, 2]`)
	f.Fuzz(func(t *testing.T, user, path, ua, raw string) {
		ev := &Event{Timestamp: t0, UserName: user, Path: path, UserAgent: ua, Attrs: json.RawMessage(raw),
			Labels: map[string]string{user: ua}}
		out := ev.AppendJSON(nil)
		if bytes.ContainsAny(out, "\n\r") || !json.Valid(out) {
			t.Fatalf("bad line: %q", out)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(%s): %v", out, err)
		}
		if back.UserName != string([]rune(user)) || back.Path != string([]rune(path)) {
			t.Fatalf("round trip: %q %q", back.UserName, back.Path)
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, ev := range samples() {
		f.Add(ev.AppendJSON(nil))
	}
	f.Add([]byte(`{"a.b":{"c":[{"d":1}]},"@timestamp":5}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		ev, err := Decode(doc)
		// The hand-written scanner must be exactly as strict as the
		// standard library about syntax.
		var se *syntaxError
		if err == nil && !json.Valid(doc) {
			t.Fatalf("Decode accepted invalid JSON %q", doc)
		}
		if errors.As(err, &se) && json.Valid(doc) {
			t.Fatalf("Decode rejected valid JSON %q: %v", doc, err)
		}
		if err != nil {
			return
		}
		out := ev.AppendJSON(nil)
		if bytes.ContainsAny(out, "\n\r") || !json.Valid(out) {
			t.Fatalf("re-encoding %q gave bad line %q", doc, out)
		}
		// What Decode accepted, written again, reads back.
		if _, err := Decode(out); err != nil {
			t.Fatalf("re-encoding %q gave %q, which Decode refuses: %v", doc, out, err)
		}
		_ = Validate(out)
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	ev := samples()["access"]
	buf := ev.AppendJSON(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = ev.AppendJSON(buf[:0])
	}
}

// BenchmarkEncodingJSON is the peer: encoding/json marshalling a struct
// with the same fields, tagged with the same dotted names.
func BenchmarkEncodingJSON(b *testing.B) {
	ev := samples()["access"]
	type flat struct {
		Timestamp time.Time         `json:"@timestamp"`
		Kind      string            `json:"event.kind"`
		Category  []string          `json:"event.category"`
		Type      []string          `json:"event.type"`
		Action    string            `json:"event.action"`
		Outcome   string            `json:"event.outcome"`
		Duration  int64             `json:"event.duration"`
		ID        string            `json:"event.id"`
		Dataset   string            `json:"event.dataset"`
		RequestID string            `json:"http.request.id"`
		TraceID   string            `json:"trace.id"`
		SpanID    string            `json:"span.id"`
		Method    string            `json:"http.request.method"`
		Path      string            `json:"url.path"`
		Query     string            `json:"url.query"`
		Status    int               `json:"http.response.status_code"`
		RespBytes int64             `json:"http.response.body.bytes"`
		SourceIP  string            `json:"source.ip"`
		Port      int               `json:"source.port"`
		ClientIP  string            `json:"client.ip"`
		UserID    string            `json:"user.id"`
		UserName  string            `json:"user.name"`
		Roles     []string          `json:"user.roles"`
		UA        string            `json:"user_agent.original"`
		Service   string            `json:"service.name"`
		Host      string            `json:"host.name"`
		Labels    map[string]string `json:"labels"`
	}
	v := flat{ev.Timestamp, ev.Kind, ev.Category, ev.Type, ev.Action, ev.Outcome, int64(ev.Duration), ev.ID, ev.Dataset,
		ev.RequestID, ev.TraceID, ev.SpanID, ev.Method, ev.Path, ev.Query, ev.StatusCode, ev.ResponseBodyBytes,
		ev.SourceIP, ev.SourcePort, ev.ClientIP, ev.UserID, ev.UserName, ev.UserRoles, ev.UserAgent, ev.ServiceName,
		ev.HostName, ev.Labels}
	out, _ := json.Marshal(v)
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		_, _ = json.Marshal(v)
	}
}

func BenchmarkDecode(b *testing.B) {
	doc := samples()["access"].AppendJSON(nil)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(doc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNewID(b *testing.B) {
	b.ReportAllocs()
	var buf []byte
	for b.Loop() {
		buf = AppendID(buf[:0])
	}
}

func TestAppendTime(t *testing.T) {
	for _, tm := range []time.Time{
		t0, time.Unix(0, 0), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", -7*3600)), time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, want := string(AppendTime(nil, tm)), tm.UTC().Format(TimeFormat); got != want {
			t.Errorf("AppendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}
