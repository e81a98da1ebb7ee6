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

// start is StartServer or Launch, as the tests see them: the server, or
// why it failed, and what was logged.
type start func(t *testing.T, cmdFor func(addr string) *exec.Cmd) (srv *Server, failed string, logs []string)

var starts = []struct {
	name string
	run  start
	logs bool // logs each taken port
}{
	{"StartServer", func(t *testing.T, cmdFor func(addr string) *exec.Cmd) (*Server, string, []string) {
		r := &recorder{TB: t}
		var srv *Server
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv = StartServer(r, "the child", cmdFor)
		}()
		<-done
		return srv, r.failed, r.logs
	}, true},
	{"Launch", func(t *testing.T, cmdFor func(addr string) *exec.Cmd) (*Server, string, []string) {
		srv, err := Launch("the child", cmdFor)
		if err != nil {
			return nil, err.Error(), nil
		}
		return srv, "", nil
	}, false},
}

// TestStartServer: a program that listens is returned listening; one
// whose port another process took (it says so and exits, or stays without
// a word while the other listens) is started again on another port; one
// that fails for another reason fails at once with its output, and so
// does a port taken on every attempt, naming them all. StartServer fails
// its test; Launch, for a benchmark's servers, which has no group of its
// own, returns the error, and counts as listening by its own socket only.
func TestStartServer(t *testing.T) {
	t.Parallel()
	for _, st := range starts {
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
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				if tt.mode == "silent" && runtime.GOOS != "linux" {
					t.Skip("only /proc tells another process's listener from the child's")
				}
				var addrs []string
				srv, failed, logs := st.run(t, func(addr string) *exec.Cmd {
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
					if !strings.Contains(failed, tt.fail) {
						t.Fatalf("failed with %q, want %q", failed, tt.fail)
					}
					for _, a := range addrs {
						if !strings.Contains(failed, a) {
							t.Errorf("the failure does not name %s: %q", a, failed)
						}
					}
					return
				}
				if failed != "" {
					t.Fatalf("failed: %s (logged %q)", failed, logs)
				}
				defer func() { srv.Cmd.Process.Kill(); srv.Cmd.Wait() }()
				if srv.Addr != addrs[len(addrs)-1] {
					t.Errorf("server at %s, want the last attempt's %s", srv.Addr, addrs[len(addrs)-1])
				}
				if listening(srv.Cmd.Process.Pid, false, srv.Addr) != listenOurs {
					t.Errorf("the child does not listen on %s", srv.Addr)
				}
				if st.logs && len(logs) != tt.taken {
					t.Errorf("logged %q, want one line per taken port", logs)
				}
			})
		}
	}
}
