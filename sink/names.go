package sink

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// stampLayout is fixed width (always nine fractional digits) so that a plain
// byte-wise sort of file names is a sort by time.
const stampLayout = "20060102T150405.000000000Z"

// File name suffixes. The order of the checks in parseName matters: longer
// suffixes that end in a shorter one come first.
const (
	extActive  = ".jsonl"
	extGzip    = ".jsonl.gz"
	extGzipTmp = ".jsonl.gz.tmp"
	extTorn    = ".torn"
	extTornTmp = ".torn.tmp"
	extLock    = ".lock"
)

type kind int

const (
	kindPlain   kind = iota // rotated, uncompressed
	kindGzip                // rotated, compressed
	kindGzipTmp             // compression in progress or interrupted
	kindTorn                // a torn last line moved aside at open
	kindTornTmp             // moving a torn line aside was interrupted
)

func stamp(t time.Time) string { return t.UTC().Format(stampLayout) }

// parseName recognises the files of trail name in a directory. Anything else
// (other trails sharing the directory, an operator's notes) is not ours and
// is never touched.
func parseName(base, name string) (time.Time, kind, bool) {
	rest, ok := strings.CutPrefix(base, name+"-")
	if !ok || len(rest) < len(stampLayout) {
		return time.Time{}, 0, false
	}
	ts, ext := rest[:len(stampLayout)], rest[len(stampLayout):]
	var k kind
	switch ext {
	case extActive:
		k = kindPlain
	case extGzip:
		k = kindGzip
	case extGzipTmp:
		k = kindGzipTmp
	case extTorn:
		k = kindTorn
	case extTornTmp:
		k = kindTornTmp
	default:
		return time.Time{}, 0, false
	}
	t, err := time.Parse(stampLayout, ts)
	// Reject names that parse but do not round-trip (time.Parse is lenient
	// about some fields); they were not written by this package.
	if err != nil || stamp(t) != ts {
		return time.Time{}, 0, false
	}
	return t, k, true
}

func validName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("sink: invalid trail name %q", name)
	case strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("sink: trail name %q must not contain a path separator or NUL", name)
	}
	return nil
}

// segment is what a directory holds for one rotation time.
type segment struct {
	t     time.Time
	kinds map[kind]string // kind -> path
}

// scan groups the files of trail name in dir by rotation time, oldest first.
func scan(dir, name string) ([]*segment, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sink: list %s: %w", dir, err)
	}
	byTime := map[time.Time]*segment{}
	var segs []*segment
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		t, k, ok := parseName(e.Name(), name)
		if !ok {
			continue
		}
		s := byTime[t]
		if s == nil {
			s = &segment{t: t, kinds: map[kind]string{}}
			byTime[t] = s
			segs = append(segs, s)
		}
		s.kinds[k] = filepath.Join(dir, e.Name())
	}
	slices.SortFunc(segs, func(a, b *segment) int { return a.t.Compare(b.t) })
	return segs, nil
}

// Files lists the trail files of trail name in dir: rotated files oldest
// first, then the active file if it exists. Compressed and plain rotated files
// are both listed; if a crash left both forms of one file, only the plain one
// is, so no record is read twice. Read each with Open.
//
// A trail that is being written can rotate or compress between Files and
// Open; Open follows a rotated file into its compressed form, but a reader of
// a live trail should expect to see the active file change under it.
func Files(dir, name string) ([]string, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	segs, err := scan(dir, name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range segs {
		if p, ok := s.kinds[kindPlain]; ok {
			out = append(out, p)
		} else if p, ok := s.kinds[kindGzip]; ok {
			out = append(out, p)
		}
	}
	active := filepath.Join(dir, name+extActive)
	if st, err := os.Stat(active); err == nil && st.Mode().IsRegular() {
		out = append(out, active)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sink: stat %s: %w", active, err)
	}
	return out, nil
}

// Open opens a trail file for reading, decompressing it if it is gzipped.
// If path names a plain rotated file that has since been compressed, Open
// reads the compressed one instead.
func Open(path string) (io.ReadCloser, error) {
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(path, extActive) {
		if alt, err2 := os.Open(path + ".gz"); err2 == nil {
			fh, err, path = alt, nil, path+".gz"
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err) // a PathError already names the file
	}
	if !strings.HasSuffix(path, ".gz") {
		return fh, nil
	}
	zr, err := gzip.NewReader(fh)
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("sink: open %s: %w", path, err)
	}
	return &gzipFile{Reader: zr, fh: fh, path: path}, nil
}

type gzipFile struct {
	*gzip.Reader
	fh   *os.File
	path string
}

func (g *gzipFile) Read(p []byte) (int, error) {
	n, err := g.Reader.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("sink: read %s: %w", g.path, err)
	}
	return n, err
}

func (g *gzipFile) Close() error {
	return errors.Join(g.Reader.Close(), g.fh.Close())
}
