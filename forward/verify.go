package forward

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/event"
)

// appendLedgerFields appends rec with trailguard.ledger.origin and
// trailguard.ledger.index added as dotted keys (Elasticsearch, OpenSearch
// and VictoriaLogs all read them as nested fields). A record that is not a
// JSON object is left as it is.
//
// A record may carry these fields already: another collector forwarded it
// here, or a client wrote them (forged). They are not sent twice — a
// document with duplicate keys is one Elasticsearch may refuse, and the
// delivery check counts this ledger's indexes — but moved: the previous
// origin and index become trailguard.ledger.forwarded.origin and .index
// (the hop before this one, provable in that ledger), and any
// trailguard.ledger.* the record held besides are dropped. So a document
// always names the ledger it was forwarded from here, and one that came
// from elsewhere (or claims to) still says so.
func appendLedgerFields(dst, rec []byte, origin string, index uint64) []byte {
	r := bytes.TrimRight(rec, " \t\r\n")
	if len(r) < 2 || r[0] != '{' || r[len(r)-1] != '}' {
		return append(dst, rec...)
	}
	if bytes.Contains(r, []byte("trailguard.ledger")) || bytes.Contains(r, []byte(`\u`)) {
		// A key may be these fields (\u escapes could spell them).
		if moved, ok := moveLedgerFields(r); ok {
			r = moved
		}
	}
	dst = append(dst, r[:len(r)-1]...)
	if len(bytes.TrimSpace(r[1:len(r)-1])) > 0 {
		dst = append(dst, ',')
	}
	dst = append(dst, `"trailguard.ledger.origin":`...)
	dst = event.AppendString(dst, origin)
	dst = append(dst, `,"trailguard.ledger.index":`...)
	dst = strconv.AppendUint(dst, index, 10)
	return append(dst, '}')
}

// Ledger field names, as appendLedgerFields writes and moves them.
const (
	ledgerFieldPrefix = "trailguard.ledger."
	ledgerOriginField = "trailguard.ledger.origin"
	ledgerIndexField  = "trailguard.ledger.index"
)

// moveLedgerFields rewrites an object whose top-level keys include
// trailguard.ledger.* (see appendLedgerFields); ok is false when it has
// none, or is not a valid object (then it is sent as it is).
func moveLedgerFields(r []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(r))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	type kv struct {
		k string
		v json.RawMessage
	}
	var keep []kv
	var origin, idx json.RawMessage
	found := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		k, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false
		}
		switch {
		case k == ledgerOriginField:
			origin, found = v, true
		case k == ledgerIndexField:
			idx, found = v, true
		case strings.HasPrefix(k, ledgerFieldPrefix) || k == "trailguard.ledger":
			found = true // an older hop's forwarded.*, or anything else there
		default:
			keep = append(keep, kv{k, v})
		}
	}
	if !found {
		return nil, false
	}
	out := []byte{'{'}
	for _, f := range keep {
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = event.AppendString(out, f.k)
		out = append(out, ':')
		out = append(out, f.v...)
	}
	for _, f := range []kv{{ledgerFieldPrefix + "forwarded.origin", origin}, {ledgerFieldPrefix + "forwarded.index", idx}} {
		if f.v == nil {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = event.AppendString(out, f.k)
		out = append(out, ':')
		out = append(out, f.v...)
	}
	return append(out, '}'), true
}

// verifyAttempts is how many times a range found incomplete is sent again
// before the records still missing are dead-lettered.
const verifyAttempts = 3

// maxVerifyList bounds how many ledger indexes one listing of stored
// records may cover (a bitmap of this many bits).
const maxVerifyList = 1 << 22

// verifyRound looks for the records acknowledged at least VerifyDelay ago
// and advances the cursor over a range found complete once and found
// complete again flushWait later; see the package documentation.
func (o *output) verifyRound(ctx context.Context, src Source, now time.Time) {
	committed := o.committed.Load()
	hi := committed
	for _, mk := range o.marks {
		if now.Sub(mk.at) < o.cfg.VerifyDelay {
			break
		}
		hi = mk.end
	}
	if hi <= committed {
		return
	}
	want := hi - committed - o.skipped(committed, hi)
	got, err := o.countStored(ctx, committed, hi)
	if err != nil {
		// Not an answer: the engine or a storage node is away. Keep
		// the cursor and look again next round.
		o.report(fmt.Errorf("forward: verifying records %d to %d: %w", committed, hi-1, err))
		o.seen = o.seen[:0]
		return
	}
	if got >= want {
		o.vfails = 0
		// Every sighting still counts: a range seen complete at t
		// and complete again now, flushWait after t, is on disk.
		// (Only the latest sighting would never be old enough when
		// rounds come more often than flushWait.)
		end := uint64(0)
		for _, s := range o.seen {
			if s.end > committed && now.Sub(s.at) >= o.cfg.flushWait() {
				end = s.end
			}
		}
		if end > 0 {
			o.commitTo(end)
		}
		if n := len(o.seen); n == 0 || o.seen[n-1].end < hi {
			o.seen = append(o.seen, mark{end: hi, at: now})
		}
		return
	}
	o.seen = o.seen[:0]
	o.vfails++
	if o.vfails <= verifyAttempts {
		o.report(fmt.Errorf("forward: %d of records %d to %d acknowledged but not stored; sending them again from %d", want-got, committed, hi-1, committed))
		o.rewind()
		return
	}
	// Sent several times, acknowledged each time, never stored: the
	// engine drops them (VictoriaLogs: outside -retentionPeriod or more
	// than two days ahead). Dead-letter those, so the output goes on.
	missing, err := o.listMissing(ctx, committed, hi)
	if err != nil {
		o.report(fmt.Errorf("forward: listing records %d to %d: %w", committed, hi-1, err))
		return
	}
	for _, i := range missing {
		e, err := src.Read(i)
		if err != nil {
			continue // pruned meanwhile
		}
		o.dead.add(e.Data, fmt.Sprintf("acknowledged %d times but not stored by the engine (VictoriaLogs drops rows outside -retentionPeriod or >2 days ahead)", verifyAttempts+1))
		o.deadVerify.Add(1)
	}
	if err := o.dead.flush(); err != nil {
		o.report(err)
		return
	}
	o.vfails = 0
	o.commitTo(hi)
}

