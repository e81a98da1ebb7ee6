package doccheck

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/trailguard/trailguard/alerting"
	"github.com/trailguard/trailguard/forward"
	"github.com/trailguard/trailguard/proxy"
	"github.com/trailguard/trailguard/server"
)

// root is the repository, from this package's directory.
const root = "../.."

func read(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// docs returns README.md and every docs/*.md, by name.
func docs(t *testing.T) map[string]string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no docs/*.md: %v", err)
	}
	out := map[string]string{"README.md": read(t, "README.md")}
	for _, n := range names {
		rel, _ := filepath.Rel(root, n)
		out[rel] = read(t, rel)
	}
	return out
}

type block struct {
	doc  string
	line int
	text string
}

// yamlBlocks returns the ```yaml blocks of a document.
func yamlBlocks(doc, text string) []block { return fenced(doc, text, "yaml", "yml") }

// fenced returns the fenced code blocks of a document in any of the
// languages given (```go, ```yaml, …).
func fenced(doc, text string, langs ...string) []block {
	var out []block
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		if l := strings.TrimSpace(lines[i]); !strings.HasPrefix(l, "```") || !slices.Contains(langs, l[3:]) {
			continue
		}
		start := i + 1
		for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
		}
		out = append(out, block{doc, start, strings.Join(lines[start:i], "\n") + "\n"})
	}
	return out
}

// TestDocYAMLExamplesLoad loads every YAML example of README.md and docs/
// with the strict parser of the configuration it belongs to: a key that
// does not exist, or a value of the wrong type, fails here before a user
// pastes it. Sigma rule fragments and rule tests (docs/detection.md) are
// checked by the detect package's own tests and left out by their first
// key.
func TestDocYAMLExamplesLoad(t *testing.T) {
	ruleKeys := map[string]bool{"title": true, "correlation": true, "response": true, "cases": true}
	var serveBlocks, proxyBlocks int
	for name, text := range docs(t) {
		for _, b := range yamlBlocks(name, text) {
			where := b.doc + ":" + strconv.Itoa(b.line)
			var top yaml.MapSlice
			if err := yaml.Unmarshal([]byte(b.text), &top); err != nil || len(top) == 0 {
				t.Errorf("%s: not a YAML mapping: %v", where, err)
				continue
			}
			if first, _ := top[0].Key.(string); ruleKeys[first] {
				continue
			}
			file := filepath.Join(t.TempDir(), "config.yml")
			if err := os.WriteFile(file, []byte(b.text), 0o600); err != nil {
				t.Fatal(err)
			}
			if b.doc == filepath.Join("docs", "proxy.md") {
				proxyBlocks++
				cfg, err := proxy.LoadConfig(file)
				if err == nil {
					err = cfg.Validate()
				}
				if err != nil {
					t.Errorf("%s: the gateway's configuration example does not load: %v", where, err)
				}
				continue
			}
			serveBlocks++
			if _, err := server.LoadConfig([]string{"--config", file, "--data", t.TempDir()}, nil); err != nil {
				t.Errorf("%s: the collector's configuration example does not load: %v", where, err)
			}
		}
	}
	// The examples this test exists for: README's outputs, detection.md's
	// collector settings, scale-out.md's outputs, proxy.md's full file.
	if serveBlocks < 3 || proxyBlocks < 1 {
		t.Errorf("found %d collector and %d gateway YAML examples; the documents have more", serveBlocks, proxyBlocks)
	}
}

// yamlKeys returns every yaml key of t and of the structs it holds, by
// the path of struct types that leads to it (for messages).
func yamlKeys(t reflect.Type, into map[string]string, via string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
		return
	}
	for i := range t.NumField() {
		f := t.Field(i)
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "" || key == "-" || !f.IsExported() {
			continue
		}
		if _, ok := into[key]; !ok {
			into[key] = via + t.Name() + "." + f.Name
		}
		yamlKeys(f.Type, into, via+t.Name()+"."+f.Name+" → ")
	}
}

// TestConfigKeysDocumented checks that every key a configuration parser
// accepts is named in the document that describes that configuration, as
// `key` or in a YAML example: a setting nobody can find is a
// setting nobody uses, or one a reviewer cannot judge.
func TestConfigKeysDocumented(t *testing.T) {
	tests := []struct {
		doc   string
		types []reflect.Type
	}{
		{"docs/proxy.md", []reflect.Type{reflect.TypeFor[proxy.Config]()}},
		{"docs/scale-out.md", []reflect.Type{reflect.TypeFor[forward.Config]()}},
		{"docs/detection.md", []reflect.Type{reflect.TypeFor[alerting.NotifierConfig](),
			reflect.TypeFor[server.DetectionConfig](), reflect.TypeFor[server.DecisionsConfig]()}},
	}
	for _, tt := range tests {
		text := read(t, tt.doc)
		var examples strings.Builder
		for _, b := range yamlBlocks(tt.doc, text) {
			examples.WriteString(b.text)
		}
		word := regexp.MustCompile(`[a-z0-9_]+`)
		named := map[string]bool{}
		for _, w := range word.FindAllString(examples.String(), -1) {
			named[w] = true
		}
		for _, span := range regexp.MustCompile("`[^`\n]+`").FindAllString(text, -1) {
			for _, w := range word.FindAllString(span, -1) {
				named[w] = true
			}
		}
		keys := map[string]string{}
		for _, typ := range tt.types {
			yamlKeys(typ, keys, "")
		}
		for key, field := range keys {
			if !named[key] {
				t.Errorf("%s does not name the key %s (%s)", tt.doc, key, field)
			}
		}
	}
}

// TestDocumentedDefaults checks every "`key` (default…)" the documents
// state for a setting of `trailguard serve` against server.Defaults: a
// number with its unit (64 KiB, 2 min, 30m) must be the default the code
// applies.
func TestDocumentedDefaults(t *testing.T) {
	def := reflect.ValueOf(server.Defaults())
	field := map[string]reflect.Value{}
	for i := range def.NumField() {
		if key := def.Type().Field(i).Tag.Get("yaml"); key != "" && key != "-" {
			field[key] = def.Field(i)
		}
	}
	stated := regexp.MustCompile("`([a-z0-9_]+)` \\(([0-9][0-9,]*)\\s*(KiB|MiB|GiB|min|ms|s|m|h)?[,;) ]")
	units := map[string]int64{"": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
		"ms": int64(time.Millisecond), "s": int64(time.Second), "min": int64(time.Minute), "m": int64(time.Minute), "h": int64(time.Hour)}
	checked := 0
	for name, text := range docs(t) {
		for _, m := range stated.FindAllStringSubmatch(text, -1) {
			v, ok := field[m[1]]
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(strings.ReplaceAll(m[2], ",", ""), 10, 64)
			if err != nil {
				t.Errorf("%s: %s: %v", name, m[0], err)
				continue
			}
			checked++
			var want int64
			switch {
			case v.Type() == reflect.TypeFor[time.Duration]():
				want = v.Int()
				if m[3] == "" || units[m[3]] < int64(time.Millisecond) {
					t.Errorf("%s: %s states a duration without its unit", name, m[0])
					continue
				}
			case v.CanInt():
				want = v.Int()
			default:
				continue
			}
			if got := n * units[m[3]]; got != want {
				t.Errorf("%s: %s: the default of %s is %v, not %d %s", name, m[0], m[1], v.Interface(), n, m[3])
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d stated defaults found; the README states more", checked)
	}
}
