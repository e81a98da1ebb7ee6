//go:build race

package hugeheap

// raceEnabled: the race detector's shadow memory, outside the advised
// range, faults on every write to the heap too.
const raceEnabled = true
