package forward

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/retention"
)

// esServer is an Elasticsearch _bulk endpoint with per-item answers: ids in
// reject get a 400 mapping error, ids in flaky a 429 the first time, and
// every other document is stored once (409 when resent).
type esServer struct {
	mu       sync.Mutex
	docs     map[string][]byte
	reject   map[string]bool
	flaky    map[string]bool
	requests int
	auth     []string
	gzipped  int
	down     bool
}

func (s *esServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	if s.down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Path != "/_bulk" || r.Header.Get("Content-Type") != "application/x-ndjson" {
		http.Error(w, "bad request "+r.URL.Path, http.StatusBadRequest)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		s.gzipped++
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(nil, 1<<20)
	var items []string
	errors := false
	for sc.Scan() {
		var action struct {
			Create struct {
				Index string `json:"_index"`
				ID    string `json:"_id"`
			} `json:"create"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || !sc.Scan() {
			http.Error(w, "bad action line", 400)
			return
		}
		id := action.Create.ID
		doc := append([]byte(nil), sc.Bytes()...)
		switch {
		case s.reject[id]:
			errors = true
			items = append(items, `{"create":{"_id":"`+id+`","status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [source.ip] of type [ip]"}}}`)
		case s.flaky[id]:
			delete(s.flaky, id)
			errors = true
			items = append(items, `{"create":{"_id":"`+id+`","status":429,"error":{"type":"es_rejected_execution_exception"}}}`)
		case s.docs[id] != nil:
			errors = true
			items = append(items, `{"create":{"_id":"`+id+`","status":409,"error":{"type":"version_conflict_engine_exception"}}}`)
		default:
			s.docs[id] = doc
			items = append(items, `{"create":{"_id":"`+id+`","status":201}}`)
		}
	}
	fmt.Fprintf(w, `{"took":1,"errors":%v,"items":[%s]}`, errors, strings.Join(items, ","))
}

// TestElasticsearchPerItem forwards through per-item failures: 429 items
// are retried, 400 (mapping) items dead-lettered with the reason, nothing
// else lost or duplicated, the cursor saved; a restart resumes from it.
func TestElasticsearchPerItem(t *testing.T) {
	t.Parallel()
	es := &esServer{docs: map[string][]byte{},
		reject: map[string]bool{"ev-00000007": true, "ev-00001500": true},
		flaky:  map[string]bool{"ev-00000003": true, "ev-00002999": true}}
	srv := httptest.NewServer(es)
	defer srv.Close()
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	now := time.Now()
	appendEvents(t, l, 0, 3000, now)

	keyFile := filepath.Join(dir, "api.key")
	os.WriteFile(keyFile, []byte("id1:secret\n"), 0o600)
	cfg := Config{Name: "es", Type: TypeElasticsearch, URL: srv.URL, APIKeyFile: keyFile,
		BatchEvents: 500, FlushInterval: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	waitFor(t, 20*time.Second, "3000 records forwarded", func() bool { return statsOf(m, "es").Cursor == 3000 })
	st := statsOf(m, "es")
	if st.Delivered != 2998 || st.DeadLettered != 2 || st.Retried != 2 || st.LagRecords != 0 {
		t.Errorf("stats %+v: want 2998 delivered, 2 dead-lettered, 2 retried, no lag", st)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	es.mu.Lock()
	if len(es.docs) != 2998 {
		t.Errorf("engine holds %d documents, want 2998", len(es.docs))
	}
	doc := es.docs["ev-00000042"]
	if es.gzipped == 0 || es.auth[0] != "ApiKey aWQxOnNlY3JldA==" {
		t.Errorf("gzip %d, auth %q", es.gzipped, es.auth[0])
	}
	es.mu.Unlock()
	// The document is the ledger record plus where it is in the ledger.
	want, _ := l.Read(42)
	var got map[string]any
	if err := json.Unmarshal(doc, &got); err != nil || got["trailguard.ledger.index"] != float64(42) || got["trailguard.ledger.origin"] != testOrigin ||
		!bytes.HasPrefix(doc, want.Data[:len(want.Data)-1]) {
		t.Errorf("document 42: %s (%v)", doc, err)
	}
	dead, _ := os.ReadFile(filepath.Join(dir, "forward", "es", "dead-letter.jsonl"))
	if n := bytes.Count(dead, []byte("\n")); n != 2 || !bytes.Contains(dead, []byte("document_parsing_exception")) || !bytes.Contains(dead, []byte(`"ev-00001500"`)) {
		t.Errorf("dead letters (%d):\n%s", n, dead)
	}
	if c, ok, err := readCursor(filepath.Join(dir, "forward", "es", "cursor")); !ok || err != nil || c != 3000 {
		t.Errorf("saved cursor %d %v %v", c, ok, err)
	}

	// Restart: only the new records go.
	appendEvents(t, l, 3000, 100, now)
	es.mu.Lock()
	before := es.requests
	es.mu.Unlock()
	m2, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m2.Start(l)
	waitFor(t, 30*time.Second, "the new records", func() bool { return statsOf(m2, "es").Cursor == 3100 })
	if st := statsOf(m2, "es"); st.Delivered != 100 || st.Duplicates != 0 {
		t.Errorf("after restart: %+v", st)
	}
	m2.Close()
	es.mu.Lock()
	if len(es.docs) != 3098 || es.requests-before > 3 {
		t.Errorf("after restart: %d documents in %d requests", len(es.docs), es.requests-before)
	}
	es.mu.Unlock()
}

// TestRetentionWaitsForOutputs: retention keeps what an output has not
// delivered; with max_retention_delay it deletes it after the limit, and
// the loss is counted and recorded as an event.
func TestRetentionWaitsForOutputs(t *testing.T) {
	t.Parallel()
	es := &esServer{docs: map[string][]byte{}, down: true}
	srv := httptest.NewServer(es)
	defer srv.Close()
	for _, limit := range []time.Duration{0, 24 * time.Hour} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			dir := t.TempDir()
			clock := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
			var mu sync.Mutex
			now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
			var audited []*event.Event
			m, err := Open([]Config{{Name: "es", Type: TypeElasticsearch, URL: srv.URL, MaxRetentionDelay: limit,
				BatchEvents: 100, FlushInterval: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}},
				Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet, Retain: retention.PCIDSS.Retain, Now: now,
					Audit: func(ev *event.Event) { mu.Lock(); audited = append(audited, ev); mu.Unlock() }})
			if err != nil {
				t.Fatal(err)
			}
			l := openLedger(t, filepath.Join(dir, "ledger"), func(o *ledger.Options) {
				o.SegmentSize = 16 << 10
				o.Retention = retention.PCIDSS
				o.PruneInterval = time.Hour
				o.Now = now
				o.PruneFloor = m.Floor
			})
			defer l.Close()
			appendEvents(t, l, 0, 3000, clock)
			// Retention goes by signed time: sign them while they are old.
			if _, err := l.Checkpoint(context.Background()); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			clock = clock.Add(400 * retention.Day)
			mu.Unlock()
			appendEvents(t, l, 3000, 10, clock)
			m.Start(l)
			defer m.Close()
			waitFor(t, 30*time.Second, "a failed attempt", func() bool { return statsOf(m, "es").Retried > 0 })
			// Retention runs as soon as the old records' hash tiles are
			// written (a moment after the append): try for a while, long
			// where it must come (a loaded machine stalls for seconds),
			// 2 s where nothing may be deleted.
			var pruned []ledger.PruneRecord
			wait := 30 * time.Second
			if limit == 0 {
				wait = 2 * time.Second
			}
			deadline := time.Now().Add(wait)
			for len(pruned) == 0 && time.Now().Before(deadline) {
				got, err := l.Prune()
				if err != nil {
					t.Fatal(err)
				}
				pruned = append(pruned, got...)
				time.Sleep(20 * time.Millisecond)
			}
			if limit == 0 {
				if len(pruned) != 0 || l.Pruned() != 0 {
					t.Fatalf("retention deleted %+v that the output had not delivered", pruned)
				}
				return
			}
			if len(pruned) == 0 {
				t.Fatalf("retention past max_retention_delay deleted nothing")
			}
			es.mu.Lock()
			es.down = false
			es.mu.Unlock()
			waitFor(t, 30*time.Second, "caught up", func() bool { return statsOf(m, "es").Cursor == l.Size() })
			st := statsOf(m, "es")
			// The batch in flight when retention ran was delivered; the
			// rest of the deleted range was lost, and said so.
			if st.Lost == 0 || st.Lost+st.Delivered < 3010 || st.Lost > l.Pruned() {
				t.Errorf("lost %d, delivered %d, pruned %d", st.Lost, st.Delivered, l.Pruned())
			}
			mu.Lock()
			defer mu.Unlock()
			if len(audited) != 1 || audited[0].Action != ActionRecordsLost || !strings.Contains(audited[0].Message, fmt.Sprint(st.Lost)) {
				t.Errorf("audit events %+v", audited)
			}
		})
	}
}
