package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/report"
	"github.com/trailguard/trailguard/server"
)

// TestReportCacheTampered: an attacker who can write the collector's data
// directory, but has not its signing key, edits the figures the report
// cache keeps for a chunk of records (the failed logins blamed on another
// address) so that the next compliance report prints them while `verify`
// of the ledger still passes. Run as the real command over the real files,
// the report after the edit gives the figures of the report before it,
// says on standard error and in the report that it read those records
// again, and keeps the edited file aside; the edited figures never appear.
func TestReportCacheTampered(t *testing.T) {
	if testing.Short() {
		t.Skip("writes two chunks of records")
	}
	bin := buildTrailguard(t)
	dir := t.TempDir()
	cfg := server.Defaults()
	cfg.DataDir = dir
	cfg.Detection.Disabled = true
	cfg.ShutdownTimeout = time.Minute // the warmer may be reading a chunk under -race on a loaded machine
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().UTC().Add(-time.Minute)
	// Two whole chunks and a few records: every tenth a failed login from
	// 203.0.113.5 (the address the attacker wants out of the report).
	n := 2*report.ChunkSize + 100
	for done := 0; done < n; {
		var recs [][]byte
		for ; done < n && len(recs) < 4096; done++ {
			e := event.Event{Timestamp: time.Now().UTC(), Kind: "event", Action: event.ActionHTTPRequest, Outcome: "success",
				UserName: "bob", ClientIP: "198.51.100.1", Path: "/x", ServiceName: "api", ID: event.NewID()}
			if done%10 == 0 {
				e = event.Event{Timestamp: time.Now().UTC(), Kind: "event", Category: []string{"authentication"}, Action: event.ActionLoginFail,
					Outcome: "failure", UserName: "alice", ClientIP: "203.0.113.5", Path: "/login", ServiceName: "api", ID: event.NewID()}
			}
			recs = append(recs, e.AppendJSON(nil))
		}
		if _, err := srv.Ledger().Append(context.Background(), recs...); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// A period in the past: a period reaching the present ends at each run.
	from, to := start.Format(time.RFC3339Nano), time.Now().UTC().Format(time.RFC3339Nano)
	run := func(name string) (report.Report, []byte, string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), name+".json")
		cmd := exec.Command(bin, "report", "--data", dir, "--standard", "pci-dss", "--from", from, "--to", to, "--out", out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("report %s: %v\n%s", name, err, stderr.String())
		}
		file, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var s struct{ Report report.Report }
		if err := json.Unmarshal(file, &s); err != nil {
			t.Fatal(err)
		}
		return s.Report, file, stderr.String()
	}
	first, _, _ := run("first")
	cached, _, _ := run("cached")
	if in := cached.State.Integrity; in.SummarisedEarlier != 2*report.ChunkSize || in.CacheRejected != 0 {
		t.Fatalf("the second report did not use the cache: %+v", in)
	}
	if !reflect.DeepEqual(first.Figures, cached.Figures) {
		t.Fatal("the cached figures differ from the ledger's")
	}
	want, _ := json.Marshal(first.Figures)
	if !bytes.Contains(want, []byte("203.0.113.5")) {
		t.Fatalf("the figures do not name the failed logins' address: %s", want)
	}
	// The attacker's edit: the address, in chunk 0's figures, becomes
	// another of the same length (the file stays well formed).
	files, _ := filepath.Glob(filepath.Join(dir, "report-cache", "000000000000-*.chunk"))
	if len(files) != 1 {
		t.Fatalf("chunk 0's cache file: %v", files)
	}
	data, _ := os.ReadFile(files[0])
	edited := bytes.ReplaceAll(data, []byte("203.0.113.5"), []byte("203.0.113.9"))
	if bytes.Equal(edited, data) {
		t.Fatal("the address is not in the cache file")
	}
	if err := os.WriteFile(files[0], edited, 0o600); err != nil {
		t.Fatal(err)
	}
	// verify of the ledger passes: the cache is outside what it checks.
	if out, err := exec.Command(bin, "verify", "--data", dir).CombinedOutput(); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	after, file, stderr := run("after")
	got, _ := json.Marshal(after.Figures)
	if !bytes.Equal(got, want) || bytes.Contains(file, []byte("203.0.113.9")) {
		t.Fatalf("the edited cache changed the report:\nbefore %s\nafter  %s", want, got)
	}
	if in := after.State.Integrity; in.CacheRejected != 1 || in.SummarisedEarlier != report.ChunkSize {
		t.Fatalf("integrity after the edit: %+v (want 1 chunk rejected, the other used)", in)
	}
	if !strings.Contains(stderr, "1 chunks of figures in "+filepath.Join(dir, "report-cache")+" failed their authentication") {
		t.Fatalf("the command does not say it read the records again:\n%s", stderr)
	}
	if !bytes.Contains(file, []byte("failed their authentication: the report cache's files were altered or planted on disk")) {
		t.Fatal("the report does not say its cache was altered")
	}
	if aside, err := os.ReadFile(files[0] + ".rejected"); err != nil || !bytes.Equal(aside, edited) {
		t.Fatalf("the edited file was not kept aside: %v", err)
	}
	// Kept again from the ledger, authentic: the next report uses it.
	again, _, _ := run("again")
	if in := again.State.Integrity; in.SummarisedEarlier != 2*report.ChunkSize || in.CacheRejected != 0 ||
		!reflect.DeepEqual(again.Figures, first.Figures) {
		t.Fatalf("after the rejection: %+v", in)
	}
}
