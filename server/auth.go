package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
	"github.com/trailguard/trailguard/internal/connlimit"
)

type tokenKey struct{}

// requireRole wraps h so that only a request bearing a valid, unrevoked
// token whose role allows need reaches it. A valid token is always
// accepted, whatever else came from its address: tokens are long random
// secrets (160 bits), so checking every one is cheap and guessing is
// hopeless, and a bad client behind the same NAT must not lock out good
// ones. Failed checks are what is limited: beyond AuthFailBurst failures
// per address (refilled at AuthFailPerMinute) a failure is answered 429
// with Retry-After instead of 401. Failures are recorded in the trail
// (authentication failures as authn_login_fail, insufficient roles as
// authz_fail) within the per-address sampling budget (see sampler).
func (s *Server) requireRole(need access.Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ip := clientAddr(r)
		mark := markFrom(r.Context())
		presented, ok := presentedToken(r)
		var tok access.Token
		err := errNoToken
		if ok {
			tok, err = s.tokens.Check(presented)
		}
		if err != nil {
			s.refuseToken(w, r, ip, mark, tok, err)
			return
		}
		// A valid token: its connection counts against its address's cap,
		// no longer the lower one of connections without a token.
		connlimit.Vouch(r.Context())
		user := httpaudit.User{ID: tok.ID, Name: tok.Name, Roles: []string{string(tok.Role)}}
		httpaudit.SetUser(r.Context(), user)
		if !tok.Role.Allows(need) {
			s.metrics.authFailed.Add(1)
			if s.shouldRecord(mark, ip) {
				httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionAuthzFail, Resource: r.URL.Path,
					Outcome: event.OutcomeFailure, Reason: "role " + string(tok.Role) + " lacks " + string(need)})
			}
			writeError(w, http.StatusForbidden, "token "+strconv.Quote(tok.Name)+" has role "+string(tok.Role)+"; this needs role "+string(need)+
				": use a token of that role (trailguard token create --role "+string(need)+" --name NAME)")
			return
		}
		if mark != nil {
			mark.setAuthorized()
		}
		// Reads of audit data and administration are recorded in the trail
		// before they are answered (PCI DSS 10.2.1.2, 10.2.1.3): when the
		// trail cannot take the event (disk full, storage failed), they
		// fail fast rather than wait for a write that will not happen or
		// happen unrecorded. Metrics stay readable: they are how operators
		// see the outage.
		if need != access.RoleIngest && r.URL.Path != "/metrics" {
			if why := s.auditUnavailable(); why != "" {
				w.Header().Set("Retry-After", "30")
				writeError(w, http.StatusServiceUnavailable, why+"; retry later")
				return
			}
		}
		if need == access.RoleRead && r.URL.Path != "/metrics" {
			release, status := s.reads.acquire(tok.ID)
			if status != 0 {
				w.Header().Set("Retry-After", "1")
				msg := fmt.Sprintf("this token already has %d reads in progress (max_reads_per_token): wait for them, close a live tail, or retry after 1 s", s.reads.perToken)
				if status == http.StatusServiceUnavailable {
					msg = fmt.Sprintf("the collector is busy: %d reads in progress (max_read_requests); retry after 1 s", s.reads.total)
				}
				writeError(w, status, msg)
				return
			}
			defer release()
			// A read's record (recordRead) is written while the read
			// runs; its answer waits for it.
			rw := &recordedWriter{ResponseWriter: w}
			ctx := context.WithValue(context.WithValue(r.Context(), tokenKey{}, tok), pendingKey{}, rw)
			h(rw, r.WithContext(ctx))
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
	}
}

type pendingKey struct{}

// recordedWriter holds a read's answer until the record of the read
// (recordRead) is persisted: a crash after the answer cannot lose it,
// and the query runs while the ledger writes the record.
type recordedWriter struct {
	http.ResponseWriter
	wait func() error // set by recordRead; called once, by the handler's goroutine
}

func (w *recordedWriter) recorded() {
	if w.wait != nil {
		w.wait() // an error: the trail is failing, which requireRole checked before; answered as before
		w.wait = nil
	}
}

