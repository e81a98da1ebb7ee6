package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/ledger"
)

// TestVerifyRollback: someone who can write the data directory puts back
// an older copy of the whole ledger (a backup from before the records they
// want gone: records, hash tiles and checkpoints of an earlier, consistent
// state). Alone it is a true earlier state of the log, and verify says OK
// — printing the newest checkpoint's size and time, which is all it has to
// compare. With the checkpoint the auditor kept from the last audit,
// --since and --witness refuse it (exit 1) and name it.
func TestVerifyRollback(t *testing.T) {
	const origin = "audit.example.com/trailguard"
	bin, tmp, prefix, signer := keyedTemp(t, origin)
	dir := filepath.Join(tmp, "ledger")
	grow := func(from, n int) {
		l, err := ledger.Open(dir, ledger.Options{Origin: origin, Signer: signer})
		if err != nil {
			t.Fatal(err)
		}
		var recs [][]byte
		for i := from; i < from+n; i++ {
			recs = append(recs, fmt.Appendf(nil, `{"event":{"id":"evt-%03d","action":"login"}}`, i))
		}
		if _, err := l.Append(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	grow(0, 100)
	backup := filepath.Join(tmp, "backup")
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	grow(100, 50)
	// The auditor verifies and keeps the newest checkpoint (size 150).
	if out, code := run(t, bin, "verify", dir, "--key", prefix+".pub"); code != 0 || !strings.Contains(out, "tree size 150") {
		t.Fatalf("audit: exit %d\n%s", code, out)
	}
	held := filepath.Join(tmp, "held")
	os.MkdirAll(held, 0o755)
	heldCP := filepath.Join(held, "audit-1.checkpoint")
	if err := os.WriteFile(heldCP, mustReadFile(t, filepath.Join(dir, "checkpoint")), 0o644); err != nil {
		t.Fatal(err)
	}
	// The rollback: the whole directory as it was at size 100.
	os.RemoveAll(dir)
	if err := os.CopyFS(dir, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	out, code := run(t, bin, "verify", dir, "--key", prefix+".pub")
	if code != 0 || !strings.Contains(out, "newest checkpoint: "+origin+", tree size 100,") {
		t.Fatalf("rolled-back ledger alone: exit %d, want 0 and its newest checkpoint (size 100) printed\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		kind string
	}{
		{[]string{"--since", heldCP}, ledger.KindHistoryRewritten},
		{[]string{"--witness", held}, ledger.KindTailTruncated},
	} {
		out, code := run(t, bin, append([]string{"verify", dir, "--key", prefix + ".pub"}, tc.args...)...)
		if code != 1 || !strings.Contains(out, tc.kind+": ") {
			t.Errorf("rolled-back ledger, verify %s: exit %d, want 1 with %s\n%s", strings.Join(tc.args, " "), code, tc.kind, out)
		}
	}
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
