package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/forward"
	"github.com/trailguard/trailguard/internal/yamlconf"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/redact"
	"github.com/trailguard/trailguard/retention"
)

// Config configures the collector. Values come, in increasing priority,
// from the defaults, a YAML file, TRAILGUARD_* environment variables and
// command-line flags; the YAML key, the variable and the flag of a field
// share a name (retention, TRAILGUARD_RETENTION, --retention), except the
// data directory: data_dir, TRAILGUARD_DATA, --data, as on every command.
// Every field has a line of help in settingsHelp (config_settings.go).
type Config struct {
	// DataDir holds the ledger, the index, keys and tokens.
	DataDir string `yaml:"data_dir"`
	// Listen is the address to serve on.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey, when both set, serve HTTPS.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Origin names the log in its checkpoints; default
	// "trailguard/<hostname>". It must never change for a ledger.
	Origin string `yaml:"origin"`
	// SignerKey is the checkpoint signing key (note format); default
	// <data_dir>/keys/signer.key, generated on first start.
	SignerKey string `yaml:"signer_key"`
	// Retention is the retention profile: pci-dss, soc2, hipaa or
	// custom:<days>; empty keeps everything.
	Retention string `yaml:"retention"`
	// LegalHold stops retention from deleting anything.
	LegalHold bool `yaml:"legal_hold"`
	// Witness is a directory or http(s) URL that receives a copy of every
	// checkpoint.
	Witness []string `yaml:"witness"`
	// RedactMode is how secrets found at ingest are replaced: remove,
	// mask or hmac-sha256.
	RedactMode string `yaml:"redact_mode"`
	// RedactSecretFile holds the HMAC key for redact_mode hmac-sha256.
	RedactSecretFile string `yaml:"redact_secret_file"`
	// MaxLineBytes bounds one event; longer lines are rejected per item.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// MaxRequestBytes bounds one ingest request body, after
	// decompression (413 beyond).
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxRequestEvents bounds the events (NDJSON lines, _bulk actions) of
	// one ingest request; the request stops there, answered 413 with
	// resume_line, to send the rest in another request. With it, the memory an
	// ingest request holds is bounded whatever its body (see README).
	MaxRequestEvents int `yaml:"max_request_events"`
	// MaxHeaderBytes bounds a request's line and headers together (431
	// beyond, answered by net/http before anything is recorded).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// BodyReadTimeout bounds the time to receive one ingest request body,
	// and to send its answer, and the time to receive any other request's
	// body (one a handler refuses unread, too: net/http waits for it
	// before answering); BodyIdleTimeout bounds how long an ingest body
	// may stall without a byte arriving. Slow clients, authenticated or
	// not, cannot hold a connection and an ingest slot longer.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout"`
	BodyIdleTimeout time.Duration `yaml:"body_idle_timeout"`
	// MaxIngestPerToken bounds the ingest requests one token may have in
	// progress (429 with Retry-After beyond); MaxIngestRequests bounds
	// them for all tokens together (503 with Retry-After beyond).
	MaxIngestPerToken int `yaml:"max_ingest_per_token"`
	MaxIngestRequests int `yaml:"max_ingest_requests"`
	// MaxReadsPerToken bounds the reads (searches, stats, live tails,
	// reports, every request that needs the read role but /metrics) one
	// token, and the web UI sessions signed in with it, may have in
	// progress (429 with Retry-After beyond); MaxReadRequests bounds them
	// for all tokens together (503). Each read may scan up to 50,000
	// records and each live tail matches every new record: without them
	// one stolen read token opened streams until the collector's CPU went
	// to them.
	MaxReadsPerToken int `yaml:"max_reads_per_token"`
	MaxReadRequests  int `yaml:"max_read_requests"`
	// MaxConnections bounds the client connections open at once (no
	// token is needed to open one); beyond, new ones wait in the listen
	// queue until one closes. It is lowered at start to fit the open-file
	// limit with room for the ledger's and index's files: connections
	// that took every descriptor made the ledger fail at its next segment.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerAddress bounds the connections one client address
	// (an IPv6 /64) holds open (0: no bound); an eighth of it, at least
	// 8, until a request on the connection presented a valid token. Both
	// are at most half of MaxConnections. Beyond, new connections from
	// that address are closed at once: one address held every slot with
	// idle connections, and every other client waited.
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address"`
	// RefusedAuditPerMinute is how many requests per client address and
	// minute that lack a valid token with the needed role (refused, or
	// anonymous such as /healthz) the collector records in its own trail;
	// RefusedAuditTotalPerMinute bounds them for all addresses together.
	// The others are counted (trailguard_self_audit_unrecorded_total) and
	// summarised once a minute in one audit_events_unrecorded event, so
	// that nobody without a token can fill the disk.
	RefusedAuditPerMinute      int `yaml:"refused_audit_per_minute"`
	RefusedAuditTotalPerMinute int `yaml:"refused_audit_total_per_minute"`
	// DiskReserve is free space, in bytes, on the data directory's file
	// system that ingest never takes: below it, appends are refused (507
	// with Retry-After) so that the ledger's checkpoints and its final
	// shutdown checkpoint always have room; below twice it, the index
	// stops growing (it is a cache of the ledger) until space returns.
	DiskReserve int64 `yaml:"disk_reserve"`
	// CheckpointInterval bounds how long a record waits for a signed
	// checkpoint.
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// LedgerSegmentBytes is the size at which a ledger segment file is
	// closed and the next begun. Retention deletes whole segments, so
	// smaller ones follow the retention period more closely; closed
	// segments are compressed, so the open one is the uncompressed window.
	LedgerSegmentBytes int64 `yaml:"ledger_segment_bytes"`
	// MetricsPublic serves /metrics without a token (for scrapers on a
	// private network); by default it needs the read role.
	MetricsPublic bool `yaml:"metrics_public"`
	// AuthFailBurst and AuthFailPerMinute rate-limit failed token checks
	// per client address; beyond them the client gets 429 without a check.
	AuthFailBurst     int `yaml:"auth_fail_burst"`
	AuthFailPerMinute int `yaml:"auth_fail_per_minute"`
	// DedupWindow is how many recent event.ids the collector remembers to
	// drop events a shipper sends twice (0 turns it off). The default,
	// 262144, covers minutes of resends at ordinary rates and seconds at
	// 100k events/s, and its hashes stay small enough to be cheap.
	DedupWindow int `yaml:"dedup_window"`
	// ShutdownTimeout bounds the time from SIGTERM to exit, split in
	// shares (ShutdownPlan).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// UISessionIdle ends a web UI session after this long without
	// activity, UISessionMax this long after sign-in (0: 30m and 12h).
	UISessionIdle time.Duration `yaml:"ui_session_idle"`
	UISessionMax  time.Duration `yaml:"ui_session_max"`
	// Outputs are the engines every stored event is forwarded to
	// (Elasticsearch, OpenSearch, VictoriaLogs, syslog); YAML only.
	Outputs []forward.Config `yaml:"outputs"`
	// Detection, Notifiers and Decisions configure the rule engine, where
	// alerts are delivered and the block decisions; YAML only.
	Detection DetectionConfig           `yaml:"detection"`
	Notifiers []alerting.NotifierConfig `yaml:"notifiers"`
	Decisions DecisionsConfig           `yaml:"decisions"`

	// IndexBatchDelay is the longest a stored record waits before the
	// index writes it (index.Options.BatchDelay; 0: the index's default).
	// Not a setting: an embedder whose ledger commits a few records at a
	// time sets it (the gateway's single node), since every index
	// transaction rewrites the index's last block whatever it adds.
	IndexBatchDelay time.Duration `yaml:"-"`

	// FollowerPace is the least time between two catch-ups of the UI
	// overview's follower and between two looks of the report cache's
	// warmer at the ledger's size (0: both wake at every commit). Not a
	// setting: the gateway's single node commits every few milliseconds,
	// and waking two followers whose results nobody reads that soon (the
	// overview counts by minute; the report cache keeps whole chunks of
	// 32,768 records) at each commit cost CPU and scheduler hand-offs per
	// request. Both still read from the ledger's in-memory tail.
	FollowerPace time.Duration `yaml:"-"`

	// OverviewOnDemand starts the UI overview's follower at the first
	// request for the overview (or Server.StartOverview) instead of at
	// New. Not a setting: the gateway's single node serves the API only
	// with --api, and without it nobody reads the overview; its counts
	// then wait in ui-overview.json where they ended, and the follower
	// catches up from there when started (the overview answers "not
	// covered" until it has, and the UI reads the index instead).
	OverviewOnDemand bool `yaml:"-"`

	// Once holds decisions an operator makes for one start only. They are
	// command-line flags of trailguard serve, never read from the YAML
	// file or the environment, so that they cannot stay on by accident.
	Once StartOnce `yaml:"-"`
}

