package server

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
)

// settingHelp is what a user reads about one setting in `trailguard serve
// --help`: written for people, not derived from field names. Every Config
// field must have an entry (TestSettingsCoverConfig checks), in the order
// the help lists them.
type settingHelp struct {
	key  string // the YAML key, which names the field
	flag string // the flag, when it differs from the key with - for _
	env  string // the variable, when it differs from TRAILGUARD_<KEY>
	// Hidden older names, still accepted.
	aliases, envAliases []string
	arg                 string // what the value is, in the synopsis: DIR, ADDR, FILE…
	yamlOnly            bool   // a structured setting: no flag or variable
	def                 string // the default as a person should read it, when computed
	help                string
}

var settingsHelp = []settingHelp{
	{key: "data_dir", flag: "data", env: "TRAILGUARD_DATA", aliases: []string{"data-dir"}, envAliases: []string{"TRAILGUARD_DATA_DIR"}, arg: "DIR",
		help: "Directory holding the ledger, the search index, the checkpoint keys and the API tokens; created on first start."},
	{key: "listen", arg: "ADDR",
		help: "Address (host:port) to serve HTTP on; 0.0.0.0:8600 accepts shippers from other hosts, :0 picks a free port."},
	{key: "tls_cert", arg: "FILE", help: "PEM certificate: with --tls-key, serve HTTPS instead of HTTP."},
	{key: "tls_key", arg: "FILE", help: "PEM private key of --tls-cert."},
	{key: "origin", arg: "NAME", def: "trailguard/<hostname>",
		help: "Name of the log in its signed checkpoints; never change it once a ledger exists."},
	{key: "signer_key", arg: "FILE", def: "DIR/keys/signer.key, generated on first start",
		help: "Ed25519 key that signs checkpoints (note format, from trailguard keygen)."},
	{key: "retention", arg: "PROFILE", def: "keep everything",
		help: "How long records are kept: pci-dss (365 days), soc2 (365), hipaa (2190) or custom:<days>."},
	{key: "legal_hold", help: "Keep everything regardless of retention (litigation hold)."},
	{key: "witness", arg: "DIR|URL,...",
		help: "Directories or http(s) URLs that receive a copy of every signed checkpoint, so truncation of the ledger is detectable."},
	{key: "redact_mode", arg: "MODE",
		help: "How secrets found at ingest are replaced: remove, mask, or hmac-sha256 (same secret, same token)."},
	{key: "redact_secret_file", arg: "FILE", help: "File holding the HMAC key for redact_mode hmac-sha256."},
	{key: "max_line_bytes", arg: "BYTES", help: "Largest single event accepted; a longer line is rejected on its own, not the whole batch."},
	{key: "max_request_bytes", arg: "BYTES", help: "Largest ingest request body, before and after gzip (413 beyond)."},
	{key: "max_request_events", arg: "N", help: "Most events (NDJSON lines, _bulk actions) one ingest request may carry; the request stops there with 413 and resume_line, to send the rest again."},
	{key: "max_header_bytes", arg: "BYTES", help: "Largest request line plus headers (431 beyond, before anything is recorded)."},
	{key: "body_read_timeout", arg: "DURATION", help: "Longest time to receive one ingest request body, and to send its answer (408 beyond); also any other request body, one refused unread included."},
	{key: "body_idle_timeout", arg: "DURATION", help: "Longest time an ingest request body may stall without a byte arriving (408 beyond)."},
	{key: "max_ingest_per_token", arg: "N", help: "Ingest requests one token may have in progress (429 with Retry-After beyond)."},
	{key: "max_ingest_requests", arg: "N", help: "Ingest requests in progress for all tokens together (503 with Retry-After beyond); bounds memory."},
	{key: "max_reads_per_token", arg: "N", help: "Reads (searches, stats, live tails, reports) one token and its web UI sessions may have in progress (429 with Retry-After beyond)."},
	{key: "max_read_requests", arg: "N", help: "Reads in progress for all tokens together (503 with Retry-After beyond)."},
	{key: "max_connections", arg: "N", help: "Client connections open at once; beyond, new ones wait until one closes. Lowered at start, with a warning, to fit the open-file limit (LimitNOFILE) with room for the ledger's and index's files."},
	{key: "max_connections_per_address", arg: "N", help: "Client connections one address (an IPv6 /64) may hold open, at most half of max_connections (0: no bound); an eighth of it, at least 8, until a request on the connection presented a valid token. Beyond, its new connections are closed at once, so that one address cannot hold every slot."},
	{key: "refused_audit_per_minute", arg: "N", help: "Requests without a valid token recorded per client address and minute; the rest are counted and summarised."},
	{key: "disk_reserve", arg: "BYTES", help: "Free space ingest never takes (507 below it) so checkpoints always have room; the index pauses below twice it."},
	{key: "refused_audit_total_per_minute", arg: "N", help: "Requests without a valid token recorded per minute from all addresses together."},
	{key: "checkpoint_interval", arg: "DURATION", help: "Longest time a stored record waits for a signed checkpoint (at most 1m)."},
	{key: "ledger_segment_bytes", arg: "BYTES", help: "Size at which a ledger segment file is closed (and compressed) and the next begun; retention deletes whole segments (at least 65536)."},
	{key: "metrics_public", help: "Serve /metrics without a token, for a Prometheus scraper on a private network."},
	{key: "auth_fail_burst", arg: "N", help: "Failed token checks one client address may make at once before it gets 429."},
	{key: "auth_fail_per_minute", arg: "N", help: "Failed token checks per minute one client address regains after the burst."},
	{key: "dedup_window", arg: "N",
		help: "How many recent event.ids are remembered, so an event a shipper sends twice is stored once (0: off)."},
	{key: "shutdown_timeout", arg: "DURATION", help: "Longest time from SIGTERM to exit: requests in flight get 40 % of it, the collector's last audit events and the ledger's final checkpoint end by 75 %, the index, detection, outputs and UI overview are stopped (or abandoned, and caught up from the ledger at the next start) by 90 %; the rest is margin."},
	{key: "ui_session_idle", arg: "DURATION", help: "Web UI sessions end after this long without activity (automatic refreshes do not count)."},
	{key: "ui_session_max", arg: "DURATION", help: "Web UI sessions end this long after sign-in, active or not."},
	{key: "outputs", yamlOnly: true,
		help: "Engines every stored event is forwarded to, each from its own cursor in the ledger: a list of {name, type: elasticsearch|opensearch|victorialogs|syslog, url, …} (see docs/scale-out.md)."},
	{key: "detection", yamlOnly: true,
		help: "The Sigma rule engine that follows the ledger: {disabled, rules: [DIR…] (besides the built-in rules and DIR/rules), no_builtin, suppress: 10m, max_groups} (see docs/detection.md)."},
	{key: "notifiers", yamlOnly: true,
		help: "Where alerts are delivered: a list of {name, type: webhook|slack|syslog|alertmanager, url, secret_file, min_level, …} (see docs/detection.md)."},
	{key: "decisions", yamlOnly: true,
		help: "Block decisions rules ask for, served to CrowdSec bouncers: {disabled, allowlist: [CIDR…], duration: 1h, max_duration: 168h, factor: 4, memory: 720h, max_active: 100000, widen_at: 16}."},
}

