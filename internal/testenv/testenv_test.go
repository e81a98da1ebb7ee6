package testenv

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFindPrefersToolsDir(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRAILGUARD_TOOLS", dir)
	if got := Find("sh"); got != p {
		t.Fatalf("Find(sh) = %q, want the tools dir's %q", got, p)
	}
	if got := Find("no-such-program-trailguard"); got != "" {
		t.Fatalf("Find of a missing program = %q, want empty", got)
	}
}

func TestSeedFromEnvironment(t *testing.T) {
	t.Setenv("TRAILGUARD_SEED", "12345")
	if got := Seed(t); got != 12345 {
		t.Fatalf("Seed() = %d, want TRAILGUARD_SEED's 12345", got)
	}
	t.Setenv("TRAILGUARD_SEED", "")
	if a, b := Seed(t), Seed(t); a == b {
		t.Fatalf("two fresh seeds are both %d", a)
	}
}

func TestCountFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int
	}{{"", 30}, {"7", 7}, {"200", 200}} {
		t.Setenv("TRAILGUARD_TEST_COUNT", tc.env)
		if got := Count(t, "TRAILGUARD_TEST_COUNT", 30); got != tc.want {
			t.Errorf("TRAILGUARD_TEST_COUNT=%q: Count = %d, want %d", tc.env, got, tc.want)
		}
	}
}

func TestPortDownUpDownUp(t *testing.T) {
	p := NewPort(t)
	get := func() (string, error) {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + p.Addr() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if _, err := get(); err == nil {
		t.Fatal("a request succeeded with nobody listening")
	}
	for round := range 2 {
		ln := p.Listen()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, round) })}
		go srv.Serve(ln)
		if got, err := get(); err != nil || got != fmt.Sprint(round) {
			t.Fatalf("round %d: %q, %v", round, got, err)
		}
		srv.Close() // closes ln; the port stays ours, refusing
		if _, err := get(); err == nil {
			t.Fatalf("round %d: a request succeeded after the server closed", round)
		}
	}
}
