package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/flock"
	"github.com/trailguard/trailguard/internal/testenv"
)

// TestGatewayDataDirDefault: trailguard proxy started with no data
// directory named uses ./trailguard-gateway, never the collector's
// ./trailguard-data (both defaulted to it, and a gateway started where a
// collector had run wrote its events into the collector's ledger, signed
// with the collector's key); where ./trailguard-data holds a trail and
// ./trailguard-gateway does not exist yet, it asks which is the gateway's
// rather than guess. Which directory a run took is seen from the lock a
// test holds in it (TestDataDirInUse's message names the directory).
func TestGatewayDataDirDefault(t *testing.T) {
	gw := []string{"--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9"}
	for _, tt := range []struct {
		name    string
		have    []string // directories present before
		env     string   // TRAILGUARD_DATA ("/x": a directory under the test's)
		gwEnv   string   // TRAILGUARD_GATEWAY_DATA
		note    string   // said on standard error, besides sayAlso
		sayNot  string
		args    []string
		code    int
		uses    string // the data directory the run took ("" for none)
		sayAlso string
		notMade string
	}{
		{name: "nothing there", uses: gatewayDataDir},
		{name: "a collector's data beside it", have: []string{"trailguard-data/ledger"}, code: 2,
			sayAlso: "--data ./trailguard-gateway to start its own", notMade: gatewayDataDir},
		{name: "a collector's spool beside it", have: []string{"trailguard-data/spool"}, code: 2, sayAlso: "holds a trail (spool/)"},
		{name: "the gateway's own already there", have: []string{"trailguard-data/ledger", "trailguard-gateway"}, uses: gatewayDataDir},
		{name: "named by --data", have: []string{"trailguard-data/ledger"}, args: []string{"--data", "./trailguard-gateway"}, uses: "./trailguard-gateway"},
		{name: "the collector's named by --data", have: []string{"trailguard-data/ledger"}, args: []string{"--data", "trailguard-data"}, uses: "trailguard-data"},
		// TRAILGUARD_DATA is the collector's: exported for serve on the
		// same machine, it made the gateway open the collector's ledger.
		{name: "TRAILGUARD_DATA is the collector's", have: []string{"/collector/ledger"}, env: "/collector", uses: gatewayDataDir,
			note: "TRAILGUARD_DATA (/collector) names the collector's data directory and is not read by the gateway; its own is ./trailguard-gateway (choose it with --data DIR or TRAILGUARD_GATEWAY_DATA)"},
		{name: "named by TRAILGUARD_GATEWAY_DATA", have: []string{"trailguard-data/ledger"}, gwEnv: "elsewhere", uses: "elsewhere"},
		{name: "TRAILGUARD_GATEWAY_DATA over TRAILGUARD_DATA", env: "/collector", gwEnv: "elsewhere", uses: "elsewhere", sayNot: "TRAILGUARD_DATA"},
		{name: "--data over TRAILGUARD_GATEWAY_DATA", gwEnv: "elsewhere", args: []string{"--data", "mine"}, uses: "mine"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			top := t.TempDir()
			t.Chdir(top)
			abs := func(d string) string { // "/x" is top/x, named absolute
				if strings.HasPrefix(d, "/") {
					return filepath.Join(top, d)
				}
				return d
			}
			env := tt.env
			if env != "" {
				env = abs(env)
				tt.note = strings.ReplaceAll(tt.note, "("+tt.env+")", "("+env+")")
			}
			t.Setenv("TRAILGUARD_DATA", env)
			t.Setenv("TRAILGUARD_DATA_DIR", "")
			t.Setenv("TRAILGUARD_GATEWAY_DATA", tt.gwEnv)
			for _, d := range tt.have {
				if err := os.MkdirAll(abs(d), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			if tt.uses != "" {
				// Held as another process would: the run stops at
				// Open, saying where.
				if err := os.MkdirAll(filepath.Join(tt.uses, "ledger"), 0o700); err != nil {
					t.Fatal(err)
				}
				held, err := flock.Lock(filepath.Join(tt.uses, "ledger", "lock"), 0)
				if err != nil {
					t.Fatal(err)
				}
				defer held.Close()
				tt.code = 1
				tt.sayAlso = "running on the data directory " + tt.uses + ":"
			}
			// A run that took a directory nobody holds serves until
			// the process ends: that is a failure too, not a hang.
			type result struct {
				errOut string
				code   int
			}
			done := make(chan result, 1)
			go func() {
				_, errOut, code := call(runProxy, append(gw, tt.args...)...)
				done <- result{errOut, code}
			}()
			var errOut string
			var code int
			select {
			case r := <-done:
				errOut, code = r.errOut, r.code
			case <-time.After(30 * time.Second):
				t.Fatalf("the gateway is serving: it took a data directory other than %q", tt.uses)
			}
			if code != tt.code || !strings.Contains(errOut, tt.sayAlso) {
				t.Errorf("exit %d, want %d and %q:\n%s", code, tt.code, tt.sayAlso, errOut)
			}
			if tt.note != "" && !strings.Contains(errOut, tt.note) {
				t.Errorf("does not say %q:\n%s", tt.note, errOut)
			}
			if tt.sayNot != "" && strings.Contains(errOut, tt.sayNot) {
				t.Errorf("says %q:\n%s", tt.sayNot, errOut)
			}
			if tt.notMade != "" {
				if _, err := os.Stat(tt.notMade); !os.IsNotExist(err) {
					t.Errorf("%s was made: %v", tt.notMade, err)
				}
			}
		})
	}
	var out strings.Builder
	runProxy([]string{"--help"}, &out, &out)
	if !strings.Contains(out.String(), "default "+gatewayDataDir) {
		t.Errorf("proxy --help does not give its default data directory:\n%s", out.String())
	}
}

// TestGatewayDataDirUnusable: a gateway whose data directory cannot be
// made says so in the gateway's terms, single node or in front of a
// collector: the flag, the YAML key and TRAILGUARD_GATEWAY_DATA. Before,
// a single node named the collector's TRAILGUARD_DATA, which the gateway
// does not read, and with --collector the spool's error named nothing.
func TestGatewayDataDirUnusable(t *testing.T) {
	bin := buildTrailguard(t)
	top := t.TempDir()
	file := filepath.Join(top, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := []string{"proxy", "--listen", "127.0.0.1:0", "--upstream", "http://127.0.0.1:9"}
	shipping := []string{"--collector", "http://127.0.0.1:9", "--token", "t"}
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"single node, a file", []string{"--data", file}},
		{"single node, under a file", []string{"--data", filepath.Join(file, "gw")}},
		{"shipping, a file", append([]string{"--data", file}, shipping...)},
		{"shipping, under a file", append([]string{"--data", filepath.Join(file, "gw")}, shipping...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, append(gw, tt.args...)...)
			cmd.Env = append(os.Environ(), "TRAILGUARD_DATA=", "TRAILGUARD_DATA_DIR=", "TRAILGUARD_GATEWAY_DATA=")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := testenv.StartChild(t, cmd); err != nil {
				t.Fatal(err)
			}
			err := exitWithin(t, cmd, 60*time.Second, "the gateway is serving", func() string { return stdout.String() + stderr.String() })
			code := cmd.ProcessState.ExitCode()
			want := "trailguard proxy: cannot create the data directory " + tt.args[1] + " (point --data, data_dir or TRAILGUARD_GATEWAY_DATA at a writable place): mkdir " + file + ": not a directory\n"
			if code != 1 || stderr.String() != want {
				t.Errorf("exit %d (%v), stderr %q\nwant exit 1, %q", code, err, stderr.String(), want)
			}
		})
	}
}
