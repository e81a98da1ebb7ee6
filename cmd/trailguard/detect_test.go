package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ledger"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A rules directory with good rules and bad ones: the bad ones are named
// with file, line and reason, and the good ones still run.
const goodRule = `title: Admin path probe
id: 11111111-2222-4333-8444-555555555555
logsource:
    category: webserver
detection:
    sel:
        cs-uri-stem|startswith: /wp-admin
    condition: sel
level: low
`

const mixedFile = `title: Windows rule
logsource:
    product: windows
detection:
    sel:
        EventID: 4625
    condition: sel
---
title: Broken YAML
detection:
    sel: [unclosed
    condition: sel
---
title: Placeholder rule
logsource:
    category: webserver
detection:
    sel:
        c-ip|expand: '%Servers%'
    condition: sel
---
title: Still fine
name: tool_curl
logsource:
    category: webserver
detection:
    sel:
        c-useragent|startswith: curl/
    condition: sel
`

func TestDetectCheck(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "good.yml"), goodRule)
	writeFile(t, filepath.Join(dir, "sub", "mixed.yml"), mixedFile)
	writeFile(t, filepath.Join(dir, "notes.txt"), "not a rule")

	var out, errOut strings.Builder
	if code := runDetect([]string{"--check"}, &out, &errOut); code != 0 {
		t.Fatalf("built-in rules: exit %d\n%s", code, errOut.String())
	}
	builtin := out.String()
	out.Reset()
	code := runDetect([]string{"--rules", dir, "--check"}, &out, &errOut)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	msgs := errOut.String()
	mixed := filepath.Join(dir, "sub", "mixed.yml")
	for _, want := range []string{
		mixed + `:1: rule "Windows rule": logsource product "windows"`,
		mixed + ":12:5: YAML:",
		mixed + `:19:9: rule "Placeholder rule": c-ip|expand: modifier expand`,
	} {
		if !strings.Contains(msgs, want) {
			t.Errorf("errors lack %q:\n%s", want, msgs)
		}
	}
	if n := strings.Count(msgs, "\n"); n != 3 {
		t.Errorf("%d error lines, want 3:\n%s", n, msgs)
	}
	var nb, nr, nf int
	fmt.Sscanf(builtin, "%d rules loaded, %d failed", &nb, &nf)
	fmt.Sscanf(out.String(), "%d rules loaded, %d failed", &nr, &nf)
	if nr != nb+2 || nf != 3 {
		t.Errorf("built-in %q, with the directory %q: want 2 more rules and 3 failures", builtin, out.String())
	}
	// A collector's data directory brings its rules/ along.
	data := t.TempDir()
	writeFile(t, filepath.Join(data, "rules", "good.yml"), goodRule)
	out.Reset()
	if code := runDetect([]string{"--data", data, "--check"}, &out, &errOut); code != 0 {
		t.Fatalf("--data: exit %d", code)
	}
	fmt.Sscanf(out.String(), "%d rules loaded", &nr)
	if nr != nb+1 {
		t.Errorf("--data %s loaded %d rules, want %d", data, nr, nb+1)
	}
}