// StartOnce are the one-shot start flags (see Config.Once).
type StartOnce struct {
	// AdoptUnsigned (--adopt-unsigned=N) lets the ledger sign records no
	// checkpoint vouched for, when it holds exactly N records: see
	// ledger.Options.AdoptUnsigned. The adoption is signed, audited and
	// reported by verify for ever after.
	AdoptUnsigned uint64
	// StartWithoutWitness (--start-without-witness) starts even if a
	// witness cannot be reached to compare checkpoints (logged): see
	// ledger.Options.StartWithoutWitness.
	StartWithoutWitness bool
	// HandoverKey (--handover-key FILE) is the signer key the ledger was
	// signed with before signer_key changed: it co-signs the new key's
	// first checkpoint (ledger.Options.HandoverSigner). Without it a
	// collector refuses a signer key the ledger's newest checkpoint was
	// not signed with.
	HandoverKey string
}

// onceUsage documents the one-shot flags in serve --help.
const onceUsage = `
For this start only (flags; never read from the file or the environment):

  --adopt-unsigned N
      Sign the N records the ledger holds although no checkpoint vouched for them
      (its history was lost, records follow a clean shutdown, or more are unsigned
      than a crash can leave); the refusal to start states N. Signed, audited and
      reported by trailguard verify for ever after.
  --start-without-witness
      Start even if a witness cannot be reached to compare checkpoints (logged).
  --handover-key FILE
      Rotate the checkpoint key: FILE is the old signer key, which co-signs the
      first checkpoint of the new signer_key (trailguard keygen makes one);
      verify then accepts the change, and checkpoints signed by the old key
      alone after it are findings. Auditors need the new .pub besides the old.
`

