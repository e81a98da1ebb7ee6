package ledger

import (
	"bufio"
	"bytes"
	"context"
	"errors"
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
	if n, _ := strconv.Atoi(os.Getenv("TRAILGUARD_POWER_AT_ROTATION")); n > 0 {
		// The power fails once the n-th new segment is linked to its
		// name, and that name is durable: any fsync (another file's, the
		// directory's) may commit it.
		rotations := 0
		h := func() {
			if rotations++; rotations < n {
				return
			}
			if err := syncFile(filepath.Join(dir, "seg")); err != nil {
				fmt.Println("ERR", err)
				os.Exit(3)
			}
			mu.Lock()
			os.Stdout.WriteString("L\n")
			mu.Unlock()
			syscall.Kill(os.Getpid(), syscall.SIGSTOP)
			select {}
		}
		rotateHook.Store(&h)
	}
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
	d := newLoopDisk(t)
	tmp, img := d.tmp, d.img
	live := filepath.Join(tmp, "live")
	dev := d.mount(img, live)
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
		if err := testenv.StartChild(t, cmd); err != nil {
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
		sdev := d.mount(snap, mnt)
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
		d.unmount(live)
		os.Remove(img)
		live, dev, img, dir = mnt, sdev, snap, sdir
		devStat = filepath.Join("/sys/block", filepath.Base(dev), "stat")
		directAll += direct
	}
	if directAll == 0 {
		t.Fatal("the child made no direct write: the test did not cover them")
	}
}

// loopDisk is an ext4 file system in a file, mounted through a loop
// device: its backing file holds what was sent to the device, which is
// what a power failure leaves.
type loopDisk struct {
	t       *testing.T
	tmp     string
	img     string // the backing file, 256 MiB
	losetup string
	opts    string // mount options

	mu   sync.Mutex
	devs map[string]string // mounted here: mount point -> loop device
}

