package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Proc is a process as /proc shows it: its pid and its start time, which
// together name it even once the pid is taken again (the development VM
// has 32768 pids, and crash tests start hundreds of processes).
type Proc struct {
	Pid   int
	Start uint64 // clock ticks after boot
}

// LookProc returns the process pid as it is now, or false if there is
// none.
func LookProc(pid int) (Proc, bool) {
	_, start, ok := procStat(pid)
	return Proc{Pid: pid, Start: start}, ok
}

// Running reports whether p still runs: its pid names the same process,
// that process is not a zombie (dead, its descriptors closed, waiting for
// its parent to reap it), and no SIGKILL waits for it (one sent as another
// process exits, its parent-death signal, is queued before that exit is
// seen, and takes effect a moment later).
func (p Proc) Running() bool {
	state, start, ok := procStat(p.Pid)
	return ok && start == p.Start && state != "Z" && state != "X" && !killPending(p.Pid)
}

// killPending reports whether SIGKILL is pending for pid, for its thread
// or its process (the SigPnd and ShdPnd masks of /proc/PID/status).
func killPending(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		if k != "SigPnd" && k != "ShdPnd" {
			continue
		}
		if mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil && mask&(1<<(9-1)) != 0 {
			return true
		}
	}
	return false
}

// Holds reports whether p has a descriptor open on the file at path.
func (p Proc) Holds(path string) bool {
	dir := filepath.Join("/proc", strconv.Itoa(p.Pid), "fd")
	fds, _ := os.ReadDir(dir)
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && target == path {
			return true
		}
	}
	return false
}

// name is p's command name, for messages.
func (p Proc) name() string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.Pid), "comm"))
	return strings.TrimSpace(string(b))
}

// procStat reads the state and the start time of /proc/PID/stat. The
// command name, second, is in parentheses and may hold spaces and
// parentheses itself: the fields are counted from the last ')'.
func procStat(pid int) (state string, start uint64, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", 0, false
	}
	// Fields 3 (state) and 22 (starttime) of proc(5).
	start, err = strconv.ParseUint(f[19], 10, 64)
	return f[0], start, err == nil
}

// WaitEnded fails the test unless p stops running within d of since (what
// should have ended it), checking every 10 ms; a p still running then is
// killed.
func (p Proc) WaitEnded(t testing.TB, d time.Duration, since string) {
	t.Helper()
	for deadline := time.Now().Add(d); p.Running(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(p.Pid, syscall.SIGKILL)
			t.Fatalf("process %d (%s) still runs %v after %s", p.Pid, p.name(), d, since)
		}
	}
}
