package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// PortAttempts is how many free ports OnFreeAddr and StartServer give a
// program before the test fails.
const PortAttempts = 3

// ListenWait bounds how long StartServer waits for its program to listen:
// something that must come, which a loaded machine delays by seconds (a
// race-built VictoriaLogs at load 8+ takes several to start).
const ListenWait = 60 * time.Second

// ErrPortTaken is what an attempt of OnFreeAddr returns (wrapped) when its
// program could not listen on the address it was given because another
// process took the port between FreeAddr's check and the program's bind.
var ErrPortTaken = errors.New("port taken by another process")

// FreeAddr returns a loopback address (127.0.0.1:port) on which nothing
// listens now. Another process may take the port before the program the
// test passes it to binds it: pass it through OnFreeAddr or StartServer,
// which try another. (A program that can listen on port 0 and say which
// port it got needs neither.)
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// PortTakenIn reports whether a program's output says it could not bind
// its address because the address was in use: EADDRINUSE's message, as Go
// programs and the C library print it.
func PortTakenIn(out string) bool {
	return strings.Contains(strings.ToLower(out), "address already in use")
}

// OnFreeAddr calls try with a free loopback address (FreeAddr), and again
// with a new one, PortAttempts times in all, while try returns an error
// that wraps ErrPortTaken; it returns the address of the attempt that
// succeeded. Any other error fails the test at once, as does the last
// taken port, with every attempt named.
func OnFreeAddr(t testing.TB, what string, try func(addr string) error) string {
	t.Helper()
	var tried []string
	for range PortAttempts {
		addr := FreeAddr(t)
		err := try(addr)
		if err == nil {
			return addr
		}
		if !errors.Is(err, ErrPortTaken) {
			t.Fatalf("%s on %s: %v", what, addr, err)
		}
		tried = append(tried, fmt.Sprintf("%s: %v", addr, err))
		t.Logf("%s on %s: %v; trying another port", what, addr, err)
	}
	t.Fatalf("%s: the port was taken by another process on each of %d attempts:\n  %s", what, PortAttempts, strings.Join(tried, "\n  "))
	return ""
}

// Server is a program StartServer started, listening on Addr.
type Server struct {
	Cmd  *exec.Cmd
	Addr string
	out  *syncBuffer
}

// Output is what the program wrote so far, standard output and error.
func (s *Server) Output() string { return s.out.String() }

// StartServer starts the program cmdFor makes for a free loopback address
// (host:port), with StartChild, and waits until the program itself (its
// process group) listens there. When the program could not listen because
// another process took the port meanwhile, which it shows by saying so
// (PortTakenIn: exited, or running without its listener, as rsyslogd does)
// or by another process's listener on the port, StartServer kills it and
// starts a new one on another port (OnFreeAddr). A program that exits for
// another reason, or does not listen within ListenWait, fails the test at
// once with its output.
//
// What the program writes goes to cmd.Stdout and cmd.Stderr as cmdFor set
// them, and to Output too. The caller stops the program as it would after
// cmd.Start (StartServer does not Wait for it).
func StartServer(t testing.TB, what string, cmdFor func(addr string) *exec.Cmd) *Server {
	t.Helper()
	var srv *Server
	OnFreeAddr(t, what, func(addr string) error {
		s := &Server{Cmd: cmdFor(addr), Addr: addr, out: &syncBuffer{}}
		tee(s.Cmd, s.out)
		if err := StartChild(t, s.Cmd); err != nil {
			return err
		}
		if err := s.awaitListening(true); err != nil {
			s.Cmd.Process.Kill()
			s.Cmd.Wait()
			if errors.Is(err, ErrPortTaken) {
				return err
			}
			return fmt.Errorf("%w\n--- its output:\n%s", err, s.Output())
		}
		srv = s
		return nil
	})
	return srv
}

