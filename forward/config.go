package forward

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/trailguard/trailguard/ship"
)

// Output types.
const (
	TypeElasticsearch = "elasticsearch"
	TypeOpenSearch    = "opensearch"
	TypeVictoriaLogs  = "victorialogs"
	TypeSyslog        = "syslog"
)

// Config is one output of `trailguard serve`, an item of the YAML list
// `outputs:`. Secrets are read from files (api_key_file, password_file,
// token_file), never written in the configuration itself.
type Config struct {
	// Name identifies the output in metrics, /v1/outputs and its directory
	// <data_dir>/forward/<name> (cursor, dead letters): lower-case letters,
	// digits, - and _. It must stay the same for the life of the output:
	// a new name starts from the beginning of the ledger.
	Name string `yaml:"name"`
	// Type is elasticsearch, opensearch, victorialogs or syslog.
	Type string `yaml:"type"`
	// URL is the engine's base URL (https://es.example:9200,
	// http://vlinsert:9428) or, for syslog, tcp://host:port or
	// tls://host:port.
	URL string `yaml:"url"`
	// Index is the Elasticsearch/OpenSearch index or data stream written
	// to (default logs-trailguard-default, a data stream name).
	Index string `yaml:"index"`

	// Protocol, for victorialogs, is jsonline (/insert/jsonline, the
	// default) or bulk (/insert/elasticsearch/_bulk).
	Protocol string `yaml:"protocol"`
	// TimeField, MsgField and StreamFields are VictoriaLogs' _time_field
	// (default @timestamp), _msg_field (default message,url.path:
	// ship.MsgFieldsVictoriaLogs, the first present of a comma-separated
	// list) and _stream_fields (default service.name, event.dataset).
	TimeField    string   `yaml:"time_field"`
	MsgField     string   `yaml:"msg_field"`
	StreamFields []string `yaml:"stream_fields"`
	// Verify, for victorialogs (default true), holds the output's cursor
	// until a query shows the records stored: VictoriaLogs acknowledges
	// before its data is on disk, and a cluster's insert node acknowledges
	// while no storage node is up. See the package documentation.
	Verify *bool `yaml:"verify"`
	// VerifyURL is where the verification queries go: a VictoriaLogs
	// select node (http://vlselect:9428); default URL (a single node).
	VerifyURL string `yaml:"verify_url"`
	// VerifyDelay is how long after an acknowledgement records are first
	// looked for (default 10s), and twice the time between verification
	// rounds.
	VerifyDelay time.Duration `yaml:"verify_delay"`
	// StorageFlushInterval is the -inmemoryDataFlushInterval of the
	// VictoriaLogs node or storage nodes (default 5s, VictoriaLogs'
	// default); it must not be shorter than theirs. A range found stored
	// counts as on disk once it is found stored again three of these
	// later (flushWait): VictoriaLogs' /internal/force_flush makes rows
	// searchable but leaves them in memory, so time is the only bound.
	StorageFlushInterval time.Duration `yaml:"storage_flush_interval"`

	// Username and PasswordFile give HTTP Basic credentials; APIKeyFile an
	// Elasticsearch API key (the "encoded" value, or id:key); TokenFile a
	// bearer token (e.g. another trailguard collector's ingest token).
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	APIKeyFile   string `yaml:"api_key_file"`
	TokenFile    string `yaml:"token_file"`
	// Headers are added to every request (VictoriaLogs AccountID,
	// ProjectID…).
	Headers map[string]string `yaml:"headers"`
	// TLS configures https:// and tls:// connections.
	TLS TLSConfig `yaml:"tls"`

	// BatchEvents, BatchBytes and FlushInterval bound a request: at most
	// this many events (default 1000) and bytes (default 4 MiB), and a
	// record waits at most FlushInterval (default 1s) for its batch to fill.
	BatchEvents   int           `yaml:"batch_events"`
	BatchBytes    int           `yaml:"batch_bytes"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Workers is how many requests may be in flight at once (default 2);
	// the cursor still advances in ledger order.
	Workers int `yaml:"workers"`
	// Gzip compresses HTTP request bodies (default true).
	Gzip *bool `yaml:"gzip"`
	// Timeout bounds one request or connection attempt (default 30s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxBackoff bounds the wait between retries (default 30s).
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// LedgerFields adds trailguard.ledger.origin and
	// trailguard.ledger.index to every forwarded document (default true),
	// so that a document found in the engine leads to its ledger shard and
	// its inclusion proof (trailguard prove --index).
	LedgerFields *bool `yaml:"ledger_fields"`
	// Start is where an output without a cursor begins: oldest (default:
	// every record the ledger still holds) or newest.
	Start string `yaml:"start"`
	// MaxRetentionDelay is how long past the retention period the ledger
	// keeps records this output has not delivered. Zero (the default)
	// keeps them until delivered, however long the engine is away; with a
	// limit, retention deletes them after it, and the loss is counted
	// (trailguard_forward_lost_total) and recorded in the ledger.
	MaxRetentionDelay time.Duration `yaml:"max_retention_delay"`

	// Facility is the syslog facility (default local0); AppName the
	// APP-NAME (default trailguard); Hostname the HOSTNAME (default the
	// machine's).
	Facility string `yaml:"facility"`
	AppName  string `yaml:"app_name"`
	Hostname string `yaml:"hostname"`
}

// TLSConfig configures TLS to an output.
type TLSConfig struct {
	// CAFile is a PEM bundle of the CAs to trust (default: the system's).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate, for mutual TLS.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify turns certificate checks off (tests only).
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// withDefaults checks c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	c, errs := c.defaults()
	if len(errs) > 0 {
		return c, fmt.Errorf("output %q: %w", c.Name, errors.Join(errs...))
	}
	return c, nil
}

// defaults returns c with every zero value replaced by its default, and
// every mistake in it, none naming the output.
func (c Config) defaults() (Config, []error) {
	var errs []error
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("name %q: want 1-64 lower-case letters, digits, - or _, the first a letter or digit", c.Name))
	}
	u, err := url.Parse(c.URL)
	if c.URL == "" || err != nil || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %q: want e.g. https://es.example:9200, http://vl:9428 or tcp://siem:6514", redact(c.URL)))
	}
	switch c.Type {
	case TypeElasticsearch, TypeOpenSearch, TypeVictoriaLogs:
		if u != nil && u.Scheme != "http" && u.Scheme != "https" {
			errs = append(errs, fmt.Errorf("url: a %s output wants http:// or https://", c.Type))
		}
	case TypeSyslog:
		if u != nil && u.Scheme != "tcp" && u.Scheme != "tls" {
			errs = append(errs, errors.New("url: a syslog output wants tcp://host:port or tls://host:port (RFC 5424, octet-counted)"))
		}
		if _, ok := facilities[c.facility()]; !ok {
			errs = append(errs, fmt.Errorf("facility %q: want one of kern, user, … local0-local7", c.Facility))
		}
	default:
		errs = append(errs, fmt.Errorf("type %q: want elasticsearch, opensearch, victorialogs or syslog", c.Type))
	}
	if c.Index == "" {
		c.Index = "logs-trailguard-default"
	}
	if c.Protocol == "" {
		c.Protocol = "jsonline"
	}
	if c.Type == TypeVictoriaLogs && c.Protocol != "jsonline" && c.Protocol != "bulk" {
		errs = append(errs, fmt.Errorf("protocol %q: want jsonline or bulk", c.Protocol))
	}
	if c.TimeField == "" {
		c.TimeField = "@timestamp"
	}
	if c.MsgField == "" {
		c.MsgField = ship.MsgFieldsVictoriaLogs
	}
	if c.StreamFields == nil {
		c.StreamFields = []string{"service.name", "event.dataset"}
	}
	if c.VerifyURL == "" {
		c.VerifyURL = c.URL
	}
	if c.VerifyDelay <= 0 {
		c.VerifyDelay = 10 * time.Second
	}
	if c.StorageFlushInterval < 0 {
		errs = append(errs, errors.New("storage_flush_interval cannot be negative"))
	}
	if c.StorageFlushInterval == 0 {
		c.StorageFlushInterval = 5 * time.Second
	}
	if c.BatchEvents <= 0 {
		c.BatchEvents = 1000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 4 << 20
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	if c.Workers > 16 {
		errs = append(errs, fmt.Errorf("workers %d: at most 16", c.Workers))
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 30 * time.Second
	}
	switch c.Start {
	case "":
		c.Start = "oldest"
	case "oldest", "newest":
	default:
		errs = append(errs, fmt.Errorf("start %q: want oldest or newest", c.Start))
	}
	if c.MaxRetentionDelay < 0 {
		errs = append(errs, errors.New("max_retention_delay cannot be negative"))
	}
	if c.AppName == "" {
		c.AppName = "trailguard"
	}
	if c.Hostname == "" {
		c.Hostname, _ = os.Hostname()
	}
	return c, errs
}

// Check reports every mistake in cfgs that Open refuses, without creating
// or starting anything: the collector checks its configuration before it
// makes its data directory and keys. With files, it also reads the files
// they name (keys, CA certificates), which a machine that only reads the
// configuration (trailguard report) may not have. Each error names the
// output by its place in the list and its name, as the YAML file has it:
// outputs[1] (vl): url "…": want ….
func Check(cfgs []Config, files bool) []error {
	var errs []error
	seen := map[string]bool{}
	for i, c := range cfgs {
		where := fmt.Sprintf("outputs[%d]", i)
		if c.Name != "" {
			where += " (" + c.Name + ")"
		}
		c, problems := c.defaults()
		if len(problems) == 0 {
			problems = c.usable(files)
		}
		if c.Name != "" && seen[c.Name] {
			problems = append(problems, fmt.Errorf("a second output named %q", c.Name))
		}
		seen[c.Name] = true
		for _, p := range problems {
			errs = append(errs, fmt.Errorf("%s: %w", where, p))
		}
	}
	return errs
}

// usable reports what newOutput refuses in a configuration with its
// defaults: settings that conflict, and with files, files it names that
// cannot be used.
func (c Config) usable(files bool) []error {
	var errs []error
	if c.verifying() && !boolOr(c.LedgerFields, true) {
		errs = append(errs, errors.New("verify needs ledger_fields (the query looks for trailguard.ledger.index)"))
	}
	if !files {
		return errs
	}
	if _, err := c.tlsConfig(""); err != nil {
		errs = append(errs, err)
	}
	if c.Type != TypeSyslog {
		if _, err := c.headers(); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// verifying reports whether the output confirms deliveries by query.
func (c Config) verifying() bool {
	return c.Type == TypeVictoriaLogs && boolOr(c.Verify, true)
}

// flushWait is how long after a range was first found stored it must be
// found stored again to count as on a storage node's disk. A row a query
// finds is in an in-memory part (searchable) or a file part. An in-memory
// part is due on disk StorageFlushInterval after it was made, and the
// storage's flusher, a ticker of that period, writes it at its first tick
// past that: two intervals. The third covers the stream's index entry
// (made searchable up to a second after the row), the write and fsync of
// the new part, and the node or this process being slow under load.
func (c Config) flushWait() time.Duration {
	return 3 * c.StorageFlushInterval
}

func (c Config) facility() string {
	if c.Facility == "" {
		return "local0"
	}
	return c.Facility
}

// endpoint is the URL records are posted to.
func (c Config) endpoint() string {
	base := strings.TrimRight(c.URL, "/")
	switch c.Type {
	case TypeVictoriaLogs:
		q := url.Values{}
		q.Set("_time_field", c.TimeField)
		q.Set("_msg_field", c.MsgField)
		if len(c.StreamFields) > 0 {
			q.Set("_stream_fields", strings.Join(c.StreamFields, ","))
		}
		if c.Protocol == "bulk" {
			return base + "/insert/elasticsearch/_bulk?" + q.Encode()
		}
		return base + "/insert/jsonline?" + q.Encode()
	}
	return base + "/_bulk"
}

// headers returns the request headers: authentication and Config.Headers.
func (c Config) headers() (http.Header, error) {
	h := http.Header{}
	read := func(path, what string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", fmt.Errorf("%s %s is empty", what, path)
		}
		return s, nil
	}
	switch {
	case c.APIKeyFile != "":
		k, err := read(c.APIKeyFile, "api_key_file")
		if err != nil {
			return nil, err
		}
		if strings.Contains(k, ":") { // id:key, not yet encoded
			k = base64.StdEncoding.EncodeToString([]byte(k))
		}
		h.Set("Authorization", "ApiKey "+k)
	case c.PasswordFile != "" || c.Username != "":
		p := ""
		if c.PasswordFile != "" {
			var err error
			if p, err = read(c.PasswordFile, "password_file"); err != nil {
				return nil, err
			}
		}
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(c.Username+":"+p)))
	case c.TokenFile != "":
		t, err := read(c.TokenFile, "token_file")
		if err != nil {
			return nil, err
		}
		h.Set("Authorization", "Bearer "+t)
	}
	for k, v := range c.Headers {
		h.Set(k, v)
	}
	return h, nil
}

// tlsConfig builds the client TLS configuration.
func (c Config) tlsConfig(host string) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify}
	if t.ServerName == "" {
		t.ServerName = host
	}
	if c.TLS.CAFile != "" {
		pem, err := os.ReadFile(c.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file %s holds no PEM certificate", c.TLS.CAFile)
		}
		t.RootCAs = pool
	}
	if c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// redact drops user info and the query from a URL for messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery = nil, ""
	return u.String()
}
