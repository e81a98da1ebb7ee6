//go:build !linux

package server

// freeBytes cannot tell the free space on this platform: the reserve is
// then kept by the ledger's own disk-full handling alone.
func freeBytes(string) int64 { return -1 }
