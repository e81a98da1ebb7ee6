package report

import (
	"bytes"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

// FuzzFields: the single-pass scanner never panics on any record, and on
// every event the collector's encoder writes (whatever the values: quotes,
// escapes, invalid UTF-8, control characters) it extracts exactly the
// values the event holds.
func FuzzFields(f *testing.F) {
	f.Add(sampleRec)
	f.Add([]byte(`{"event":{"action":"a\"b\\c","outcome":"failure"},"user":{"name":"\u00e9\n"},"client":{"ip":"203.0.113.1"}}`))
	f.Add([]byte(`{"event":{"action":"x"},"event":{"outcome":"y"},"@timestamp":"2026-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"trailguard":{"alert":{"trigger":{"index":42}},"audit":{"after":{"status":"acknowledged"}}}}`))
	f.Add([]byte(`[1,2,{"a":"b"}]`))
	f.Add([]byte(`{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fl fields
		fl.parse(data) // must not panic, whatever data is
		ev, err := event.Decode(data)
		if err != nil {
			return
		}
		rec := ev.AppendJSON(nil)
		if err := fl.parse(rec); err != nil {
			t.Fatalf("parse of an encoded event: %v\n%s", err, rec)
		}
		back, err := event.Decode(rec)
		if err != nil {
			return
		}
		for _, c := range []struct {
			name      string
			got, want string
		}{
			{"event.action", string(fl.action), back.Action}, {"event.outcome", string(fl.outcome), back.Outcome},
			{"event.kind", string(fl.kind), back.Kind}, {"event.id", string(fl.id), back.ID},
			{"user.name", string(fl.userName), back.UserName}, {"user.id", string(fl.userID), back.UserID},
			{"client.ip", string(fl.cliIP), back.ClientIP}, {"source.ip", string(fl.srcIP), back.SourceIP},
			{"service.name", string(fl.service), back.ServiceName}, {"host.name", string(fl.host), back.HostName},
			{"url.path", string(fl.path), back.Path}, {"user.target.name", string(fl.targetName), back.TargetUserName},
		} {
			if c.got != c.want {
				t.Fatalf("%s: scanned %q, the event has %q\n%s", c.name, c.got, c.want, rec)
			}
		}
		if back.Audit != nil && string(fl.resource) != back.Audit.Resource {
			t.Fatalf("resource %q vs %q", fl.resource, back.Audit.Resource)
		}
		if int(fl.status) != back.StatusCode {
			t.Fatalf("status %d vs %d", fl.status, back.StatusCode)
		}
		if !back.Timestamp.IsZero() && (!fl.hasTS || !fl.tsTime.Equal(back.Timestamp)) {
			t.Fatalf("@timestamp %v vs %v", fl.tsTime, back.Timestamp)
		}
		if len(fl.roles) != len(back.UserRoles) || len(fl.cats) != len(back.Category) {
			t.Fatalf("roles %q vs %q, categories %q vs %q", fl.roles, back.UserRoles, fl.cats, back.Category)
		}
	})
}

// FuzzOpen: a report file from anywhere never panics Open or Unverified,
// and Open accepts only what the key signed, byte for byte.
func FuzzOpen(f *testing.F) {
	skey, vkey, _ := ledger.GenerateKey("fuzz.trailguard/report")
	signer, _ := note.NewSigner(skey)
	verifier, _ := note.NewVerifier(vkey)
	rep := &Report{Format: FormatVersion, Standard: PCIDSS, From: time.Unix(0, 0).UTC(), To: time.Unix(3600, 0).UTC(),
		Checkpoint: CheckpointRef{Origin: "o", TreeSize: 7, RootHash: "AAAA"}, Figures: &Figures{Records: 7}}
	file, _, err := Sign(rep, signer)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(file)
	f.Add([]byte(`{"sha256":"","signature":"","report":{}}`))
	f.Add([]byte(`{"report":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		Unverified(data)
		got, _, err := Open(data, []note.Verifier{verifier})
		if err != nil {
			return
		}
		// Accepted: the report bytes must be those signed.
		if got.Figures == nil || !bytes.Contains(data, []byte(`"report":`)) {
			t.Fatalf("accepted %q", data)
		}
		if !bytes.Equal(data, file) && got.Figures.Records != 7 {
			t.Fatalf("a different report passed the signature check: %q", data)
		}
	})
}
