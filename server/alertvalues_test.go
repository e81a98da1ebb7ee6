package server

import (
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

	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/detect"
)

// TestAlertValuesBounded: an ingest token sends events whose user agent
// (an attack tool's, so each raises an alert) and user name are some
// 100 KiB each, from many addresses. Each alert's document (in the
// ledger, and the webhook's body) keeps at most detect.MaxValueBytes of
// each value and the alert store 512 bytes, ending in the value's length
// and hash; the block decision still names the address. Before, every
// alert copied the whole values into its document, the store, alerts.json
// (10,000 alerts kept: gigabytes rewritten every second) and each
// notifier's queue (1,000 of them).
func TestAlertValuesBounded(t *testing.T) {
	var mu sync.Mutex
	var bodies []int
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, len(b))
		mu.Unlock()
	}))
	defer recv.Close()
	dir := t.TempDir()
	key := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, dir, func(c *Config) {
		detectionOn(c)
		c.Notifiers = []alerting.NotifierConfig{{Type: "webhook", URL: recv.URL + "/hook", SecretFile: key}}
	})
	const n = 20
	ua := "sqlmap/1.7 " + strings.Repeat("A", 100<<10)
	user := strings.Repeat("é", 50<<10)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	var lines []string
	for i := range n {
		doc, _ := json.Marshal(map[string]any{"@timestamp": now, "event": map[string]any{"kind": "event", "category": []string{"web"}},
			"client": map[string]any{"ip": fmt.Sprintf("198.51.100.%d", i+1)}, "url": map[string]any{"original": "/x"},
			"user": map[string]any{"name": user}, "user_agent": map[string]any{"original": ua}})
		lines = append(lines, string(doc))
	}
	for _, l := range lines { // one a request: under max_request_bytes
		ts.post(t, l)
	}
	var list struct{ Alerts []alerting.Alert }
	var body []byte
	waitUntil(t, "the alerts", 30*time.Second, func() bool {
		var code int
		code, body = ts.do(t, "GET", "/v1/alerts", ts.read, nil)
		list.Alerts = nil
		return code == 200 && json.Unmarshal(body, &list) == nil && len(list.Alerts) >= n
	})
	if len(body) > n*8<<10 {
		t.Errorf("/v1/alerts answered %d bytes for %d alerts", len(body), len(list.Alerts))
	}
	for _, a := range list.Alerts {
		for k, v := range a.Fields {
			if len(v) > 512 {
				t.Fatalf("alert %s keeps %s of %d bytes", a.ID, k, len(v))
			}
		}
		if got := a.Fields["user_agent.original"]; !strings.HasPrefix(got, "sqlmap/1.7 AAA") || !strings.Contains(got, fmt.Sprintf("[truncated from %d bytes, sha256 ", len(ua))) {
			t.Fatalf("user agent kept as %q", got)
		}
	}
	waitUntil(t, "the webhook deliveries", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(bodies) >= n
	})
	mu.Lock()
	for _, b := range bodies {
		if b > 16<<10 {
			t.Errorf("a webhook body of %d bytes", b)
		}
	}
	mu.Unlock()
	code, body := ts.do(t, "GET", "/v1/decisions?ip=198.51.100.7", "", nil, "X-Api-Key", ts.token(t, "bouncer", "bouncer"))
	if code != 200 || !strings.Contains(string(body), `"value":"198.51.100.7"`) {
		t.Errorf("the address is not banned: %d %s", code, body)
	}
	var docs int
	for e, err := range ts.ledger.Entries(0) {
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(e.Data), `"dataset":"`+detect.DatasetAlert+`"`) && strings.Contains(string(e.Data), `"kind":"alert"`) {
			docs++
			if len(e.Data) > 16<<10 {
				t.Errorf("alert document %d has %d bytes", e.Index, len(e.Data))
			}
		}
	}
	if docs < n {
		t.Errorf("%d alert documents in the ledger", docs)
	}
	ts.stop(t)
	if fi, err := os.Stat(filepath.Join(dir, "alerts.json")); err != nil || fi.Size() > n*8<<10 {
		t.Errorf("alerts.json: %v, %v", fi.Size(), err)
	}
}
