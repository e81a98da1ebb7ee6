package ledger

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Never sign what was not vouched for. A record is vouched for when a
// signed checkpoint covers it, or when it is part of the tail a crash can
// leave: the writer never has more than its bound of records on disk beyond
// its newest durable checkpoint, and states that bound in every checkpoint
// it signs (the "cadence" line), so verify and the next Open learn it from
// signed data, not from options an attacker could choose. Anything else
// (records after a clean shutdown, a tail longer than the bound, a ledger
// whose checkpoints are gone) is refused by Open unless the operator adopts
// it explicitly, which the adopting checkpoint records ("adopt" line) and
// verify reports for ever after.

// cadenceExt starts the extension line stating the writer's checkpoint
// cadence and bound: "cadence every=16384 interval=1s unsigned-max=32768".
const cadenceExt = "cadence "

// adoptExt starts the extension line of a checkpoint that signed records
// no earlier checkpoint vouched for: "adopt <from> <to> <reason>".
const adoptExt = "adopt "

// Reasons for an adoption (Adoption.Reason).
const (
	// AdoptNoCheckpoint: records were found but no signed checkpoint.
	AdoptNoCheckpoint = "no-checkpoint"
	// AdoptAfterShutdown: records follow a clean shutdown's checkpoint.
	AdoptAfterShutdown = "after-shutdown"
	// AdoptOverBound: more unsigned records than a crash can leave.
	AdoptOverBound = "over-bound"
)

// legacyBound is the unsigned bound assumed for checkpoints written before
// the cadence line existed: twice the default CheckpointEvery.
const legacyBound = 2 * 16384

// Adoption describes records that Open signed although no earlier
// checkpoint vouched for them, because the operator asked for it
// (Options.AdoptUnsigned). The adopting checkpoint carries it as an
// "adopt" line and verify reports it (NoticeAdopted).
type Adoption struct {
	// From and To delimit the adopted records [From, To).
	From uint64 `json:"from"`
	To   uint64 `json:"to"`
	// Reason is AdoptNoCheckpoint, AdoptAfterShutdown or AdoptOverBound.
	Reason string `json:"reason"`
}

func (a Adoption) ext() string {
	return fmt.Sprintf("%s%d %d %s", adoptExt, a.From, a.To, a.Reason)
}

// String says which records were adopted and why in words, for verify's
// notices: an auditor reads that the operator vouched for them, not a code.
func (a Adoption) String() string {
	what := map[string]string{
		AdoptNoCheckpoint:  "no signed checkpoint existed",
		AdoptAfterShutdown: "they follow a clean shutdown's checkpoint",
		AdoptOverBound:     "more records than a crash can leave were unsigned",
	}[a.Reason]
	if what == "" {
		what = a.Reason
	}
	return fmt.Sprintf("records [%d, %d) adopted unsigned by operator request (%s)", a.From, a.To, what)
}

// cadence is what a checkpoint's cadence line states.
type cadence struct {
	every       uint64
	interval    time.Duration
	unsignedMax uint64
	stated      bool // false for checkpoints without the line (legacy bound)
}

func (c cadence) ext() string {
	return fmt.Sprintf("%severy=%d interval=%s unsigned-max=%d", cadenceExt, c.every, c.interval, c.unsignedMax)
}

// cadenceOf returns the cadence stated in c, or the legacy bound.
func cadenceOf(c Checkpoint) cadence {
	for _, e := range c.Extra {
		rest, ok := strings.CutPrefix(e, cadenceExt)
		if !ok {
			continue
		}
		var cd cadence
		for f := range strings.FieldsSeq(rest) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "every":
				cd.every, _ = strconv.ParseUint(v, 10, 64)
			case "interval":
				cd.interval, _ = time.ParseDuration(v)
			case "unsigned-max":
				cd.unsignedMax, _ = strconv.ParseUint(v, 10, 64)
			}
		}
		if cd.unsignedMax == 0 && cd.every > 0 {
			cd.unsignedMax = 2 * cd.every
		}
		if cd.unsignedMax > 0 {
			cd.stated = true
			return cd
		}
	}
	return cadence{every: 16384, interval: time.Second, unsignedMax: legacyBound}
}