func (w *recordedWriter) WriteHeader(code int) {
	w.recorded()
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordedWriter) Write(b []byte) (int, error) {
	w.recorded()
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (live tails
// flush through it).
func (w *recordedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var errNoToken = errors.New("no API token")

// auditUnavailable says why the collector's own trail cannot record an
// event now, or "" when it can.
func (s *Server) auditUnavailable() string {
	switch {
	case s.space.belowReserve():
		return "the audit trail cannot record this request: the collector's disk is full (or below its disk_reserve)"
	case s.audit.Stats().Failing:
		return "the audit trail cannot record this request: the collector's storage is failing"
	}
	return ""
}

// refuseToken answers a request whose token is missing or invalid: 401,
// or 429 once its address has failed too often.
func (s *Server) refuseToken(w http.ResponseWriter, r *http.Request, ip string, mark *reqMark, tok access.Token, err error) {
	s.metrics.authFailed.Add(1)
	record := s.shouldRecord(mark, ip)
	if s.throttled(w, r, ip, record, "api-token", "too many failed token checks from ",
		"too many failed authentication attempts from this address; retry in %d s (a valid token is always accepted)") {
		return
	}
	reason := "invalid token"
	switch {
	case errors.Is(err, errNoToken):
		reason = "no API token"
	case errors.Is(err, access.ErrRevoked):
		reason = "revoked token"
	}
	if record {
		a := httpaudit.Attempt{User: httpaudit.User{Name: tok.Name}, Reason: reason}
		if errors.Is(err, errNoToken) {
			a.Action = event.ActionLoginFail
		}
		httpaudit.Auth(r.Context(), a)
	}
	if errors.Is(err, errNoToken) {
		w.Header()["WWW-Authenticate"] = authChallenge
		writeError(w, http.StatusUnauthorized, "an API token is required: Authorization: Bearer tg_…, ApiKey base64(name:tg_…), or Basic with the token as password")
		return
	}
	w.Header()["WWW-Authenticate"] = []string{`Bearer realm="trailguard", error="invalid_token"`, authChallenge[1]}
	hint := ": not a token of this collector; check it was copied whole and made by trailguard token create with this collector's --data"
	if errors.Is(err, access.ErrRevoked) {
		hint = ": it was revoked; use another (trailguard token create)"
	}
	writeError(w, http.StatusUnauthorized, reason+hint)
}

// throttled counts a failed credential check from ip and, once the
// address has failed too often, answers 429 with Retry-After (msg has a %d
// for the seconds), audits the first excess on resource, and reports true.
func (s *Server) throttled(w http.ResponseWriter, r *http.Request, ip string, record bool, resource, reason, msg string) bool {
	wait, limited := s.limiter.fail(ip)
	if !limited {
		return false
	}
	s.metrics.authRejected.Add(1)
	if record && s.limiter.reportExceeded(ip) {
		httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionRateLimitExceeded, Resource: resource,
			Outcome: event.OutcomeFailure, Reason: reason + ip})
	}
	secs := max(1, int(wait.Seconds()+0.999))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf(msg, secs))
	return true
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// failLimiter is a token bucket of failed authentications per address.
type failLimiter struct {
	mu       sync.Mutex
	burst    float64
	perSec   float64
	buckets  map[string]*bucket
	lastScan time.Time
}

type bucket struct {
	tokens   float64
	last     time.Time
	reported time.Time
}

func newFailLimiter(burst, perMinute int) *failLimiter {
	return &failLimiter{burst: float64(burst), perSec: float64(perMinute) / 60, buckets: map[string]*bucket{}}
}

func (l *failLimiter) get(ip string, now time.Time) *bucket {
	b := l.buckets[ip]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[ip] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.perSec)
	b.last = now
	// Forget full buckets now and then, so addresses cannot grow the map
	// without bound.
	if now.Sub(l.lastScan) > time.Minute {
		for k, v := range l.buckets {
			if v != b && v.tokens+now.Sub(v.last).Seconds()*l.perSec >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.lastScan = now
	}
	return b
}

// fail charges a failed attempt to ip. It reports whether the address
// has exhausted its allowance (limited), and then how long until the
// next failure would be allowed again.
func (l *failLimiter) fail(ip string) (wait time.Duration, limited bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(sampleKey(ip), time.Now())
	if b.tokens >= 1 {
		b.tokens--
		return 0, false
	}
	if l.perSec <= 0 {
		return time.Minute, true
	}
	return time.Duration((1 - b.tokens) / l.perSec * float64(time.Second)), true
}

// reportExceeded reports whether this refusal should be recorded: at most
// once a minute per address, so that an attacker cannot flood the trail
// with rate-limit events.
func (l *failLimiter) reportExceeded(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(sampleKey(ip), time.Now())
	if time.Since(b.reported) < time.Minute {
		return false
	}
	b.reported = time.Now()
	return true
}

// auditToken records a token's creation or revocation.
func auditToken(r *http.Request, action string, tok access.Token) {
	httpaudit.AuditPersisted(r.Context(), httpaudit.Op{Action: action, Resource: "api-token/" + tok.ID,
		Target: &httpaudit.User{ID: tok.ID, Name: tok.Name}, After: map[string]any{"role": tok.Role, "revoked": tok.Revoked != nil}})
}

// decodeBody reads a small JSON request body strictly.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}
