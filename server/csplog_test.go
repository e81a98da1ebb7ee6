package server

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestCSPReportsCannotFloodTheLog: the CSP report endpoint takes reports
// without a token (browsers send them so). A real collector, sent 300
// reports by one client, writes at most the per-address sampling budget
// of them to its log (refused_audit_per_minute, 20 by default, as it
// records them in the trail), each value cut short. Before, every report
// wrote a warning with up to 16 KiB of the sender's text: anyone who
// could reach the port filled the operator's log (and drowned its real
// warnings) at the rate they could send.
func TestCSPReportsCannotFloodTheLog(t *testing.T) {
	p := startProc(t, t.TempDir())
	long := strings.Repeat("A", 8<<10)
	client := &http.Client{}
	for i := range 300 {
		rep := fmt.Sprintf(`{"csp-report":{"document-uri":"http://x/ui/%d","effective-directive":"script-src-elem","blocked-uri":"%s"}}`, i, long)
		resp, err := client.Post(p.url+"/ui/csp-report", "application/csp-report", strings.NewReader(rep))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("report %d: %d", i, resp.StatusCode)
		}
	}
	out := p.output()
	n := strings.Count(out, "web UI CSP violation")
	if n == 0 || n > 20 {
		t.Errorf("%d CSP warnings in the log for 300 reports from one address; want 1 to 20", n)
	}
	if strings.Contains(out, strings.Repeat("A", 1024)) {
		t.Error("a report's 8 KiB value reached the log whole")
	}
}
