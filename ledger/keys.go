package ledger

import (
	"crypto/rand"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// GenerateKey returns a new Ed25519 signer key and its verifier key in the
// golang.org/x/mod/sumdb/note text formats ("PRIVATE+KEY+name+hash+..." and
// "name+hash+..."). name is the key name shown in signatures; by
// convention the log's origin.
func GenerateKey(name string) (signerKey, verifierKey string, err error) {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return "", "", fmt.Errorf("ledger: generate key %q: %w", name, err)
	}
	return skey, vkey, nil
}

// LoadSigner reads a signer key file written by GenerateKey (keygen).
func LoadSigner(path string) (note.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ledger: signer key: %w", err)
	}
	s, err := note.NewSigner(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("ledger: signer key %s: %w", path, err)
	}
	return s, nil
}

// LoadVerifiers reads verifier keys: each file holds one or more keys, one
// per line (blank lines and lines starting with # are ignored). Keep the
// keys of every rotation in the list: old keys still verify old checkpoints.
func LoadVerifiers(paths ...string) ([]note.Verifier, error) {
	var out []note.Verifier
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("ledger: verifier key: %w", err)
		}
		for line := range strings.Lines(string(b)) {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			v, err := note.NewVerifier(line)
			if err != nil {
				return nil, fmt.Errorf("ledger: verifier key in %s: %w", p, err)
			}
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ledger: no verifier keys in %v", paths)
	}
	return out, nil
}
