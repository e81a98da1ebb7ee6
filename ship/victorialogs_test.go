package ship_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ship"
)

// victoriaLogs starts a real VictoriaLogs single node on a free loopback
// port and returns its base URL.
func victoriaLogs(t *testing.T) string {
	t.Helper()
	bin := testenv.Tool(t, "victoria-logs", "bash .ci/victoria-logs.sh && export TRAILGUARD_TOOLS=~/.cache/trailguard-ci/bin")
	vl := testenv.StartServer(t, "victoria-logs", func(addr string) *exec.Cmd {
		return exec.Command(bin, "-httpListenAddr="+addr, "-storageDataPath="+filepath.Join(t.TempDir(), "data"), "-retentionPeriod=30d", "-loggerLevel=WARN")
	})
	t.Cleanup(func() { vl.Cmd.Process.Kill(); vl.Cmd.Wait() })
	base := "http://" + vl.Addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("victoria-logs listens but is not healthy: %v\n%s", err, vl.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestShipToVictoriaLogs ships ECS events straight to a real VictoriaLogs
// over its _bulk API, as docs/scale-out.md's "Shipping straight to
// VictoriaLogs" says, and reads them back: each event keeps its own
// @timestamp as _time (an event shipped an hour late is not filed under
// its arrival), lands in the stream of its service and dataset, and
// carries its message as _msg; parameters named in the URL are kept.
// Without the parameters VictoriaLogs filed the events under their arrival
// time, with a placeholder message, all in one stream.
func TestShipToVictoriaLogs(t *testing.T) {
	t.Parallel()
	base := victoriaLogs(t)
	stamp := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	cases := []struct {
		name, url  string
		wantStream string
	}{
		{"the URL as the docs give it", base + "/insert/elasticsearch/_bulk", `{event.dataset="trailguard.auth",service.name="orders-api"}`},
		{"the stream fields the URL names", base + "/insert/elasticsearch/_bulk?_stream_fields=host.name", `{host.name="vm-7"}`},
	}
	for i, c := range cases {
		id := fmt.Sprintf("vl-ship-%d-%d", i, time.Now().UnixNano())
		s, err := ship.New(ship.Options{URL: c.url, Protocol: ship.Bulk, SpoolDir: t.TempDir(), FlushInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		rec := fmt.Sprintf(`{"@timestamp":%q,"message":"login failed for alice","event":{"id":%q,"action":"authn_login_fail","dataset":"trailguard.auth"},"service":{"name":"orders-api"},"host":{"name":"vm-7"}}`,
			stamp.Format(time.RFC3339Nano), id)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if err := s.Write(ctx, [][]byte{[]byte(rec)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		s.Close()
		rows := vlRows(t, base, "_time:1d event.id:"+id)
		if len(rows) != 1 {
			t.Fatalf("%s: %d rows for %s, want 1: %v", c.name, len(rows), id, rows)
		}
		row := rows[0]
		got, err := time.Parse(time.RFC3339Nano, row["_time"])
		if err != nil || !got.Equal(stamp) {
			t.Errorf("%s: _time %q, want the event's @timestamp %s", c.name, row["_time"], stamp.Format(time.RFC3339Nano))
		}
		if row["_msg"] != "login failed for alice" {
			t.Errorf("%s: _msg %q, want the event's message", c.name, row["_msg"])
		}
		if row["_stream"] != c.wantStream {
			t.Errorf("%s: _stream %q, want %s", c.name, row["_stream"], c.wantStream)
		}
		if row["event.action"] != "authn_login_fail" || row["service.name"] != "orders-api" {
			t.Errorf("%s: fields not stored under their ECS names: %v", c.name, row)
		}
		if strings.Contains(row["_msg"], "missing _msg") {
			t.Errorf("%s: placeholder message %q", c.name, row["_msg"])
		}
	}
}

// TestShipAccessEventToVictoriaLogs: httpaudit's access events carry no
// message, and VictoriaLogs showed each with its placeholder _msg
// ("missing _msg field; …"). A real access event, from the middleware
// over a real request, shipped to a real VictoriaLogs through the URL as
// the docs give it: its _msg is its url.path (the _msg_field list's
// second field, the first being absent), and its other fields are stored
// under their ECS names.
func TestShipAccessEventToVictoriaLogs(t *testing.T) {
	t.Parallel()
	base := victoriaLogs(t)
	s, err := ship.New(ship.Options{URL: base + "/insert/elasticsearch/_bulk", Protocol: ship.Bulk, SpoolDir: t.TempDir(), FlushInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	audit, err := httpaudit.New(httpaudit.Config{Sink: s, ServiceName: "orders-api"})
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	api := httptest.NewServer(audit.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such order", http.StatusNotFound)
	})))
	defer api.Close()
	reqID := fmt.Sprintf("vl-access-%d", time.Now().UnixNano())
	req, _ := http.NewRequest("GET", api.URL+"/orders/42?expand=items", nil)
	req.Header.Set("X-Request-ID", reqID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for deadline := time.Now().Add(10 * time.Second); audit.Stats().Written == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("the access event was not written to the shipper: %+v", audit.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows := vlRows(t, base, "_time:1d http.request.id:="+reqID)
	if len(rows) != 1 {
		t.Fatalf("%d rows for the access event %s, want 1: %v", len(rows), reqID, rows)
	}
	row := rows[0]
	if row["_msg"] != "/orders/42" {
		t.Errorf("_msg %q, want the access event's url.path /orders/42; row %v", row["_msg"], row)
	}
	for k, v := range map[string]string{"event.action": "http_request", "event.outcome": "failure", "http.response.status_code": "404",
		"http.request.method": "GET", "url.query": "expand=items", "service.name": "orders-api", "event.dataset": "trailguard.access"} {
		if row[k] != v {
			t.Errorf("%s = %q, want %q; row %v", k, row[k], v, row)
		}
	}
}

// vlRows runs query until it finds rows (or 10 s pass) and returns them:
// flushed rows become visible to queries shortly after.
func vlRows(t *testing.T, base, query string) []map[string]string {
	t.Helper()
	var rows []map[string]string
	for deadline := time.Now().Add(10 * time.Second); len(rows) == 0 && time.Now().Before(deadline); {
		if resp, err := http.Get(base + "/internal/force_flush"); err == nil {
			resp.Body.Close()
		}
		rows = vlQuery(t, base, query)
		if len(rows) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return rows
}

// vlQuery runs a LogsQL query and returns the rows.
func vlQuery(t *testing.T, base, query string) []map[string]string {
	t.Helper()
	resp, err := http.PostForm(base+"/select/logsql/query", url.Values{"query": {query}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rows []map[string]string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var row map[string]string
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		rows = append(rows, row)
	}
	return rows
}
