package ledger

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a C2SP tlog-checkpoint: the body of a signed note stating
// that the log named Origin had Size records with Merkle root Root.
//
// trailguard adds one extension line, "time <RFC 3339>", the moment the
// checkpoint was made. Checkpoints are made on a fixed cadence even while
// the log is idle, so a period without checkpoints is visible to verify.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
	Time   time.Time
	// Extra holds extension lines other than time, in order.
	Extra []string
}

const timeExt = "time "

// maxCheckpointSize bounds what ParseCheckpoint and OpenCheckpoint accept.
const maxCheckpointSize = 16 << 10

// Marshal returns the note body (unsigned) of c.
func (c Checkpoint) Marshal() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
	if !c.Time.IsZero() {
		fmt.Fprintf(&b, "%s%s\n", timeExt, c.Time.UTC().Format(time.RFC3339Nano))
	}
	for _, e := range c.Extra {
		b.WriteString(e)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// ParseCheckpoint parses a checkpoint note body (the text above the blank
// line of a signed note). It does not check signatures; see OpenCheckpoint.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) > maxCheckpointSize {
		return Checkpoint{}, errors.New("ledger: checkpoint too large")
	}
	// The signed-note rules: valid UTF-8, no control characters but newline.
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRune(text[i:])
		if r < 0x20 && r != '\n' || r == utf8.RuneError && size == 1 {
			return Checkpoint{}, errors.New("ledger: checkpoint is not valid UTF-8 text")
		}
		i += size
	}
	s := string(text)
	if !strings.HasSuffix(s, "\n") {
		return Checkpoint{}, errors.New("ledger: checkpoint does not end in newline")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, errors.New("ledger: checkpoint has fewer than 3 lines")
	}
	var c Checkpoint
	c.Origin = lines[0]
	if c.Origin == "" {
		return Checkpoint{}, errors.New("ledger: checkpoint has empty origin")
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || lines[1] != strconv.FormatUint(n, 10) {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint size %q is not a decimal number", lines[1])
	}
	c.Size = n
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != HashSize {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint root %q is not a base64 SHA-256 hash", lines[2])
	}
	copy(c.Root[:], h)
	for _, l := range lines[3:] {
		if l == "" {
			return Checkpoint{}, errors.New("ledger: checkpoint has an empty extension line")
		}
		if ts, ok := strings.CutPrefix(l, timeExt); ok && c.Time.IsZero() {
			t, err := time.Parse(time.RFC3339Nano, ts)
			if err != nil {
				return Checkpoint{}, fmt.Errorf("ledger: checkpoint time: %w", err)
			}
			// Marshal writes the time in UTC, where RFC 3339 has four
			// digits for the year: 0000-01-01T00:00:00+01:00 would come
			// back as -0001-12-31T23:00:00Z, which does not parse.
			if y := t.UTC().Year(); y < 0 || y > 9999 {
				return Checkpoint{}, fmt.Errorf("ledger: checkpoint time %q is in year %d in UTC, outside RFC 3339's 0000 to 9999", ts, y)
			}
			c.Time = t
			continue
		}
		c.Extra = append(c.Extra, l)
	}
	return c, nil
}

// SignCheckpoint returns c as a signed note, signed by every signer.
func SignCheckpoint(c Checkpoint, signers ...note.Signer) ([]byte, error) {
	msg, err := note.Sign(&note.Note{Text: string(c.Marshal())}, signers...)
	if err != nil {
		return nil, fmt.Errorf("ledger: sign checkpoint: %w", err)
	}
	return msg, nil
}

// OpenCheckpoint verifies a signed checkpoint against the known verifier
// keys and parses it. Errors from note.Open (*note.UnverifiedNoteError for
// a checkpoint signed by no known key, *note.InvalidSignatureError for a
// forged or altered one) are returned wrapped, for errors.As.
func OpenCheckpoint(signed []byte, known note.Verifiers) (Checkpoint, *note.Note, error) {
	if len(signed) > maxCheckpointSize {
		return Checkpoint{}, nil, errors.New("ledger: signed checkpoint too large")
	}
	n, err := note.Open(signed, known)
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("ledger: checkpoint signature: %w", err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, n, err
	}
	return c, n, nil
}

// parseUnverified returns the body of a signed note without checking
// signatures (for reporting what a bad checkpoint claims).
func parseUnverified(signed []byte) (Checkpoint, error) {
	i := strings.Index(string(signed), "\n\n")
	if i < 0 {
		return Checkpoint{}, errors.New("ledger: not a signed note")
	}
	return ParseCheckpoint(signed[:i+1])
}
