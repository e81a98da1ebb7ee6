package report

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/ledger"
)

// Signed is the JSON file a report is delivered in: the report's bytes
// exactly as hashed, their SHA-256 and a C2SP signed note over it.
type Signed struct {
	SHA256    string          `json:"sha256"`
	Signature string          `json:"signature"`
	Report    json.RawMessage `json:"report"`
}

// noteHeader starts a report's signed note. It cannot be read as a
// checkpoint (whose second line is a tree size), so a report signature
// can never pass for a checkpoint signed by the same key.
const noteHeader = "trailguard report v1\n"

// Marshal encodes r as the bytes that are hashed and signed.
func Marshal(r *Report) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	return b, nil
}

// Sum is the hex SHA-256 of a report's JSON bytes: the HTML and PDF forms
// print it, so that the three forms tie together.
func Sum(reportJSON []byte) string {
	h := sha256.Sum256(reportJSON)
	return hex.EncodeToString(h[:])
}

func noteText(r *Report, sum string) string {
	return fmt.Sprintf("%ssha256 %s\ncheckpoint %s %d %s\nstandard %s\nperiod %s %s\n", noteHeader, sum,
		strings.ReplaceAll(r.Checkpoint.Origin, " ", "_"), r.Checkpoint.TreeSize, r.Checkpoint.RootHash, r.Standard,
		r.From.Format(time.RFC3339Nano), r.To.Format(time.RFC3339Nano))
}

// Sign encodes r and signs it with signer (the collector's checkpoint
// key). It returns the signed JSON file and the report's hash.
func Sign(r *Report, signer note.Signer) ([]byte, string, error) {
	body, err := Marshal(r)
	if err != nil {
		return nil, "", err
	}
	sum := Sum(body)
	sig, err := note.Sign(&note.Note{Text: noteText(r, sum)}, signer)
	if err != nil {
		return nil, "", fmt.Errorf("report: sign: %w", err)
	}
	var b bytes.Buffer
	b.WriteString(`{"sha256":`)
	q, _ := json.Marshal(sum)
	b.Write(q)
	b.WriteString(`,"signature":`)
	q, _ = json.Marshal(string(sig))
	b.Write(q)
	b.WriteString(`,"report":`)
	b.Write(body)
	b.WriteString("}\n")
	return b.Bytes(), sum, nil
}

// Errors of Open.
var (
	ErrNotReport  = errors.New("report: not a signed trailguard report")
	ErrTampered   = errors.New("report: the report's bytes do not match its signed hash")
	ErrSignature  = errors.New("report: signature does not verify with the given key")
	ErrMismatched = errors.New("report: the signed note does not describe this report")
)

// Open checks a signed report file: its SHA-256 over the report's bytes,
// the signature with the known keys, and that the signed note names this
// report's hash, checkpoint, standard and period. It returns the report.
func Open(file []byte, known []note.Verifier) (*Report, string, error) {
	var s Signed
	if err := json.Unmarshal(file, &s); err != nil || len(s.Report) == 0 || s.Signature == "" {
		return nil, "", ErrNotReport
	}
	sum := Sum(s.Report)
	if sum != s.SHA256 {
		return nil, sum, fmt.Errorf("%w (file says %s, the bytes hash to %s)", ErrTampered, s.SHA256, sum)
	}
	n, err := note.Open([]byte(s.Signature), note.VerifierList(known...))
	if err != nil {
		return nil, sum, fmt.Errorf("%w: %v", ErrSignature, err)
	}
	var r Report
	dec := json.NewDecoder(bytes.NewReader(s.Report))
	if err := dec.Decode(&r); err != nil || r.Format != FormatVersion || r.Figures == nil {
		return nil, sum, fmt.Errorf("%w: unreadable report (%v)", ErrNotReport, err)
	}
	if n.Text != noteText(&r, sum) {
		return nil, sum, ErrMismatched
	}
	return &r, sum, nil
}

// Difference is a figure of a report that the ledger does not give.
type Difference struct {
	Path   string `json:"path"`
	Report string `json:"report"`
	Ledger string `json:"ledger"`
}

// String puts the report's figure beside the ledger's, as verify-report
// prints it: a reader sees what the report claimed against what is true.
func (d Difference) String() string {
	return fmt.Sprintf("%s: the report says %s, the ledger gives %s", d.Path, d.Report, d.Ledger)
}

