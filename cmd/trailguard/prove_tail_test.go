package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// TestProveOnlySignedRecords: records after the newest checkpoint (a copy
// of a running collector's ledger, or a tail someone replaced, which only
// checksums protect) get no proof: prove refuses them (exit 1) and proves
// the signed ones; verify counts them as an unsigned tail, a notice.
func TestProveOnlySignedRecords(t *testing.T) {
	const origin = "audit.example.com/trailguard"
	bin, tmp, prefix, signer := keyedTemp(t, origin)
	dir := filepath.Join(tmp, "ledger")
	l, err := ledger.Open(dir, ledger.Options{Origin: origin, Signer: signer, CheckpointInterval: time.Hour, IdleInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var recs [][]byte
	for i := range 20 {
		recs = append(recs, fmt.Appendf(nil, `{"event":{"id":"evt-%03d","action":"login"}}`, i))
	}
	ctx := context.Background()
	if _, err := l.Append(ctx, recs[:10]...); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, recs[10:]...); err != nil {
		t.Fatal(err)
	}
	// The copy an auditor gets while the collector runs: ten records
	// after the newest checkpoint (size 10).
	cp := filepath.Join(tmp, "copy")
	if err := os.CopyFS(cp, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(cp, "lock"))
	key := prefix + ".pub"
	if out, code := run(t, bin, "prove", cp, "--index", "9", "--key", key); code != 0 || !strings.Contains(out, "inclusion of record 9 in tree 10") {
		t.Fatalf("prove a signed record: exit %d\n%s", code, out)
	}
	for _, args := range [][]string{{"--index", "10"}, {"--event-id", "evt-015"}} {
		if out, code := run(t, bin, append([]string{"prove", cp, "--key", key}, args...)...); code != 1 || strings.Contains(out, "inclusion of record") {
			t.Errorf("prove %s, a record no checkpoint signed: exit %d, want 1 and no proof\n%s", strings.Join(args, " "), code, out)
		} else {
			t.Logf("prove %s: %s", strings.Join(args, " "), out)
		}
	}
	if out, code := run(t, bin, "verify", cp, "--key", key); code != 0 || !strings.Contains(out, "unsigned-tail") {
		t.Errorf("verify of the copy: exit %d, want 0 with an unsigned-tail notice\n%s", code, out)
	}
}
