package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Session is a signed-in user of the UI: someone who presented an API token
// of role read or admin.
type Session struct {
	// TokenID, Name and Role describe the token signed in with.
	TokenID, Name, Role string
	// Secret is the API token itself, held in memory only (never written
	// anywhere), so that every request of the session goes through the
	// API's own token check: a revoked token ends its sessions at once.
	Secret string
	// CSRF is the value state-changing requests must send in the
	// X-CSRF-Token header (see CheckCSRF).
	CSRF string
	// Created is the sign-in time; LastSeen the last request that counted
	// as activity (background refreshes do not).
	Created, LastSeen time.Time
}

// Errors of Sessions.Lookup.
var (
	// ErrNoSession: no cookie, or one that names no session (signed out,
	// forged, or from before a restart: sessions live in memory).
	ErrNoSession = errors.New("not signed in")
	// ErrSessionExpired: the session was idle too long or reached its
	// absolute lifetime; it has been removed.
	ErrSessionExpired = errors.New("session expired")
)

// Sessions holds the UI's sessions in memory. Cookies carry 256 random
// bits; the table is keyed by their SHA-256, so neither a lookup's timing
// nor a memory dump of the keys gives a cookie away.
type Sessions struct {
	idle, max time.Duration
	limit     int
	now       func() time.Time

	mu        sync.Mutex
	byHash    map[[32]byte]*Session
	lastSweep time.Time
}

// Defaults of NewSessions.
const (
	DefaultIdle     = 30 * time.Minute
	DefaultLifetime = 12 * time.Hour
	DefaultLimit    = 10000
	// PerTokenLimit bounds the sessions of one token: a token's holder
	// signing in again and again ends its own oldest session, not, once
	// the table is full, everyone else's (a stolen read token signed the
	// whole UI out with DefaultLimit sign-ins).
	PerTokenLimit = 64
)

// NewSessions makes a session table: a session ends after idle without
// activity or max after sign-in, whichever comes first; at most limit
// sessions exist (the oldest is ended to make room). Zero values take the
// defaults.
func NewSessions(idle, max time.Duration, limit int) *Sessions {
	if idle <= 0 {
		idle = DefaultIdle
	}
	if max <= 0 {
		max = DefaultLifetime
	}
	if limit <= 0 {
		limit = DefaultLimit
	}
	return &Sessions{idle: idle, max: max, limit: limit, now: time.Now, byHash: map[[32]byte]*Session{}}
}

// SetClock replaces the clock (tests).
func (s *Sessions) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.now = now
	s.mu.Unlock()
}

// Idle is how long a session may go unused before it ends (ui_session_idle),
// stated to the page with the session so it can say when it will end.
func (s *Sessions) Idle() time.Duration { return s.idle }

// Lifetime is how long a session may last however busy (ui_session_max),
// so a stolen cookie is not good for ever.
func (s *Sessions) Lifetime() time.Duration { return s.max }

func randomString() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hashCookie(v string) [32]byte { return sha256.Sum256([]byte(v)) }

// Create starts a session and returns the cookie value that names it.
// evicted is a session ended to stay within the limit (zero if none).
func (s *Sessions) Create(tokenID, name, role, secret string) (cookie string, sess Session, evicted *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweep(now)
	var oldest, mine [32]byte
	var o, m *Session
	n := 0
	for k, v := range s.byHash {
		if o == nil || v.Created.Before(o.Created) {
			oldest, o = k, v
		}
		if v.TokenID == tokenID {
			if n++; m == nil || v.Created.Before(m.Created) {
				mine, m = k, v
			}
		}
	}
	switch {
	case n >= PerTokenLimit:
		oldest, o = mine, m
	case len(s.byHash) < s.limit:
		o = nil
	}
	if o != nil {
		delete(s.byHash, oldest)
		cp := *o
		evicted = &cp
	}
	cookie = randomString()
	ns := &Session{TokenID: tokenID, Name: name, Role: role, Secret: secret, CSRF: randomString(), Created: now, LastSeen: now}
	s.byHash[hashCookie(cookie)] = ns
	return cookie, *ns, evicted
}

