package server

// The Elasticsearch-compatible surface: enough of Elasticsearch 8's HTTP
// API that its official clients (go-elasticsearch, @elastic/elasticsearch)
// and the shippers (Filebeat, Logstash, Vector, Fluent Bit, rsyslog's
// omelasticsearch) work unchanged against the collector. Ingest is _bulk
// (bulk.go); everything else here is what those programs call at start-up
// to check that they talk to Elasticsearch and to set up templates and
// policies, answered the way Elasticsearch answers, without pretending to
// store what the collector does not keep (templates, ILM policies, ingest
// pipelines: its schema is ECS and its retention its own).

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/access"
)

// esVersion is the Elasticsearch version the collector answers as. The
// official 8.x clients accept any 8.x server that identifies itself with
// X-Elastic-Product; Beats refuse a server older than themselves unless
// allow_older_versions is set, so this is the newest 8.x line.
const (
	esVersion       = "8.19.0"
	esLuceneVersion = "9.12.2"
)

// esSetupBodyLimit bounds the body of a template or policy a shipper
// installs (read and dropped): Filebeat's index template is a few hundred
// KiB.
const esSetupBodyLimit = 8 << 20

// esRoutes registers the Elasticsearch-compatible endpoints on mux. Every
// answer carries X-Elastic-Product, errors included, because the official
// clients refuse any answer without it ("the client noticed that the
// server is not Elasticsearch").
func (s *Server) esRoutes(mux *http.ServeMux) {
	handle := func(pattern string, h http.HandlerFunc) { mux.HandleFunc(pattern, esProduct(h)) }
	ingest := func(h http.HandlerFunc) http.HandlerFunc { return s.requireRole(access.RoleIngest, h) }

	// GET / stays open, as it was: load balancers and Beats probe it, and it
	// tells nothing beyond the version.
	handle("GET /{$}", s.handleESInfo)
	handle("HEAD /{$}", s.handleESInfo)

	handle("POST /_bulk", ingest(s.limitIngest(s.handleBulk)))
	handle("PUT /_bulk", ingest(s.limitIngest(s.handleBulk)))

	// Start-up probes of the shippers. They need a token with the ingest
	// role, as Elasticsearch with security on needs credentials.
	handle("GET /_license", ingest(s.handleESLicense))
	handle("GET /_xpack", ingest(s.handleESXPack))
	handle("GET /_cluster/health", ingest(s.handleESClusterHealth))
	handle("GET /_cluster/health/{index}", ingest(s.handleESClusterHealth))
	handle("GET /_cat/health", ingest(s.handleESCatHealth))
	handle("HEAD /_cat/health", ingest(s.handleESCatHealth))
	handle("GET /_nodes", ingest(s.handleESNodes))
	handle("GET /_nodes/{a}", ingest(s.handleESNodes))
	handle("GET /_nodes/{a}/{b}", ingest(s.handleESNodes))

	// Setup calls: a shipper looks for its template, policy, pipeline or data
	// stream and installs it when missing. Lookups answer "missing", and an
	// install is acknowledged and dropped.
	for _, kind := range esSetupKinds {
		handle("GET "+kind.prefix, ingest(esStatic(kind.list)))
		handle("GET "+kind.prefix+"/{name}", ingest(esMissing(kind.notFound)))
		handle("HEAD "+kind.prefix+"/{name}", ingest(esMissing(kind.notFound)))
		if strings.Count(kind.prefix, "/") > 1 { // two-segment installs go through esTwoSegments
			handle("PUT "+kind.prefix+"/{name}", ingest(esAcknowledge))
			handle("POST "+kind.prefix+"/{name}", ingest(esAcknowledge))
		}
	}
	handle("GET /_ilm/status", ingest(esStatic(`{"operation_mode":"RUNNING"}`)))

	// PUT|POST /{index}/_bulk and PUT /_index_template/{name} overlap (both
	// match /_index_template/_bulk), which ServeMux refuses; one handler
	// tells them apart.
	two := s.esTwoSegments(ingest)
	mux.HandleFunc("POST /{first}/{second}", two)
	mux.HandleFunc("PUT /{first}/{second}", two)
}

// esSetupKinds are the things shippers install at start-up.
var esSetupKinds = []struct{ prefix, notFound, list string }{
	{"/_index_template", "resource_not_found_exception", `{"index_templates":[]}`},
	{"/_component_template", "resource_not_found_exception", `{"component_templates":[]}`},
	{"/_template", "resource_not_found_exception", `{}`},
	{"/_data_stream", "index_not_found_exception", `{"data_streams":[]}`},
	{"/_ilm/policy", "resource_not_found_exception", `{}`},
	{"/_ingest/pipeline", "resource_not_found_exception", `{}`},
}

