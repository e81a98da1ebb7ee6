package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// openPTY returns the two ends of a new pseudo-terminal: the terminal a
// user's shell writes to (slave) and its master.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		t.Fatal(errno)
	}
	var n uint32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); errno != 0 {
		t.Fatal(errno)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// TestReportPDFNotToTerminal: report --format pdf without --out, in a
// terminal, says to give --out instead of writing a PDF's bytes onto the
// screen; to a file or a pipe it writes as before.
func TestReportPDFNotToTerminal(t *testing.T) {
	_, tty := openPTY(t)
	if !isTerminal(tty) {
		t.Fatal("a pseudo-terminal is not taken for a terminal")
	}
	var errOut strings.Builder
	code := runReport([]string{"--standard", "pci-dss", "--format", "pdf", "--data", t.TempDir()}, tty, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "give --out FILE") {
		t.Errorf("report --format pdf to a terminal: exit %d, want 2 and what to do:\n%s", code, errOut.String())
	}
	file, err := os.Create(filepath.Join(t.TempDir(), "r.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if isTerminal(file) {
		t.Error("a file is taken for a terminal")
	}
	errOut.Reset()
	if code := runReport([]string{"--standard", "pci-dss", "--format", "pdf", "--data", t.TempDir()}, file, &errOut); code == 2 && strings.Contains(errOut.String(), "terminal") {
		t.Errorf("report --format pdf to a file refused: %s", errOut.String())
	}
}
