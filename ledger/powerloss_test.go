package ledger

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
	"golang.org/x/mod/sumdb/note"
)

// powerRecord is what the power-loss child writes: small records from
// several writers (direct writes) and batches over directMax from one
// (through the page cache, synced by the syncer), into the same segments.
func powerRecord(w, seq, j int) []byte {
	pad := 40 + (w*7+seq*13+j)%200
	if w == 0 || seq>>20%2 == 1 {
		pad = 2000
	}
	return fmt.Appendf(nil, `{"event":{"id":"w%d-s%d-j%d"},"pad":"%s"}`, w, seq, j, strings.Repeat(string(rune('a'+(seq+j)%26)), pad))
}

// TestPowerLossChild is the process TestPowerLoss stops and snapshots; it
// only runs when started by it.
func TestPowerLossChild(t *testing.T) {
	dir := os.Getenv("TRAILGUARD_POWER_DIR")
	if dir == "" {
		t.Skip("helper process for TestPowerLoss")
	}
	round, _ := strconv.Atoi(os.Getenv("TRAILGUARD_POWER_ROUND"))
	signer, err := note.NewSigner(os.Getenv("TRAILGUARD_POWER_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, Options{
		Origin: testOrigin, Signer: signer, Logger: quietLogger(),
		SegmentSize: 1 << 20, CheckpointEvery: 500, CheckpointInterval: 20 * time.Millisecond,
	})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	go func() {
		for {
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			os.Stdout.WriteString(fmt.Sprintf("D %d %d\n", l.direct.Load(), l.syncs.Load()))
			mu.Unlock()
		}
	}()
	// Odd rounds write large batches only: segments are not zeroed ahead
	// (zeroAheadIfWorth), written through the page cache.
	large := round%2 == 1
	for w := 0; w < 5; w++ {
		go func() {
			for seq := round << 20; ; seq++ {
				n := 1 + seq%3
				if large && w > 1 {
					return
				}
				if w == 0 || large {
					n = 80 // 80 x ~2 KiB: over directMax
					if !large {
						time.Sleep(15 * time.Millisecond)
					}
				}
				recs := make([][]byte, n)
				for j := range recs {
					recs[j] = powerRecord(w, seq, j)
				}
				first, err := l.Append(context.Background(), recs...)
				if err != nil {
					fmt.Println("ERR", err)
					os.Exit(3)
				}
				mu.Lock()
				os.Stdout.WriteString(fmt.Sprintf("A %d %d %d %d\n", first, n, w, seq))
				mu.Unlock()
			}
		}()
	}
	select {}
}

