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

func TestSeedFromEnvironment(t *testing.T) {
	t.Setenv("TRAILGUARD_SEED", "12345")
	if got := Seed(t); got != 12345 {
		t.Fatalf("Seed() = %d, want TRAILGUARD_SEED's 12345", got)
	}
	t.Setenv("TRAILGUARD_SEED", "")
	if a, b := Seed(t), Seed(t); a == b {
		t.Fatalf("two fresh seeds are both %d", a)
	}
}
