// Package access holds the collector's API tokens and the roles they
// grant.
//
// A token is shown once, when it is created, as "tg_<id>_<secret>"; the
// store keeps only its id, name, role and the SHA-256 of the secret, so a
// copy of the store file does not let anyone call the API. Roles nest:
// admin may do everything, read may query and tail the trail, ingest may
// only submit events, bouncer may only read block decisions (CrowdSec's
// bouncer protocol).
package access

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/internal/regfile"
)

// maxFile bounds the token file read whole: a token is some 300 bytes,
// so this is some 200,000 tokens, far more than any collector has.
const maxFile = 64 << 20

// Role is what a token may do.
type Role string

// The roles, from least to most privileged.
const (
	RoleIngest Role = "ingest"
	RoleRead   Role = "read"
	RoleAdmin  Role = "admin"
	// RoleBouncer may only read the block decisions (CrowdSec bouncers
	// and trailguard proxy gateways).
	RoleBouncer Role = "bouncer"
)

// ParseRole validates a role name.
func ParseRole(s string) (Role, error) {
	switch r := Role(strings.ToLower(strings.TrimSpace(s))); r {
	case RoleIngest, RoleRead, RoleAdmin, RoleBouncer:
		return r, nil
	}
	return "", fmt.Errorf("access: unknown role %q (want ingest, read, admin or bouncer)", s)
}

// Allows reports whether a token of role r may act as role need. Admin
// may do anything; read may also read decisions (what a bouncer does);
// ingest and bouncer only themselves, so that a shipper's or a bouncer's
// credential cannot read the trail and a reader's cannot write to it.
func (r Role) Allows(need Role) bool {
	return r == RoleAdmin || r == need || r == RoleRead && need == RoleBouncer
}

// Token is a stored token: everything but the secret.
type Token struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Role    Role       `json:"role"`
	Hash    string     `json:"sha256"`
	Created time.Time  `json:"created"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// Errors returned by Check; both mean "not authenticated" to a client and
// are told apart only in the audit trail.
var (
	ErrMalformed = errors.New("access: malformed token")
	ErrUnknown   = errors.New("access: unknown or wrong token")
	ErrRevoked   = errors.New("access: token revoked")
)

// Store is a file of tokens. It is safe for concurrent use; every change
// is written to a temporary file and renamed over the old one, so a crash
// leaves either the old or the new store.
type Store struct {
	path string
	mu   sync.RWMutex
	byID map[string]*Token
	// The file may be changed by another process (the token command next
	// to a running collector): Check reloads it when its modification
	// time moved, looking at most once a second.
	modTime   time.Time
	lastStat  time.Time
	statEvery time.Duration
}

var validName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

// Open loads the store at path, creating an empty one if it does not
// exist.
func Open(path string) (*Store, error) {
	s := &Store{path: path, byID: map[string]*Token{}, statEvery: time.Second}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// load reads the file; the caller holds mu or owns s.
func (s *Store) load() error {
	fi, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("access: open %s: %w", s.path, err)
	}
	// A regular file of at most maxFile bytes (regfile): a FIFO planted
	// at the name would hang the collector's start, every report and
	// every token check after it; a link to /dev/zero or a sparse file
	// of terabytes would be read into all the memory there is.
	data, err := regfile.Read(s.path, maxFile)
	if err != nil {
		return fmt.Errorf("access: open %s: %w", s.path, err)
	}
	var list []*Token
	if err := json.Unmarshal(data, &list); err != nil {
		return fmt.Errorf("access: parse %s: %w", s.path, err)
	}
	byID := make(map[string]*Token, len(list))
	for _, t := range list {
		byID[t.ID] = t
	}
	s.byID, s.modTime = byID, fi.ModTime()
	return nil
}

// missStatEvery is how often a token check that finds no such token looks
// at the file again, whatever statEvery says: a token `trailguard token
// create` made a moment ago is in the file but not yet in memory, and its
// first use must not be refused as "not a token of this collector". Unknown
// tokens (guesses, which are limited per address besides) cost at most one
// stat per interval.
const missStatEvery = 10 * time.Millisecond

