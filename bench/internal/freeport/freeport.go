// Package freeport starts the servers a benchmark measures on free
// loopback ports, and makes sure the server measured is the one started.
package freeport

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// Attempts is how many free ports Start gives a program.
const Attempts = 3

// Wait bounds how long Start waits for a program to listen.
const Wait = 60 * time.Second

// Start starts the program mk makes for a free loopback address
// (127.0.0.1:port) and waits until that process itself listens there. A
// port picked free may be taken by another process before the program
// binds it, and then a health check finds that process, not the program,
// and the benchmark measures it: when the program exits saying the address
// was in use, Start tries another port, Attempts times in all. A program
// that exits for another reason, or does not listen within Wait, is an
// error, with what it printed. What it prints goes where mk's command
// sends it as well. The caller stops and waits for the command.
func Start(name string, mk func(addr string) *exec.Cmd) (*exec.Cmd, string, error) {
	var tried []string
	for range Attempts {
		addr, err := pick()
		if err != nil {
			return nil, "", err
		}
		cmd := mk(addr)
		var out syncBuffer
		cmd.Stdout = tee(cmd.Stdout, &out)
		cmd.Stderr = tee(cmd.Stderr, &out)
		if err := cmd.Start(); err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		err = await(cmd, addr, &out)
		if err == nil {
			return cmd, addr, nil
		}
		cmd.Process.Kill()
		cmd.Wait()
		if !testenv.PortTakenIn(out.String()) {
			return nil, "", fmt.Errorf("%s on %s: %w\n%s", name, addr, err, out.String())
		}
		tried = append(tried, addr)
	}
	return nil, "", fmt.Errorf("%s: the port was taken by another process on each of %d attempts (%s)", name, Attempts, strings.Join(tried, ", "))
}

// pick returns a loopback address nothing listens on now.
func pick() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func tee(w io.Writer, buf io.Writer) io.Writer {
	if w == nil {
		return buf
	}
	return io.MultiWriter(w, buf)
}

// syncBuffer is a bytes.Buffer for exec's copying goroutines and a reader;
// it keeps the first 64 KiB (a start's complaint), not a long run's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 64<<10 - b.b.Len(); room > 0 {
		b.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
