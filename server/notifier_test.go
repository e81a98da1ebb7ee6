package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/internal/stalltest"
)

// TestNotifierOneAlertRefused: a collector's webhook receiver answers 500
// to the alert of one address forever (a broken template) and takes the
// others. The alerts raised after it arrive within seconds, and /metrics
// shows the failures and the refused one waiting. Before, the notifier
// retried the first alert forever (1 s doubling to 5 min) and every later
// alert waited behind it until pushed out of the queue.
func TestNotifierOneAlertRefused(t *testing.T) {
	const poison = "198.51.100.1"
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	poisonTries := 0
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var doc struct {
			Client struct{ IP string } `json:"client"`
		}
		json.Unmarshal(b, &doc)
		mu.Lock()
		defer mu.Unlock()
		if doc.Client.IP == poison {
			poisonTries++
			http.Error(w, "template error", http.StatusInternalServerError)
			return
		}
		if _, ok := arrived[doc.Client.IP]; !ok {
			arrived[doc.Client.IP] = time.Now()
		}
	}))
	defer recv.Close()
	key := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, t.TempDir(), func(c *Config) {
		detectionOn(c)
		c.Notifiers = []alerting.NotifierConfig{{Name: "soar", Type: "webhook", URL: recv.URL + "/hook", SecretFile: key}}
	})
	event := func(ip string) string {
		doc, _ := json.Marshal(map[string]any{"@timestamp": time.Now().UTC().Format(time.RFC3339Nano), "event": map[string]any{"kind": "event", "category": []string{"web"}},
			"client": map[string]any{"ip": ip}, "url": map[string]any{"original": "/x"}, "user_agent": map[string]any{"original": "sqlmap/1.7"}})
		return string(doc)
	}
	ts.post(t, event(poison))
	waitUntil(t, "the first attempt at the refused alert", 30*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return poisonTries > 0 })
	watch := stalltest.Start(t)
	posted := map[string]time.Time{}
	for i := 2; i <= 4; i++ {
		ip := fmt.Sprint("198.51.100.", i)
		posted[ip] = time.Now()
		ts.post(t, event(ip))
		time.Sleep(500 * time.Millisecond)
	}
	waitUntil(t, "the later alerts", 60*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(arrived) == 3 })
	// Detection takes well under a second; the receiver's backoff after
	// one failure is 1 s at most.
	const bound = 5 * time.Second
	mu.Lock()
	for ip, at := range posted {
		if took := arrived[ip].Sub(at); took > bound+watch.Worst() {
			t.Errorf("the alert of %s arrived %v after its event (stalled %v), want within %v", ip, took, watch.Worst(), bound)
		}
	}
	mu.Unlock()
	_, body := ts.do(t, "GET", "/metrics", ts.read, nil)
	for _, re := range []string{`trailguard_notifier_sent_total\{notifier="soar",type="webhook"\} 3\n`, `trailguard_notifier_failures_total\{notifier="soar",type="webhook"\} [1-9]`,
		`trailguard_notifier_queued\{notifier="soar",type="webhook"\} 1\n`, `trailguard_notifier_queued_bytes\{notifier="soar",type="webhook"\} [1-9]\d*\n`,
		`trailguard_notifier_undeliverable_total\{notifier="soar",type="webhook"\} 0\n`, `# TYPE trailguard_notifier_queued_bytes gauge\n`} {
		if !regexp.MustCompile(re).Match(body) {
			t.Errorf("metrics lack %s:\n%s", re, grepLines(string(body), "trailguard_notifier_"))
		}
	}
}