func newLoopDisk(t *testing.T) *loopDisk {
	testenv.Require(t, os.Geteuid() == 0, "mounting a loop device needs root")
	d := &loopDisk{t: t, tmp: t.TempDir()}
	d.losetup = testenv.Tool(t, "losetup", "apt-get install mount")
	mkfs := testenv.Tool(t, "mkfs.ext4", "apt-get install e2fsprogs")
	d.img = filepath.Join(d.tmp, "disk.img")
	f, err := os.Create(d.img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(256 << 20)
	f.Close()
	d.run(mkfs, "-q", "-F", d.img)
	return d
}

func (d *loopDisk) run(name string, args ...string) string {
	d.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		d.t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// mount mounts img at mnt through a new loop device (undone at cleanup)
// and returns the device.
func (d *loopDisk) mount(img, mnt string) string {
	t := d.t
	t.Helper()
	dev := d.run(d.losetup, "-f", "--show", img)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"-t", "ext4"}
	if d.opts != "" {
		args = append(args, "-o", d.opts)
	}
	if out, err := exec.Command("mount", append(args, dev, mnt)...).CombinedOutput(); err != nil {
		exec.Command(d.losetup, "-d", dev).Run()
		t.Fatalf("mount %s: %v\n%s", dev, err, out)
	}
	t.Cleanup(func() { d.unmount(mnt) })
	d.mu.Lock()
	if d.devs == nil {
		d.devs = map[string]string{}
	}
	d.devs[mnt] = dev
	d.mu.Unlock()
	return dev
}

// unmount unmounts mnt and detaches its loop device, once: a device
// detached twice may by then be another test's (loop devices are reused
// at once), which loses its file system under it ("can't read superblock").
func (d *loopDisk) unmount(mnt string) {
	d.mu.Lock()
	dev, ok := d.devs[mnt]
	delete(d.devs, mnt)
	d.mu.Unlock()
	if !ok {
		return
	}
	exec.Command("umount", mnt).Run()
	exec.Command(d.losetup, "-d", dev).Run()
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

// rollbackRecord is what TestPowerLossAfterRollbackChild appends.
func rollbackRecord(i int) []byte {
	return fmt.Appendf(nil, `{"event":{"id":"rb-%d"},"pad":"%s"}`, i, strings.Repeat("r", 100+i%50))
}

// TestPowerLossAfterRollbackChild is the process TestPowerLossAfterRollback
// stops; it only runs when started by it. It appends one record at a time
// (each written directly: the syncer is idle) on a disk it fills, until an
// append is refused with ErrNoSpace: the record was written to the segment
// (into zeros allocated ahead, so that write needed no space) and its .idx
// entry was not, so the batch was rolled back. Then it stops itself, which
// is the power failure.
func TestPowerLossAfterRollbackChild(t *testing.T) {
	dir := os.Getenv("TRAILGUARD_ROLLBACK_DIR")
	if dir == "" {
		t.Skip("helper process for TestPowerLossAfterRollback")
	}
	say := func(format string, args ...any) {
		os.Stdout.WriteString(fmt.Sprintf(format, args...) + "\n")
	}
	signer, err := note.NewSigner(os.Getenv("TRAILGUARD_ROLLBACK_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, Options{
		Origin: testOrigin, Signer: signer, Logger: quietLogger(),
		SegmentSize: 1 << 20, CheckpointInterval: time.Hour, IdleInterval: time.Hour,
	})
	if err != nil {
		say("ERR open: %v", err)
		os.Exit(3)
	}
	ctx := context.Background()
	i := 0
	appendOne := func() error {
		rec := rollbackRecord(i)
		first, err := l.Append(ctx, rec)
		if err == nil {
			say("A %d %d", first, i)
			i++
		}
		return err
	}
	// Until the segment is zeroed to its end and written directly.
	for deadline := time.Now().Add(20 * time.Second); l.direct.Load() == 0; {
		if err := appendOne(); err != nil || time.Now().After(deadline) {
			say("ERR no direct write: %v", err)
			os.Exit(3)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		say("ERR checkpoint: %v", err)
		os.Exit(3)
	}
	for n := 0; n < 4000; n++ {
		if n%100 == 0 {
			// (Again: the zeroer gives back what it took if its file
			// does not fit.)
			testenv.Fill(t, filepath.Dir(dir), 0)
		}
		size, direct := l.Size(), l.direct.Load()
		err := appendOne()
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrNoSpace) {
			say("ERR append: %v", err)
			os.Exit(3)
		}
		// Told "not stored": the power fails now.
		say("R %d %d %d", size, i, l.direct.Load()-direct)
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		select {}
	}
	say("ERR no append refused on a full disk")
	os.Exit(3)
}

// TestPowerLossAfterRollback: an append refused with ErrNoSpace after its
// record was written directly (durable at once) must stay refused after a
// power failure: the rollback's truncation is made durable before the
// caller is answered, or the record comes back with the journal's old
// file size (and a retry would store it twice). The live file system
// commits its journal only when asked to (commit=300), as a busy one may
// not have done before the power fails.
func TestPowerLossAfterRollback(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	d := newLoopDisk(t)
	d.opts = "commit=300"
	live := filepath.Join(d.tmp, "live")
	dev := d.mount(d.img, live)
	devStat := filepath.Join("/sys/block", filepath.Base(dev), "stat")
	dir := filepath.Join(live, "ledger")
	skeyText, vkey, err := GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := note.NewVerifier(vkey)

	cmd := exec.Command(os.Args[0], "-test.run=^TestPowerLossAfterRollbackChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TRAILGUARD_ROLLBACK_DIR="+dir, "TRAILGUARD_ROLLBACK_KEY="+skeyText)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := testenv.StartChild(t, cmd); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	acked := map[uint64][]byte{}
	var refusedAt uint64
	var refused, direct int
	sc := bufio.NewScanner(out)
	timeout := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	for sc.Scan() {
		ln := sc.Text()
		var first uint64
		var i int
		if _, err := fmt.Sscanf(ln, "A %d %d", &first, &i); err == nil {
			acked[first] = rollbackRecord(i)
			continue
		}
		if _, err := fmt.Sscanf(ln, "R %d %d %d", &refusedAt, &refused, &direct); err == nil {
			break
		}
		if strings.HasPrefix(ln, "ERR") {
			t.Fatalf("child: %s", ln)
		}
	}
	timeout.Stop()
	if direct == 0 {
		t.Fatalf("the refused append (at %d) was not written directly: the test did not cover a rollback after a direct write", refusedAt)
	}
	// The child is stopped: the power fails.
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:])); len(f) > 0 && f[0] == "T" {
			break
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("the child did not stop")
		}
	}
	snap := filepath.Join(d.tmp, "snap.img")
	snapshot(t, devStat, d.img, snap)
	cmd.Process.Kill()

	mnt := filepath.Join(d.tmp, "snap")
	d.opts = ""
	d.mount(snap, mnt)
	sdir := filepath.Join(mnt, "ledger")
	rep, err := Verify(sdir, VerifyOptions{Verifiers: []note.Verifier{verifier}})
	if err != nil || !rep.OK() {
		t.Fatalf("verify after the power failure: %v\n%s", err, rep)
	}
	l, err := OpenReadOnly(sdir)
	if err != nil {
		t.Fatalf("open after the power failure: %v", err)
	}
	defer l.Close()
	for i, want := range acked {
		e, err := l.Read(i)
		if err != nil || !bytes.Equal(e.Data, want) {
			t.Fatalf("acknowledged record %d: %q, %v; want %q", i, e.Data, err, want)
		}
	}
	if l.Size() > refusedAt {
		e, err := l.Read(refusedAt)
		t.Fatalf("after the power failure the ledger holds %d records: record %d, refused with ErrNoSpace, is back (%q, %v)", l.Size(), refusedAt, e.Data, err)
	}
	t.Logf("%d acknowledged records survived; the refused one (%d, %d bytes, written directly) did not come back", len(acked), refusedAt, len(rollbackRecord(refused)))
}

