package testenv

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindPrefersToolsDir(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRAILGUARD_TOOLS", dir)
	if got := Find("sh"); got != p {
		t.Fatalf("Find(sh) = %q, want the tools dir's %q", got, p)
	}
	if got := Find("no-such-program-trailguard"); got != "" {
		t.Fatalf("Find of a missing program = %q, want empty", got)
	}
}
