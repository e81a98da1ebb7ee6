package ledger

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestDeriveKey: the key derived for a purpose is the same for the same
// signer key file, differs between purposes and between signer keys
// (keys whose base64 holds '+' among them), and a file that is not an
// Ed25519 signer key gives an error, never a key.
func TestDeriveKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var paths []string
	for i := range 8 {
		sk, _, err := GenerateKey("trailguard/test")
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, write("k"+string(rune('0'+i)), sk))
	}
	seen := map[string]bool{}
	for _, p := range paths {
		a, err := DeriveKey(p, "report cache v1")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := DeriveKey(p, "report cache v1")
		c, _ := DeriveKey(p, "another purpose")
		if len(a) != 32 || !bytes.Equal(a, b) || bytes.Equal(a, c) || seen[string(a)] {
			t.Fatalf("%s: keys %x %x %x", p, a, b, c)
		}
		seen[string(a)] = true
	}
	_, vk, _ := GenerateKey("trailguard/test")
	for name, text := range map[string]string{
		"verifier key": vk,
		"empty":        "",
		"truncated":    "PRIVATE+KEY+trailguard/test+01234567+AQ==",
	} {
		if k, err := DeriveKey(write(name, text), "report cache v1"); err == nil {
			t.Errorf("%s: key %x", name, k)
		}
	}
	if _, err := DeriveKey(filepath.Join(dir, "missing"), "x"); err == nil {
		t.Error("missing file: no error")
	}
}
