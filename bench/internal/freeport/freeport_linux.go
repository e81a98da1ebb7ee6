package freeport

import (
	"fmt"
	"os/exec"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// await waits until cmd's process listens on addr.
func await(cmd *exec.Cmd, addr string, out *syncBuffer) error {
	p, ok := testenv.LookProc(cmd.Process.Pid)
	if !ok {
		return fmt.Errorf("exited at once")
	}
	for deadline := time.Now().Add(Wait); ; time.Sleep(20 * time.Millisecond) {
		if p.Listens(addr) {
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("exited before listening")
		}
		if testenv.PortTakenIn(out.String()) {
			return fmt.Errorf("address in use")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("does not listen after %v", Wait)
		}
	}
}
