package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/ledger"
)

func run(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String() + stderr.String(), code
}

// keyedTemp is where a test of the offline commands over a ledger starts:
// the binary, a new temporary directory tmp, a key pair for origin made by
// its keygen command (prefix.key, prefix.pub, prefix tmp/collector) and
// the signer a collector would load from it.
func keyedTemp(t *testing.T, origin string) (bin, tmp, prefix string, signer note.Signer) {
	t.Helper()
	bin = buildTrailguard(t)
	tmp = t.TempDir()
	prefix = filepath.Join(tmp, "collector")
	if out, code := run(t, bin, "keygen", "--name", origin, "--out", prefix); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	signer, err := ledger.LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	return bin, tmp, prefix, signer
}

func TestLedgerCommands(t *testing.T) {
	bin := buildTrailguard(t)
	tmp := t.TempDir()
	prefix := filepath.Join(tmp, "audit")
	const origin = "audit.example.com/trailguard"
	if out, code := run(t, bin, "keygen", "--name", origin, "--out", prefix); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	if _, code := run(t, bin, "keygen", "--name", origin, "--out", prefix); code == 0 {
		t.Fatal("keygen overwrote an existing key")
	}
	if st, err := os.Stat(prefix + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signer key file: %v %v", st, err)
	}
	signer, err := ledger.LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	vs, err := ledger.LoadVerifiers(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(tmp, "ledger")
	l, err := ledger.Open(dir, ledger.Options{Origin: origin, Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i := 0; i < 300; i++ {
		recs = append(recs, fmt.Appendf(nil, `{"@timestamp":"2026-01-01T00:00:00Z","event":{"id":"evt-%03d","action":"login"}}`, i))
	}
	ctx := context.Background()
	if _, err := l.Append(ctx, recs[:40]...); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, recs[40:]...); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// verify: clean.
	out, code := run(t, bin, "verify", dir, "--key", prefix+".pub")
	if code != 0 || !strings.HasPrefix(out, "OK") {
		t.Fatalf("verify: exit %d\n%s", code, out)
	}

	// verify with another ledger's key: the findings, and a hint that the
	// key is likelier wrong than every checkpoint forged.
	if out, code := run(t, bin, "keygen", "--name", "other.example.com/trailguard", "--out", filepath.Join(tmp, "other")); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	out, code = run(t, bin, "verify", dir, "--key", filepath.Join(tmp, "other.pub"))
	if code != 1 || !strings.Contains(out, "checkpoint-unknown-key") || !strings.Contains(out, "check that --key is this ledger's verifier key") {
		t.Errorf("verify with another key: exit %d\n%s", code, out)
	}

	// prove --index, checked with tlog directly.
	out, code = run(t, bin, "prove", dir, "--index", "123", "--key", prefix+".pub", "--json")
	if code != 0 {
		t.Fatalf("prove: %d %s", code, out)
	}
	var inc struct {
		Checkpoint string
		Index      int64
		Record     []byte
		Proof      []tlog.Hash
	}
	if err := json.Unmarshal([]byte(out), &inc); err != nil {
		t.Fatal(err, out)
	}
	size, root := openCheckpoint(t, inc.Checkpoint, vs)
	if !bytes.Equal(inc.Record, recs[123]) {
		t.Fatalf("record %q", inc.Record)
	}
	if err := tlog.CheckRecord(inc.Proof, size, root, 123, tlog.RecordHash(recs[123])); err != nil {
		t.Fatalf("inclusion proof does not check: %v", err)
	}

	// tiles: the C2SP files of the newest checkpoint, read by tlog's
	// tile client code, which authenticates each against the root.
	tdir := filepath.Join(tmp, "tiles")
	if out, code := run(t, bin, "tiles", dir, "--out", tdir); code != 0 || !strings.Contains(out, "file(s) written") {
		t.Fatalf("tiles: %d %s", code, out)
	}
	cpb, err := os.ReadFile(filepath.Join(tdir, "checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	tsize, troot := openCheckpoint(t, string(cpb), vs)
	hr := tlog.TileHashReader(tlog.Tree{N: tsize, Hash: troot}, fileTiles(tdir))
	if p, err := tlog.ProveRecord(tsize, 123, hr); err != nil || tlog.CheckRecord(p, tsize, troot, 123, tlog.RecordHash(recs[123])) != nil {
		t.Fatalf("proof from the exported tiles: %v", err)
	}
	if _, code := run(t, bin, "tiles", dir); code != 2 {
		t.Fatalf("tiles without --out: exit %d", code)
	}

	// prove --event-id.
	out, code = run(t, bin, "prove", dir, "--event-id", "evt-077", "--key", prefix+".pub", "--json")
	if code != 0 {
		t.Fatalf("prove --event-id: %d %s", code, out)
	}
	inc.Proof = nil
	if err := json.Unmarshal([]byte(out), &inc); err != nil {
		t.Fatal(err)
	}
	size, root = openCheckpoint(t, inc.Checkpoint, vs)
	if inc.Index != 77 || tlog.CheckRecord(inc.Proof, size, root, 77, tlog.RecordHash(recs[77])) != nil {
		t.Fatalf("event-id proof wrong: index %d", inc.Index)
	}

	// prove --from: consistency between the checkpoint of 40 and the newest.
	// Without a key (none given, none in a data directory) the proof is
	// printed, saying its checkpoint was not checked.
	if out, code := run(t, bin, "prove", dir, "--index", "5"); code != 0 || !strings.Contains(out, "no --key: the checkpoint's signature was not checked") {
		t.Fatalf("prove without a key: exit %d\n%s", code, out)
	}
	// With --data and no --key, the data directory's key checks the
	// checkpoint, and prove says where it came from, as verify does:
	// whoever can write the directory can replace the key along with the
	// ledger, so an auditor must use a copy kept elsewhere. Before, the
	// proof came with no word of it, as if checked by the auditor's key.
	dataDir := filepath.Join(tmp, "data")
	if err := os.MkdirAll(filepath.Join(dataDir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dataDir, "ledger")); err != nil {
		t.Fatal(err)
	}
	if pub, err := os.ReadFile(prefix + ".pub"); err != nil || os.WriteFile(filepath.Join(dataDir, "keys", "signer.pub"), pub, 0o600) != nil {
		t.Fatal(err)
	}
	if out, code := run(t, bin, "prove", "--data", dataDir, "--index", "5"); code != 0 || !strings.Contains(out, "inclusion of record 5") ||
		!strings.Contains(out, "signer.pub (from the data directory; an auditor should use a copy kept elsewhere)") {
		t.Errorf("prove --data without --key: exit %d\n%s", code, out)
	}
	out, code = run(t, bin, "prove", dir, "--from", "40", "--key", prefix+".pub", "--json")
	if code != 0 {
		t.Fatalf("prove --from: %d %s", code, out)
	}
	var cons struct {
		Checkpoint    string      `json:"checkpoint"`
		OldCheckpoint string      `json:"old_checkpoint"`
		Proof         []tlog.Hash `json:"proof"`
	}
	if err := json.Unmarshal([]byte(out), &cons); err != nil {
		t.Fatal(err)
	}
	size, root = openCheckpoint(t, cons.Checkpoint, vs)
	oldSize, oldRoot := openCheckpoint(t, cons.OldCheckpoint, vs)
	if oldSize != 40 {
		t.Fatalf("old checkpoint size %d", oldSize)
	}
	if err := tlog.CheckTree(cons.Proof, size, root, oldSize, oldRoot); err != nil {
		t.Fatalf("consistency proof does not check: %v", err)
	}

	// Tamper with a record: verify fails with the exact finding.
	segs, _ := filepath.Glob(filepath.Join(dir, "seg", "*.seg"))
	data, _ := os.ReadFile(segs[0])
	i := bytes.Index(data, []byte("evt-200"))
	data[i+4] = '9' // evt-900
	os.WriteFile(segs[0], data, 0o644)
	out, code = run(t, bin, "verify", dir, "--key", prefix+".pub", "--json")
	if code != 1 {
		t.Fatalf("verify of a tampered ledger: exit %d\n%s", code, out)
	}
	var rep ledger.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err, out)
	}
	if rep.OK() || rep.Findings[0].Kind != ledger.KindRecordModified || rep.Findings[0].Index != 200 {
		t.Fatalf("findings: %+v", rep.Findings)
	}
	// Usage errors exit 2.
	if _, code := run(t, bin, "verify", dir); code != 2 {
		t.Fatalf("verify without --key: exit %d", code)
	}
}

func openCheckpoint(t *testing.T, signed string, vs []note.Verifier) (int64, tlog.Hash) {
	t.Helper()
	n, err := note.Open([]byte(signed), note.VerifierList(vs...))
	if err != nil {
		t.Fatalf("checkpoint signature: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	var size int64
	fmt.Sscan(lines[1], &size)
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		t.Fatal(err)
	}
	return size, root
}

// fileTiles reads C2SP tlog-tiles files (tile/<L>/<N>[.p/<W>], no height
// element) for tlog.TileHashReader.
type fileTiles string

func (d fileTiles) Height() int { return 8 }

func (d fileTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	var out [][]byte
	for _, t := range tiles {
		b, err := os.ReadFile(filepath.Join(string(d), "tile", filepath.FromSlash(strings.TrimPrefix(t.Path(), "tile/8/"))))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func (d fileTiles) SaveTiles([]tlog.Tile, [][]byte) {}
