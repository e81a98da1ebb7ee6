package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/server"
)

// docBlock returns the first ```sh block after heading in a Markdown file
// of the repository.
func docBlock(t *testing.T, file, heading string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("%s has no %q", file, heading)
	}
	s = s[i:]
	start := strings.Index(s, "\n```sh\n")
	if start < 0 {
		t.Fatalf("no ```sh block after %q", heading)
	}
	s = s[start+len("\n```sh\n"):]
	end := strings.Index(s, "\n```\n")
	if end < 0 {
		t.Fatalf("unterminated block after %q", heading)
	}
	return s[:end+1]
}

// TestLedgerAuditorBlock runs docs/ledger.md's "Auditing a copy of the
// ledger" block as a bash script, as an auditor would: from a clone of
// the repository, with AUDIT a directory holding only a copy of a
// collector's ledger, its public key and a report the collector signed,
// and no trailguard on the PATH (the block assumed one: pasted on a fresh
// clone it answered "trailguard: command not found"). Only the block's
// build line is left out: the test built the binary already, and puts it
// where that line would. Every command must succeed, and the second
// verify must have checked the checkpoint kept.
func TestLedgerAuditorBlock(t *testing.T) {
	bash := testenv.Tool(t, "bash", "apt-get install bash")
	block := docBlock(t, "docs/ledger.md", "## Auditing a copy of the ledger")

	// The collector: a ledger with a checkpoint part way, then more.
	dir := t.TempDir()
	cfg := server.Defaults()
	cfg.DataDir = dir
	cfg.Detection.Disabled = true
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	appendEvents := func(n int) {
		var recs [][]byte
		for range n {
			id := event.NewID()
			ids = append(ids, id)
			recs = append(recs, (&event.Event{Timestamp: time.Now().UTC(), Kind: "event", Category: []string{"authentication"}, Action: event.ActionLoginFail,
				Outcome: "failure", UserName: "alice", ClientIP: "203.0.113.5", Path: "/login", ServiceName: "api", ID: id}).AppendJSON(nil))
		}
		if _, err := srv.Ledger().Append(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
	}
	appendEvents(5)
	cp, err := srv.Ledger().Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	oldSize := strings.Split(string(cp), "\n")[1]
	appendEvents(7)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	// What the auditor received.
	audit := t.TempDir()
	if err := os.CopyFS(filepath.Join(audit, "ledger"), os.DirFS(filepath.Join(dir, "ledger"))); err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(filepath.Join(dir, "keys", "signer.pub"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(audit, "collector.pub"), pub, 0o644)
	if _, errOut, code := call(runReport, "--data", dir, "--standard", "pci-dss", "--from", "1h", "--out", filepath.Join(audit, "report.json")); code != 0 {
		t.Fatalf("report: %s", errOut)
	}

	const build = `go build -o "$AUDIT/trailguard" ./cmd/trailguard`
	var steps []string
	for _, l := range strings.Split(block, "\n") {
		if !strings.HasPrefix(l, build) {
			steps = append(steps, l)
		}
	}
	if len(steps) != strings.Count(block, "\n") {
		t.Fatalf("the block should build the binary exactly once with %q:\n%s", build, block)
	}
	script, err := os.ReadFile(buildTrailguard(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(audit, "trailguard"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	// As on a fresh clone: no trailguard on the PATH.
	var path []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		if _, err := os.Stat(filepath.Join(d, "trailguard")); err != nil {
			path = append(path, d)
		}
	}
	cmd := exec.Command(bash, "-c", "set -euo pipefail\n"+strings.Join(steps, "\n"))
	cmd.Dir = filepath.Join("..", "..") // the clone
	cmd.Env = append(os.Environ(), "PATH="+strings.Join(path, string(filepath.ListSeparator)), "AUDIT="+audit, "EVENT_ID="+ids[3], "OLD_SIZE="+oldSize)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the block failed: %v\n%s\nblock:\n%s", err, out, block)
	}
	s := string(out)
	checked := regexp.MustCompile(`OK: ledger: \d+ records, (\d+) checkpoints verified`).FindAllStringSubmatch(s, -1)
	if len(checked) != 2 {
		t.Fatalf("want two verify lines:\n%s", s)
	}
	first, _ := strconv.Atoi(checked[0][1])
	second, _ := strconv.Atoi(checked[1][1])
	if second != first+1 {
		t.Errorf("verify --witness held checked %d checkpoints, without it %d: the kept checkpoint was not checked\n%s", second, first, s)
	}
	// A kept checkpoint signed by another key is a finding; the ledger's
	// own checkpoints verified, so verify does not say that none did.
	skey, _, err := ledger.GenerateKey("other.example/trailguard")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(audit, "other.key"), []byte(skey+"\n"), 0o600)
	other, err := ledger.LoadSigner(filepath.Join(audit, "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(cp), "\n", 4)
	forged, err := note.Sign(&note.Note{Text: strings.Join(lines[:3], "\n") + "\n"}, other)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(audit, "held", "forged.checkpoint"), forged, 0o644)
	stdout, stderr, code := call(runVerify, filepath.Join(audit, "ledger"), "--key", filepath.Join(audit, "collector.pub"), "--witness", filepath.Join(audit, "held"))
	if code != 1 || !strings.Contains(stdout, "checkpoint-unknown-key") || strings.Contains(stderr, "no checkpoint is signed") || !strings.Contains(stderr, "is not this ledger's") {
		t.Errorf("verify with a foreign kept checkpoint: exit %d\n%s%s", code, stdout, stderr)
	}
	// --to a size no checkpoint has: the error names the nearest that do.
	if _, errOut, code := call(runProve, filepath.Join(audit, "ledger"), "--from", "1", "--to", oldSize+"1", "--key", filepath.Join(audit, "collector.pub")); code == 0 ||
		!regexp.MustCompile(`no checkpoint of size \d+: give the size of a signed checkpoint \(the nearest: \d+`).MatchString(errOut) {
		t.Errorf("prove --to a size without a checkpoint: %d %s", code, errOut)
	}
	if !regexp.MustCompile(`inclusion of record \d+ in tree`).MatchString(s) {
		t.Errorf("no inclusion proof:\n%s", s)
	}
	// The block says prove shows the event proven: the auditor reads the
	// record the leaf hash is the hash of, not only the hashes.
	if !regexp.MustCompile(`(?m)^record \{.*"id":"` + regexp.QuoteMeta(ids[3]) + `"`).MatchString(s) {
		t.Errorf("prove --event-id does not print the record of event %s:\n%s", ids[3], s)
	}
	for _, want := range []string{"newest checkpoint: ", "consistency " + oldSize + " -> ", "every figure computed again from the ledger"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

// TestVerifyCopyTakenSegmentsFirst: a copy of a running ledger whose
// segments were copied before a checkpoint signed a moment later is
// reported tail-truncated (the copy lacks records that checkpoint covers),
// and verify says how such a copy comes about before anyone concludes
// records were cut; a copy taken checkpoint first verifies.
func TestVerifyCopyTakenSegmentsFirst(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ledger")
	skey, vkey, err := ledger.GenerateKey("copy.example/trailguard")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tmp, "k.key"), []byte(skey+"\n"), 0o600)
	os.WriteFile(filepath.Join(tmp, "k.pub"), []byte(vkey+"\n"), 0o644)
	signer, err := ledger.LoadSigner(filepath.Join(tmp, "k.key"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(dir, ledger.Options{Origin: "copy.example/trailguard", Signer: signer, DisableCompression: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	add := func(n int) {
		var recs [][]byte
		for range n {
			recs = append(recs, (&event.Event{Timestamp: time.Now().UTC(), Kind: "event", Action: "http_request", ID: event.NewID()}).AppendJSON(nil))
		}
		if _, err := l.Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
	}
	add(10)
	copyTo := func(dst string, parts ...string) {
		for _, p := range parts {
			src := filepath.Join(dir, p)
			if fi, err := os.Stat(src); err == nil && fi.IsDir() {
				if err := os.CopyFS(filepath.Join(dst, p), os.DirFS(src)); err != nil {
					t.Fatal(err)
				}
				continue
			}
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(dst, 0o755)
			os.WriteFile(filepath.Join(dst, p), b, 0o644)
		}
	}
	bad, good := filepath.Join(tmp, "bad"), filepath.Join(tmp, "good")
	copyTo(bad, "seg")
	copyTo(good, "checkpoint", "checkpoints", "hashes")
	add(10)
	copyTo(bad, "checkpoint", "checkpoints", "hashes")
	copyTo(good, "seg")

	key := filepath.Join(tmp, "k.pub")
	stdout, stderr, code := call(runVerify, bad, "--key", key)
	if code != 1 || !strings.Contains(stdout, "tail-truncated") || !strings.Contains(stderr, "copied checkpoint and checkpoints/ before seg/") {
		t.Errorf("segments-first copy: exit %d\n%s%s", code, stdout, stderr)
	}
	// Its records past the copied checkpoint are a notice that names the
	// copy as a cause, not only a crash.
	if stdout, stderr, code := call(runVerify, good, "--key", key); code != 0 || strings.Contains(stderr, "tail-truncated") ||
		!strings.Contains(stdout, "unsigned-tail") || !strings.Contains(stdout, "a copy taken before the next checkpoint") {
		t.Errorf("checkpoint-first copy: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestWriteRecord: prove prints a record as it is unless a terminal would
// act on some of its bytes (a ledger holds whatever its writer chose).
func TestWriteRecord(t *testing.T) {
	tests := []struct {
		rec  []byte
		want string
	}{
		{[]byte(`{"event":{"id":"e1"},"user":{"name":"zoë"}}`), `record {"event":{"id":"e1"},"user":{"name":"zoë"}}` + "\n"},
		{[]byte("{\"a\":\"\x1b[2J\"}"), `record (quoted) "{\"a\":\"\x1b[2J\"}"` + "\n"},
		{[]byte("x\ny"), `record (quoted) "x\ny"` + "\n"},
		{[]byte("a\u2028b"), `record (quoted) "a\u2028b"` + "\n"},
		{[]byte("\xff"), `record (quoted) "\xff"` + "\n"},
		{nil, "record pruned by retention (its leaf hash remains)\n"},
	}
	for _, tt := range tests {
		var b strings.Builder
		writeRecord(&b, tt.rec)
		if b.String() != tt.want {
			t.Errorf("writeRecord(%q) = %q, want %q", tt.rec, b.String(), tt.want)
		}
	}
}
