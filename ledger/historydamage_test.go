package ledger

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// TestHistoryDamageKept: an attacker with write access to the disk
// damages one frame in the middle of the checkpoint history (the newest
// file: the one the writer appends to). Open used to take that for a
// crash's torn tail and cut the file there, so the collector's next start
// deleted every signed checkpoint after the damaged one and verify,
// run after it, found nothing wrong. Now damage followed by valid frames
// is never cut: a real process that appends is killed (SIGKILL), the
// frame is damaged, a second process opens the ledger as a writer, goes
// on appending and is killed too; the damaged bytes and every checkpoint
// after them are still on disk, verify names the damaged frame as a
// finding and checks the signed checkpoints after it, and the newest
// checkpoint is not rolled back. A torn tail (what a kill leaves) is
// still cut, as a notice.
func TestHistoryDamageKept(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real processes")
	}
	t.Parallel()
	dir := t.TempDir()
	skeyText, vkey, err := GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := note.NewVerifier(vkey)
	// run appends in a child process until it has acknowledged records
	// for a while (the child checkpoints every 25 ms), then kills it.
	run := func(gen int, d time.Duration) {
		t.Helper()
		cmd, out := startCrashChild(t, dir, gen, skeyText)
		acked := make(chan string, 1)
		var lines []string
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines = append(lines, sc.Text())
				select {
				case acked <- sc.Text():
				default:
				}
			}
		}()
		select {
		case <-acked:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			cmd.Wait()
			t.Fatalf("gen %d: the child acknowledged nothing: %s", gen, strings.Join(lines, "\n"))
		}
		time.Sleep(d)
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		cmd.Wait()
		for _, ln := range lines {
			if strings.HasPrefix(ln, "ERR") {
				t.Fatalf("gen %d: child: %s", gen, ln)
			}
		}
	}
	verify := func() *Report {
		t.Helper()
		rep, err := Verify(dir, VerifyOptions{Verifiers: []note.Verifier{verifier}})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	run(0, 500*time.Millisecond)
	files, err := listCPLogs(dir)
	if err != nil || len(files) == 0 {
		t.Fatalf("checkpoint history: %v %v", files, err)
	}
	newest := files[len(files)-1].path
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	ents, dmg := scanFrames(b, maxCheckpointSize, validCheckpoint)
	if len(ents) < 6 {
		t.Fatalf("%d checkpoints in the newest history file (damage %v): too few to damage one in the middle", len(ents), dmg)
	}
	// The kill may have left a torn tail: cut it as a restart would, so
	// that what follows is about the attacker's damage.
	if len(dmg) > 0 {
		b = b[:dmg[0].off]
	}
	before := verify()
	if !before.OK() {
		t.Fatalf("before the damage:\n%s", before)
	}
	_, newestCP := lastCheckpointOf(t, ents)
	mid := ents[len(ents)/2]
	b[mid.off+frameHeader+5] ^= 0x01 // one bit of its signed text
	if err := os.WriteFile(newest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	damaged := append([]byte(nil), b...)
	check := func(when string, rep *Report) {
		t.Helper()
		var found []string
		for _, f := range rep.Findings {
			found = append(found, f.String())
		}
		if len(rep.Findings) != 1 || !strings.Contains(found[0], "damaged frame after "+strconv.Itoa(len(ents)/2)+" checkpoints") ||
			when == "after the damage" && !strings.Contains(found[0], strconv.Itoa(len(ents)-len(ents)/2-1)+" valid checkpoints follow it") {
			t.Fatalf("%s: findings:\n%s", when, strings.Join(found, "\n"))
		}
		if rep.Latest == nil || rep.Latest.Size < newestCP.Size {
			t.Fatalf("%s: the newest checkpoint verified is %+v, the history held size %d", when, rep.Latest, newestCP.Size)
		}
	}
	afterDamage := verify()
	check("after the damage", afterDamage)
	if afterDamage.Checkpoints != before.Checkpoints-1 {
		t.Fatalf("after the damage %d checkpoints verified, before %d: the ones after the damaged frame were not checked", afterDamage.Checkpoints, before.Checkpoints)
	}
	// The collector starts again (a writer's Open), appends, and is killed.
	run(1, 200*time.Millisecond)
	now, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(now, damaged) {
		t.Fatalf("the writer's Open rewrote the history: the %d bytes it held (a damaged frame at %d, %d signed checkpoints after it) are not all there (%d bytes now)",
			len(damaged), mid.off, len(ents)-len(ents)/2-1, len(now))
	}
	afterRestart := verify()
	check("after a restart", afterRestart)
	if afterRestart.Checkpoints <= afterDamage.Checkpoints {
		t.Fatalf("after a restart %d checkpoints verified, before it %d: the restarted writer signed none", afterRestart.Checkpoints, afterDamage.Checkpoints)
	}
}

// lastCheckpointOf parses the last entry of a checkpoint history.
func lastCheckpointOf(t *testing.T, ents []logEntry) ([]byte, Checkpoint) {
	t.Helper()
	last := ents[len(ents)-1].data
	c, err := parseUnverified(last)
	if err != nil {
		t.Fatal(err)
	}
	return last, c
}
