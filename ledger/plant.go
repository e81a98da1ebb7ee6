package ledger

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Files the ledger writes in its directory are never opened through
// whatever is at their name: someone with write access to the directory
// (and not to the files the collector's user can write elsewhere) could
// plant a symbolic link there, and an open that follows it would truncate
// or overwrite the link's target with the collector's privileges. Files
// the ledger makes anew are created exclusively (createFresh); files it
// writes again are opened without following a link at the name
// (oNoFollow). A hard link is not guarded against here: with
// fs.protected_hardlinks (the default of current Linux distributions) one
// can only be made to a file its maker may already write.

// errPlanted: something was put at the name of a file the ledger was
// creating, again, after the ledger had removed what was there.
var errPlanted = errors.New("planted at the name again while the ledger created it")

// createFresh creates the file at path, exclusively and without
// following a symbolic link at the name; flag is the access mode
// (os.O_WRONLY or os.O_RDWR) with any other flags (such as os.O_APPEND).
// The ledger removes its leftover temporary files when it
// opens, so whatever is at the name now was put there since: it is removed
// (the link itself, never its target) and the file created anew; if
// something is there again by then, createFresh fails with the path.
func createFresh(path string, flag int) (*os.File, error) {
	flags := os.O_CREATE | os.O_EXCL | oNoFollow | flag
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("ledger: remove %s found at a name the ledger creates: %w", path, rerr)
		}
		f, err = os.OpenFile(path, flags, 0o644)
		if errors.Is(err, fs.ErrExist) {
			err = fmt.Errorf("%w: %w", errPlanted, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ledger: create %s: %w", path, err)
	}
	return f, nil
}

// writeFresh writes data to a new file at path (createFresh), synced if
// sync is set.
func writeFresh(path string, data []byte, sync bool) error {
	f, err := createFresh(path, os.O_WRONLY)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("ledger: write %s: %w", path, err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("ledger: sync %s: %w", path, err)
		}
	}
	return f.Close()
}

// truncateNoFollow cuts the file at path to size, failing on a symbolic
// link at the name (os.Truncate would cut its target).
func truncateNoFollow(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|oNoFollow, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
