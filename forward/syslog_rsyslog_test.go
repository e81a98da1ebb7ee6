package forward

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestSyslogToRsyslog forwards to Debian's rsyslogd listening with imtcp
// (octet-counted framing, RFC 5424 parser): every event arrives once, with
// the header fields rsyslog parsed out of our messages.
func TestSyslogToRsyslog(t *testing.T) {
	t.Parallel()
	rsyslogd := testenv.Tool(t, "rsyslogd", "apt-get install rsyslog")
	dir := t.TempDir()
	out := filepath.Join(dir, "received.log")
	work := filepath.Join(dir, "work")
	os.Mkdir(work, 0o700)
	conf := filepath.Join(dir, "rsyslog.conf")
	// rsyslogd keeps running when imtcp cannot bind its port, saying
	// "Address already in use": StartServer tells that from a start that
	// failed otherwise.
	rs := testenv.StartServer(t, "rsyslogd", func(addr string) *exec.Cmd {
		_, port, _ := net.SplitHostPort(addr)
		os.WriteFile(conf, fmt.Appendf(nil, `global(workDirectory=%q maxMessageSize="64k")
module(load="imtcp")
template(name="fields" type="string" string="%%pri%% %%app-name%% %%msgid%% %%hostname%% %%timereported:::date-rfc3339%% %%msg%%\n")
input(type="imtcp" address="127.0.0.1" port="%s" ruleset="r")
ruleset(name="r") { action(type="omfile" file=%q template="fields") }
`, work, port, out), 0o600)
		return exec.Command(rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd-"+port+".pid"))
	})
	defer func() {
		rs.Cmd.Process.Signal(syscall.SIGTERM)
		rs.Cmd.Wait()
	}()
	addr := rs.Addr

	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	const n = 2000
	at := time.Date(2026, 11, 29, 10, 0, 0, 123456000, time.UTC)
	appendEvents(t, l, 0, n, at)
	cfg := Config{Name: "rsyslog", Type: TypeSyslog, URL: "tcp://" + addr, Facility: "authpriv", Hostname: "collector-1",
		BatchEvents: 250, FlushInterval: 20 * time.Millisecond, Workers: 1}
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	defer m.Close()
	waitFor(t, 20*time.Second, "all records written", func() bool { return statsOf(m, "rsyslog").Cursor == n })
	var data []byte
	waitFor(t, 20*time.Second, "rsyslogd to write them", func() bool {
		data, _ = os.ReadFile(out)
		return bytes.Count(data, []byte("\n")) >= n
	})
	line := regexp.MustCompile(`(?m)^84 trailguard authn_login_fail collector-1 2026-11-29T10:00:00\.123456Z (\{.*"id":"(ev-\d{8})".*\})$`)
	seen := map[string]int{}
	for _, m := range line.FindAllSubmatch(data, -1) {
		seen[string(m[2])]++
	}
	if len(seen) != n {
		first, _, _ := bytes.Cut(data, []byte("\n"))
		t.Fatalf("%d distinct events parsed as expected from rsyslog's file (%d lines); first line:\n%s\nrsyslogd: %s", len(seen), bytes.Count(data, []byte("\n")), first, rs.Output())
	}
	for id, c := range seen {
		if c != 1 {
			t.Errorf("%s received %d times", id, c)
		}
	}
}
