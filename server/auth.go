package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/httpaudit"
)

type tokenKey struct{}

// requireRole wraps h so that only a request bearing a valid, unrevoked
// token whose role allows need reaches it. Failures are recorded in the
// trail (authentication failures as authn_login_fail, insufficient roles
// as authz_fail) and repeated failures from one address are cut off with
// 429 before any check, so the token space cannot be brute-forced.
func (s *Server) requireRole(need access.Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ip := clientAddr(r)
		if !s.limiter.allow(ip) {
			s.metrics.authRejected.Add(1)
			if s.limiter.reportExceeded(ip) {
				httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionRateLimitExceeded, Resource: "api-token",
					Outcome: event.OutcomeFailure, Reason: "too many failed token checks from " + ip})
			}
			w.Header().Set("Retry-After", "60")
			writeError(w, http.StatusTooManyRequests, "too many failed authentication attempts; retry later")
			return
		}
		presented, ok := presentedToken(r)
		if !ok {
			s.limiter.fail(ip)
			s.metrics.authFailed.Add(1)
			httpaudit.Auth(r.Context(), httpaudit.Attempt{Reason: "no API token", Action: event.ActionLoginFail})
			w.Header()["WWW-Authenticate"] = authChallenge
			writeError(w, http.StatusUnauthorized, "an API token is required: Authorization: Bearer tg_…, ApiKey base64(name:tg_…), or Basic with the token as password")
			return
		}
		tok, err := s.tokens.Check(presented)
		if err != nil {
			s.limiter.fail(ip)
			s.metrics.authFailed.Add(1)
			reason := "invalid token"
			if errors.Is(err, access.ErrRevoked) {
				reason = "revoked token"
			}
			httpaudit.Auth(r.Context(), httpaudit.Attempt{User: httpaudit.User{Name: tok.Name}, Reason: reason})
			w.Header()["WWW-Authenticate"] = []string{`Bearer realm="trailguard", error="invalid_token"`, authChallenge[1]}
			writeError(w, http.StatusUnauthorized, reason)
			return
		}
		user := httpaudit.User{ID: tok.ID, Name: tok.Name, Roles: []string{string(tok.Role)}}
		httpaudit.SetUser(r.Context(), user)
		if !tok.Role.Allows(need) {
			s.metrics.authFailed.Add(1)
			httpaudit.Audit(r.Context(), httpaudit.Op{Action: event.ActionAuthzFail, Resource: r.URL.Path,
				Outcome: event.OutcomeFailure, Reason: "role " + string(tok.Role) + " lacks " + string(need)})
			writeError(w, http.StatusForbidden, "token role "+string(tok.Role)+" may not do this (needs "+string(need)+")")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
	}
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

// allow reports whether ip may attempt authentication.
func (l *failLimiter) allow(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.get(ip, time.Now()).tokens >= 1
}

// fail charges a failed attempt to ip.
func (l *failLimiter) fail(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(ip, time.Now())
	b.tokens = max(0, b.tokens-1)
}

// reportExceeded reports whether this refusal should be recorded: at most
// once a minute per address, so that an attacker cannot flood the trail
// with rate-limit events.
func (l *failLimiter) reportExceeded(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(ip, time.Now())
	if time.Since(b.reported) < time.Minute {
		return false
	}
	b.reported = time.Now()
	return true
}

// auditToken records a token's creation or revocation.
func auditToken(r *http.Request, action string, tok access.Token) {
	httpaudit.Audit(r.Context(), httpaudit.Op{Action: action, Resource: "api-token/" + tok.ID,
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
