package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/retention"
	"github.com/trailguard/trailguard/server"
)

// fieldRE finds what looks like a field name in a query, a column list or
// a mapping reference: a dotted name under one of the roots events use.
var fieldRE = regexp.MustCompile(`\b(?:@timestamp|message|(?:event|http|url|source|client|user|user_agent|service|host|trace|span|log|error|labels|trailguard)(?:\.[a-z0-9_]+)+)\b`)

func checkFields(t *testing.T, asset, text string) int {
	t.Helper()
	fields := emitted()
	n := 0
	for _, f := range fieldRE.FindAllString(text, -1) {
		n++
		if f != "@timestamp" && f != "message" && !isEmitted(fields, f) {
			t.Errorf("%s references %s, which trailguard does not emit", asset, f)
		}
	}
	return n
}

// TestKibanaSavedObjects: the NDJSON parses as saved objects, every
// reference resolves inside the file, the dashboard shows the four
// security panels, and every field used is one we emit.
func TestKibanaSavedObjects(t *testing.T) {
	b, err := os.ReadFile("kibana/trailguard-security.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	type ref struct{ Type, ID, Name string }
	var objs []struct {
		Type       string         `json:"type"`
		ID         string         `json:"id"`
		Attributes map[string]any `json:"attributes"`
		References []ref          `json:"references"`
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var o struct {
			Type       string         `json:"type"`
			ID         string         `json:"id"`
			Attributes map[string]any `json:"attributes"`
			References []ref          `json:"references"`
		}
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil || o.Type == "" || o.ID == "" {
			t.Fatalf("line %q: %v", sc.Bytes(), err)
		}
		objs = append(objs, o)
	}
	ids := map[string]string{}
	for _, o := range objs {
		ids[o.Type+"/"+o.ID] = o.Attributes["title"].(string)
	}
	for _, o := range objs {
		for _, r := range o.References {
			if _, ok := ids[r.Type+"/"+r.ID]; !ok {
				t.Errorf("%s/%s references missing %s/%s", o.Type, o.ID, r.Type, r.ID)
			}
		}
	}
	if ids["index-pattern/trailguard-logs"] != "logs-trailguard-*" || len(objs) != 6 {
		t.Errorf("objects: %v", ids)
	}
	if n := checkFields(t, "kibana", string(b)); n < 10 {
		t.Errorf("only %d field references found in the Kibana objects", n)
	}
	for _, want := range []string{"http.response.status_code : (401 or 403)", "source.ip", "event.category : authentication", "event.kind : alert"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the dashboard lacks %q", want)
		}
	}
}

// TestGrafanaDashboard: valid JSON with VictoriaLogs panels whose LogsQL
// uses only fields we emit.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana/trailguard-security-victorialogs.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title      string
			Datasource struct{ Type string }
			Targets    []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Panels) != 4 {
		t.Fatalf("%d panels", len(d.Panels))
	}
	for _, p := range d.Panels {
		if p.Datasource.Type != "victoriametrics-logs-datasource" || len(p.Targets) != 1 || p.Targets[0].Expr == "" {
			t.Errorf("panel %q: %+v", p.Title, p)
		}
		if checkFields(t, "grafana panel "+p.Title, p.Targets[0].Expr) == 0 {
			t.Errorf("panel %q queries no field", p.Title)
		}
	}
}

// TestRetentionPolicies: the ILM and ISM policies delete at the retention
// profile's period, and PCI DSS keeps 90 days hot.
func TestRetentionPolicies(t *testing.T) {
	for _, p := range []retention.Profile{retention.PCIDSS, retention.SOC2, retention.HIPAA} {
		days := func(d int64) string { return strconv.FormatInt(d, 10) + "d" }
		var ilm struct {
			Policy struct {
				Phases map[string]struct {
					MinAge  string         `json:"min_age"`
					Actions map[string]any `json:"actions"`
				}
			}
		}
		readJSON(t, "elasticsearch/ilm-"+p.Name+".json", &ilm)
		del := ilm.Policy.Phases["delete"]
		if _, ok := del.Actions["delete"]; !ok || del.MinAge != days(int64(p.Retain/retention.Day)) {
			t.Errorf("ILM %s: delete phase %+v, want delete at %s", p.Name, del, days(int64(p.Retain/retention.Day)))
		}
		warm, hasWarm := ilm.Policy.Phases["warm"]
		if (p.Hot > 0) != hasWarm || (hasWarm && warm.MinAge != days(int64(p.Hot/retention.Day))) {
			t.Errorf("ILM %s: warm phase %+v (hot %v)", p.Name, warm, p.Hot)
		}
		var ism struct {
			Policy struct {
				States []struct {
					Name        string
					Actions     []map[string]any
					Transitions []struct {
						StateName  string `json:"state_name"`
						Conditions struct {
							MinIndexAge string `json:"min_index_age"`
						}
					}
				}
			}
		}
		readJSON(t, "opensearch/ism-"+p.Name+".json", &ism)
		var toDelete string
		for _, s := range ism.Policy.States {
			for _, tr := range s.Transitions {
				if tr.StateName == "delete" {
					toDelete = tr.Conditions.MinIndexAge
				}
			}
		}
		if toDelete != days(int64(p.Retain/retention.Day)) {
			t.Errorf("ISM %s: moves to delete at %q", p.Name, toDelete)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestServeConfigs: every example configuration loads as trailguard serve
// would load it.
func TestServeConfigs(t *testing.T) {
	for _, path := range []string{"serve.yaml", "victorialogs/serve-outputs.yaml"} {
		cfg, err := server.LoadConfig([]string{"--config", path}, nil)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if len(cfg.Outputs) == 0 {
			t.Errorf("%s: no outputs", path)
		}
		b, _ := os.ReadFile(path)
		checkFields(t, path, string(b))
	}
}

// TestSystemdUnits: systemd-analyze verify finds nothing to say about the
// units, and systemd-analyze security rates their exposure OK (below 2).
func TestSystemdUnits(t *testing.T) {
	analyze := testenv.Tool(t, "systemd-analyze", "apt-get install systemd")
	exe, err := os.Executable() // an executable that exists, for ExecStart
	if err != nil {
		t.Fatal(err)
	}
	for _, unit := range []string{"trailguard-serve.service", "trailguard-proxy.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), unit)
		os.WriteFile(path, bytes.ReplaceAll(b, []byte("/usr/local/bin/trailguard"), []byte(exe)), 0o644)
		out, err := exec.Command(analyze, "verify", "--man=no", path).CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
		out, err = exec.Command(analyze, "security", "--offline=yes", path).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+) (\S+)`).FindSubmatch(out)
		if err != nil || m == nil || string(m[2]) != "OK" || m[1][0] > '1' {
			t.Errorf("systemd-analyze security %s: %v\n%s", unit, err, out)
		}
	}
}
