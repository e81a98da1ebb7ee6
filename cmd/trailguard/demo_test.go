package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoUsedData: `demo --data DIR` over an earlier run's directory
// stops at once with one plain message (an earlier run's blocks would be
// in force and its story told again), and DIR is left as it was.
func TestDemoUsedData(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "report-pci-dss.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut strings.Builder
	code := runDemo([]string{"--data", dir, "--duration", "1ms"}, &out, &errOut)
	want := "trailguard demo: " + dir + " is not empty (an earlier run?): give a new or empty directory, or remove it\n"
	if code != 1 || errOut.String() != want {
		t.Fatalf("exit %d, stderr %q, want %q", code, errOut.String(), want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("the directory changed: %v", ents)
	}
	if code := runDemo([]string{"extra"}, &out, &errOut); code != 2 {
		t.Fatalf("an argument: exit %d", code)
	}
}
