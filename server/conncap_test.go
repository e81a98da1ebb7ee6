package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestIdleConnectionsCannotStarveTheLedger: against a real process whose
// file descriptors are limited (prlimit), a client without a token opens
// idle connections, as many as it can. The collector must keep room for
// its own files: a shipper's connection made before keeps ingesting
// across segment rotations (each opens new files), and the ledger still
// works after the attacker leaves. Without a cap on connections the
// collector accepted until every descriptor was taken; the rotation's
// open then failed (EMFILE) and the ledger failed until restarted: every
// later append refused, the audit trail stopped by anyone who can connect.
func TestIdleConnectionsCannotStarveTheLedger(t *testing.T) {
	prlimit := testenv.Tool(t, "prlimit", "apt-get install util-linux")
	const limit = 128
	p := startProcVia(t, t.TempDir(), []string{prlimit, fmt.Sprintf("--nofile=%d:%d", limit, limit), "--"},
		"--ledger-segment-bytes=65536")
	// The shipper's connection, made before the attack.
	shipper := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}}
	defer shipper.CloseIdleConnections()
	ingest := func(round int) (int, string) {
		var b strings.Builder
		for i := range 200 {
			fmt.Fprintf(&b, `{"@timestamp":"2026-11-30T12:00:00Z","message":"round %d event %d %s"}`+"\n", round, i, strings.Repeat("x", 300))
		}
		req, _ := http.NewRequest("POST", p.url+"/v1/events", strings.NewReader(b.String()))
		req.Header.Set("Authorization", "Bearer "+p.ingest)
		resp, err := shipper.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := ingest(0); code != 200 {
		t.Fatalf("ingest before the attack: %d %s", code, body)
	}
	// The attack: idle connections, more than the process has descriptors.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2 * limit {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.url, "http://"), time.Second)
		if err != nil {
			break // the listen queue is full
		}
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond) // accepted, as far as the collector will
	// ~70 KiB a round: a rotation every round at 64 KiB segments.
	for round := 1; round <= 4; round++ {
		if code, body := ingest(round); code != 200 {
			t.Fatalf("ingest round %d with %d idle connections open: %d %s", round, len(conns), code, body)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	if code, body := ingest(9); code != 200 {
		t.Fatalf("ingest after the attack: %d %s", code, body)
	}
	for _, want := range []string{"max_connections lowered to fit the open-file limit", "connection limit reached"} {
		if !strings.Contains(p.output(), want) {
			t.Errorf("no %q in the output", want)
		}
	}
}