// skipped counts the ledger indexes in [lo, hi) lost to retention.
func (o *output) skipped(lo, hi uint64) uint64 {
	var n uint64
	for _, s := range o.skips {
		a, b := max(s[0], lo), min(s[1], hi)
		if b > a {
			n += b - a
		}
	}
	return n
}

// commitTo moves the cursor to end and forgets the marks and skips before it.
func (o *output) commitTo(end uint64) {
	o.committed.Store(end)
	o.verified.Add(1)
	k := 0
	for k < len(o.marks) && o.marks[k].end <= end {
		k++
	}
	o.marks = append(o.marks[:0], o.marks[k:]...)
	keep := o.skips[:0]
	for _, s := range o.skips {
		if s[1] > end {
			keep = append(keep, s)
		}
	}
	o.skips = keep
	k = 0
	for k < len(o.seen) && o.seen[k].end <= end {
		k++
	}
	o.seen = append(o.seen[:0], o.seen[k:]...)
}

// logsQL is the filter selecting this ledger's records [lo, hi).
func (o *output) logsQL(lo, hi uint64) string {
	return fmt.Sprintf("trailguard.ledger.origin:=%s trailguard.ledger.index:range[%d, %d)", strconv.Quote(o.m.opts.Origin), lo, hi)
}

// query runs a LogsQL query on the verify URL and calls fn with each
// result line.
func (o *output) query(ctx context.Context, q string, fn func(line []byte) error) error {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	form := url.Values{"query": {q}}
	u := strings.TrimRight(o.cfg.VerifyURL, "/") + "/select/logsql/query"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	hdr, err := o.cfg.headers()
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", redact(u), resp.Status, bytes.TrimSpace(b))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		if err := fn(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// countStored counts the distinct ledger indexes in [lo, hi) the engine
// holds.
func (o *output) countStored(ctx context.Context, lo, hi uint64) (uint64, error) {
	var n uint64
	found := false
	err := o.query(ctx, o.logsQL(lo, hi)+" | count_uniq(trailguard.ledger.index) as n", func(line []byte) error {
		var r struct{ N string }
		if err := json.Unmarshal(line, &r); err != nil {
			return fmt.Errorf("count answer %q: %w", line, err)
		}
		v, err := strconv.ParseUint(r.N, 10, 64)
		if err != nil {
			return fmt.Errorf("count answer %q: %w", line, err)
		}
		n, found = v, true
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("count query gave no answer")
	}
	return n, err
}

// listMissing returns the indexes in [lo, hi) the engine does not hold
// (at most maxVerifyList of them are examined).
func (o *output) listMissing(ctx context.Context, lo, hi uint64) ([]uint64, error) {
	hi = min(hi, lo+maxVerifyList)
	have := make([]uint64, (hi-lo+63)/64)
	err := o.query(ctx, o.logsQL(lo, hi)+" | uniq by (trailguard.ledger.index)", func(line []byte) error {
		var r map[string]string
		if err := json.Unmarshal(line, &r); err != nil {
			return err
		}
		i, err := strconv.ParseUint(r["trailguard.ledger.index"], 10, 64)
		if err == nil && i >= lo && i < hi {
			have[(i-lo)/64] |= 1 << ((i - lo) % 64)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []uint64
	for i := lo; i < hi; i++ {
		if have[(i-lo)/64]&(1<<((i-lo)%64)) == 0 && o.skipped(i, i+1) == 0 {
			out = append(out, i)
		}
	}
	return out, nil
}

// deadLetters appends records, in ship's dead-letter format, to a file.
type deadLetters struct {
	mu   sync.Mutex
	path string
	url  string
	buf  []byte
}

func (d *deadLetters) add(rec []byte, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = append(d.buf, `{"time":`...)
	d.buf = event.AppendString(d.buf, time.Now().UTC().Format(time.RFC3339Nano))
	d.buf = append(d.buf, `,"url":`...)
	d.buf = event.AppendString(d.buf, d.url)
	d.buf = append(d.buf, `,"status":0,"error":`...)
	d.buf = event.AppendString(d.buf, reason)
	if json.Valid(rec) {
		d.buf = append(d.buf, `,"record":`...)
		d.buf = append(d.buf, rec...)
	} else {
		d.buf = append(d.buf, `,"record_text":`...)
		d.buf = event.AppendString(d.buf, string(rec))
	}
	d.buf = append(d.buf, "}\n"...)
}

func (d *deadLetters) flush() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.buf) == 0 {
		return nil
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("forward: dead-letter file: %w", err)
	}
	_, err = f.Write(d.buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("forward: dead-letter file: %w", err)
	}
	d.buf = d.buf[:0]
	return nil
}
