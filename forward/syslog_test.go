package forward

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// syslogReceiver accepts TCP (or TLS) connections and parses octet-counted
// RFC 5424 frames strictly.
type syslogReceiver struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []string
	errs []error
}

var idRE = regexp.MustCompile(`"id":"(ev-\d+)"`)

var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S{1,255}) (\S{1,48}) - (\S{1,32}) - (\{.*\})$`)

func (s *syslogReceiver) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				lenText, err := br.ReadString(' ')
				if err != nil {
					return
				}
				size, err := strconv.Atoi(lenText[:len(lenText)-1])
				if err != nil || size <= 0 || size > 1<<20 {
					s.mu.Lock()
					s.errs = append(s.errs, fmt.Errorf("bad frame length %q", lenText))
					s.mu.Unlock()
					return
				}
				msg := make([]byte, size)
				if _, err := io.ReadFull(br, msg); err != nil {
					return
				}
				s.mu.Lock()
				if !rfc5424.Match(msg) {
					s.errs = append(s.errs, fmt.Errorf("not RFC 5424: %q", msg))
				}
				s.msgs = append(s.msgs, string(msg))
				s.mu.Unlock()
			}
		}()
	}
}

func (s *syslogReceiver) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// TestSyslog forwards over TCP and TLS to receivers that check the framing
// and the RFC 5424 header. The TCP receiver starts only after the
// forwarder has failed to connect: the batch is written once it is up.
// (Syslog has no acknowledgement: what a receiver that dies had not read
// yet is lost; see the package documentation.)
func TestSyslog(t *testing.T) {
	t.Parallel()
	for _, scheme := range []string{"tcp", "tls"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			// The TCP receiver's port refuses until it starts, and no other
			// process can take it meanwhile.
			port := testenv.NewRefusedPort(t)
			addr := port.Addr()
			rcv := &syslogReceiver{}
			if scheme == "tls" {
				srv := httptest.NewUnstartedServer(nil) // only for its test certificate
				srv.StartTLS()
				cert := srv.TLS.Certificates[0]
				srv.Close()
				rcv.ln = tls.NewListener(port.Listen(t), &tls.Config{Certificates: []tls.Certificate{cert}})
			}
			dir := t.TempDir()
			l := openLedger(t, filepath.Join(dir, "ledger"), nil)
			defer l.Close()
			const n = 1000
			appendEvents(t, l, 0, n, time.Now())
			cfg := Config{Name: "siem", Type: TypeSyslog, URL: scheme + "://" + addr, Facility: "authpriv",
				BatchEvents: 100, FlushInterval: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Workers: 1,
				TLS: TLSConfig{InsecureSkipVerify: true}}
			m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			m.Start(l)
			defer m.Close()
			if scheme == "tcp" {
				waitFor(t, 30*time.Second, "a refused connection", func() bool { return statsOf(m, "siem").Retried > 0 })
				rcv.ln = port.Listen(t)
			}
			go rcv.serve()
			defer rcv.ln.Close()
			waitFor(t, 20*time.Second, "all records written", func() bool { return statsOf(m, "siem").Cursor == n })
			waitFor(t, 30*time.Second, "all records received", func() bool { return rcv.count() >= n })
			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			if len(rcv.errs) > 0 {
				t.Fatalf("receiver: %v", rcv.errs[0])
			}
			seen := map[string]bool{}
			for _, msg := range rcv.msgs {
				mm := rfc5424.FindStringSubmatch(msg)
				// authpriv (10) * 8 + warning (4): a failed login.
				if mm[1] != "84" || mm[5] != "authn_login_fail" || mm[4] != "trailguard" {
					t.Fatalf("header of %q", msg)
				}
				seen[idRE.FindStringSubmatch(mm[6])[1]] = true
			}
			if len(seen) != n {
				t.Fatalf("%d distinct events received (%d messages), want %d", len(seen), len(rcv.msgs), n)
			}
		})
	}
}
