package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/ledger"
)

// TestSignerKeyRotation: a collector started with another signer_key on
// an existing ledger refuses, saying how to rotate; with --handover-key
// (the old key) it starts, the old key co-signs the new key's first
// checkpoint, and verify with both public keys reports a rotation, not a
// finding. Before, it signed on with the new key silently, and verify with
// the data directory's key failed on every later checkpoint.
func TestSignerKeyRotation(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	ts.stop(t)
	oldKey := filepath.Join(dir, "keys", "signer.key")

	keys := t.TempDir()
	skey, vkey, err := ledger.GenerateKey("test.example/trailguard")
	if err != nil {
		t.Fatal(err)
	}
	newKey, newPub := filepath.Join(keys, "new.key"), filepath.Join(keys, "new.pub")
	os.WriteFile(newKey, []byte(skey+"\n"), 0o600)
	os.WriteFile(newPub, []byte(vkey+"\n"), 0o644)

	cfg := Defaults()
	cfg.DataDir, cfg.Origin, cfg.SignerKey = dir, "test.example/trailguard", newKey
	cfg.Detection.Disabled = true
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "--handover-key FILE") || !strings.Contains(err.Error(), newKey) {
		t.Fatalf("start with another signer key: %v", err)
	}
	// The handover key must be the ledger's.
	other := filepath.Join(keys, "other.key")
	s2, _, _ := ledger.GenerateKey("test.example/trailguard")
	os.WriteFile(other, []byte(s2+"\n"), 0o600)
	cfg.Once.HandoverKey = other
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "is not the key the ledger's newest checkpoint") {
		t.Fatalf("start with a wrong handover key: %v", err)
	}
	// The flag only: never from the file or the environment.
	if got, err := LoadConfig([]string{"--data", dir, "--handover-key", oldKey}, []string{"TRAILGUARD_HANDOVER_KEY=x"}); err != nil || got.Once.HandoverKey != oldKey {
		t.Fatalf("--handover-key: %+v %v", got.Once, err)
	}
	if got, _ := LoadConfig([]string{"--data", dir}, []string{"TRAILGUARD_HANDOVER_KEY=x"}); got.Once.HandoverKey != "" {
		t.Fatal("handover key read from the environment")
	}

	ts = startServer(t, dir, func(c *Config) { c.SignerKey, c.Once.HandoverKey = newKey, oldKey })
	ts.stop(t)
	// The next start needs no flag: the ledger is the new key's now.
	ts = startServer(t, dir, func(c *Config) { c.SignerKey = newKey })
	ts.stop(t)
	// Back to the old key: refused too (it no longer signs the ledger).
	cfg.SignerKey, cfg.Once.HandoverKey = oldKey, ""
	if _, err := New(cfg, nil); err == nil || !strings.Contains(err.Error(), "--handover-key") {
		t.Fatalf("start with the retired key: %v", err)
	}

	both, err := ledger.LoadVerifiers(filepath.Join(dir, "keys", "signer.pub"), newPub)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ledger.Verify(filepath.Join(dir, "ledger"), ledger.VerifyOptions{Verifiers: both})
	if err != nil || !rep.OK() {
		t.Fatalf("verify with both keys: %v\n%s", err, rep)
	}
	rotated := false
	for _, n := range rep.Notices {
		rotated = rotated || n.Kind == ledger.NoticeKeyRotated
		if n.Kind == ledger.NoticeKeyChanged {
			t.Errorf("key changed without a handover: %+v", n)
		}
	}
	if !rotated {
		t.Errorf("verify reports no rotation: %s", rep)
	}
}

// TestRoleRefusalSaysWhatToUse: a token of the wrong role is told which
// role the request needs and how to make such a token.
func TestRoleRefusalSaysWhatToUse(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	status, body := ts.do(t, "DELETE", "/v1/decisions/1", ts.read, nil)
	if status != 403 || !strings.Contains(string(body), `token \"analyst\" has role read; this needs role admin`) ||
		!strings.Contains(string(body), "trailguard token create --role admin") {
		t.Errorf("read token unblocking: %d %s", status, body)
	}
}

// TestEmptyPollsSampled: a bouncer polling the decision stream (a gateway
// does every 50 ms) leaves its startup poll, the first poll of each minute
// that brings nothing, and every poll that delivers decisions in the
// ledger, not one record per poll (20 a second per gateway before).
func TestEmptyPollsSampled(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, detectionOn)
	bouncer := ts.token(t, "edge-bouncer", access.RoleBouncer)
	polls := func() int {
		n := 0
		for e, err := range ts.Ledger().Entries(0) {
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(e.Data, []byte(`"path":"/v1/decisions/stream"`)) {
				n++
			}
		}
		return n
	}
	ts.stream(t, bouncer, true)
	for range 30 {
		ts.stream(t, bouncer, false)
	}
	waitUntil(t, "two polls recorded", 30*time.Second, func() bool { return polls() >= 2 })
	if code, body := ts.do(t, "POST", "/v1/decisions", ts.admin, strings.NewReader(`{"scope":"Ip","value":"203.0.113.7","duration":"1h","reason":"test"}`)); code != 201 {
		t.Fatalf("ban: %d %s", code, body)
	}
	if a := ts.stream(t, bouncer, false); !has(a.New, "203.0.113.7") {
		t.Fatalf("the ban did not reach the bouncer: %+v", a)
	}
	ts.stream(t, bouncer, false)
	waitUntil(t, "the delivering poll recorded", 30*time.Second, func() bool { return polls() >= 3 })
	time.Sleep(300 * time.Millisecond) // the collector's writer batches its own events
	if n := polls(); n != 3 {
		t.Errorf("%d polls recorded of 33: want the startup one, the minute's first empty one and the one that delivered a ban", n)
	}
}