// Lookup finds the session a cookie names. active says whether the request
// counts as activity (a person's action, not an automatic refresh) and so
// restarts the idle timer. An expired session is removed and returned with
// ErrSessionExpired, so that its end can be recorded.
func (s *Sessions) Lookup(cookie string, active bool) (Session, error) {
	if cookie == "" {
		return Session{}, ErrNoSession
	}
	h := hashCookie(cookie)
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.byHash[h]
	if sess == nil {
		return Session{}, ErrNoSession
	}
	now := s.now()
	if s.expired(sess, now) {
		delete(s.byHash, h)
		return *sess, ErrSessionExpired
	}
	if active {
		sess.LastSeen = now
	}
	return *sess, nil
}

// Expires is when a session ends unless it is active again before.
func (s *Sessions) Expires(sess Session) time.Time {
	return minTime(sess.LastSeen.Add(s.idle), sess.Created.Add(s.max))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func (s *Sessions) expired(sess *Session, now time.Time) bool {
	return !now.Before(s.Expires(*sess))
}

// Delete ends the session a cookie names (sign-out).
func (s *Sessions) Delete(cookie string) (Session, bool) {
	h := hashCookie(cookie)
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.byHash[h]
	if sess == nil {
		return Session{}, false
	}
	delete(s.byHash, h)
	return *sess, true
}

// Len is the number of sessions held (expired ones not yet swept included).
func (s *Sessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byHash)
}

// sweep drops expired sessions, at most once a minute.
func (s *Sessions) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < time.Minute {
		return
	}
	s.lastSweep = now
	for k, v := range s.byHash {
		if s.expired(v, now) {
			delete(s.byHash, k)
		}
	}
}

// CookieName is the session cookie's name for a request: under TLS the
// __Host- prefix, which browsers accept only from a secure origin, for the
// whole host and without a Domain, so that no sibling subdomain can plant
// or shadow it.
func CookieName(r *http.Request) string {
	if r.TLS != nil {
		return "__Host-tg_session"
	}
	return "tg_session"
}

// SessionCookie is the cookie that carries a session: HttpOnly (scripts
// never see it), SameSite=Strict (no other site's page can send it),
// Secure under TLS, and scoped to the UI over plain HTTP. maxAge 0 makes a
// cookie that lives until the browser closes; negative deletes it.
func SessionCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	c := &http.Cookie{Name: CookieName(r), Value: value, Path: Prefix, HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
	if r.TLS != nil {
		c.Secure = true
		c.Path = "/"
	}
	return c
}

// CookieValue returns the request's session cookie value, or "".
func CookieValue(r *http.Request) string {
	c, err := r.Cookie(CookieName(r))
	if err != nil {
		return ""
	}
	return c.Value
}

// ErrCrossSite is a state-changing request that did not come from the UI's
// own pages.
var ErrCrossSite = errors.New("request not from this site's pages (Origin, Sec-Fetch-Site or X-CSRF-Token missing or wrong)")

// SameOrigin checks what a browser says about where a request comes from:
// Sec-Fetch-Site, when sent, must be same-origin (or none: typed by the
// user), and Origin, when sent, must be this host. Browsers always send
// Origin with cross-site POSTs, so a forged form or fetch from another site
// fails here even before the CSRF token is checked.
func SameOrigin(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
		want := "http"
		if r.TLS != nil {
			want = "https"
		}
		if u.Scheme != want {
			return false
		}
	}
	return true
}

// CheckCSRF verifies a state-changing request of a session: same origin,
// and the session's CSRF value in X-CSRF-Token (a custom header, which no
// other site can set without a CORS preflight the collector never grants).
func CheckCSRF(r *http.Request, sess Session) error {
	if !SameOrigin(r) {
		return ErrCrossSite
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
		return ErrCrossSite
	}
	return nil
}

// StateChanging reports whether a method may change state (and so needs
// CheckCSRF).
func StateChanging(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}
