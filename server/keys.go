package server

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/internal/regfile"
)

// maxCheckpointFile bounds the ledger's checkpoint file as read here: a
// signed checkpoint is at most 16 KiB (the ledger refuses larger ones).
const maxCheckpointFile = 64 << 10

// checkSignerKey refuses a signer key that is not the one the ledger's
// newest checkpoint was signed with, unless handover is that key: the
// ledger would sign on with a key nobody announced (trailguard verify
// with the data directory's verifier key then fails on every later
// checkpoint, and an auditor holding the old key cannot tell a rotation
// from a forgery). A ledger without a checkpoint takes any key.
//
// It compares key names and hashes on the checkpoint's signature lines;
// Open checks the signatures themselves.
func checkSignerKey(ledgerDir, signerPath string, signer, handover note.Signer) error {
	// A regular file of at most maxCheckpointFile bytes (regfile): a FIFO
	// planted at the name would hang the start, a link to /dev/zero take
	// all the memory there is.
	b, err := regfile.Read(filepath.Join(ledgerDir, "checkpoint"), maxCheckpointFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: read the ledger's checkpoint: %w", err)
	}
	signedBy := checkpointKeys(b)
	if len(signedBy) == 0 {
		return nil // unreadable: ledger.Open says what is wrong with it
	}
	has := func(s note.Signer) bool {
		for _, k := range signedBy {
			if k == keyID(s.Name(), s.KeyHash()) {
				return true
			}
		}
		return false
	}
	size := ""
	if lines := strings.SplitN(string(b), "\n", 3); len(lines) == 3 {
		size = " (tree size " + lines[1] + ")"
	}
	switch {
	case handover == nil && !has(signer):
		return fmt.Errorf("server: the ledger's newest checkpoint%s is signed by %s, not by the signer key %s (%s): "+
			"to rotate the key, start once with --handover-key FILE, FILE the key the ledger was signed with, so that it co-signs "+
			"the new key's first checkpoint (verify then accepts the change; give auditors the new signer .pub besides the old); "+
			"otherwise set signer_key back to the ledger's key",
			size, strings.Join(signedBy, ", "), signerPath, keyID(signer.Name(), signer.KeyHash()))
	case handover != nil && !has(handover) && !has(signer):
		return fmt.Errorf("server: --handover-key %s is not the key the ledger's newest checkpoint%s is signed with (%s): give the key that signed it",
			keyID(handover.Name(), handover.KeyHash()), size, strings.Join(signedBy, ", "))
	}
	return nil
}

// checkpointKeys lists "name+hash" of each signature line of a signed
// note (— <name> <base64(4-byte key hash ‖ signature)>).
func checkpointKeys(signed []byte) []string {
	_, sigs, ok := bytes.Cut(signed, []byte("\n\n"))
	if !ok {
		return nil
	}
	var out []string
	for line := range strings.SplitSeq(string(sigs), "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "— "))
		if !strings.HasPrefix(line, "— ") || len(f) != 2 {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(f[1])
		if err != nil || len(raw) < 4 {
			continue
		}
		out = append(out, keyID(f[0], binary.BigEndian.Uint32(raw)))
	}
	return out
}

func keyID(name string, hash uint32) string { return fmt.Sprintf("%s+%08x", name, hash) }
