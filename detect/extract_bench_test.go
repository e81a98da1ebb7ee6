package detect

import "testing"

// BenchmarkExtract is the field extractor alone: one scan per event of
// mixed traffic (no arrays of objects) for the fields the built-in rules
// read, without evaluating them.
func BenchmarkExtract(b *testing.B) {
	e, errs := NewEngine(Builtin(), Options{})
	if len(errs) > 0 {
		b.Fatal(errs[0])
	}
	evs := mixedEvents(10_000, 3)
	var total int64
	for _, ev := range evs {
		total += int64(len(ev))
	}
	var d document
	b.SetBytes(total / int64(len(evs)))
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if err := e.x.scan(&d, evs[n%len(evs)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
}
