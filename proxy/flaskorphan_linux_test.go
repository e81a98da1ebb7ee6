package proxy

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestFlaskUpstreamDiesWithTest: a proxy test binary (a real process of
// this one) that runs the Flask upstream is killed with SIGKILL, as a
// timeout or an impatient developer does. The Flask process must die with
// it: orphaned, it kept running, with its port and with the descriptors
// the test binary inherited, among them the lock that shared-run's flock
// holds for the whole run (here a file on descriptor 3), which it must
// not hold even while it runs.
func TestFlaskUpstreamDiesWithTest(t *testing.T) {
	testenv.Long(t)
	t.Parallel()
	flaskPython(t)
	testenv.KillHost(t, "TestFlaskUpstreamOrphan", "TRAILGUARD_PROXY_FLASK_ORPHAN=1", 30*time.Second, func(_ testenv.Proc, port []string) {
		// It is the upstream, serving: a profile read without a session is
		// refused by the app.
		resp, err := http.Get("http://127.0.0.1:" + port[0] + "/api/users/alice")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the Flask upstream answers %d, want 401", resp.StatusCode)
		}
	})
}

// TestFlaskUpstreamOrphan is TestFlaskUpstreamDiesWithTest's test binary:
// it starts the Flask upstream as the proxy tests do and names it, with
// its port (testenv.HostChild).
func TestFlaskUpstreamOrphan(t *testing.T) {
	if os.Getenv("TRAILGUARD_PROXY_FLASK_ORPHAN") != "1" {
		t.Skip("started by TestFlaskUpstreamDiesWithTest")
	}
	line, pid := startProcess(t, "listening ", flaskPython(t), "testdata/flaskapp/app.py")
	testenv.HostChild(pid, strings.TrimPrefix(line, "listening "))
}