// esTwoSegments routes PUT and POST of /{first}/{second}: an install of a
// template or data stream, or a _bulk into a named index. Anything else
// is an ordinary 404 (or 405 for a known path of another method).
func (s *Server) esTwoSegments(ingest func(http.HandlerFunc) http.HandlerFunc) http.HandlerFunc {
	bulk, ack := esProduct(ingest(s.limitIngest(s.handleBulk))), esProduct(ingest(esAcknowledge))
	return func(w http.ResponseWriter, r *http.Request) {
		first, second := r.PathValue("first"), r.PathValue("second")
		for _, kind := range esSetupKinds {
			if "/"+first == kind.prefix {
				ack(w, r)
				return
			}
		}
		if second == "_bulk" {
			r.SetPathValue("index", first)
			bulk(w, r)
			return
		}
		http.NotFound(w, r)
	}
}

// esProduct marks an answer as coming from Elasticsearch.
func esProduct(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Elastic-Product", "Elasticsearch")
		h(w, r)
	}
}

// esIDs are the stable identifiers the collector reports as its cluster
// and node, derived from the log's origin so that they survive restarts
// (clients and shippers log them, and a change looks like a new cluster).
func (s *Server) esIDs() (cluster, node string) {
	sum := sha256.Sum256([]byte("trailguard-es\n" + s.cfg.Origin))
	enc := base64.RawURLEncoding
	return enc.EncodeToString(sum[:16]), enc.EncodeToString(sum[16:32])
}

func (s *Server) esClusterName() string { return "trailguard" }

// handleESInfo answers GET / with Elasticsearch 8's version document:
// Beats, Logstash and Vector read version.number before they ship, and
// the clients' ping is HEAD /.
func (s *Server) handleESInfo(w http.ResponseWriter, r *http.Request) {
	cluster, _ := s.esIDs()
	writeJSON(w, http.StatusOK, map[string]any{
		"name":         "trailguard",
		"cluster_name": s.esClusterName(),
		"cluster_uuid": cluster,
		"version": map[string]any{
			"number":                              esVersion,
			"build_flavor":                        "default",
			"build_type":                          "tar",
			"build_hash":                          "trailguard",
			"build_date":                          "2025-01-01T00:00:00.000Z",
			"build_snapshot":                      false,
			"lucene_version":                      esLuceneVersion,
			"minimum_wire_compatibility_version":  "7.17.0",
			"minimum_index_compatibility_version": "7.0.0",
		},
		"tagline": "You Know, for Search",
	})
}

// handleESLicense answers GET /_license: Logstash and Beats refuse a
// cluster whose license is not active. A basic license never expires.
func (s *Server) handleESLicense(w http.ResponseWriter, r *http.Request) {
	cluster, _ := s.esIDs()
	writeJSON(w, http.StatusOK, map[string]any{"license": map[string]any{
		"status":               "active",
		"uid":                  cluster,
		"type":                 "basic",
		"issue_date":           "2025-01-01T00:00:00.000Z",
		"issue_date_in_millis": int64(1735689600000),
		"max_nodes":            1000,
		"max_resource_units":   nil,
		"issued_to":            s.esClusterName(),
		"issuer":               "elasticsearch",
		"start_date_in_millis": -1,
	}})
}

// handleESXPack answers GET /_xpack, which older Beats and Logstash read to
// learn whether index lifecycle management is available.
func (s *Server) handleESXPack(w http.ResponseWriter, r *http.Request) {
	cluster, _ := s.esIDs()
	writeJSON(w, http.StatusOK, map[string]any{
		"build":   map[string]any{"hash": "trailguard", "date": "2025-01-01T00:00:00.000Z"},
		"license": map[string]any{"uid": cluster, "type": "basic", "mode": "basic", "status": "active"},
		"features": map[string]any{
			"ilm":      map[string]any{"available": true, "enabled": true},
			"security": map[string]any{"available": true, "enabled": true},
		},
		"tagline": "You know, for X",
	})
}