// Defaults returns the configuration `trailguard serve` uses with no file,
// variables or flags.
func Defaults() Config {
	return Config{
		DataDir:                    "./trailguard-data",
		Listen:                     "127.0.0.1:8600",
		RedactMode:                 "mask",
		MaxLineBytes:               256 << 10,
		MaxRequestBytes:            32 << 20,
		MaxRequestEvents:           100000,
		MaxHeaderBytes:             64 << 10,
		BodyReadTimeout:            2 * time.Minute,
		BodyIdleTimeout:            20 * time.Second,
		MaxIngestPerToken:          8,
		MaxIngestRequests:          16,
		MaxReadsPerToken:           32,
		MaxReadRequests:            128,
		MaxConnections:             10000,
		MaxConnectionsPerAddress:   1000,
		RefusedAuditPerMinute:      20,
		RefusedAuditTotalPerMinute: 1000,
		DiskReserve:                64 << 20,
		CheckpointInterval:         time.Second,
		LedgerSegmentBytes:         16 << 20,
		AuthFailBurst:              10,
		AuthFailPerMinute:          30,
		ShutdownTimeout:            15 * time.Second,
		DedupWindow:                1 << 18,
		UISessionIdle:              30 * time.Minute,
		UISessionMax:               12 * time.Hour,
	}
}

