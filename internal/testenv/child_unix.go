//go:build unix

package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

func tieToParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setParentDeathSignal(cmd.SysProcAttr)
}

// killGroup kills cmd's process group, unless cmd was already waited for:
// pids are few (pid_max is 32768 on the development VM) and a test starts
// hundreds of crash children, so the group's id may by then be another
// child's. Process.Signal goes through a pidfd and knows whether the
// process was reaped; while it is not (a zombie included), its pid, and so
// its group's id, cannot be taken.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process.Signal(syscall.Signal(0)) != nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// closeInheritedOnExec marks close-on-exec every descriptor this process
// holds (Go opens its own so; those it inherited are not), so that a child
// gets only what its exec.Cmd passes. The test binary inherits, through go
// test, whatever ran it: flock(1) holds its lock on descriptor 3 of its
// command (as a wrapper that takes turns with measurements does), and a Flask upstream
// orphaned by a killed test kept that lock, shared, for as long as it ran,
// so a measurement waiting for it waited for ever.
func closeInheritedOnExec() {
	d, err := os.Open("/dev/fd")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, name := range names {
		if fd, err := strconv.Atoi(name); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