// TestPowerLoss simulates a power failure: the ledger lives on an ext4
// file system on a loop device; the appending child is stopped (SIGSTOP)
// and the loop device's backing file copied at once: the copy holds what
// was sent to the device, not what sat in the child's page cache. The copy
// is mounted (journal replayed) and every record acknowledged before the
// stop must be there, byte for byte, and the ledger must verify. The page
// cache's writeback may only make the copy hold more.
func TestPowerLoss(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	testenv.Require(t, os.Geteuid() == 0, "mounting a loop device needs root")
	losetup := testenv.Tool(t, "losetup", "apt-get install mount")
	mkfs := testenv.Tool(t, "mkfs.ext4", "apt-get install e2fsprogs")
	tmp := t.TempDir()
	img := filepath.Join(tmp, "disk.img")
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	mountImage := func(img, mnt string) string {
		t.Helper()
		dev := run(losetup, "-f", "--show", img)
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "ext4", dev, mnt).CombinedOutput(); err != nil {
			exec.Command(losetup, "-d", dev).Run()
			t.Fatalf("mount %s: %v\n%s", dev, err, out)
		}
		t.Cleanup(func() {
			exec.Command("umount", mnt).Run()
			exec.Command(losetup, "-d", dev).Run()
		})
		return dev
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(256 << 20)
	f.Close()
	run(mkfs, "-q", "-F", img)
	live := filepath.Join(tmp, "live")
	dev := mountImage(img, live)
	devStat := filepath.Join("/sys/block", filepath.Base(dev), "stat")
	dir := filepath.Join(live, "ledger")

	skeyText, vkey, err := GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := note.NewVerifier(vkey)
	rng := rand.New(rand.NewPCG(2, testenv.Seed(t)))
	acked := map[uint64][]byte{}
	rounds := testenv.Count(t, "TRAILGUARD_POWER_ROUNDS", 6)
	var direct, syncs, directAll uint64
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPowerLossChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TRAILGUARD_POWER_DIR="+dir, "TRAILGUARD_POWER_ROUND="+strconv.Itoa(round), "TRAILGUARD_POWER_KEY="+skeyText)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1<<16)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var got []string
		select {
		case ln := <-lines:
			got = append(got, ln)
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: child wrote nothing", round)
		}
		time.Sleep(time.Duration(200+rng.IntN(400)) * time.Millisecond)
		// The power fails: nothing more reaches the device from the
		// child, and the device's content is copied.
		cmd.Process.Signal(syscall.SIGSTOP)
		snap := filepath.Join(tmp, fmt.Sprintf("snap%d.img", round))
		snapshot(t, devStat, img, snap)
		cmd.Process.Signal(syscall.SIGKILL)
		for ln := range lines {
			got = append(got, ln)
		}
		cmd.Wait()
		for _, ln := range got {
			if strings.HasPrefix(ln, "ERR") {
				t.Fatalf("round %d: child: %s", round, ln)
			}
			var first uint64
			var n, w, seq int
			if _, err := fmt.Sscanf(ln, "D %d %d", &direct, &syncs); err == nil {
				continue
			}
			if _, err := fmt.Sscanf(ln, "A %d %d %d %d", &first, &n, &w, &seq); err != nil {
				continue
			}
			for j := 0; j < n; j++ {
				acked[first+uint64(j)] = powerRecord(w, seq, j)
			}
		}
		// What the device held when the power failed.
		mnt := filepath.Join(tmp, fmt.Sprintf("snap%d", round))
		sdev := mountImage(snap, mnt)
		sdir := filepath.Join(mnt, "ledger")
		rep, err := Verify(sdir, VerifyOptions{Verifiers: []note.Verifier{verifier}})
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: verify after the power failure (%d acknowledged): %v\n%s", round, len(acked), err, rep)
		}
		// Read only: the next round's child recovers it (torn tail,
		// zeros after the records) and appends, directly again.
		l, err := OpenReadOnly(sdir)
		if err != nil {
			t.Fatalf("round %d: open after the power failure: %v", round, err)
		}
		var closeOnce sync.Once
		t.Cleanup(func() { closeOnce.Do(func() { l.Close() }) }) // before the umount
		found := 0
		for i, want := range acked {
			e, err := l.Read(i)
			if err != nil {
				t.Fatalf("round %d: acknowledged record %d lost at the power failure: %v (ledger size %d, %d acknowledged)", round, i, err, l.Size(), len(acked))
			}
			if !bytes.Equal(e.Data, want) {
				t.Fatalf("round %d: record %d is %q, acknowledged %q", round, i, e.Data, want)
			}
			found++
		}
		closeOnce.Do(func() { l.Close() })
		t.Logf("round %d: %d acknowledged records survived; child made %d direct writes of %d syncs", round, found, direct, syncs)
		// The power comes back: the next round appends to what the
		// failure left.
		exec.Command("umount", live).Run()
		exec.Command(losetup, "-d", dev).Run()
		os.Remove(img)
		live, dev, img, dir = mnt, sdev, snap, sdir
		devStat = filepath.Join("/sys/block", filepath.Base(dev), "stat")
		directAll += direct
	}
	if directAll == 0 {
		t.Fatal("the child made no direct write: the test did not cover them")
	}
}

// snapshot copies the loop device's backing file img to snap while the
// device is idle: no request in flight before, none completed during the
// copy (its statistics unchanged), so the copy is what the device held at
// one moment (the file system's own writeback and journal commits go on).
func snapshot(t *testing.T, devStat, img, snap string) {
	t.Helper()
	for try := 0; try < 100; try++ {
		before, err := os.ReadFile(devStat)
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(before)); len(f) < 9 || f[8] != "0" {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		copyFile(t, img, snap)
		after, err := os.ReadFile(devStat)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(before, after) {
			return
		}
	}
	t.Fatal("the loop device was never idle for a copy")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