// LoadConfig builds the configuration from args (the serve command's
// flags, which may name a --config file) and the environment. It returns
// flag.ErrHelp for -h/--help; Usage prints the help.
func LoadConfig(args []string, environ []string) (Config, error) {
	cfg := Defaults()
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", "", "")
	fs.Uint64Var(&cfg.Once.AdoptUnsigned, "adopt-unsigned", 0, "")
	fs.BoolVar(&cfg.Once.StartWithoutWitness, "start-without-witness", false, "")
	fs.StringVar(&cfg.Once.HandoverKey, "handover-key", "", "")
	set := map[string]*flagValue{}
	for _, st := range settings() {
		v := &flagValue{isBool: st.typ == "bool"}
		set[st.key] = v
		for _, name := range append([]string{st.flag}, st.aliases...) {
			fs.Var(v, name, "")
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, err
		}
		// The flag package names flags with one dash; the help, with two.
		msg := strings.Replace(err.Error(), "flag provided but not defined: -", "unknown flag --", 1)
		msg = strings.Replace(msg, "flag needs an argument: -", "a value is missing after --", 1)
		return cfg, fmt.Errorf("%s (see trailguard serve --help)", msg)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected argument %q (settings are flags: see trailguard serve --help)", fs.Arg(0))
	}
	if *path != "" {
		data, err := os.ReadFile(*path)
		if err != nil {
			return cfg, fmt.Errorf("config: %w", err)
		}
		if err := yamlconf.Unmarshal(data, &cfg); err != nil {
			return cfg, fmt.Errorf("config: %s: %w", *path, err)
		}
	}
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for _, st := range settings() {
		// Aliases are applied first, so the main name wins when both are set.
		names := append([]string{st.env}, st.envAliases...)
		for i := len(names) - 1; i >= 0; i-- {
			if v, ok := env[names[i]]; ok {
				if err := fieldByKey(st.key).set(&cfg, v); err != nil {
					return cfg, fmt.Errorf("config: %s: %w", names[i], err)
				}
			}
		}
	}
	for _, st := range settings() {
		if v := set[st.key]; v.set {
			if err := fieldByKey(st.key).set(&cfg, v.raw); err != nil {
				return cfg, fmt.Errorf("config: --%s: %w", st.flag, err)
			}
		}
	}
	if err := cfg.validate(); err != nil {
		return cfg, err
	}
	if errs := cfg.checkSections(*path, false); len(errs) > 0 {
		return cfg, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return cfg, nil
}

// flagValue holds a flag's text until the file and environment are read,
// since flags win over both.
type flagValue struct {
	raw    string
	set    bool
	isBool bool
}

func (v *flagValue) String() string     { return v.raw }
func (v *flagValue) Set(s string) error { v.raw, v.set = s, true; return nil }
func (v *flagValue) IsBoolFlag() bool   { return v.isBool }

func (c *Config) validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir is empty"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("tls_cert and tls_key go together"))
	}
	if c.MaxLineBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_line_bytes %d is below 1024", c.MaxLineBytes))
	}
	if c.MaxRequestBytes < int64(c.MaxLineBytes) {
		errs = append(errs, errors.New("max_request_bytes is below max_line_bytes"))
	}
	if c.MaxRequestBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("max_request_bytes %d is above 1 GiB", c.MaxRequestBytes))
	}
	if c.MaxLineBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("max_line_bytes %d is above 1048576", c.MaxLineBytes))
	}
	if c.MaxRequestEvents < 1 {
		errs = append(errs, fmt.Errorf("max_request_events %d: want at least 1", c.MaxRequestEvents))
	}
	if c.MaxHeaderBytes < 4096 {
		errs = append(errs, fmt.Errorf("max_header_bytes %d is below 4096", c.MaxHeaderBytes))
	}
	if c.BodyReadTimeout <= 0 || c.BodyIdleTimeout <= 0 {
		errs = append(errs, errors.New("body_read_timeout and body_idle_timeout must be positive"))
	}
	if c.MaxIngestPerToken < 1 || c.MaxIngestRequests < 1 {
		errs = append(errs, errors.New("max_ingest_per_token and max_ingest_requests must be at least 1"))
	}
	if c.MaxReadsPerToken < 1 || c.MaxReadRequests < 1 {
		errs = append(errs, errors.New("max_reads_per_token and max_read_requests must be at least 1"))
	}
	if c.MaxConnections < 1 {
		errs = append(errs, fmt.Errorf("max_connections %d must be at least 1", c.MaxConnections))
	}
	if c.MaxConnectionsPerAddress < 0 {
		errs = append(errs, fmt.Errorf("max_connections_per_address %d must be 0 (no bound) or more", c.MaxConnectionsPerAddress))
	}
	if c.RefusedAuditPerMinute < 0 || c.RefusedAuditTotalPerMinute < 0 {
		errs = append(errs, errors.New("refused_audit_per_minute and refused_audit_total_per_minute cannot be negative"))
	}
	if c.DiskReserve < 0 {
		errs = append(errs, fmt.Errorf("disk_reserve %d cannot be negative", c.DiskReserve))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout %v: want a positive duration", c.ShutdownTimeout))
	}
	if c.LedgerSegmentBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("ledger_segment_bytes %d is below 65536", c.LedgerSegmentBytes))
	}
	if c.CheckpointInterval <= 0 || c.CheckpointInterval > time.Minute {
		errs = append(errs, fmt.Errorf("checkpoint_interval %v: want (0, 1m]", c.CheckpointInterval))
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	c.DataDir = filepath.Clean(c.DataDir)
	return nil
}

// field is one Config field, addressable by its YAML key.
type field struct {
	key   string
	index int
}

func fields() []field {
	t := reflect.TypeFor[Config]()
	out := make([]field, 0, t.NumField())
	for i := range t.NumField() {
		out = append(out, field{key: t.Field(i).Tag.Get("yaml"), index: i})
	}
	return out
}

func fieldByKey(key string) field {
	for _, f := range fields() {
		if f.key == key {
			return f
		}
	}
	panic("server: no config field " + key)
}

func (f field) set(cfg *Config, s string) error {
	v := reflect.ValueOf(cfg).Elem().Field(f.index)
	switch v.Interface().(type) {
	case string:
		v.SetString(s)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false, got %q", s)
		}
		v.SetBool(b)
	case int, int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number (bytes are plain numbers: 1048576, not 1MiB), got %q", s)
		}
		v.SetInt(n)
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("want a duration such as 500ms, 30s, 5m or 2h, got %q", s)
		}
		v.SetInt(int64(d))
	case []string:
		var list []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// checkSections reports the mistakes New would find only after it made the
