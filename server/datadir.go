package server

import (
	"fmt"
	"log/slog"
	"os"
)

// secureDataDir makes sure no one but the collector's user (and, if the
// operator chose it, a group that may only read: 0750, for backups, as
// PostgreSQL accepts) can get at the data directory. The ledger and the
// index hold every request's user, address and path, and the ledger's
// files are created 0644 (its exported tiles are public by design), so the
// directory's mode is what keeps them private. A directory created
// beforehand with the usual umask (0755, from mkdir) left the trail
// readable by every local user. Such a directory is set to 0700, with a
// warning that says so; one whose mode cannot be changed (not ours, a
// read-only mount) is refused, as PostgreSQL refuses it, with what to run.
func secureDataDir(dir string, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("server: data directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("server: data directory %s is not a directory", dir)
	}
	perm := fi.Mode().Perm()
	if perm&0o027 == 0 {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("server: data directory %s has mode %#o: other users could read the audit trail or group members change it, "+
			"and setting it to 0700 failed (%w); run chmod 0700 %s (or 0750 to let a backup group read it)", dir, perm, err, dir)
	}
	log.Warn("data directory was open to other users; set to 0700 (0750 is kept, for a backup group)",
		"dir", dir, "was", fmt.Sprintf("%#o", perm))
	return nil
}
