//go:build !linux

package ledger

import "os"

// No AIO here: direct writes are pwrites (aio_linux.go).
type aioFile struct{}

func newAIO() *aioFile { return nil }

func (*aioFile) close() {}

func (*aioFile) pwrite(*os.File, []byte, int64) (bool, error) { return false, nil }

type aioFlusher struct{}

func newFlusher(string) *aioFlusher { return nil }

func (*aioFlusher) close() {}

func (*aioFlusher) submit(*os.File) (uint64, bool) { return 0, false }

func (*aioFlusher) wait(uint64) error { return nil }
