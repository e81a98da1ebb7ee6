//go:build unix

package stalltest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGSTOPIsMeasured stops a child test process (this test, re-run)
// with SIGSTOP for 600ms while its Watch runs: the child's Worst must
// then be at least most of that stop, the stall a test bound must allow.
func TestSIGSTOPIsMeasured(t *testing.T) {
	if os.Getenv("STALLTEST_CHILD") == "1" {
		w := Start(t)
		time.Sleep(20 * Tick)
		w.Reset()
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
		fmt.Println(int64(w.Worst()))
		return
	}
	const stop = 600 * time.Millisecond
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGSTOPIsMeasured$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STALLTEST_CHILD=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer in.Close()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("child: %q %v", lines.Text(), lines.Err())
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(stop)
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Let the watcher wake from the stop before asking (Worst counts a
	// stall under way too, so this is not what the assertion rests on).
	time.Sleep(10 * Tick)
	fmt.Fprintln(in, "report")
	if !lines.Scan() {
		t.Fatalf("child gave no figure: %v", lines.Err())
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(lines.Text()), 10, 64)
	if err != nil {
		t.Fatalf("child: %q", lines.Text())
	}
	if worst := time.Duration(ns); worst < stop*3/4 {
		t.Errorf("stopped %v, Worst %v: the stall was not measured", stop, worst)
	}
}
