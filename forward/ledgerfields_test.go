package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// foreignEvent is event i as another collector forwarded it here (or as a
// client forged it): it carries trailguard.ledger.* already, as ingest
// stores them (dotted keys), in one of several spellings.
func foreignEvent(i int, ts time.Time) []byte {
	ev := testEvent(i, ts)
	var extra string
	switch i % 4 {
	case 0:
		extra = fmt.Sprintf(`,"trailguard.ledger.index":%d,"trailguard.ledger.origin":"other.example/collector-9"`, 1_000_000+i)
	case 1: // forwarded twice already
		extra = fmt.Sprintf(`,"trailguard.ledger.forwarded.index":7,"trailguard.ledger.forwarded.origin":"first.example/c","trailguard.ledger.index":%d,"trailguard.ledger.origin":"other.example/collector-9"`, 1_000_000+i)
	case 2: // escaped key, same field to a JSON reader
		extra = fmt.Sprintf(`,"trailguard.ledger\u002eindex":%d,"trailguard\u002eledger.origin":"other.example/collector-9"`, 1_000_000+i)
	}
	return append(ev[:len(ev)-1], extra+"}"...)
}

// dupKeys returns the top-level keys a JSON object holds more than once.
func dupKeys(t *testing.T, line []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", line)
	}
	seen := map[string]bool{}
	var dups []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		k := tok.(string)
		if seen[k] {
			dups = append(dups, k)
		}
		seen[k] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
	}
	return dups
}

// TestForwardForeignLedgerFields: records that carry trailguard.ledger.*
// already go out with each key once — this ledger's origin and index, the
// previous hop's moved to trailguard.ledger.forwarded.* — not with the
// keys twice (a document Elasticsearch may refuse).
func TestForwardForeignLedgerFields(t *testing.T) {
	t.Parallel()
	srv := &lineServer{}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	ts := time.Now()
	const n = 40
	for i := range n {
		if _, err := l.Append(context.Background(), foreignEvent(i, ts)); err != nil {
			t.Fatal(err)
		}
	}
	off := false
	cfg := Config{Name: "es-like", Type: TypeVictoriaLogs, URL: hs.URL, Verify: &off, Gzip: &off,
		BatchEvents: 1000, BatchBytes: 16 << 20, Workers: 1, FlushInterval: 10 * time.Millisecond}
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	defer m.Close()
	waitFor(t, 30*time.Second, "every record", func() bool { return srv.count() >= n })
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for i, line := range srv.lines {
		if d := dupKeys(t, line); len(d) != 0 {
			t.Fatalf("line %d has keys %v twice: %s", i, d, line)
		}
		var doc map[string]any
		if err := json.Unmarshal(line, &doc); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"trailguard.ledger.origin": testOrigin, "trailguard.ledger.index": float64(i), "event": doc["event"]}
		if i%4 != 3 {
			want["trailguard.ledger.forwarded.origin"] = "other.example/collector-9"
			want["trailguard.ledger.forwarded.index"] = float64(1_000_000 + i)
		}
		for k, v := range want {
			if fmt.Sprint(doc[k]) != fmt.Sprint(v) {
				t.Errorf("line %d: %s = %v, want %v: %s", i, k, doc[k], v, line)
			}
		}
		for k := range doc {
			if strings.HasPrefix(k, "trailguard.ledger.") && want[k] == nil {
				t.Errorf("line %d: %s kept: %s", i, k, line)
			}
		}
	}
}

// TestVictoriaLogsForeignLedgerFields: the same records forwarded to a
// real VictoriaLogs are confirmed stored by the delivery check, which
// counts this ledger's trailguard.ledger.index per origin.
func TestVictoriaLogsForeignLedgerFields(t *testing.T) {
	t.Parallel()
	bin := testenv.Tool(t, "victoria-logs", vlInstall)
	vl := startVL(t, bin)
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	now := time.Now()
	const n = 400
	for i := range n {
		if _, err := l.Append(context.Background(), foreignEvent(i, now)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := Open([]Config{vlOutput("vl", vl.url(), "")}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	defer m.Close()
	waitFor(t, 60*time.Second, "every record verified", func() bool { return statsOf(m, "vl").Cursor == n })
	if st := statsOf(m, "vl"); st.Resent != 0 || st.DeadLettered != 0 {
		t.Errorf("%d resent, %d dead-lettered", st.Resent, st.DeadLettered)
	}
	forceFlush(t, vl)
	resp, err := http.PostForm(vl.url()+"/select/logsql/query", url.Values{"query": {`event.id:="ev-00000042"`}})
	if err != nil {
		t.Fatal(err)
	}
	var doc bytes.Buffer
	doc.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"trailguard.ledger.index":"42"`, `"trailguard.ledger.origin":"` + testOrigin + `"`,
		`"trailguard.ledger.forwarded.origin":"other.example/collector-9"`, `"trailguard.ledger.forwarded.index":"1000042"`} {
		if !strings.Contains(doc.String(), want) {
			t.Errorf("stored document lacks %s:\n%s", want, doc.String())
		}
	}
}