// data directory and the checkpoint keys: the outputs, notifiers,
// decisions and detection sections, retention, redaction and the keys
// given. It writes nothing, so that a mistake in any section is reported
// before anything is on disk. With files it also reads the files they
// name (keys, secrets, CA certificates, rules directories): New does;
// LoadConfig does not, as trailguard report reads the collector's
// configuration on a machine that may not hold them. file, when not "",
// is the YAML file the sections only a file can set came from; their
// errors name it.
func (c *Config) checkSections(file string, files bool) []error {
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	yamlOnly := func(err error) {
		if file != "" {
			err = fmt.Errorf("%s: %w", file, err)
		}
		add(err)
	}
	if c.Retention != "" {
		if _, err := retention.Lookup(c.Retention); err != nil {
			add(err) // "retention: unknown profile …"
		}
	}
	if _, err := redact.ParseMode(c.RedactMode); err != nil {
		add(fmt.Errorf("redact_mode: %w", err))
	} else if files {
		if _, err := newRedactor(*c, false); err != nil {
			add(err)
		}
	}
	for _, err := range forward.Check(c.Outputs, files) {
		yamlOnly(err)
	}
	if !c.Detection.Disabled && !c.Decisions.Disabled {
		for i, a := range c.Decisions.Allowlist {
			if _, err := parsePrefix(a); err != nil {
				yamlOnly(fmt.Errorf("decisions.allowlist[%d]: %w", i, err))
			}
		}
	}
	// A notifier's own text is checked here, with the file named; what
	// it names (a secret, a CA bundle) only below, by NewNotifier.
	notifierOK := make([]bool, len(c.Notifiers))
	if !c.Detection.Disabled {
		for i, nc := range c.Notifiers {
			if err := nc.Check(); err != nil {
				each := []error{err}
				if j, ok := err.(interface{ Unwrap() []error }); ok {
					each = j.Unwrap()
				}
				for _, err := range each {
					yamlOnly(fmt.Errorf("notifiers[%d]: %w", i, err))
				}
				continue
			}
			notifierOK[i] = true
		}
		// Two notifiers of one name would be one series in the metrics
		// (a scrape Prometheus refuses) and one word in the logs.
		first := make(map[string]int, len(c.Notifiers))
		for i, nc := range c.Notifiers {
			if !notifierOK[i] {
				continue
			}
			name := nc.Name
			if name == "" {
				name = nc.Type
			}
			if j, ok := first[name]; ok {
				yamlOnly(fmt.Errorf("notifiers[%d]: notifier %s: notifiers[%d] has that name too: give each a name of its own (name: key)", i, name, j))
				notifierOK[i] = false
				continue
			}
			first[name] = i
		}
	}
	if !files {
		return errs
	}
	if c.SignerKey != "" {
		// A signer_key given is never generated (only the default one
		// is): without it New made the data directory, then failed.
		if _, err := os.Stat(c.SignerKey); err != nil {
			add(fmt.Errorf("signer_key %s: no such file (a signer_key given is used, never made: trailguard keygen makes one)", c.SignerKey))
		} else if _, err := ledger.LoadSigner(c.SignerKey); err != nil {
			add(fmt.Errorf("signer_key: %w", err))
		}
	}
	if c.Once.HandoverKey != "" {
		if _, err := ledger.LoadSigner(c.Once.HandoverKey); err != nil {
			add(fmt.Errorf("--handover-key: %w", err))
		}
	}
	if !c.Detection.Disabled {
		for i, dir := range c.Detection.Rules {
			// A rules directory the operator configured must be there:
			// running a security tool silently without its rules is
			// worse than refusing to start.
			if st, err := os.Stat(dir); err != nil {
				yamlOnly(fmt.Errorf("detection.rules[%d]: the detection rules directory %s: %w", i, dir, errors.Unwrap(err)))
			} else if !st.IsDir() {
				yamlOnly(fmt.Errorf("detection.rules[%d]: the detection rules directory %s: not a directory", i, dir))
			}
		}
		for i, nc := range c.Notifiers {
			if !notifierOK[i] {
				continue // said above
			}
			n, err := alerting.NewNotifier(nc, slog.New(slog.DiscardHandler))
			if err != nil {
				yamlOnly(fmt.Errorf("notifiers[%d]: %w", i, err))
				continue
			}
			n.Close(0)
		}
	}
	return errs
}
