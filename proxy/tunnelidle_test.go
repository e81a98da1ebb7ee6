package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestIdleTunnelClosed: a WebSocket (any upgraded) tunnel through the
// gateway on which neither side sends anything for timeouts.idle is
// closed, both sides (review, MEDIUM, network, with an upstream that
// accepts upgrades before authenticating, as most WebSocket and
// socket.io endpoints do: an idle tunnel held a gateway goroutine pair and
// two file descriptors, and an upstream connection, for ever; nginx closes
// one after proxy_read_timeout, 60s). A tunnel that carries bytes stays.
func TestIdleTunnelClosed(t *testing.T) {
	for _, mode := range []string{HTTP1Lean, HTTP1NetHTTP} {
		t.Run(strings.ReplaceAll(mode, "/", ""), func(t *testing.T) {
			t.Parallel()
			upClosed := make(chan struct{}, 4)
			up := serveTCP(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				// Echo what comes, until the end.
				buf := make([]byte, 64)
				for {
					n, err := br.Read(buf)
					if err != nil {
						upClosed <- struct{}{}
						return
					}
					c.Write(buf[:n])
				}
			})
			// 1 s, not 300 ms: the busy tunnel's bytes come a fifth of it
			// apart, so only a sleep overshooting by 800 ms (not 200 ms, as a
			// race-built test at load 25 did: "busy tunnel cut after 4
			// bytes") makes a gap the gateway rightly takes for idleness.
			const idle = time.Second
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: "http://" + up.Addr().String()}}}
			cfg.Timeouts.Idle = idle
			_, addr, _, _ := gatewayServer(t, cfg)
			open := func() (net.Conn, *bufio.Reader) {
				c := dialStalled(t, addr, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
				br := bufio.NewReader(c)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("upgrade: %v %v", resp, err)
				}
				return c, br
			}
			// A busy tunnel: a byte each fifth of the timeout, echoed, for
			// twice the timeout.
			busy, bbr := open()
			for i, busyStart := 0, time.Now(); time.Since(busyStart) < 2*idle; i++ {
				time.Sleep(idle / 5)
				busy.Write([]byte{'a' + byte(i)})
				busy.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := bbr.ReadByte(); err != nil {
					t.Fatalf("busy tunnel cut after %d bytes: %v", i, err)
				}
			}
			// An idle one.
			c, br := open()
			start := time.Now()
			c.SetReadDeadline(start.Add(5 * time.Second))
			_, err := br.ReadByte()
			if took := time.Since(start); took > 2*idle+time.Second {
				t.Errorf("idle tunnel open for %v (%v), want closed after about %v", took.Round(time.Millisecond), err, idle)
			}
			select {
			case <-upClosed:
			case <-time.After(10 * time.Second):
				t.Error("the idle tunnel's upstream side stayed open 10 s after")
			}
		})
	}
}
