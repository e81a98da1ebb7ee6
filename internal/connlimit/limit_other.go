//go:build !unix

package connlimit

// fileLimit is not known here.
func fileLimit() uint64 { return 0 }
