package freeport

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestChild is the program Start's tests start: it listens on
// FREEPORT_TEST_ADDR, or says why it cannot and exits; "fail" exits at
// once for another reason.
func TestChild(t *testing.T) {
	addr := os.Getenv("FREEPORT_TEST_ADDR")
	if addr == "" {
		t.Skip("started by Start's tests")
	}
	if os.Getenv("FREEPORT_TEST_FAIL") != "" {
		fmt.Println("config: no such setting")
		os.Exit(3)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer ln.Close()
	time.Sleep(60 * time.Second)
}

// TestStart: the child gets a port on the first attempt; or, when another
// process holds the ports it is given first (here this one), on a later
// attempt, or not at all; a child that fails otherwise is not tried again.
func TestStart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		taken    int // the first attempts' ports this process takes
		fail     bool
		attempts int
		errWant  string
	}{
		{"free", 0, false, 1, ""},
		{"taken once", 1, false, 2, ""},
		{"taken always", Attempts, false, Attempts, "taken by another process on each"},
		{"other failure", 0, true, 1, "exited before listening"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			attempts := 0
			cmd, addr, err := Start("the child", func(addr string) *exec.Cmd {
				attempts++
				if attempts <= tc.taken {
					ln, err := net.Listen("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { ln.Close() })
				}
				cmd := exec.Command(os.Args[0], "-test.run=^TestChild$")
				cmd.Env = append(os.Environ(), "FREEPORT_TEST_ADDR="+addr)
				if tc.fail {
					cmd.Env = append(cmd.Env, "FREEPORT_TEST_FAIL=1")
				}
				return cmd
			})
			if cmd != nil {
				defer func() { cmd.Process.Kill(); cmd.Wait() }()
			}
			if attempts != tc.attempts {
				t.Errorf("%d attempts, want %d", attempts, tc.attempts)
			}
			if tc.errWant == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c, err := net.Dial("tcp", addr); err != nil {
					t.Fatalf("the child does not answer on %s: %v", addr, err)
				} else {
					c.Close()
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.errWant) {
				t.Fatalf("err %v, want %q", err, tc.errWant)
			}
		})
	}
}
