package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMissingKeySaysWhichKey: an auditor's --key that names no file is
// answered with what --key wants and where a collector keeps it; before,
// verify and verify-report said only "ledger: verifier key: open
// auditor.pub: no such file or directory".
func TestMissingKeySaysWhichKey(t *testing.T) {
	data := t.TempDir()
	if err := os.MkdirAll(filepath.Join(data, "ledger", "seg"), 0o700); err != nil { // a ledger, as far as the key is looked for
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "march.json")
	if err := os.WriteFile(report, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(t.TempDir(), "auditor.pub")
	for _, tt := range []struct {
		name string
		run  runner
		args []string
	}{
		{"verify", runVerify, []string{"--data", data, "--key", key}},
		{"verify-report", runVerifyReport, []string{report, "--key", key, "--data", data}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := call(tt.run, tt.args...)
			want := "open " + key + ": no such file or directory: --key FILE is the collector's public verifier key: the auditor's own copy of its DATA_DIR/keys/signer.pub"
			if code == 0 || !strings.Contains(errOut, want) {
				t.Errorf("exit %d, want an error saying %q:\n%s", code, want, errOut)
			}
		})
	}
}