// TestPowerLossAtRotation: the power fails just after a rotation linked
// the new segment to its name and something committed the journal (the
// child stops itself there, rotateHook, on a file system that commits its
// journal only when asked). The segment
// closed before it must be whole by then — its zeros cut, its records and
// .idx durable — and the new one's header durable, or verify reports the
// closed segment, or the new one, damaged (rotate, makeDurable). Each
// round stops at a later rotation of the ledger the last one left.
func TestPowerLossAtRotation(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	d := newLoopDisk(t)
	d.opts = "commit=300"
	tmp, img := d.tmp, d.img
	live := filepath.Join(tmp, "live")
	dev := d.mount(img, live)
	devStat := filepath.Join("/sys/block", filepath.Base(dev), "stat")
	dir := filepath.Join(live, "ledger")
	skeyText, vkey, err := GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := note.NewVerifier(vkey)
	acked := map[uint64][]byte{}
	for round := 0; round < 4; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPowerLossChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TRAILGUARD_POWER_DIR="+dir, "TRAILGUARD_POWER_ROUND="+strconv.Itoa(round),
			"TRAILGUARD_POWER_KEY="+skeyText, "TRAILGUARD_POWER_AT_ROTATION="+strconv.Itoa(1+round%2))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.StartChild(t, cmd); err != nil {
			t.Fatal(err)
		}
		timeout := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		stopped := false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			ln := sc.Text()
			if strings.HasPrefix(ln, "ERR") {
				t.Fatalf("round %d: child: %s", round, ln)
			}
			if ln == "L" {
				stopped = true
				break
			}
			var first uint64
			var n, w, seq int
			if _, err := fmt.Sscanf(ln, "A %d %d %d %d", &first, &n, &w, &seq); err == nil {
				for j := 0; j < n; j++ {
					acked[first+uint64(j)] = powerRecord(w, seq, j)
				}
			}
		}
		timeout.Stop()
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: the child did not reach its rotation", round)
		}
		for start := time.Now(); ; time.Sleep(time.Millisecond) {
			st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			if f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:])); len(f) > 0 && f[0] == "T" {
				break
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("round %d: the child did not stop", round)
			}
		}
		snap := filepath.Join(tmp, fmt.Sprintf("snap%d.img", round))
		snapshot(t, devStat, img, snap)
		cmd.Process.Kill()
		cmd.Wait()
		mnt := filepath.Join(tmp, fmt.Sprintf("snap%d", round))
		sdev := d.mount(snap, mnt)
		sdir := filepath.Join(mnt, "ledger")
		rep, err := Verify(sdir, VerifyOptions{Verifiers: []note.Verifier{verifier}})
		if err != nil || !rep.OK() {
			t.Fatalf("round %d: verify after the power failure at a rotation (%d acknowledged): %v\n%s", round, len(acked), err, rep)
		}
		segs, err := listSegments(filepath.Join(sdir, "seg"))
		if err != nil || len(segs) < 2 {
			t.Fatalf("round %d: %d segments after the rotation (%v)", round, len(segs), err)
		}
		l, err := OpenReadOnly(sdir)
		if err != nil {
			t.Fatalf("round %d: open after the power failure: %v", round, err)
		}
		for i, want := range acked {
			e, err := l.Read(i)
			if err != nil || !bytes.Equal(e.Data, want) {
				l.Close()
				t.Fatalf("round %d: acknowledged record %d: %q, %v", round, i, e.Data, err)
			}
		}
		l.Close()
		t.Logf("round %d: %d segments, %d acknowledged records survived", round, len(segs), len(acked))
		d.unmount(live)
		os.Remove(img)
		live, dev, img, dir = mnt, sdev, snap, sdir
		devStat = filepath.Join("/sys/block", filepath.Base(dev), "stat")
		// The next rounds' file systems commit when asked, as this one.
		d.opts = "commit=300"
	}
}
