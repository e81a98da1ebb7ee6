//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/server"
)

// hostileRSS is the most memory a command may take over a planted file:
// the ledgers here are a few hundred KB, so anything near it means a file
// was read whole where it should have been refused.
const hostileRSS = 512 << 20

// hostileDeadline is how long a command may take over a planted file: each
// takes well under a second on these small data directories; a FIFO opened
// or read waits for ever.
const hostileDeadline = 60 * time.Second

// watchedRun runs bin with args until it exits, failing the test (and
// killing it) if it outlives hostileDeadline or its resident memory passes
// hostileRSS. If started is not "", a process that prints it on standard
// output has started (serve): it is sent SIGTERM and must then exit within
// the deadline too. It returns the output and the exit code, and whether
// it started.
func watchedRun(t *testing.T, bin, started string, args ...string) (out string, code int, up bool) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	var buf lockedBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(hostileDeadline)
	peak := int64(0)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return buf.String(), cmd.ProcessState.ExitCode(), up
		case <-tick.C:
		}
		peak = max(peak, rss(cmd.Process.Pid))
		if peak > hostileRSS {
			cmd.Process.Kill()
			<-done
			t.Fatalf("%s: resident memory %d MiB, over %d MiB: a planted file was read into memory\n%s", args[0], peak>>20, hostileRSS>>20, buf.String())
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			t.Fatalf("%s did not end within %s (stopped on a planted file?)\n%s", args[0], hostileDeadline, buf.String())
		}
		if started != "" && !up && strings.Contains(buf.String(), started) {
			up = true
			cmd.Process.Signal(syscall.SIGTERM)
			deadline = time.Now().Add(hostileDeadline)
		}
	}
}

// rss is the resident memory of process pid in bytes (0 once it is gone).
func rss(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestHostileDataDirFiles plants, in copies of a collector's data
// directory, what whoever can write it (or hands an auditor a copy) could
// put at each name the offline tools and serve's start read outside the
// ledger's own files (ledger's hostile_test.go has those): a FIFO, on
// whose open or read a reader waits for ever, a link to /dev/zero, which a
// whole-file read reads until memory runs out, and a sparse file claiming
// a tebibyte. Each command given such a directory must end (serve: refuse
// to start, or start and stop on SIGTERM) within a deadline and bounded
// memory, and where it fails, name the file. Before, verify, prove and
// report hung on a FIFO at keys/signer.pub and ran out of memory on the
// others, report likewise at keys/signer.key, tokens.json and a rule file
// under rules/, and serve at each of its state files (decisions.json,
// alerts.json, detect.cursor, ui-overview.json, verify-last.json, the
// ledger's checkpoint, a witness's newest checkpoint) — a FIFO hung its
// start so that SIGTERM did not stop it either.
func TestHostileDataDirFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts many processes")
	}
	bin := buildTrailguard(t)
	base := t.TempDir()
	data := filepath.Join(base, "data")
	wit := filepath.Join(base, "witness")
	cfg := server.Defaults()
	cfg.DataDir = data
	cfg.Listen = "127.0.0.1:0"
	cfg.Witness = []string{wit}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for range 20 {
		recs = append(recs, (&event.Event{Timestamp: time.Now().UTC(), Kind: "event", Category: []string{"authentication"}, Action: event.ActionLoginFail,
			Outcome: "failure", UserName: "alice", ClientIP: "203.0.113.5", Path: "/login", ServiceName: "api", ID: event.NewID()}).AppendJSON(nil))
	}
	if _, err := srv.Ledger().Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(data, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(wit)
	if err != nil || len(ents) == 0 {
		t.Fatalf("witness: %v, %d checkpoints", err, len(ents))
	}
	newestWitness := ents[len(ents)-1].Name() // (names sort by size)

	plants := []struct {
		name  string
		plant func(t *testing.T, p string)
	}{
		{"FIFO", func(t *testing.T, p string) {
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"link to /dev/zero", func(t *testing.T, p string) {
			os.Remove(p)
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
		}},
		{"sparse TiB", func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o644)
			if err == nil {
				err = f.Truncate(1 << 40)
				f.Close()
			}
			if err != nil {
				t.Fatal(err)
			}
		}},
	}
	const (
		verify = 1 << iota
		prove
		report
		serve
	)
	files := []struct {
		rel  string // under the copy of base
		cmds int
		// refused: the command must fail naming the file (else it may
		// go on without it, as long as it ends).
		refused int
	}{
		{"data/keys/signer.pub", verify | prove | report | serve, verify | prove | report},
		{"data/keys/signer.key", report | serve, report | serve},
		{"data/tokens.json", report | serve, report | serve},
		{"data/rules/planted.yml", report | serve, 0},
		{"data/decisions.json", serve, serve},
		{"data/alerts.json", serve, serve},
		{"data/detect.cursor", serve, 0}, // (detection logs it and stops; the collector runs)
		{"data/ui-overview.json", serve, 0},
		{"data/verify-last.json", serve, 0},
		{"data/ledger/checkpoint", serve, 0},
		{"witness/" + newestWitness, report | serve, 0},
	}
	for _, f := range files {
		for _, pl := range plants {
			t.Run(f.rel+" "+pl.name, func(t *testing.T) {
				dir := t.TempDir()
				if err := os.CopyFS(dir, os.DirFS(base)); err != nil {
					t.Fatal(err)
				}
				for _, lock := range []string{"data/ledger/lock", "data/index.db.lock", "data/tokens.json.lock"} {
					os.Remove(filepath.Join(dir, lock))
				}
				d, w := filepath.Join(dir, "data"), filepath.Join(dir, "witness")
				pl.plant(t, filepath.Join(dir, f.rel))
				runs := []struct {
					cmd     int
					started string
					args    []string
				}{
					{verify, "", []string{"verify", "--data", d}},
					{prove, "", []string{"prove", "--data", d, "--index", "3"}},
					{report, "", []string{"report", "--data", d, "--standard", "pci-dss", "--out", filepath.Join(dir, "r.json")}},
					{serve, "trailguard collector on ", []string{"serve", "--data", d, "--listen", "127.0.0.1:0", "--witness", w}},
				}
				for _, r := range runs {
					if f.cmds&r.cmd == 0 {
						continue
					}
					out, code, up := watchedRun(t, bin, r.started, r.args...)
					name := filepath.Base(f.rel)
					if f.refused&r.cmd != 0 && (code == 0 || up || !strings.Contains(out, name)) {
						t.Errorf("%s: exit %d (started %v), want a failure naming %s:\n%s", r.args[0], code, up, name, out)
					}
					if strings.Contains(out, "out of memory") || strings.Contains(out, "goroutine ") {
						t.Errorf("%s: crashed:\n%s", r.args[0], out)
					}
					t.Logf("%s: exit %d, started %v: %.300s", r.args[0], code, up, lastLines(out, 2))
				}
			})
		}
	}
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
