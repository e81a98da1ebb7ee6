package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestESStartupEndpoints calls, on a real collector, what the official
// Elasticsearch clients and the shippers call at start-up, and checks the
// answers have Elasticsearch 8's shape and product header.
func TestESStartupEndpoints(t *testing.T) {
	ts := startServer(t, t.TempDir(), func(c *Config) { c.AuthFailBurst = 100 })
	tests := []struct {
		method, path, token string
		body                string
		status              int
		check               func(t *testing.T, body []byte, h http.Header)
	}{
		{"GET", "/", "", "", 200, func(t *testing.T, b []byte, h http.Header) {
			var info struct {
				ClusterUUID string `json:"cluster_uuid"`
				Version     struct {
					Number      string `json:"number"`
					BuildFlavor string `json:"build_flavor"`
				}
				Tagline string
			}
			json.Unmarshal(b, &info)
			if !strings.HasPrefix(info.Version.Number, "8.") || info.Version.BuildFlavor != "default" || info.Tagline != "You Know, for Search" || info.ClusterUUID == "" {
				t.Errorf("GET /: %s", b)
			}
		}},
		{"HEAD", "/", "", "", 200, nil},
		{"GET", "/_license", ts.ingest, "", 200, func(t *testing.T, b []byte, h http.Header) {
			var l struct{ License struct{ Status, Type string } }
			if json.Unmarshal(b, &l); l.License.Status != "active" || l.License.Type == "" {
				t.Errorf("license: %s", b)
			}
		}},
		{"GET", "/_xpack", ts.ingest, "", 200, nil},
		{"GET", "/_cluster/health", ts.ingest, "", 200, func(t *testing.T, b []byte, h http.Header) {
			var c struct{ Status string }
			if json.Unmarshal(b, &c); c.Status != "green" {
				t.Errorf("cluster health: %s", b)
			}
		}},
		{"GET", "/_cat/health", ts.ingest, "", 200, func(t *testing.T, b []byte, h http.Header) {
			if f := strings.Fields(string(b)); len(f) != 14 || f[3] != "green" {
				t.Errorf("cat health: %q", b)
			}
		}},
		{"GET", "/_cat/health?v", ts.ingest, "", 200, func(t *testing.T, b []byte, h http.Header) {
			if !strings.HasPrefix(string(b), "epoch timestamp cluster status") {
				t.Errorf("cat health ?v: %q", b)
			}
		}},
		{"GET", "/_cat/health?format=json", ts.ingest, "", 200, func(t *testing.T, b []byte, h http.Header) {
			var rows []map[string]string
			if json.Unmarshal(b, &rows); len(rows) != 1 || rows[0]["status"] != "green" {
				t.Errorf("cat health json: %s", b)
			}
		}},
		{"HEAD", "/_cat/health", ts.ingest, "", 200, nil},
		{"GET", "/_nodes/http", ts.ingest, "", 200, func(t *testing.T, b []byte, h http.Header) {
			var n struct {
				Nodes map[string]struct {
					HTTP struct {
						PublishAddress string `json:"publish_address"`
					}
				}
			}
			json.Unmarshal(b, &n)
			host := strings.TrimPrefix(ts.url, "http://")
			for _, node := range n.Nodes {
				if node.HTTP.PublishAddress != host {
					t.Errorf("nodes: publishes %q, the client reached %q", node.HTTP.PublishAddress, host)
				}
			}
			if len(n.Nodes) != 1 {
				t.Errorf("nodes: %s", b)
			}
		}},
		{"GET", "/_nodes/_local/ingest", ts.ingest, "", 200, nil},
		{"GET", "/_index_template/filebeat-8.19.0", ts.ingest, "", 404, esErrorType("resource_not_found_exception")},
		{"HEAD", "/_index_template/logstash", ts.ingest, "", 404, nil},
		{"PUT", "/_index_template/filebeat-8.19.0", ts.ingest, `{"index_patterns":["filebeat-*"],"data_stream":{}}`, 200, acknowledged},
		{"PUT", "/_template/logstash", ts.ingest, `{}`, 200, acknowledged},
		{"PUT", "/_component_template/x", ts.ingest, `{}`, 200, acknowledged},
		{"GET", "/_ilm/policy/filebeat", ts.ingest, "", 404, esErrorType("resource_not_found_exception")},
		{"PUT", "/_ilm/policy/filebeat", ts.ingest, `{"policy":{}}`, 200, acknowledged},
		{"GET", "/_ilm/status", ts.ingest, "", 200, nil},
		{"GET", "/_ingest/pipeline/p1", ts.ingest, "", 404, nil},
		{"PUT", "/_ingest/pipeline/p1", ts.ingest, `{}`, 200, acknowledged},
		{"GET", "/_data_stream/logs-app-default", ts.ingest, "", 404, esErrorType("index_not_found_exception")},
		{"PUT", "/_data_stream/logs-app-default", ts.ingest, "", 200, acknowledged},
		{"GET", "/_data_stream", ts.ingest, "", 200, nil},
		// Credentials are required beyond GET /, and a reader is not a shipper.
		{"GET", "/_license", "", "", 401, nil},
		{"PUT", "/_index_template/x", "", `{}`, 401, nil},
		{"GET", "/_cat/health", ts.read, "", 403, nil},
		// The two-segment router still sends _bulk to bulk and the rest to 404.
		{"POST", "/logs-app/_bulk", ts.ingest, `{"create":{}}` + "\n" + ev("authn_login_fail", "failure", "eve", "203.0.113.5", 401) + "\n", 200, func(t *testing.T, b []byte, h http.Header) {
			var resp struct {
				Errors bool
				Items  []map[string]struct {
					Index  string `json:"_index"`
					Status int
					Shards struct{ Total, Successful, Failed int } `json:"_shards"`
				}
			}
			json.Unmarshal(b, &resp)
			if resp.Errors || len(resp.Items) != 1 {
				t.Fatalf("bulk: %s", b)
			}
			it := resp.Items[0]["create"]
			if it.Index != "logs-app" || it.Status != 201 || it.Shards.Successful != 1 {
				t.Errorf("bulk item: %s", b)
			}
		}},
		{"POST", "/v1/nothing", ts.ingest, "", 404, nil},
	}
	for _, tt := range tests {
		name := tt.method + " " + tt.path
		req, _ := http.NewRequest(tt.method, ts.url+tt.path, strings.NewReader(tt.body))
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s: status %d, want %d (%s)", name, resp.StatusCode, tt.status, b)
			continue
		}
		product := resp.Header.Get("X-Elastic-Product")
		if es := tt.path != "/v1/nothing"; es && product != "Elasticsearch" {
			t.Errorf("%s: X-Elastic-Product %q", name, product)
		} else if !es && product != "" {
			t.Errorf("%s: a non-Elasticsearch path claims to be Elasticsearch", name)
		}
		if tt.check != nil {
			t.Run(name, func(t *testing.T) { tt.check(t, b, resp.Header) })
		}
	}
}

func acknowledged(t *testing.T, b []byte, _ http.Header) {
	var a struct{ Acknowledged bool }
	if json.Unmarshal(b, &a); !a.Acknowledged {
		t.Errorf("not acknowledged: %s", b)
	}
}

func esErrorType(typ string) func(t *testing.T, b []byte, _ http.Header) {
	return func(t *testing.T, b []byte, _ http.Header) {
		var e struct {
			Error struct {
				Type      string
				RootCause []struct{ Type string } `json:"root_cause"`
			}
			Status int
		}
		if json.Unmarshal(b, &e); e.Error.Type != typ || len(e.Error.RootCause) != 1 || e.Status != 404 {
			t.Errorf("error shape: %s", b)
		}
	}
}
