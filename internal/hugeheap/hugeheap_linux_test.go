//go:build linux

package hugeheap

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// vmaOf returns the VmFlags and AnonHugePages (kB) of the mapping that
// holds address p, from /proc/self/smaps.
func vmaOf(t *testing.T, p uintptr) (flags []string, hugeKB int) {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no smaps: %v", err)
	}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) > 0 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			var lo, hi uintptr
			if _, err := fmt.Sscanf(f[0], "%x-%x", &lo, &hi); err == nil {
				in = lo <= p && p < hi
			}
			continue
		}
		if !in {
			continue
		}
		switch f[0] {
		case "AnonHugePages:":
			hugeKB, _ = strconv.Atoi(f[1])
		case "VmFlags:":
			return f[1:], hugeKB
		}
	}
	t.Fatalf("no mapping holds %#x", p)
	return nil, 0
}

func minorFaults() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

// The heap's growth after Advise lands in the advised range: the mapping
// that holds a new 16 MiB buffer carries the advice (VmFlags "hg"), and
// touching it takes far fewer faults than its 4,096 pages when the kernel
// gives huge pages (not counted under -race, whose shadow memory faults
// too). Without the collection in Advise the buffer lands above the range
// whenever a cycle running at the reservation marks it live (the next goal
// is then twice it), and the flag is missing: some runs, not all.
func TestAdviseBacksNextGrowth(t *testing.T) {
	mode, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil || bytes.Contains(mode, []byte("[never]")) {
		t.Skipf("transparent huge pages off here (%q, %v)", mode, err)
	}
	if Advise(hugePage) {
		t.Fatal("Advise of less than two huge pages took advice")
	}
	if !Advise(64 << 20) {
		t.Fatal("Advise(64 MiB) = false on a kernel with transparent huge pages")
	}
	b := make([]byte, 16<<20)
	before := minorFaults()
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	faults := minorFaults() - before
	flags, hugeKB := vmaOf(t, uintptr(unsafe.Pointer(&b[len(b)/2])))
	t.Logf("VmFlags %v, AnonHugePages %d kB, %d faults touching 4096 pages", flags, hugeKB, faults)
	hg := false
	for _, f := range flags {
		hg = hg || f == "hg"
	}
	if !hg {
		t.Fatalf("the buffer allocated after Advise is in a mapping without the huge-page advice: VmFlags %v", flags)
	}
	if hugeKB > 0 && faults >= 2048 && !raceEnabled {
		t.Errorf("%d faults touching 16 MiB of advised heap backed by huge pages (%d kB): want far fewer than 4096", faults, hugeKB)
	}
}
