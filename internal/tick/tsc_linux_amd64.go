package tick

import (
	"bytes"
	"io"
	"os"
)

// tsc says that Now reads the time-stamp counter: the kernel keeps its
// own time with it, which it does only once it found the counter
// synchronised across cores, and the processor says it ticks at a
// constant rate in every power state.
var tsc = usable(os.ReadFile, readHead)

// rdtsc reads the time-stamp counter (tsc_linux_amd64.s).
func rdtsc() int64

// usable says whether the time-stamp counter can stand in for the
// monotonic clock: the kernel's clocksource is "tsc", and the first
// processor's flags in /proc/cpuinfo include constant_tsc and nonstop_tsc
// (an invariant counter).
func usable(readFile func(string) ([]byte, error), head func(string) ([]byte, error)) bool {
	cs, err := readFile("/sys/devices/system/clocksource/clocksource0/current_clocksource")
	if err != nil || string(bytes.TrimSpace(cs)) != "tsc" {
		return false
	}
	info, err := head("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for line := range bytes.SplitSeq(info, []byte("\n")) {
		if name, flags, ok := bytes.Cut(line, []byte(":")); ok && string(bytes.TrimSpace(name)) == "flags" {
			var constant, nonstop bool
			for f := range bytes.FieldsSeq(flags) {
				constant = constant || string(f) == "constant_tsc"
				nonstop = nonstop || string(f) == "nonstop_tsc"
			}
			return constant && nonstop
		}
	}
	return false
}

// readHead reads the first 64 KiB of a file: /proc/cpuinfo repeats its
// block for every processor, and the first block is all usable reads.
func readHead(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n, err := io.ReadFull(f, b)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return b[:n], err
}
