package compat

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
)

// TestNodeClientHelpersBulk ships 10,000 events with @elastic/elasticsearch
// 8.19's helpers.bulk (node/bulk.cjs) and checks 0 failures and every
// event stored. .ci/run installs the npm package into a cache directory and
// names it in TRAILGUARD_NODE_MODULES.
func TestNodeClientHelpersBulk(t *testing.T) {
	const n = 10000
	node := testenv.Tool(t, "node", "apt-get install nodejs")
	mods := os.Getenv("TRAILGUARD_NODE_MODULES")
	_, err := os.Stat(filepath.Join(mods, "node_modules", "@elastic", "elasticsearch", "package.json"))
	testenv.Require(t, mods != "" && err == nil,
		"@elastic/elasticsearch not found: npm install --prefix DIR @elastic/elasticsearch@8.19 and set TRAILGUARD_NODE_MODULES=DIR")

	c := startCollector(t)
	ingest := c.token(t, "ingest", "node-client")
	read := c.token(t, "read", "node-reader")
	const svc = "compat-node"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "node/bulk.cjs", c.url, "node-client", ingest, "10000", svc)
	cmd.Env = append(os.Environ(), "NODE_PATH="+filepath.Join(mods, "node_modules"))
	out, err := cmd.Output()
	var stderr string
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = string(ee.Stderr)
	}
	if err != nil {
		t.Fatalf("node bulk.cjs: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	var res struct {
		Version                                string
		Total, Successful, Failed, Retry, Time int
		Aborted                                bool
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("helpers.bulk: %s", strings.TrimSpace(string(out)))
	if res.Failed != 0 || res.Successful != n || res.Aborted || !strings.HasPrefix(res.Version, "8.") {
		t.Fatalf("helpers.bulk result %+v", res)
	}
	if got := c.count(t, read, svc, n); got != n {
		t.Fatalf("the query API holds %d of the %d events", got, n)
	}
}
