package server

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/hostilefile"
)

// TestSettingsFileHostile: settings.json is read for every report; a FIFO,
// a link to /dev/zero or a sparse file of a tebibyte planted in its place
// is refused at once (the report then states its configuration and says
// why), where before the FIFO hung the report and the others were read
// whole.
func TestSettingsFileHostile(t *testing.T) {
	for name, plant := range hostilefile.Plants {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := plant(filepath.Join(dir, SettingsFile)); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, _, _, err := loadSettings(dir, nil)
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "not a regular file of at most") {
					t.Fatalf("loadSettings: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("loadSettings did not return within a minute")
			}
		})
	}
}