// Recheck is what Recompute found.
type Recheck struct {
	// Checkpoint: the report's checkpoint is in the ledger's history, its
	// signature verifies, and its tree is a prefix of the ledger's newest.
	CheckpointOK bool
	Problem      string
	// Differences between the report and the same report computed again.
	Differences []Difference
}

// Recompute computes r again over the ledger l, with the report's own
// period, parameters and stated facts, and compares every value.
func Recompute(ctx context.Context, l *ledger.Ledger, r *Report, known []note.Verifier) (*Recheck, error) {
	rc := &Recheck{}
	// The checkpoint first: signature, and a prefix of the ledger's tree.
	cp, _, err := ledger.OpenCheckpoint([]byte(r.Checkpoint.Signed), note.VerifierList(known...))
	switch {
	case r.Checkpoint.TreeSize == 0:
		rc.Problem = "the report names no checkpoint"
	case err != nil:
		rc.Problem = "the report's checkpoint does not verify: " + err.Error()
	case cp.Size != r.Checkpoint.TreeSize:
		rc.Problem = "the report's checkpoint is not the one it names"
	default:
		_, newest := l.LatestCheckpoint()
		if err := consistent(l, cp.Size, cp.Root, newest); err != nil {
			rc.Problem = fmt.Sprintf("the report's checkpoint (size %d) is not part of this ledger: %v", cp.Size, err)
		} else {
			rc.CheckpointOK = true
		}
	}
	if pr := l.Pruned(); pr > r.Range.First+r.Range.Pruned && pr > r.Range.First {
		return rc, fmt.Errorf("report: records of the period were deleted by retention since the report was made (the ledger starts at %d, the period at %d): its figures cannot be computed again", pr, r.Range.First+r.Range.Pruned)
	}
	again, err := Compute(ctx, l, Options{Standard: r.Standard, From: r.From, To: r.To, Params: r.Params, State: r.State,
		Now: r.Generated, Generator: r.Generator, keepState: true})
	if err != nil {
		return rc, err
	}
	a, err1 := toAny(r)
	b, err2 := toAny(again)
	if err := errors.Join(err1, err2); err != nil {
		return rc, err
	}
	diff("", a, b, &rc.Differences)
	return rc, nil
}

func toAny(r *Report) (any, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return v, dec.Decode(&v)
}

// diff lists the paths where a and b differ; array elements with an "id"
// are named by it.
func diff(path string, a, b any, out *[]Difference) {
	show := func(v any) string {
		if v == nil {
			return "nothing"
		}
		s, _ := json.Marshal(v)
		if len(s) > 120 {
			s = append(s[:117], "..."...)
		}
		return string(s)
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok {
			*out = append(*out, Difference{path, show(a), show(b)})
			return
		}
		keys := make([]string, 0, len(x)+len(y))
		for k := range x {
			keys = append(keys, k)
		}
		for k := range y {
			if _, ok := x[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			diff(p, x[k], y[k], out)
		}
	case []any:
		y, ok := b.([]any)
		if !ok {
			*out = append(*out, Difference{path, show(a), show(b)})
			return
		}
		for i := range max(len(x), len(y)) {
			var ea, eb any
			if i < len(x) {
				ea = x[i]
			}
			if i < len(y) {
				eb = y[i]
			}
			name := fmt.Sprintf("%s[%d]", path, i)
			if m, ok := ea.(map[string]any); ok {
				if id, ok := m["id"].(string); ok && id != "" {
					name = fmt.Sprintf("%s[%s]", path, id)
				}
			}
			diff(name, ea, eb, out)
		}
	default:
		if show(a) != show(b) {
			*out = append(*out, Difference{path, show(a), show(b)})
		}
	}
}

// Unverified reads the report in a signed file without checking anything,
// so that a file whose signature fails can still be compared with the
// ledger to name what was changed.
func Unverified(file []byte) (*Report, error) {
	var s Signed
	if err := json.Unmarshal(file, &s); err != nil || len(s.Report) == 0 {
		return nil, ErrNotReport
	}
	var r Report
	if err := json.Unmarshal(s.Report, &r); err != nil || r.Figures == nil {
		return nil, ErrNotReport
	}
	return &r, nil
}
