package report

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
)

// TestReportDamagedHistory: a frame damaged in the middle of the checkpoint
// history (the newest file) does not stop reports for good, nor pass
// unseen: the report is made from the checkpoints on both sides of it,
// and its integrity requirement is a gap naming the damage. (History
// ended at the damage with an error that failed every report, and the
// checkpoints after it were not read.)
func TestReportDamagedHistory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := newWriter(t, dir, t0)
	for i := range 8 {
		w.at(t0.Add(time.Duration(i) * time.Second))
		w.append(ev(t0.Add(time.Duration(i)*time.Second), event.Event{Action: event.ActionHTTPRequest, Outcome: "success", ServiceName: "api", ClientIP: "198.51.100.1", UserName: "u", Path: "/x"}))
		w.checkpoint()
	}
	defer w.l.Close()
	opts := Options{Standard: PCIDSS, From: t0.Add(-time.Minute), To: t0.Add(time.Minute), Verifiers: []note.Verifier{w.verif}, Now: t0.Add(time.Hour)}
	before, err := Compute(context.Background(), w.l, opts)
	if err != nil || before.State.Integrity.Problem != "" {
		t.Fatalf("before the damage: %v %q", err, before.State.Integrity.Problem)
	}
	files, _ := filepath.Glob(filepath.Join(w.dir, "checkpoints", "*.log"))
	if len(files) != 1 {
		t.Fatalf("history files %v", files)
	}
	b, _ := os.ReadFile(files[0])
	// The fourth checkpoint's frame: one bit of its text.
	off := 0
	for range 3 {
		off += 16 + int(uint32(b[off])<<24|uint32(b[off+1])<<16|uint32(b[off+2])<<8|uint32(b[off+3]))
	}
	b[off+12+3] ^= 0x01
	if err := os.WriteFile(files[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	after, err := Compute(context.Background(), w.l, opts)
	if err != nil {
		t.Fatalf("a damaged frame failed the report: %v", err)
	}
	in := after.State.Integrity
	if !strings.Contains(in.Problem, "checkpoint history damaged") || after.Figures.Records != before.Figures.Records ||
		after.Checkpoint.TreeSize != before.Checkpoint.TreeSize {
		t.Fatalf("after the damage: problem %q, %d records (before %d), checkpoint %d (before %d)", in.Problem,
			after.Figures.Records, before.Figures.Records, after.Checkpoint.TreeSize, before.Checkpoint.TreeSize)
	}
	for _, it := range after.Items {
		if strings.Contains(it.Evidence, "Integrity not shown") && it.Status != StatusGap {
			t.Fatalf("%s: %s", it.ID, it.Status)
		}
	}
	if !strings.Contains(strings.Join(after.Summary.TopFindings, "\n"), "checkpoint history damaged") {
		t.Fatalf("the summary does not name the damage: %v", after.Summary.TopFindings)
	}
}
