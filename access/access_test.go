package access

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tok, secret, err := s.Create("shipper-1", RoleIngest)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "tg_"+tok.ID+"_") {
		t.Fatalf("secret %q does not carry id %q", secret, tok.ID)
	}
	data, _ := os.ReadFile(path)
	if strings.Contains(string(data), secret[len(secret)-32:]) {
		t.Fatal("secret stored in clear")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("store mode %v", fi.Mode())
	}
	// A reopened store knows the token.
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Check(secret)
	if err != nil || got.Name != "shipper-1" || got.Role != RoleIngest {
		t.Fatalf("Check = %+v, %v", got, err)
	}
	tests := []struct {
		name, presented string
		want            error
	}{
		{"empty", "", ErrMalformed},
		{"no prefix", strings.TrimPrefix(secret, "tg_"), ErrMalformed},
		{"wrong secret", secret[:len(secret)-1] + flip(secret[len(secret)-1]), ErrUnknown},
		{"unknown id", "tg_aaaaaaaa_" + secret[len(secret)-32:], ErrUnknown},
		{"too long", secret + "x", ErrMalformed},
	}
	for _, tt := range tests {
		if _, err := s2.Check(tt.presented); !errors.Is(err, tt.want) {
			t.Errorf("%s: Check err = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, _, err := s2.Create("shipper-1", RoleRead); err == nil {
		t.Fatal("duplicate active name accepted")
	}
	if _, err := s2.Revoke("shipper-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Check(secret); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
	s3, _ := Open(path)
	if _, err := s3.Check(secret); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revocation not persisted: %v", err)
	}
	if len(s3.List()) != 1 {
		t.Fatalf("list %+v", s3.List())
	}
	for _, bad := range []string{"", "has space", strings.Repeat("x", 65), "new\nline"} {
		if _, _, err := s3.Create(bad, RoleRead); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if _, _, err := s3.Create("x", "root"); err == nil {
		t.Error("role root accepted")
	}
}

func flip(c byte) string {
	if c == 'a' {
		return "b"
	}
	return "a"
}

func TestRoles(t *testing.T) {
	tests := []struct {
		have, need Role
		ok         bool
	}{
		{RoleAdmin, RoleRead, true}, {RoleAdmin, RoleIngest, true}, {RoleAdmin, RoleAdmin, true},
		{RoleRead, RoleRead, true}, {RoleRead, RoleIngest, false}, {RoleRead, RoleAdmin, false},
		{RoleIngest, RoleIngest, true}, {RoleIngest, RoleRead, false}, {RoleIngest, RoleAdmin, false},
	}
	for _, tt := range tests {
		if got := tt.have.Allows(tt.need); got != tt.ok {
			t.Errorf("%s.Allows(%s) = %v", tt.have, tt.need, got)
		}
	}
	if _, err := ParseRole(" Admin "); err != nil {
		t.Error(err)
	}
}

// TestReloadFromOtherProcess: a token created or revoked through another
// Store on the same file (the CLI next to a running collector) takes
// effect without a restart.
func TestReloadFromOtherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	server, _ := Open(path)
	server.statEvery = 0
	cli, _ := Open(path)
	_, secret, err := cli.Create("late", RoleRead)
	if err != nil {
		t.Fatal(err)
	}
	// Some filesystems keep mtimes coarse; make the change visible.
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(path, future, future)
	if _, err := server.Check(secret); err != nil {
		t.Fatalf("new token unknown to the running store: %v", err)
	}
	cli2, _ := Open(path)
	if _, err := cli2.Revoke("late"); err != nil {
		t.Fatal(err)
	}
	future = future.Add(2 * time.Second)
	os.Chtimes(path, future, future)
	if _, err := server.Check(secret); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revocation not seen by the running store: %v", err)
	}
}

func TestBouncerRole(t *testing.T) {
	r, err := ParseRole("Bouncer")
	if err != nil || r != RoleBouncer {
		t.Fatalf("ParseRole: %v %v", r, err)
	}
	for _, need := range []Role{RoleIngest, RoleRead, RoleAdmin} {
		if RoleBouncer.Allows(need) {
			t.Errorf("a bouncer token may act as %s", need)
		}
	}
	if !RoleBouncer.Allows(RoleBouncer) || !RoleAdmin.Allows(RoleBouncer) || !RoleRead.Allows(RoleBouncer) || RoleIngest.Allows(RoleBouncer) {
		t.Error("decisions: bouncer, read and admin; not ingest")
	}
}

// TestNewTokenUsableAtOnce: a token the CLI creates is accepted by the
// running collector's store at its first use, even right after another
// check made the store look at the file (it looks once a second): before,
// `token revoke` then `token create` and a request within the second got
// 401 "not a token of this collector".
func TestNewTokenUsableAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.json")
	server, _ := Open(path)
	cli, _ := Open(path)
	_, first, err := cli.Create("first", RoleIngest)
	if err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(2 * time.Second)
	os.Chtimes(path, future, future)
	if _, err := server.Check(first); err != nil {
		t.Fatal(err)
	}
	// The store has just looked at the file; a new token now.
	_, second, err := cli.Create("second", RoleIngest)
	if err != nil {
		t.Fatal(err)
	}
	future = future.Add(2 * time.Second)
	os.Chtimes(path, future, future)
	time.Sleep(2 * missStatEvery)
	if _, err := server.Check(second); err != nil {
		t.Fatalf("a token created a moment ago: %v", err)
	}
}
