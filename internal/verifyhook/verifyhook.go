// Package verifyhook lets tests act at a point inside ledger.Verify where a
// running collector may change the ledger directory under it: after Verify
// has read the signed retention records (pruned.log), before it lists the
// segments. A retention pass placed there deletes segments whose retention
// records Verify has not read. The tests that need it are the ledger's and
// the collector's (package server, which cannot set an unexported option
// of ledger.Verify); an exported field of ledger.VerifyOptions that exists
// only for tests would be public API. Nothing but tests installs a hook.
package verifyhook

import "sync/atomic"

var afterPruned atomic.Pointer[func(dir string)]

// SetAfterPruned installs f to run, with the ledger directory, in every
// Verify from now on, once it has read the retention records (nil removes
// it), and returns a func that puts back the hook it replaced. f filters
// on dir itself: Verifies of other tests may run meanwhile.
func SetAfterPruned(f func(dir string)) (restore func()) {
	var p *func(dir string)
	if f != nil {
		p = &f
	}
	old := afterPruned.Swap(p)
	return func() { afterPruned.Store(old) }
}

// AfterPruned runs the hook installed by SetAfterPruned, if any; Verify
// calls it.
func AfterPruned(dir string) {
	if f := afterPruned.Load(); f != nil {
		(*f)(dir)
	}
}