// Launch is StartServer for a program that is not a test's: a server a
// benchmark's driver measures. It starts the program cmdFor makes for a
// free loopback address and returns once that process itself listens
// there, trying another port when another process took the one given
// (PortAttempts in all); it reports failures as errors, where StartServer
// fails its test.
//
// The program stays in the caller's process group, so that an interrupt
// at the terminal (^C goes to the foreground group) ends it with its
// driver; it is not tied to the caller otherwise. It inherits no
// descriptor beyond cmd's own, as StartChild's children do (a lock that
// a measurement wrapper holds must not outlive the driver in a server
// left running). Output keeps the first 64 KiB it writes: a start's
// complaint, not a long run's output. The caller stops and Waits for the
// program.
func Launch(what string, cmdFor func(addr string) *exec.Cmd) (*Server, error) {
	inheritOnce.Do(closeInheritedOnExec)
	var tried []string
	for range PortAttempts {
		addr, err := freeAddr()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		s := &Server{Cmd: cmdFor(addr), Addr: addr, out: &syncBuffer{limit: 64 << 10}}
		tee(s.Cmd, s.out)
		if err := s.Cmd.Start(); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		err = s.awaitListening(false)
		if err == nil {
			return s, nil
		}
		s.Cmd.Process.Kill()
		s.Cmd.Wait()
		if !errors.Is(err, ErrPortTaken) {
			return nil, fmt.Errorf("%s on %s: %w\n--- its output:\n%s", what, addr, err, s.Output())
		}
		tried = append(tried, fmt.Sprintf("%s: %v", addr, err))
	}
	return nil, fmt.Errorf("%s: the port was taken by another process on each of %d attempts:\n  %s", what, PortAttempts, strings.Join(tried, "\n  "))
}

var inheritOnce sync.Once

// awaitListening waits until s's program listens on s.Addr, and says why
// not: ErrPortTaken (wrapped), exited, or not listening after ListenWait.
// The program is its process group when group is set (StartChild's
// children), so that a listener its children hold counts as its own;
// otherwise only the process itself counts.
func (s *Server) awaitListening(group bool) error {
	gone := exitWatch(s.Cmd.Process.Pid)
	foreign := 0
	for deadline := time.Now().Add(ListenWait); ; time.Sleep(20 * time.Millisecond) {
		// Read before the checks, so that a program that exited has
		// written all it will (its end closed the pipes; exec's copying
		// goroutines may still be at it, hence Wait on the way out).
		exited := gone()
		switch listening(s.Cmd.Process.Pid, group, s.Addr) {
		case listenOurs:
			return nil
		case listenForeign:
			// Seen three times in a row, 40 ms apart at least: a process
			// the group forked a moment ago may be missed once.
			if foreign++; foreign >= 3 {
				return fmt.Errorf("another process listens on %s: %w", s.Addr, ErrPortTaken)
			}
		default:
			foreign = 0
		}
		if exited {
			s.Cmd.Wait()
			if PortTakenIn(s.Output()) {
				return fmt.Errorf("it exited (%v) saying %q: %w", s.Cmd.ProcessState, takenLine(s.Output()), ErrPortTaken)
			}
			return fmt.Errorf("it exited (%v) before listening on %s", s.Cmd.ProcessState, s.Addr)
		}
		if PortTakenIn(s.Output()) {
			return fmt.Errorf("it says %q: %w", takenLine(s.Output()), ErrPortTaken)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("it does not listen on %s after %v", s.Addr, ListenWait)
		}
	}
}

// takenLine is the line of out that says the address was in use.
func takenLine(out string) string {
	for l := range strings.Lines(out) {
		if PortTakenIn(l) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// tee sends what cmd writes to buf as well as where cmd sends it. One
// writer for both streams when cmd had one (or none) for both, so that a
// caller's buffer is never written from two goroutines.
func tee(cmd *exec.Cmd, buf io.Writer) {
	both := func(w io.Writer) io.Writer {
		if w == nil {
			return buf
		}
		return io.MultiWriter(w, buf)
	}
	if cmd.Stdout == cmd.Stderr {
		w := both(cmd.Stdout)
		cmd.Stdout, cmd.Stderr = w, w
		return
	}
	cmd.Stdout, cmd.Stderr = both(cmd.Stdout), both(cmd.Stderr)
}

// syncBuffer is a bytes.Buffer for two writers and a reader; with a
// limit, it keeps only the first limit bytes written.
type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	limit int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.limit > 0 {
		b.b.Write(p[:min(len(p), max(0, b.limit-b.b.Len()))])
		return len(p), nil
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// listenState is who, if anyone, listens on an address.
type listenState int

const (
	listenNone    listenState = iota
	listenOurs                // a process of the program's group
	listenForeign             // another process
)