// refresh reloads the file if another process changed it, looking at it
// at most once per every; it reports whether it reloaded.
func (s *Store) refresh(every time.Duration) bool {
	s.mu.RLock()
	due := time.Since(s.lastStat) >= every
	s.mu.RUnlock()
	if !due {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastStat = time.Now()
	if fi, err := os.Stat(s.path); err == nil && !fi.ModTime().Equal(s.modTime) {
		if err := s.load(); err != nil {
			// Keep serving the tokens we have; a half-written file is
			// impossible (rename), so this is a real fault to report.
			fmt.Fprintln(os.Stderr, err)
			return false
		}
		return true
	}
	return false
}

// lockFile takes the store's file lock (tokens.json.lock), which the
// token command and the collector's API hold while they change the file:
// a change starts from what is on disk, so that another process's change
// made since this Store last looked (a token revoked with the command
// next to a running collector) is not undone by writing an older copy
// back. It is taken before mu, and waited for a bounded time, so that a
// process stopped while holding it cannot hang the token checks.
func (s *Store) lockFile() (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("access: %w", err)
	}
	return lockStore(s.path + ".lock")
}

// reload reads the file again (the caller holds the file lock and mu).
func (s *Store) reload() error {
	if err := s.load(); err != nil {
		return err
	}
	s.lastStat = time.Now()
	return nil
}

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Create makes a new token and returns it with its secret, the only time
// the secret exists outside the caller.
func (s *Store) Create(name string, role Role) (Token, string, error) {
	if !validName.MatchString(name) {
		return Token{}, "", fmt.Errorf("access: token name %q: want 1-64 of [A-Za-z0-9._@-]", name)
	}
	if _, err := ParseRole(string(role)); err != nil {
		return Token{}, "", err
	}
	unlock, err := s.lockFile()
	if err != nil {
		return Token{}, "", err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(); err != nil {
		return Token{}, "", err
	}
	for _, t := range s.byID {
		if t.Name == name && t.Revoked == nil {
			return Token{}, "", fmt.Errorf("access: a token named %q exists; revoke it first", name)
		}
	}
	var idb [5]byte
	var secb [20]byte
	rand.Read(idb[:])
	rand.Read(secb[:])
	id, secret := enc.EncodeToString(idb[:]), enc.EncodeToString(secb[:])
	sum := sha256.Sum256([]byte(secret))
	t := &Token{ID: id, Name: name, Role: role, Hash: hex.EncodeToString(sum[:]), Created: time.Now().UTC()}
	s.byID[id] = t
	if err := s.save(); err != nil {
		delete(s.byID, id)
		return Token{}, "", err
	}
	return *t, "tg_" + id + "_" + secret, nil
}

// Revoke disables the token with the given name or id.
func (s *Store) Revoke(nameOrID string) (Token, error) {
	unlock, err := s.lockFile()
	if err != nil {
		return Token{}, err
	}
	defer unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reload(); err != nil {
		return Token{}, err
	}
	for _, t := range s.byID {
		if (t.Name == nameOrID || t.ID == nameOrID) && t.Revoked == nil {
			now := time.Now().UTC()
			t.Revoked = &now
			if err := s.save(); err != nil {
				t.Revoked = nil
				return Token{}, err
			}
			return *t, nil
		}
	}
	return Token{}, fmt.Errorf("access: no active token %q", nameOrID)
}

// List returns all tokens, revoked ones included, oldest first.
func (s *Store) List() []Token {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Token, 0, len(s.byID))
	for _, t := range s.byID {
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b Token) int { return a.Created.Compare(b.Created) })
	return out
}

// Check authenticates a presented token. The comparison of secrets takes
// constant time.
func (s *Store) Check(presented string) (Token, error) {
	rest, ok := strings.CutPrefix(presented, "tg_")
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(id) != 8 || len(secret) != 32 {
		return Token{}, ErrMalformed
	}
	s.refresh(s.statEvery)
	tok, found := s.lookup(id)
	if !found && s.refresh(missStatEvery) {
		tok, found = s.lookup(id)
	}
	sum := sha256.Sum256([]byte(secret))
	want, _ := hex.DecodeString(tok.Hash)
	if !found || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return Token{}, ErrUnknown
	}
	if tok.Revoked != nil {
		return tok, ErrRevoked
	}
	return tok, nil
}

// lookup returns a copy of the token with this id.
func (s *Store) lookup(id string) (Token, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, found := s.byID[id]
	if !found {
		return Token{}, false
	}
	return *t, true
}

func (s *Store) save() error {
	list := make([]*Token, 0, len(s.byID))
	for _, t := range s.byID {
		list = append(list, t)
	}
	slices.SortFunc(list, func(a, b *Token) int { return a.Created.Compare(b.Created) })
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("access: %w", err)
	}
	tmp := s.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("access: save: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("access: save: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("access: save: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("access: save: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("access: save: %w", err)
	}
	if fi, err := os.Stat(s.path); err == nil {
		s.modTime = fi.ModTime()
	}
	return nil
}
