package server

import (
	"context"
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
	for i := range 2 * limit {
		// From eight addresses: one is held to max_connections_per_address.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}, Timeout: time.Second}
		c, err := d.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
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

// TestOneAddressCannotHoldEveryConnection: against a real process, one
// client address (127.0.0.2) opens idle connections without a token,
// many more than max_connections. Another address (127.0.0.3) must still
// be served: the first holds at most its share (max_connections_per_address,
// lowered to half of max_connections; fewer until a token is presented),
// its connections beyond are closed at once, counted in /metrics and
// logged. Without the per-address cap the first address took every slot
// and the second waited in the listen queue until the attacker let go.
func TestOneAddressCannotHoldEveryConnection(t *testing.T) {
	const maxConns = 16
	p := startProc(t, t.TempDir(), fmt.Sprintf("--max-connections=%d", maxConns), "--max-connections-per-address=40")
	hostport := strings.TrimPrefix(p.url, "http://")
	dialFrom := func(src byte) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, src)}, Timeout: time.Second}
		return d.Dial("tcp", hostport)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 4 * maxConns {
		c, err := dialFrom(2)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	// The victim, from another address, with its own connection.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 3)}}
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	req, _ := http.NewRequest("POST", p.url+"/v1/events", strings.NewReader(`{"@timestamp":"2026-11-30T12:00:00Z","message":"victim"}`+"\n"))
	req.Header.Set("Authorization", "Bearer "+p.ingest)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("another address, while 127.0.0.2 holds %d idle connections: %v", len(conns), err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("another address: %d", resp.StatusCode)
	}
	// The attacker's connections beyond its share were closed at once.
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
			}
		}
	}
	if open > maxConns/2 {
		t.Errorf("127.0.0.2 holds %d connections; at most %d (half of max_connections)", open, maxConns/2)
	}
	req, _ = http.NewRequest("GET", p.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+p.read)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "trailguard_connections_refused_total ") || strings.Contains(string(body), "trailguard_connections_refused_total 0\n") {
		t.Errorf("refusals not counted in /metrics:\n%s", body)
	}
	if want := "max_connections_per_address"; !strings.Contains(p.output(), want) {
		t.Errorf("no %q warning in the output", want)
	}
}