// esHealth is the cluster's health as Elasticsearch reports it: green
// while the collector serves (ingest does not depend on the index).
func (s *Server) esHealth() map[string]any {
	return map[string]any{
		"cluster_name":                     s.esClusterName(),
		"status":                           "green",
		"timed_out":                        false,
		"number_of_nodes":                  1,
		"number_of_data_nodes":             1,
		"active_primary_shards":            1,
		"active_shards":                    1,
		"relocating_shards":                0,
		"initializing_shards":              0,
		"unassigned_shards":                0,
		"delayed_unassigned_shards":        0,
		"number_of_pending_tasks":          0,
		"number_of_in_flight_fetch":        0,
		"task_max_waiting_in_queue_millis": 0,
		"active_shards_percent_as_number":  100.0,
	}
}

// handleESClusterHealth answers GET /_cluster/health (Vector's health
// check).
func (s *Server) handleESClusterHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.esHealth())
}

// handleESCatHealth answers GET /_cat/health (rsyslog's omelasticsearch
// calls it before it sends anything): a text table, with a header line
// under ?v, or JSON under ?format=json or a JSON Accept header.
func (s *Server) handleESCatHealth(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	cols := []string{"epoch", "timestamp", "cluster", "status", "node.total", "node.data", "shards", "pri", "relo",
		"init", "unassign", "pending_tasks", "max_task_wait_time", "active_shards_percent"}
	vals := []string{strconv.FormatInt(now.Unix(), 10), now.UTC().Format("15:04:05"), s.esClusterName(), "green",
		"1", "1", "1", "1", "0", "0", "0", "0", "-", "100.0%"}
	q := r.URL.Query()
	if q.Get("format") == "json" || (q.Get("format") == "" && strings.Contains(r.Header.Get("Accept"), "json")) {
		row := map[string]string{}
		for i, c := range cols {
			row[c] = vals[i]
		}
		writeJSON(w, http.StatusOK, []map[string]string{row})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	if _, v := q["v"]; v {
		fmt.Fprintln(w, strings.Join(cols, " "))
	}
	fmt.Fprintln(w, strings.Join(vals, " "))
}

// handleESNodes answers GET /_nodes/... with this one node, publishing the
// address the client reached it on, so that clients which sniff the
// cluster (go-elasticsearch DiscoverNodesOnStart, Logstash sniffing) keep
// talking to the collector.
func (s *Server) handleESNodes(w http.ResponseWriter, r *http.Request) {
	cluster, node := s.esIDs()
	addr := r.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "80")
		if r.TLS != nil {
			addr = strings.TrimSuffix(addr, ":80") + ":443"
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"_nodes":       map[string]int{"total": 1, "successful": 1, "failed": 0},
		"cluster_name": s.esClusterName(),
		"cluster_uuid": cluster,
		"nodes": map[string]any{node: map[string]any{
			"name":              "trailguard",
			"transport_address": addr,
			"host":              r.Host,
			"ip":                r.Host,
			"version":           esVersion,
			"build_flavor":      "default",
			"build_type":        "tar",
			"roles":             []string{"data", "ingest", "master"},
			"attributes":        map[string]string{},
			"http":              map[string]any{"bound_address": []string{addr}, "publish_address": addr, "max_content_length_in_bytes": s.cfg.MaxRequestBytes},
		}},
	})
}

// esError writes an error in Elasticsearch's shape, which clients parse
// into their error types.
func esError(w http.ResponseWriter, status int, typ, reason string) {
	e := map[string]any{"type": typ, "reason": reason}
	writeJSON(w, status, map[string]any{"error": map[string]any{"root_cause": []any{e}, "type": typ, "reason": reason}, "status": status})
}

// esMissing answers a lookup of a template, policy, pipeline or data
// stream: the collector keeps none, so it is missing.
func esMissing(typ string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		esError(w, http.StatusNotFound, typ, fmt.Sprintf("%s not found (the trailguard collector keeps no templates, policies or pipelines: its schema is ECS and its retention its own)", r.PathValue("name")))
	}
}

// esAcknowledge accepts the installation of a template, policy, pipeline
// or data stream and drops it, as a bounded read of its body: the shipper
// goes on to ship, which is what matters.
func esAcknowledge(w http.ResponseWriter, r *http.Request) {
	_, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, esSetupBodyLimit))
	if err != nil {
		esError(w, http.StatusRequestEntityTooLarge, "illegal_argument_exception", fmt.Sprintf("body exceeds %d bytes", esSetupBodyLimit))
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"acknowledged": true})
}

// esStatic answers with a fixed JSON body.
func esStatic(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body+"\n")
	}
}
