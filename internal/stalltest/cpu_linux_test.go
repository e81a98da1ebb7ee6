package stalltest

import (
	"sync/atomic"
	"testing"
	"time"
)

// spin keeps a core busy until stop is set or d of the wall clock passed.
func spin(stop *atomic.Bool, d time.Duration) {
	end := time.Now().Add(d)
	for !stop.Load() && time.Now().Before(end) {
	}
}

// TestRunCPU: RunCPU counts the CPU time f uses, not the time it waits
// (a sleep is not counted), and gives up on f once its thread has used
// more than limit.
func TestRunCPU(t *testing.T) {
	// A sleep of 300 ms uses (almost) no CPU: within a 50 ms bound.
	cpu, ok := RunCPU(func() { time.Sleep(300 * time.Millisecond) }, 50*time.Millisecond)
	if !ok || cpu > 50*time.Millisecond {
		t.Errorf("a 300 ms sleep: %v of CPU, ok %v; want ok and less than 50 ms", cpu, ok)
	}
	// 200 ms of the wall clock busy: at least some CPU is counted (how
	// much depends on the load), and never more than the wall clock.
	var stop atomic.Bool
	start := time.Now()
	cpu, ok = RunCPU(func() { spin(&stop, 200*time.Millisecond) }, time.Minute)
	if took := time.Since(start); !ok || cpu <= 0 || cpu > took+10*time.Millisecond {
		t.Errorf("200 ms busy: %v of CPU in %v, ok %v", cpu, took, ok)
	}
	// Busy until told: given up after 100 ms of CPU.
	cpu, ok = RunCPU(func() { spin(&stop, time.Minute) }, 100*time.Millisecond)
	stop.Store(true)
	if ok || cpu < 100*time.Millisecond {
		t.Errorf("endless work: %v of CPU, ok %v; want given up after more than 100 ms", cpu, ok)
	}
}

// TestProcessCPU: ProcessCPU grows by the CPU a goroutine burns and not
// while the process sleeps.
func TestProcessCPU(t *testing.T) {
	before := ProcessCPU()
	time.Sleep(200 * time.Millisecond)
	if slept := ProcessCPU() - before; slept > 100*time.Millisecond {
		t.Errorf("a 200 ms sleep used %v of CPU", slept)
	}
	var stop atomic.Bool
	before = ProcessCPU()
	cpu, _ := RunCPU(func() { spin(&stop, 200*time.Millisecond) }, time.Minute)
	if got := ProcessCPU() - before; got < cpu {
		t.Errorf("the process used %v of CPU while a thread of it used %v", got, cpu)
	}
}
