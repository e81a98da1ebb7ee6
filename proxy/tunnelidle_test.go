package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
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
			// Each upstream side reports its path when it ends, so that the
			// idle tunnel's end is told from the busy ones' (which end too,
			// a timeout after their last byte).
			upClosed := make(chan string, 16)
			up := serveTCP(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				// Echo what comes, until the end.
				buf := make([]byte, 64)
				for {
					n, err := br.Read(buf)
					if err != nil {
						upClosed <- req.URL.Path
						return
					}
					c.Write(buf[:n])
				}
			})
			const idle = time.Second
			cfg := Config{HTTP1: mode, Routes: []Route{{Upstream: "http://" + up.Addr().String()}}}
			cfg.Timeouts.Idle = idle
			_, addr, _, _ := gatewayServer(t, cfg)
			open := func(path string) (net.Conn, *bufio.Reader) {
				c := dialStalled(t, addr, "GET "+path+" HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
				br := bufio.NewReader(c)
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
					t.Fatalf("upgrade: %v %v", resp, err)
				}
				return c, br
			}
			// A busy tunnel: a byte each fifth of the timeout, echoed, for
			// twice the timeout. The gateway's quiet time is at most the
			// gap from an echo's arrival here to the next byte's departure
			// (plus its own delay): a sleep overshooting to the timeout on
			// a loaded machine (a race-built test at load 13-25 saw "busy
			// tunnel cut after 3 bytes") makes a gap the gateway rightly
			// takes for idleness, and the run starts over; a cut after
			// gaps all under half the timeout fails.
			for attempt := 1; ; attempt++ {
				busy, bbr := open("/busy")
				cut, worst := -1, time.Duration(0)
				var err error
				last := time.Now()
				for i, busyStart := 0, time.Now(); time.Since(busyStart) < 2*idle; i++ {
					time.Sleep(idle / 5)
					worst = max(worst, time.Since(last))
					busy.Write([]byte{'a' + byte(i)})
					busy.SetReadDeadline(time.Now().Add(30 * time.Second)) // a cut ends the read at once
					if _, err = bbr.ReadByte(); err != nil {
						cut = i
						break
					}
					last = time.Now()
				}
				if cut < 0 {
					break
				}
				if worst < idle/2 || attempt == 5 {
					t.Fatalf("busy tunnel cut after %d bytes, the longest gap %v: %v", cut, worst.Round(time.Millisecond), err)
				}
				t.Logf("busy tunnel cut after %d bytes after a gap of %v (a loaded machine); again", cut, worst.Round(time.Millisecond))
			}
			// An idle one: closed, as late as a stall of this process
			// makes it (one of 4 s failed a fixed bound) and no later.
			watch := stalltest.Start(t)
			c, br := open("/idle")
			got, took, stalled, err := stalltest.ReadCut(c, br, watch, 5*time.Second)
			if err != nil || got != "" || took > 2*idle+time.Second+stalled {
				t.Errorf("idle tunnel open for %v (stalled up to %v), got %q, %v; want closed after about %v",
					took.Round(time.Millisecond), stalled.Round(time.Millisecond), got, err, idle)
			}
			for deadline := time.After(30 * time.Second); ; {
				select {
				case p := <-upClosed:
					if p != "/idle" {
						continue
					}
				case <-deadline:
					t.Error("the idle tunnel's upstream side stayed open 30 s after")
				}
				break
			}
		})
	}
}