func TestDetectReplay(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rules", "good.yml"), goodRule)
	var lines []string
	for i := range 12 {
		lines = append(lines, fmt.Sprintf(`{"@timestamp":"2026-01-01T00:00:%02dZ","event":{"id":"fail-%d","category":["authentication"],"outcome":"failure"},"client":{"ip":"203.0.113.5"},"user":{"name":"alice"}}`, i, i))
	}
	lines = append(lines, `not json`, ``,
		`{"@timestamp":"2026-01-01T00:01:00Z","event":{"id":"probe","category":["web"]},"url":{"path":"/wp-admin/setup.php"},"client":{"ip":"198.51.100.2"}}`)
	file := filepath.Join(dir, "events.ndjson")
	writeFile(t, file, strings.Join(lines, "\n")+"\n")

	check := func(stdout string) map[string][]map[string]any {
		t.Helper()
		byRule := map[string][]map[string]any{}
		sc := bufio.NewScanner(strings.NewReader(stdout))
		for sc.Scan() {
			if err := event.Validate(sc.Bytes()); err != nil {
				t.Errorf("alert is not ECS: %v\n%s", err, sc.Bytes())
			}
			var a map[string]any
			if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
				t.Fatal(err)
			}
			name := a["rule"].(map[string]any)["name"].(string)
			byRule[name] = append(byRule[name], a)
		}
		return byRule
	}
	var out, errOut strings.Builder
	if code := runDetect([]string{"--rules", filepath.Join(dir, "rules"), "--replay", file}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	byRule := check(out.String())
	bf := byRule["Brute force from one address"]
	if len(bf) != 1 || len(byRule["Admin path probe"]) != 1 {
		t.Fatalf("alerts by rule: %v\n%s", byRule, out.String())
	}
	ev := bf[0]["trailguard"].(map[string]any)["alert"].(map[string]any)["evidence"].(map[string]any)
	if ids := fmt.Sprint(ev["event_id"]); !strings.HasPrefix(ids, "[fail-0 fail-1") {
		t.Errorf("evidence ids %s, want fail-0…", ids)
	}
	// A replay raises every firing; it says a collector stores fewer.
	if !strings.Contains(errOut.String(), "every firing: a collector folds repeats within detection.suppress") {
		t.Errorf("the replay's summary does not say why a collector shows fewer alerts: %s", errOut.String())
	}
	if !strings.Contains(errOut.String(), "1 not JSON objects") {
		t.Errorf("summary %q", errOut.String())
	}

	// The same events in a ledger give the same alerts.
	ldir := filepath.Join(dir, "ledger")
	skey, _, _ := ledger.GenerateKey("test/detect")
	signer, _ := note.NewSigner(skey)
	l, err := ledger.Open(ldir, ledger.Options{Origin: "test/detect", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range lines {
		if line != "" {
			l.Append(context.Background(), []byte(line))
		}
	}
	l.Close()
	var lout strings.Builder
	if code := runDetect([]string{"--rules", filepath.Join(dir, "rules"), "--replay", ldir}, &lout, &errOut); code != 0 {
		t.Fatalf("ledger replay: exit %d: %s", code, errOut.String())
	}
	lb := check(lout.String())
	if len(lb["Brute force from one address"]) != 1 || len(lb["Admin path probe"]) != 1 {
		t.Fatalf("ledger replay alerts: %s", lout.String())
	}
	for _, args := range [][]string{{}, {"--check", "--test", "x"}, {"--replay"}, {"--check", "extra"}} {
		if code := runDetect(args, &out, &errOut); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code := runDetect([]string{"--replay", filepath.Join(dir, "missing")}, &out, &errOut); code != 1 {
		t.Errorf("missing file: exit %d", code)
	}
}

func TestDetectTests(t *testing.T) {
	var out, errOut strings.Builder
	if code := runDetect([]string{"--test", "builtin"}, &out, &errOut); code != 0 {
		t.Fatalf("built-in tests: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "probe.yml"), goodRule)
	writeFile(t, filepath.Join(dir, "probe.test.yml"), `cases:
  - name: probe
    events:
      - event: {event: {category: [web]}, url: {path: /wp-admin/x}}
    expect: [{rule: 11111111-2222-4333-8444-555555555555}]
  - name: wrong on purpose
    events:
      - event: {event: {category: [web]}, url: {path: /index.html}}
    expect: [{rule: 11111111-2222-4333-8444-555555555555}]
`)
	out.Reset()
	if code := runDetect([]string{"--rules", dir, "--test", dir}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "ok    "+filepath.Join(dir, "probe.test.yml")) || !strings.Contains(out.String(), "FAIL") ||
		!strings.Contains(out.String(), "0 alerts, want 1") {
		t.Errorf("output:\n%s", out.String())
	}
}

// TestDetectReplayUntimed replays examples/events.ndjson, whose events have
// no @timestamp: their alerts are dated at the replay's start, with a
// warning saying so (they were dated 1970-01-01), and an event with only
// event.ingested is dated by it.
func TestDetectReplayUntimed(t *testing.T) {
	dir := t.TempDir()
	ex, err := os.ReadFile(filepath.Join("..", "..", "examples", "events.ndjson"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ex, []byte("@timestamp")) {
		t.Fatal("examples/events.ndjson now has @timestamp: this test needs events without")
	}
	writeFile(t, filepath.Join(dir, "rules", "good.yml"), goodRule)
	var ingested []string
	for i := range 12 {
		ingested = append(ingested, fmt.Sprintf(`{"event":{"id":"ing-%d","category":["authentication"],"outcome":"failure","ingested":"2026-03-04T05:06:%02dZ"},"client":{"ip":"203.0.113.9"},"user":{"name":"bob"}}`, i, i))
	}
	for _, c := range []struct {
		name, data string
		from, to   time.Time
		warn       bool
	}{
		{"examples", string(ex), time.Now().Add(-time.Second), time.Time{}, true},
		{"ingested", strings.Join(ingested, "\n") + "\n", time.Date(2026, 3, 4, 5, 6, 0, 0, time.UTC), time.Date(2026, 3, 4, 5, 7, 0, 0, time.UTC), false},
	} {
		file := filepath.Join(dir, c.name+".ndjson")
		writeFile(t, file, c.data)
		var out, errOut strings.Builder
		args := []string{"--replay", file}
		if c.name == "ingested" {
			args = append([]string{"--rules", filepath.Join(dir, "rules")}, args...)
		}
		if code := runDetect(args, &out, &errOut); code != 0 {
			t.Fatalf("%s: exit %d: %s", c.name, code, errOut.String())
		}
		to := c.to
		if to.IsZero() {
			to = time.Now().Add(time.Second)
		}
		n := 0
		for line := range strings.Lines(out.String()) {
			var a struct {
				TS time.Time `json:"@timestamp"`
			}
			if err := json.Unmarshal([]byte(line), &a); err != nil {
				t.Fatal(err)
			}
			if a.TS.Before(c.from) || a.TS.After(to) {
				t.Errorf("%s: alert dated %v, want between %v and %v\n%s", c.name, a.TS, c.from, to, line)
			}
			n++
		}
		if n == 0 {
			t.Errorf("%s: no alerts\n%s", c.name, errOut.String())
		}
		if got := strings.Contains(errOut.String(), "neither @timestamp nor event.ingested"); got != c.warn {
			t.Errorf("%s: warning %v, want %v:\n%s", c.name, got, c.warn, errOut.String())
		}
	}
}
