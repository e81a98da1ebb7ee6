package regfile

import (
	"bytes"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pattern returns n bytes whose i-th is i%251, so that a prefix read at
// any moment of a file's growth is recognisable.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// readers are the two ways to read a whole file, by name.
var readers = []struct {
	name string
	read func(string, int64) ([]byte, error)
	head bool // a file over the bound gives its first bytes
}{{"Read", Read, false}, {"ReadHead", ReadHead, true}}

// readWithin runs read and fails the test if it does not return within a
// minute: a FIFO must not hang it.
func readWithin(t *testing.T, read func(string, int64) ([]byte, error), path string, max int64) ([]byte, error) {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	c := make(chan res, 1)
	go func() {
		b, err := read(path, max)
		c <- res{b, err}
	}()
	select {
	case r := <-c:
		return r.b, r.err
	case <-time.After(time.Minute):
		t.Fatalf("reading %s did not return within a minute", path)
		return nil, nil
	}
}

// TestRead plants each kind of file a hostile directory can hold at a
// path and reads it with a bound: regular files (and links to them) are
// read whole up to the bound, anything else is refused at once with an
// error naming the path and what is there. A file over the bound costs
// Read nothing and ReadHead no more than the bound, even a sparse one
// claiming a tebibyte.
func TestRead(t *testing.T) {
	const max = 1 << 16
	data := pattern(1000)
	write := func(b []byte) func(*testing.T, string) {
		return func(t *testing.T, p string) {
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	link := func(to string) func(*testing.T, string) {
		return func(t *testing.T, p string) {
			if !filepath.IsAbs(to) {
				to = filepath.Join(filepath.Dir(p), to)
			}
			if err := os.Symlink(to, p); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name  string
		plant func(*testing.T, string)
		want  []byte // what ReadHead returns, with or without an error (Read: nil if over the bound)
		err   error  // what the error is (errors.Is); nil: none
		says  string // what the error says besides the path
	}{
		{"regular", write(data), data, nil, ""},
		{"empty", write(nil), []byte{}, nil, ""},
		{"exactly the bound", write(pattern(max)), pattern(max), nil, ""},
		{"one byte over the bound", write(pattern(max + 1)), pattern(max), ErrTooLarge, "65537 bytes, larger than the bound (65536)"},
		{"sparse TiB", func(t *testing.T, p string) {
			write(nil)(t, p)
			if err := os.Truncate(p, 1<<40); err != nil {
				t.Fatal(err)
			}
		}, make([]byte, max), ErrTooLarge, "1099511627776 bytes"},
		{"link to a regular file", func(t *testing.T, p string) {
			write(data)(t, p+".target")
			link(filepath.Base(p)+".target")(t, p)
		}, data, nil, ""},
		{"link to /dev/zero", link("/dev/zero"), nil, ErrNotRegular, "not a regular file: a device"},
		{"dangling link", link("nowhere"), nil, fs.ErrNotExist, ""},
		{"missing", func(*testing.T, string) {}, nil, fs.ErrNotExist, ""},
		{"FIFO", func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil, ErrNotRegular, "not a regular file: a FIFO"},
		{"link to a FIFO", func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p+".fifo", 0o600); err != nil {
				t.Fatal(err)
			}
			link(filepath.Base(p)+".fifo")(t, p)
		}, nil, ErrNotRegular, "not a regular file: a FIFO"},
		{"directory", func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
		}, nil, ErrNotRegular, "not a regular file: a directory"},
		// Linux refuses to open a socket (ENXIO) before its mode is seen.
		{"socket", func(t *testing.T, p string) {
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, nil, syscall.ENXIO, ""},
	}
	for _, r := range readers {
		for _, tc := range cases {
			t.Run(r.name+"/"+tc.name, func(t *testing.T) {
				p := filepath.Join(t.TempDir(), "f")
				tc.plant(t, p)
				want, alloc := tc.want, uint64(4*max)
				if errors.Is(tc.err, ErrTooLarge) && !r.head {
					want, alloc = nil, max/4
				}
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				b, err := readWithin(t, r.read, p, max)
				runtime.ReadMemStats(&after)
				if n := after.TotalAlloc - before.TotalAlloc; n > alloc {
					t.Errorf("allocated %d bytes, want at most %d", n, alloc)
				}
				if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("%v, want %v", err, tc.err)
				}
				if err != nil && (!strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.says)) {
					t.Errorf("error %q does not name %s and say %q", err, p, tc.says)
				}
				if !bytes.Equal(b, want) || (b == nil) != (want == nil) {
					t.Errorf("gave %d bytes (nil %v), want %d (nil %v)", len(b), b == nil, len(want), want == nil)
				}
				if big, ok := errors.AsType[*TooLargeError](err); ok && (big.Path != p || big.Max != max || big.Size <= max) {
					t.Errorf("TooLargeError %+v for %s, bound %d", big, p, max)
				}
			})
		}
	}
}

// TestReadGrowingFile reads a file while another goroutine appends to it,
// with Read and ReadHead in turn: every read is a prefix of what is
// written, never longer than the bound, and past the bound it is
// ErrTooLarge with nothing (Read) or the first max bytes (ReadHead).
func TestReadGrowingFile(t *testing.T) {
	const max = 1 << 20
	const total = 4 * max
	p := filepath.Join(t.TempDir(), "growing")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := pattern(total)
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		defer close(done)
		for off := 0; off < total; off += 4096 {
			if _, err := f.Write(want[off : off+4096]); err != nil {
				t.Error(err)
				return
			}
		}
	})
	reads, over := 0, 0
	for finished := false; !finished; reads++ {
		select {
		case <-done:
			finished = true // one more read of the whole file
		default:
		}
		r := readers[reads%len(readers)]
		b, err := r.read(p, max)
		switch {
		case err == nil && len(b) <= max:
		case errors.Is(err, ErrTooLarge) && (r.head && len(b) == max || !r.head && b == nil):
			over++
		default:
			t.Fatalf("read %d (%s): %d bytes, %v (bound %d)", reads, r.name, len(b), err, max)
		}
		if !bytes.Equal(b, want[:len(b)]) {
			t.Fatalf("read %d: %d bytes that are not what was written", reads, len(b))
		}
	}
	wg.Wait()
	if over == 0 {
		t.Fatal("no read saw the file past its bound")
	}
	t.Logf("%d reads, %d past the bound", reads, over)
}
