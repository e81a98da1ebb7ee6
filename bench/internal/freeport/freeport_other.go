//go:build !linux

package freeport

import (
	"fmt"
	"net"
	"os/exec"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// await waits until someone listens on addr: without /proc the listener's
// owner is unknown, and a port taken meanwhile shows only in the
// program's output.
func await(cmd *exec.Cmd, addr string, out *syncBuffer) error {
	for deadline := time.Now().Add(Wait); ; time.Sleep(20 * time.Millisecond) {
		if testenv.PortTakenIn(out.String()) {
			return fmt.Errorf("address in use")
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("does not listen after %v", Wait)
		}
	}
}
