package ledger

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/internal/regfile"
)

// maxKeyFile bounds a key file read whole. A signer key is one line of
// ~100 bytes and a verifier key file one line per key ever rotated to;
// whoever can write a data directory (or hands an auditor a copy of it)
// can plant a FIFO at keys/signer.pub, where verify, prove and report look
// by default, or a link to /dev/zero or a sparse file of terabytes: read
// as regular files of at most this many bytes (regfile), they are refused
// at once rather than hanging the tool or taking all its memory.
const maxKeyFile = 1 << 20

// readKeyFile reads a key file with regfile (maxKeyFile).
func readKeyFile(path string) ([]byte, error) {
	b, err := regfile.Read(path, maxKeyFile)
	if errors.Is(err, regfile.ErrTooLarge) {
		return nil, fmt.Errorf("%s: larger than any key file (%d bytes at most)", path, maxKeyFile)
	}
	return b, err
}

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
	_, s, err := readSignerKey(path)
	return s, err
}

// readSignerKey reads and parses a signer key file: its text and the
// signer it makes (so that DeriveKey refuses what LoadSigner refuses).
func readSignerKey(path string) (string, note.Signer, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("ledger: signer key: %w", err)
	}
	text := strings.TrimSpace(string(b))
	s, err := note.NewSigner(text)
	if err != nil {
		return "", nil, fmt.Errorf("ledger: signer key %s: %w", path, err)
	}
	return text, s, nil
}

// LoadVerifiers reads verifier keys: each file holds one or more keys, one
// per line (blank lines and lines starting with # are ignored). Keep the
// keys of every rotation in the list: old keys still verify old checkpoints.
func LoadVerifiers(paths ...string) ([]note.Verifier, error) {
	var out []note.Verifier
	for _, p := range paths {
		b, err := readKeyFile(p)
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

// DeriveKey returns a 32-byte secret for purpose, derived with HKDF-SHA256
// from the Ed25519 seed in the signer key file at path. Whoever holds the
// collector's signing key can compute it, and nobody else: it
// authenticates files the collector keeps for itself (the report cache)
// without signing them, so that nothing it protects can ever be presented
// as a signature by the checkpoint key. Each purpose gets its own key.
func DeriveKey(path, purpose string) ([]byte, error) {
	// "PRIVATE+KEY+name+hash+base64(algorithm byte | seed)" (note.NewSigner
	// checks the rest; parse it first so that a malformed file is refused
	// with its own error).
	text, _, err := readSignerKey(path)
	if err != nil {
		return nil, err
	}
	// (The key data is base64, which may hold '+' itself; a name may not.)
	parts := strings.SplitN(text, "+", 5)
	if len(parts) != 5 {
		return nil, fmt.Errorf("ledger: signer key %s: malformed", path)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, fmt.Errorf("ledger: signer key %s: not an Ed25519 key", path)
	}
	key, err := hkdf.Key(sha256.New, raw[1:], nil, "trailguard "+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("ledger: derive %s key: %w", purpose, err)
	}
	return key, nil
}
