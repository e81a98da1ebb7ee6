package server

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/ledger"
)

// A collector whose checkpoint history was deleted refuses to start and
// sign the records as they are; the operator's one-shot --adopt-unsigned
// makes it start, and the adoption is audited in the trail and reported by
// verify (issue 7 item 1).
func TestAdoptUnsignedIsOneShotAndAudited(t *testing.T) {
	dir := t.TempDir()
	ts := startServer(t, dir, nil)
	ts.stop(t)
	ldir := filepath.Join(dir, "ledger")
	os.RemoveAll(filepath.Join(ldir, "checkpoints"))
	os.Remove(filepath.Join(ldir, "checkpoint"))
	r, err := ledger.OpenReadOnly(ldir)
	if err != nil {
		t.Fatal(err)
	}
	n := r.Size()
	r.Close()

	cfg := Defaults()
	cfg.DataDir, cfg.Origin = dir, "test.example/trailguard"
	if _, err := New(cfg, nil); !errors.Is(err, ledger.ErrUnsignedRecords) || !strings.Contains(err.Error(), fmt.Sprintf("--adopt-unsigned=%d", n)) {
		t.Fatalf("start on a ledger without checkpoints: %v", err)
	}
	// Only a flag: the file and the environment cannot keep it on.
	yml := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(yml, []byte("adopt_unsigned: 5\n"), 0o644)
	if _, err := LoadConfig([]string{"--config", yml}, nil); err == nil {
		t.Fatal("adopt_unsigned accepted in the YAML file")
	}
	got, err := LoadConfig([]string{"--data", dir, fmt.Sprintf("--adopt-unsigned=%d", n), "--start-without-witness"}, []string{"TRAILGUARD_ADOPT_UNSIGNED=7"})
	if err != nil || got.Once.AdoptUnsigned != n || !got.Once.StartWithoutWitness {
		t.Fatalf("flags: %+v, %v", got.Once, err)
	}
	if got, _ := LoadConfig([]string{"--data", dir}, []string{"TRAILGUARD_ADOPT_UNSIGNED=7"}); got.Once.AdoptUnsigned != 0 {
		t.Fatal("adopt_unsigned read from the environment")
	}

	ts = startServer(t, dir, func(c *Config) { c.Once.AdoptUnsigned = n })
	ts.stop(t)
	rep, err := ledger.Verify(ldir, ledger.VerifyOptions{Verifiers: verifiers(t, dir)})
	if err != nil {
		t.Fatal(err)
	}
	adopted := false
	for _, f := range rep.Notices {
		adopted = adopted || f.Kind == ledger.NoticeAdopted && f.Count == n
	}
	if !rep.OK() || !adopted {
		t.Fatalf("verify after adoption:\n%s", rep)
	}
	r, err = ledger.OpenReadOnly(ldir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	found := false
	for e, err := range r.Entries(n) {
		if err != nil {
			t.Fatal(err)
		}
		found = found || bytes.Contains(e.Data, []byte(`"action":"ledger_records_adopted"`))
	}
	if !found {
		t.Fatal("no audit event for the adoption")
	}
}

func verifiers(t *testing.T, dir string) []note.Verifier {
	t.Helper()
	vs, err := ledger.LoadVerifiers(filepath.Join(dir, "keys", "signer.pub"))
	if err != nil {
		t.Fatal(err)
	}
	return vs
}
