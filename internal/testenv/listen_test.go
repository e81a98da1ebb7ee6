package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestListenChild is the program StartServer's tests start: it listens on
// TRAILGUARD_TESTENV_ADDR and waits to be killed. When it cannot, it says
// why and exits ("exit"), or says nothing and stays ("silent", a server
// that does not report a failed bind); "fail" exits at once for another
// reason.
func TestListenChild(t *testing.T) {
	mode := os.Getenv("TRAILGUARD_TESTENV_LISTEN")
	if mode == "" {
		t.Skip("started by StartServer's tests")
	}
	if mode == "fail" {
		fmt.Println("config: no such setting \"lisen\"")
		os.Exit(3)
	}
	ln, err := net.Listen("tcp", os.Getenv("TRAILGUARD_TESTENV_ADDR"))
	if err != nil {
		if mode == "silent" {
			time.Sleep(60 * time.Second)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer ln.Close()
	time.Sleep(60 * time.Second)
}

// recorder is a test that StartServer may fail: Fatalf records and ends
// the goroutine, as testing's does.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed string
	logs   []string
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.failed = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

// TestStartServer: a program that listens is returned listening; one
// whose port another process took (it says so and exits, or stays without
// a word while the other listens) is started again on another port; one
// that fails for another reason fails the test at once with its output,
// and so does a port taken on every attempt, naming them all.
func TestStartServer(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		mode  string
		taken int // attempts whose port the test takes first
		calls int
		fail  string
	}{
		{"listens", "exit", 0, 1, ""},
		{"taken, says so", "exit", 1, 2, ""},
		{"taken, silent", "silent", 2, 3, ""},
		{"taken every time", "exit", PortAttempts, PortAttempts, "taken by another process on each of 3 attempts"},
		{"fails otherwise", "fail", 0, 1, `no such setting "lisen"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.mode == "silent" && runtime.GOOS != "linux" {
				t.Skip("only /proc tells another process's listener from the child's")
			}
			r := &recorder{TB: t}
			var addrs []string
			var srv *Server
			done := make(chan struct{})
			go func() {
				defer close(done)
				srv = StartServer(r, "the child", func(addr string) *exec.Cmd {
					addrs = append(addrs, addr)
					if len(addrs) <= tt.taken {
						ln, err := net.Listen("tcp", addr)
						if err != nil {
							t.Error(err)
						} else {
							t.Cleanup(func() { ln.Close() })
						}
					}
					cmd := exec.Command(os.Args[0], "-test.run=^TestListenChild$", "-test.count=1")
					cmd.Env = append(os.Environ(), "TRAILGUARD_TESTENV_LISTEN="+tt.mode, "TRAILGUARD_TESTENV_ADDR="+addr)
					return cmd
				})
			}()
			<-done
			if len(addrs) != tt.calls {
				t.Errorf("%d attempts (%v), want %d", len(addrs), addrs, tt.calls)
			}
			if tt.fail != "" {
				if !strings.Contains(r.failed, tt.fail) {
					t.Fatalf("failed with %q, want %q", r.failed, tt.fail)
				}
				for _, a := range addrs {
					if !strings.Contains(r.failed, a) {
						t.Errorf("the failure does not name %s: %q", a, r.failed)
					}
				}
				return
			}
			if r.failed != "" {
				t.Fatalf("failed: %s (logged %q)", r.failed, r.logs)
			}
			defer func() { srv.Cmd.Process.Kill(); srv.Cmd.Wait() }()
			if srv.Addr != addrs[len(addrs)-1] {
				t.Errorf("server at %s, want the last attempt's %s", srv.Addr, addrs[len(addrs)-1])
			}
			if listening(srv.Cmd.Process.Pid, true, srv.Addr) != listenOurs {
				t.Errorf("the child does not listen on %s", srv.Addr)
			}
			if len(r.logs) != tt.taken {
				t.Errorf("logged %q, want one line per taken port", r.logs)
			}
		})
	}
}

// TestLaunch: Launch's outcomes as StartServer's, as errors; and, without
// a process group of its own, the child counts as listening only by its
// own socket, so a port another process holds is found taken even when the
// child stays silent.
func TestLaunch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		mode  string
		taken int
		calls int
		fail  string
	}{
		{"listens", "exit", 0, 1, ""},
		{"taken, says so", "exit", 1, 2, ""},
		{"taken, silent", "silent", 2, 3, ""},
		{"taken every time", "exit", PortAttempts, PortAttempts, "taken by another process on each of 3 attempts"},
		{"fails otherwise", "fail", 0, 1, `no such setting "lisen"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.mode == "silent" && runtime.GOOS != "linux" {
				t.Skip("only /proc tells another process's listener from the child's")
			}
			var addrs []string
			srv, err := Launch("the child", func(addr string) *exec.Cmd {
				addrs = append(addrs, addr)
				if len(addrs) <= tt.taken {
					ln, err := net.Listen("tcp", addr)
					if err != nil {
						t.Error(err)
					} else {
						t.Cleanup(func() { ln.Close() })
					}
				}
				cmd := exec.Command(os.Args[0], "-test.run=^TestListenChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), "TRAILGUARD_TESTENV_LISTEN="+tt.mode, "TRAILGUARD_TESTENV_ADDR="+addr)
				return cmd
			})
			if len(addrs) != tt.calls {
				t.Errorf("%d attempts (%v), want %d", len(addrs), addrs, tt.calls)
			}
			if tt.fail != "" {
				if err == nil || !strings.Contains(err.Error(), tt.fail) {
					t.Fatalf("err %v, want %q", err, tt.fail)
				}
				for _, a := range addrs {
					if !strings.Contains(err.Error(), a) {
						t.Errorf("the error does not name %s: %v", a, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { srv.Cmd.Process.Kill(); srv.Cmd.Wait() }()
			if srv.Addr != addrs[len(addrs)-1] {
				t.Errorf("server at %s, want the last attempt's %s", srv.Addr, addrs[len(addrs)-1])
			}
			if c, err := net.Dial("tcp", srv.Addr); err != nil {
				t.Errorf("the child does not answer on %s: %v", srv.Addr, err)
			} else {
				c.Close()
			}
		})
	}
}
