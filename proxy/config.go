package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/ipnet"
	"github.com/trailguard/trailguard/internal/yamlconf"
	"github.com/trailguard/trailguard/sink"
)

// Config configures the gateway. The YAML file `trailguard proxy --config`
// reads has the same keys as the yaml tags below (see docs/proxy.md);
// Sink and Sources are set by programs that embed the gateway.
type Config struct {
	// Listen is the address to serve on (default 127.0.0.1:8080).
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey, when both set, terminate TLS (HTTP/2 and
	// HTTP/1.1 by ALPN). Without them the gateway speaks HTTP/1.1 and
	// cleartext HTTP/2 (h2c, prior knowledge) unless H2C is false.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// H2C accepts cleartext HTTP/2 when TLS is off (default true).
	H2C *bool `yaml:"h2c"`
	// HTTP1 chooses the server of the plain-HTTP listener: "lean" (the
	// default) serves the plain requests the fast path takes (GET, HEAD,
	// OPTIONS without a body) with the gateway's own HTTP/1.1 front end
	// and hands everything else to net/http; "net/http" serves all with
	// net/http. TLS listeners always use net/http.
	HTTP1 string `yaml:"http1"`

	// DataDir is where a single-node gateway keeps its ledger and index
	// (like `trailguard serve`), or, with a Collector, its spool.
	DataDir string `yaml:"data_dir"`
	// Collector, when its URL is set, receives the events (through a
	// durable spool) and serves the block decisions.
	Collector Collector `yaml:"collector"`
	// TrailDir, when set, also keeps every event as rotating JSON-lines
	// files there (package sink: DIR/trail.jsonl is the active one), for
	// log shippers, grep and tools like fail2ban.
	TrailDir string `yaml:"trail_dir"`
	// API, when set, is an address on which a single-node gateway also
	// serves the collector's API (query, tail, decisions) over its data.
	API string `yaml:"api_listen"`

	// ServiceName is service.name on every event (default
	// "trailguard-proxy").
	ServiceName string `yaml:"service_name"`
	// TrustedProxies are the peers (CIDRs or addresses) whose
	// ForwardedHeader is believed, for client.ip, for the blocklist and
	// the rate limits, and passed on upstream.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// ForwardedHeader is the header the trusted proxies write the
	// client's address in: X-Forwarded-For (default) or Forwarded
	// (httpaudit.Config.ForwardedHeader). The client's own copy of the
	// other is not believed nor passed on: the upstream gets both headers
	// naming the chain the gateway believed.
	ForwardedHeader string `yaml:"forwarded_header"`
	// RequestIDHeader is the correlation header (default X-Request-ID).
	RequestIDHeader string `yaml:"request_id_header"`
	// Headers names request headers recorded, scrubbed, on every event.
	Headers []string `yaml:"headers"`
	// RedactMode is how secrets are replaced: remove, mask (default) or
	// hmac-sha256 (with RedactSecretFile).
	RedactMode       string `yaml:"redact_mode"`
	RedactSecretFile string `yaml:"redact_secret_file"`

	// Routes map requests to upstreams; the first route whose host and
	// path prefix match, longest prefix first, wins.
	Routes []Route `yaml:"routes"`
	// Logins are the login endpoints whose answers become
	// authn_login_success and authn_login_fail events.
	Logins []Login `yaml:"logins"`
	// Sensitive are the operations recorded as audit events.
	Sensitive []Sensitive `yaml:"sensitive"`
	// UpstreamAudits says the upstream records its own failed logins and
	// refusals (with httpaudit, into the same collector): then a 401 or
	// 403 answer is not also recorded as authn_login_fail or authz_fail
	// by the gateway, so that detection does not count each attempt twice.
	// Login and sensitive routes configured above are still recorded.
	UpstreamAudits bool `yaml:"upstream_audits"`
	// RateLimit applies to every client address across all routes.
	RateLimit *RateLimit `yaml:"rate_limit"`
	// RefusalsPerMinute bounds the refused requests (blocked, rate
	// limited) recorded per client address and minute (default 20);
	// RefusalsTotalPerMinute bounds them for all addresses (default
	// 1000). The rest are counted and summarised once a minute.
	RefusalsPerMinute      int `yaml:"refusals_per_minute"`
	RefusalsTotalPerMinute int `yaml:"refusals_total_per_minute"`

	// Timeouts bound the conversation with the upstream and the client.
	Timeouts Timeouts `yaml:"timeouts"`
	// MaxHeaderBytes bounds a request's header (default 64 KiB).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// MaxConnections bounds the client connections open at once (default
	// 10,000; the single node's API listener has a sixteenth more, at
	// least 8, of its own); beyond, new
	// ones wait in the listen queue until one closes. Serve lowers it to
	// fit the open-file limit, two descriptors a connection (its upstream
	// connection), with room for the ledger's and spool's files: idle
	// connections that took every descriptor made the ledger fail.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerAddress bounds the client connections one address
	// (an IPv6 /64) holds open (default 1,000, -1: no bound), at most
	// half of MaxConnections; trusted_proxies are not bound. Beyond, new
	// connections from that address are closed at once: one address held
	// every slot with idle connections and every other client waited.
	// The single node's API listener holds connections without a valid
	// token to an eighth of it (at least 8), at most half its slots.
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address"`

	// Detection configures the embedded detection engine of a single-node
	// gateway.
	Detection Detection `yaml:"detection"`

	// Sink receives the encoded events (embedding; Open sets it from
	// DataDir or Collector). The Proxy owns it: Close closes it.
	Sink sink.Sink `yaml:"-"`
	// Sources feed the blocklist (embedding; Open adds the collector's
	// decision stream or the embedded engine).
	Sources []Source `yaml:"-"`
	// Now is the clock (default time.Now).
	Now func() time.Time `yaml:"-"`
}

// Collector is where a gateway ships its events and reads decisions.
type Collector struct {
	// URL is the collector's base URL, e.g. http://collector:8600.
	URL string `yaml:"url"`
	// Token is an ingest token for POST /v1/events.
	Token string `yaml:"token"`
	// BouncerKey is the X-Api-Key for the decision stream (a token with
	// the bouncer role); empty means no decisions are read.
	BouncerKey string `yaml:"bouncer_key"`
	// PollInterval is how often the decision stream is polled (default
	// 50ms: a decision must be enforced well within a second, and the
	// poll is most of the time from a collector's decision to the block;
	// an unchanged answer is a few bytes).
	PollInterval time.Duration `yaml:"poll_interval"`
	// FlushInterval is how long an event may wait in the spool before it
	// is sent (default 20ms: detection needs events within a second).
	FlushInterval time.Duration `yaml:"flush_interval"`
	// MaxSpoolBytes bounds the spool on disk (default 1 GiB).
	MaxSpoolBytes int64 `yaml:"max_spool_bytes"`
}

// Detection configures a single-node gateway's detection: the engine of
// `trailguard serve` (package detect, the built-in Sigma rules) following
// the gateway's own ledger, alerts, and block decisions enforced in
// process.
type Detection struct {
	// Disabled turns detection off.
	Disabled bool `yaml:"disabled"`
	// Rules is a directory of Sigma rules loaded besides the built-in
	// ones (and DATA_DIR/rules).
	Rules string `yaml:"rules"`
	// NoBuiltin leaves the built-in rules out.
	NoBuiltin bool `yaml:"no_builtin"`
	// Block tunes the block decisions the rules ask for.
	Block Block `yaml:"block"`
}

// Route sends requests for a host and path prefix to an upstream.
type Route struct {
	// Name labels the route in events and errors (default: the prefix).
	Name string `yaml:"name"`
	// Host matches the request's host, without port, case-insensitively;
	// "*.example.com" matches any subdomain; empty matches any host.
	Host string `yaml:"host"`
	// Path is the path prefix (default "/"). "/api/" matches /api/x; "/api"
	// matches /api and /api/x, not /apix.
	Path string `yaml:"path"`
	// Upstream is the URL requests go to; its path is prefixed to the
	// request path.
	Upstream string `yaml:"upstream"`
	// StripPrefix removes Path from the request path before forwarding.
	StripPrefix bool `yaml:"strip_prefix"`
	// PreserveHost sends the client's Host header upstream instead of the
	// upstream's host.
	PreserveHost bool `yaml:"preserve_host"`
	// CaptureBody records JSON and form request bodies of at most this
	// many bytes, scrubbed (0: off). Bodies still stream to the upstream.
	CaptureBody int `yaml:"capture_body"`
	// RateLimit limits this route, per client address or for the route as
	// a whole.
	RateLimit *RateLimit `yaml:"rate_limit"`
}

// Login describes a login endpoint of the upstream API.
type Login struct {
	// Method is the HTTP method (default POST).
	Method string `yaml:"method"`
	// Path is a path pattern: literal segments, "*" or "{name}" for one
	// segment, "{name...}" or "**" for the rest.
	Path string `yaml:"path"`
	// Host restricts the rule to one host (optional).
	Host string `yaml:"host"`
	// User says where the user name is: "json:FIELD" (dotted for nested
	// objects), "form:FIELD", "query:PARAM" or "basic" (the Basic-auth
	// user). The password is never read.
	User string `yaml:"user"`
	// MaxBody bounds the request body read for the user name (default
	// 16 KiB): a longer login body is refused (413), as one that is
	// neither a form nor JSON is (400), since its user could not be
	// recorded or checked against user-name bans.
	MaxBody int `yaml:"max_body"`
}

// Sensitive describes an operation to record as an audit event.
type Sensitive struct {
	Method string `yaml:"method"`
	Path   string `yaml:"path"`
	Host   string `yaml:"host"`
	// Action is event.action, e.g. user_role_change.
	Action string `yaml:"action"`
	// TargetUser names the path wildcard holding the target user's id
	// (user.target.id), e.g. "id" for /api/users/{id}/role.
	TargetUser string `yaml:"target_user"`
	// CaptureBody records the request body (JSON or form, scrubbed) as the
	// operation's new state, trailguard.audit.after (default 16 KiB; -1
	// turns it off).
	CaptureBody int `yaml:"capture_body"`
}

// RateLimit is a token bucket: Rate requests per second on average, Burst
// at once.
type RateLimit struct {
	Rate  float64 `yaml:"rate"`
	Burst int     `yaml:"burst"`
	// Per is "client" (each client address, IPv6 by /64; default) or
	// "route" (all clients of the route together).
	Per string `yaml:"per"`
}

// Timeouts bound how long the gateway waits.
type Timeouts struct {
	// Dial bounds connecting to the upstream (default 5s).
	Dial time.Duration `yaml:"dial"`
	// ResponseHeader bounds the wait for the upstream's response header
	// after the request was sent (default 60s); beyond it the client gets
	// 504.
	ResponseHeader time.Duration `yaml:"response_header"`
	// Idle closes idle upstream and client connections, the single
	// node's API listener's (--api) and upgraded (WebSocket) tunnels on
	// which neither side sent a byte for that long included (default
	// 90s).
	Idle time.Duration `yaml:"idle"`
	// ReadHeader bounds reading a client's request header (default 10s).
	ReadHeader time.Duration `yaml:"read_header"`
	// Write ends a client connection when a write to it makes no
	// progress for this long (default 60s, nginx's send_timeout): a
	// client that stops reading its answer cannot hold the gateway's
	// goroutine, buffers and upstream connection. It is not a bound on
	// the whole answer: downloads, SSE and WebSocket streams go on while
	// the client reads. A write is cut between Write and 1.5×Write after
	// it stalled.
	Write time.Duration `yaml:"write"`
	// Body ends a request when a read of its body brings nothing for
	// this long (default 60s, nginx's client_body_timeout): a client that
	// sends a head and then part of a body, or none, cannot hold the
	// gateway's goroutine, its connection and an upstream connection. A
	// body that keeps coming, however slowly, is not cut.
	Body time.Duration `yaml:"body"`
	// Shutdown bounds the time from SIGTERM to exit (default 15s), in the
	// collector's shares (server.ShutdownPlan): requests in flight 40 %,
	// the gateway's last events and the ledger's final checkpoint by
	// 75 %, the followers by 90 %.
	Shutdown time.Duration `yaml:"shutdown"`
}

// LoadConfig reads a YAML configuration file. Unknown keys are errors.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("proxy: config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return cfg, fmt.Errorf("proxy: config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads a YAML configuration. Unknown keys are errors, which
// say where (line and column) without the package's prefix.
func ParseConfig(data []byte) (Config, error) {
	var cfg Config
	err := yamlconf.Unmarshal(data, &cfg)
	return cfg, err
}

// The servers of the plain-HTTP listener (Config.HTTP1).
const (
	HTTP1Lean    = "lean"
	HTTP1NetHTTP = "net/http"
)

// withDefaults returns cfg with every zero value replaced by its default.
func (cfg Config) withDefaults() Config {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.H2C == nil {
		t := true
		cfg.H2C = &t
	}
	if cfg.HTTP1 == "" {
		cfg.HTTP1 = HTTP1Lean
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "trailguard-proxy"
	}
	if cfg.RequestIDHeader == "" {
		cfg.RequestIDHeader = "X-Request-ID"
	}
	if cfg.RedactMode == "" {
		cfg.RedactMode = "mask"
	}
	if cfg.RefusalsPerMinute == 0 {
		cfg.RefusalsPerMinute = 20
	}
	if cfg.RefusalsTotalPerMinute == 0 {
		cfg.RefusalsTotalPerMinute = 1000
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = 64 << 10
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 10000
	}
	if cfg.MaxConnectionsPerAddress == 0 {
		cfg.MaxConnectionsPerAddress = 1000
	}
	t := &cfg.Timeouts
	t.Dial = cmpOr(t.Dial, 5*time.Second)
	t.ResponseHeader = cmpOr(t.ResponseHeader, 60*time.Second)
	t.Idle = cmpOr(t.Idle, 90*time.Second)
	t.ReadHeader = cmpOr(t.ReadHeader, 10*time.Second)
	t.Write = cmpOr(t.Write, 60*time.Second)
	t.Body = cmpOr(t.Body, 60*time.Second)
	t.Shutdown = cmpOr(t.Shutdown, 15*time.Second)
	c := &cfg.Collector
	c.PollInterval = cmpOr(c.PollInterval, 50*time.Millisecond)
	c.FlushInterval = cmpOr(c.FlushInterval, 20*time.Millisecond)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Validate reports every mistake in the configuration at once, each
// saying what to change.
func (cfg Config) Validate() error {
	if errs := cfg.Problems(); len(errs) > 0 {
		return fmt.Errorf("proxy: config: %w", errors.Join(errs...))
	}
	return nil
}

// Problems lists the mistakes Validate reports, one error each, named by
// the YAML key ("routes[1] (api): upstream …") and without the package's
// prefix: trailguard proxy prints each after the file's name.
func (cfg Config) Problems() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		add("tls_cert and tls_key go together")
	}
	if cfg.HTTP1 != "" && cfg.HTTP1 != HTTP1Lean && cfg.HTTP1 != HTTP1NetHTTP {
		add("http1 %q: want %q (default) or %q", cfg.HTTP1, HTTP1Lean, HTTP1NetHTTP)
	}
	if cfg.MaxConnections < 0 {
		add("max_connections %d: want 0 (default 10000) or more", cfg.MaxConnections)
	}
	if cfg.MaxConnectionsPerAddress < -1 {
		add("max_connections_per_address %d: want 0 (default 1000), -1 (no bound) or more", cfg.MaxConnectionsPerAddress)
	}
	if len(cfg.Routes) == 0 {
		add("no routes: give --upstream URL or a routes: list")
	}
	for i, r := range cfg.Routes {
		where := fmt.Sprintf("routes[%d]", i)
		if r.Name != "" {
			where += " (" + r.Name + ")"
		}
		if _, err := parseUpstream(r.Upstream); err != nil {
			add("%s: %v", where, err)
		}
		if r.Path != "" && !strings.HasPrefix(r.Path, "/") {
			add("%s: path %q must start with /", where, r.Path)
		}
		if r.CaptureBody < 0 || r.CaptureBody > 1<<20 {
			add("%s: capture_body %d: want 0 (off) to 1048576 bytes", where, r.CaptureBody)
		}
		if err := r.RateLimit.validate(true); err != nil {
			add("%s: rate_limit: %v", where, err)
		}
	}
	for i, l := range cfg.Logins {
		where := fmt.Sprintf("logins[%d]", i)
		if _, err := compilePattern(l.Path); err != nil {
			add("%s: %v", where, err)
		}
		if _, err := parseUserSource(l.User); err != nil {
			add("%s: %v", where, err)
		}
		if l.Method != "" && !validMethod(l.Method) {
			add("%s: method %q is not an HTTP method", where, l.Method)
		}
		if l.MaxBody < 0 || l.MaxBody > 1<<20 {
			add("%s: max_body %d: want 0 (default 16384) to 1048576", where, l.MaxBody)
		}
	}
	for i, s := range cfg.Sensitive {
		where := fmt.Sprintf("sensitive[%d]", i)
		p, err := compilePattern(s.Path)
		if err != nil {
			add("%s: %v", where, err)
		} else if s.TargetUser != "" && !p.has(s.TargetUser) {
			add("%s: target_user %q is not a {name} in path %q", where, s.TargetUser, s.Path)
		}
		if s.Action == "" {
			add("%s: action is required (e.g. %s)", where, event.ActionUserRoleChange)
		} else if !validAction(s.Action) {
			add("%s: action %q: want lower-case letters, digits and _", where, s.Action)
		}
		if s.Method != "" && !validMethod(s.Method) {
			add("%s: method %q is not an HTTP method", where, s.Method)
		}
		if s.CaptureBody < -1 || s.CaptureBody > 1<<20 {
			add("%s: capture_body %d: want -1 (off), 0 (default 16384) or up to 1048576", where, s.CaptureBody)
		}
	}
	if err := cfg.RateLimit.validate(false); err != nil {
		add("rate_limit: %v", err)
	}
	for _, p := range cfg.TrustedProxies {
		if _, err := ipnet.Parse(p); err != nil {
			add("trusted_proxies: %v", err)
		}
	}
	switch http.CanonicalHeaderKey(cfg.ForwardedHeader) {
	case "", "X-Forwarded-For", "Forwarded":
	default:
		add("forwarded_header %q: want X-Forwarded-For or Forwarded", cfg.ForwardedHeader)
	}
	if cfg.Collector.URL != "" {
		if err := CheckCollectorURL(cfg.Collector.URL); err != nil {
			add("collector.url %q: %v", cfg.Collector.URL, err)
		}
		// Without it every event waits in the spool for a collector that
		// answers 401, which the gateway logs only once it tries to ship.
		if cfg.Collector.Token == "" {
			add("collector.token (--token TOKEN, or TRAILGUARD_PROXY_TOKEN) is needed with collector.url: an ingest token of that collector (trailguard token create --role ingest --name gateway-1 there)")
		}
	}
	if cfg.RefusalsPerMinute < 0 || cfg.RefusalsTotalPerMinute < 0 {
		add("refusals_per_minute and refusals_total_per_minute cannot be negative")
	}
	return errs
}

