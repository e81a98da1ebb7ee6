package sink

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

func (s *segment) has(k kind) bool {
	_, ok := s.kinds[k]
	return ok
}

// maintain deletes expired files, finishes what an interrupted compression
// left and, if compress is set, gzips rotated files past the hot period.
func (f *File) maintain(ctx context.Context, compress bool) error {
	f.maintMu.Lock()
	defer f.maintMu.Unlock()
	if f.opts.LegalHold {
		return nil
	}
	segs, err := scan(f.dir, f.name)
	if err != nil {
		return err
	}
	now := f.opts.Now()
	var errs []error
	removed := false
	remove := func(path string) bool {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("sink: delete %s: %w", path, err))
			return false
		}
		removed = true
		return true
	}
	var toCompress []*segment
	for _, s := range segs {
		if f.opts.Retention.Expired(s.t, now) {
			for _, p := range s.kinds {
				remove(p)
			}
			continue
		}
		if p, ok := s.kinds[kindTornTmp]; ok {
			remove(p)
		}
		plain, hasPlain := s.kinds[kindPlain]
		if tmp, ok := s.kinds[kindGzipTmp]; ok {
			if hasPlain {
				// The plain file is removed only after the .gz is
				// complete, so a .tmp next to it is an interrupted start.
				remove(tmp)
			} else {
				errs = append(errs, fmt.Errorf("sink: %s has no plain file beside it; left in place for an operator to inspect", tmp))
			}
		}
		if gz, ok := s.kinds[kindGzip]; ok && hasPlain {
			// A crash came between the rename of the .gz and the removal
			// of the plain file. The .gz was fsynced before the rename,
			// but a copy made with an older sink or by hand may not be:
			// trust it only if it decompresses to exactly the plain file.
			same, err := sameContent(plain, gz)
			switch {
			case err != nil:
				errs = append(errs, err)
				continue
			case same:
				if remove(plain) {
					hasPlain = false
				}
			default:
				errs = append(errs, fmt.Errorf("sink: %s does not match %s; replacing it", gz, plain))
				if !remove(gz) {
					continue
				}
			}
		}
		if compress && hasPlain && !now.Before(s.t.Add(f.opts.Retention.Hot)) {
			toCompress = append(toCompress, s)
		}
	}
	if removed {
		if err := syncDir(f.dir); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range toCompress {
		if err := f.compress(ctx, s.kinds[kindPlain], s.t); err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// compress replaces plain by plain.gz so that at every moment one complete
// copy exists under a name Files lists.
func (f *File) compress(ctx context.Context, plain string, t time.Time) (err error) {
	gz := plain + ".gz"
	tmp := gz + ".tmp"
	src, err := os.Open(plain)
	if err != nil {
		return fmt.Errorf("sink: compress %s: %w", plain, err)
	}
	defer src.Close()
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("sink: compress %s: %w", plain, err)
	}
	defer func() {
		if err != nil {
			out.Close()
			os.Remove(tmp)
		}
	}()
	zw := gzip.NewWriter(out)
	zw.Name = filepath.Base(plain)
	zw.ModTime = t
	buf := make([]byte, 256<<10)
	for {
		// Checked per chunk so that Close waits at most one chunk for a
		// compression of a 64 MiB file.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sink: compress %s: abandoned: %w", plain, err)
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := zw.Write(buf[:n]); err != nil {
				return fmt.Errorf("sink: compress %s: %w", plain, err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("sink: compress %s: %w", plain, rerr)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("sink: compress %s: %w", plain, err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sink: compress %s: fsync: %w", plain, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("sink: compress %s: %w", plain, err)
	}
	if err := os.Rename(tmp, gz); err != nil {
		return fmt.Errorf("sink: compress %s: %w", plain, err)
	}
	if err := syncDir(f.dir); err != nil {
		return err
	}
	if err := os.Remove(plain); err != nil {
		return fmt.Errorf("sink: compress %s: remove plain file: %w", plain, err)
	}
	return syncDir(f.dir)
}

// sameContent reports whether gzPath decompresses to exactly the content of
// plainPath. A corrupt gzip file is "not the same"; only a failure to read
// the plain file, which is what would be kept, is an error.
func sameContent(plainPath, gzPath string) (bool, error) {
	p, err := os.Open(plainPath)
	if err != nil {
		return false, fmt.Errorf("sink: verify %s: %w", gzPath, err)
	}
	defer p.Close()
	g, err := Open(gzPath)
	if err != nil {
		return false, nil
	}
	defer g.Close()
	bp := make([]byte, 64<<10)
	bg := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(p, bp)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return false, fmt.Errorf("sink: verify %s: %w", gzPath, err)
		}
		if _, gerr := io.ReadFull(g, bg[:n]); gerr != nil || !bytes.Equal(bp[:n], bg[:n]) {
			return false, nil
		}
		if err != nil { // plain file ended: the gzip stream must end too, checksum intact
			m, gerr := g.Read(bg[:1])
			return m == 0 && gerr == io.EOF, nil
		}
	}
}