// adoptionsOf returns the adoptions a checkpoint records.
func adoptionsOf(c Checkpoint) []Adoption {
	var out []Adoption
	for _, e := range c.Extra {
		rest, ok := strings.CutPrefix(e, adoptExt)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 3 {
			continue
		}
		from, err1 := strconv.ParseUint(f[0], 10, 64)
		to, err2 := strconv.ParseUint(f[1], 10, 64)
		if err1 != nil || err2 != nil || to < from {
			continue
		}
		out = append(out, Adoption{From: from, To: to, Reason: f[2]})
	}
	return out
}

// adopts reports whether c records the adoption of every record in [from, to).
func adopts(c Checkpoint, from, to uint64) bool {
	for _, a := range adoptionsOf(c) {
		if a.From <= from && a.To >= to {
			return true
		}
	}
	return false
}

func isShutdown(c Checkpoint) bool { return slices.Contains(c.Extra, shutdownExt) }

// ErrUnsignedRecords is returned (wrapped) by Open when the ledger holds
// records that no signed checkpoint vouches for beyond what a crash can
// leave; the message says what was found and how to proceed.
var ErrUnsignedRecords = errors.New("ledger: records not vouched for by a signed checkpoint")

// vouch checks, at Open, that the records found are covered by the last
// signed checkpoint or are a tail a crash can leave. It returns the
// adoption to record if the operator allowed it, or an error.
func (l *Ledger) vouch(size uint64, last Checkpoint, haveCP bool) (*Adoption, error) {
	var a Adoption
	var found string
	switch {
	case !haveCP && size > 0:
		a = Adoption{From: 0, To: size, Reason: AdoptNoCheckpoint}
		found = fmt.Sprintf("%d records (%s) but no signed checkpoint: %s/ and checkpoint are missing or empty", size, l.segFiles(0, size), cpDir)
	case haveCP && isShutdown(last) && size > last.Size:
		a = Adoption{From: last.Size, To: size, Reason: AdoptAfterShutdown}
		found = fmt.Sprintf("%d records [%d, %d) (%s) after the last checkpoint, which marks a clean shutdown (time %s): a clean shutdown leaves no unsigned record",
			size-last.Size, last.Size, size, l.segFiles(last.Size, size), last.Time.UTC().Format(time.RFC3339))
	case haveCP && size > last.Size && size-last.Size > cadenceOf(last).unsignedMax:
		a = Adoption{From: last.Size, To: size, Reason: AdoptOverBound}
		found = fmt.Sprintf("%d unsigned records [%d, %d) (%s) after the last checkpoint (time %s), more than the %d its writer could leave in a crash",
			size-last.Size, last.Size, size, l.segFiles(last.Size, size), last.Time.UTC().Format(time.RFC3339), cadenceOf(last).unsignedMax)
	default:
		return nil, nil
	}
	if l.opts.AdoptUnsigned == size {
		l.opts.Logger.Warn("ledger: adopting records no signed checkpoint vouched for, by operator request", "dir", l.dir, "from", a.From, "to", a.To, "reason", a.Reason)
		return &a, nil
	}
	hint := fmt.Sprintf("they cannot be told apart from forged records. Check them with `trailguard verify %s --key FILE` (and --witness), restore %s/ from a backup, or, to sign them as they are, start once with --adopt-unsigned=%d (Options.AdoptUnsigned = %d): the adoption is recorded in the next signed checkpoint and reported by verify for ever after", l.dir, cpDir, size, size)
	if l.opts.AdoptUnsigned != 0 {
		hint += fmt.Sprintf(" (AdoptUnsigned is %d, the ledger now holds %d records)", l.opts.AdoptUnsigned, size)
	}
	return nil, fmt.Errorf("%w: found %s; %s", ErrUnsignedRecords, found, hint)
}

// segFiles names the segment files holding records [from, to).
func (l *Ledger) segFiles(from, to uint64) string {
	var names []string
	for i, s := range l.segs {
		end := to
		if i+1 < len(l.segs) {
			end = l.segs[i+1].first
		}
		if s.first < to && end > from {
			names = append(names, filepath.Join("seg", filepath.Base(s.path)))
		}
	}
	switch len(names) {
	case 0:
		return "no segment file"
	case 1:
		return names[0]
	case 2:
		return names[0] + " and " + names[1]
	}
	return fmt.Sprintf("%d segment files, %s to %s", len(names), names[0], names[len(names)-1])
}