func (rl *RateLimit) validate(route bool) error {
	if rl == nil {
		return nil
	}
	if rl.Rate <= 0 {
		return fmt.Errorf("rate %v: want requests per second > 0", rl.Rate)
	}
	if rl.Burst < 1 {
		return fmt.Errorf("burst %d: want at least 1", rl.Burst)
	}
	switch rl.Per {
	case "", "client":
	case "route":
		if !route {
			return errors.New(`per: "route" only applies to a route's rate_limit`)
		}
	default:
		return fmt.Errorf("per %q: want client or route", rl.Per)
	}
	return nil
}

func parseUpstream(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("upstream is required (e.g. http://127.0.0.1:9000)")
	}
	u, err := upstreamURL(s)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", s, err)
	}
	return u, nil
}

// CheckUpstream reports what is wrong with s as an upstream URL (a
// route's upstream, or trailguard proxy's --upstream), in words that do
// not name the setting: the command line names its flag, the file its
// key.
func CheckUpstream(s string) error {
	_, err := upstreamURL(s)
	return err
}

func upstreamURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		// url.Parse reads "127.0.0.1:9000" as a path and says so in its
		// own terms; say what to write instead.
		return nil, fmt.Errorf("want http://host:port or https://host:port (the scheme is missing: http://%s?)", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.Unwrap(err) // *url.Error repeats the URL
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("want http://host:port or https://host:port")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("no query, fragment or credentials allowed")
	}
	return u, nil
}

// CheckCollectorURL reports what is wrong with s as the collector's base
// URL (collector.url, trailguard proxy's --collector), without naming
// the setting.
func CheckCollectorURL(s string) error {
	if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want http://host:port or https://host:port")
	}
	return nil
}

func validMethod(m string) bool {
	if m == "*" {
		return true
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; c < 'A' || c > 'Z' {
			return false
		}
	}
	return m != "" && len(m) <= 16 && http.CanonicalHeaderKey(m) != ""
}

func validAction(a string) bool {
	for i := 0; i < len(a); i++ {
		if c := a[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return len(a) <= 64
}