// setting is one configuration setting with all its names, its type and
// its help.
type setting struct {
	settingHelp
	typ string // bool, string, int, duration, list
}

func (st setting) envName() string {
	if st.env != "" {
		return st.env
	}
	return "TRAILGUARD_" + strings.ToUpper(st.key)
}

// settings returns every setting, in help order. It panics on a Config
// field without help: the test suite catches that before anyone runs it.
func settings() []setting {
	t := reflect.TypeFor[Config]()
	out := make([]setting, 0, len(settingsHelp))
	for _, h := range settingsHelp {
		if h.yamlOnly {
			continue
		}
		f, ok := fieldOfKey(t, h.key)
		if !ok {
			panic("server: help for unknown setting " + h.key)
		}
		st := setting{settingHelp: h, typ: typeName(f.Type)}
		if st.flag == "" {
			st.flag = strings.ReplaceAll(h.key, "_", "-")
		}
		st.env = st.envName()
		out = append(out, st)
	}
	return out
}

func fieldOfKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("yaml") == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration"
	case t.Kind() == reflect.Bool:
		return "bool"
	case t.Kind() == reflect.Int, t.Kind() == reflect.Int64:
		return "int"
	case t.Kind() == reflect.Slice:
		return "list"
	}
	return "string"
}

// defaultText is how the help shows a setting's default.
func (st setting) defaultText() string {
	if st.def != "" {
		return st.def
	}
	v := reflect.ValueOf(Defaults()).FieldByIndex(mustField(st.key).Index)
	switch x := v.Interface().(type) {
	case string:
		if x == "" {
			return "none"
		}
		return x
	case []string:
		if len(x) == 0 {
			return "none"
		}
		return strings.Join(x, ",")
	case int:
		return fmt.Sprint(x)
	case int64:
		return fmt.Sprint(x)
	}
	return fmt.Sprint(v.Interface())
}

func mustField(key string) reflect.StructField {
	f, ok := fieldOfKey(reflect.TypeFor[Config](), key)
	if !ok {
		panic("server: no config field " + key)
	}
	return f
}

// Usage writes the help of `trailguard serve`: every flag with its type,
// its default, a sentence, and its YAML key and environment variable.
func Usage(w io.Writer) {
	fmt.Fprint(w, `usage: trailguard serve [--config FILE] [flags]

Runs the collector: ingest (NDJSON and Elasticsearch _bulk), ledger, index,
query API. Settings come from defaults, then the YAML file, then TRAILGUARD_*
variables, then flags (each one wins over the ones before).

  --config FILE (string)
      YAML file of settings, keyed as shown below (e.g. "data_dir: /var/lib/trailguard").
`)
	for _, st := range settings() {
		arg := ""
		if st.arg != "" {
			arg = " " + st.arg
		}
		fmt.Fprintf(w, "  --%s%s (%s, default %s)\n      %s\n      YAML %s, env %s\n",
			st.flag, arg, st.typ, st.defaultText(), st.help, st.key, st.env)
	}
	for _, h := range settingsHelp {
		if h.yamlOnly {
			fmt.Fprintf(w, "  %s: (YAML only)\n      %s\n", h.key, h.help)
		}
	}
	fmt.Fprint(w, onceUsage)
	fmt.Fprint(w, "\nBYTES and N are integers; DURATION is a Go duration such as 500ms, 2s or 1m.\n")
}

// MistypedEnv returns a warning for each TRAILGUARD_* variable in environ
// that is no setting's name but within two letters of one
// (TRAILGUARD_MAX_LINE_BYTE): LoadConfig ignores variables it does not
// know, which other programs' TRAILGUARD_* variables need, so a typo
// would otherwise leave the default in force without a word.
func MistypedEnv(environ []string) []string {
	known := map[string]bool{}
	for _, st := range settings() {
		known[st.env] = true
		for _, a := range st.envAliases {
			known[a] = true
		}
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "TRAILGUARD_") || known[name] {
			continue
		}
		for _, st := range settings() {
			if editDistance(name, st.env) <= 2 {
				out = append(out, fmt.Sprintf("%s is not a setting and is ignored; did you mean %s?", name, st.env))
				break
			}
		}
	}
	return out
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
