package server

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode"

	"github.com/goccy/go-yaml"
)

// FuzzLoadConfig feeds arbitrary YAML files, TRAILGUARD_* variables and
// flags to LoadConfig: it never panics, what it accepts passes validation
// (so the collector never starts on a configuration it would refuse), and
// an accepted configuration written back as YAML loads to the same thing.
func FuzzLoadConfig(f *testing.F) {
	for _, c := range []struct{ yaml, env, args string }{
		{"data_dir: /var/lib/tg\nlisten: 127.0.0.1:9000\nretention: hipaa\ncheckpoint_interval: 2s\nwitness: [/w1, https://w.example/cp]\n", "", ""},
		{"max_line_bytes: 1024\nmax_request_bytes: 1023\n", "", ""},
		{"legal_hold: yes\n", "LEGAL_HOLD=perhaps", ""},
		{"data_dirr: typo\n", "", ""},
		{"checkpoint_interval: -1s\n", "CHECKPOINT_INTERVAL=90s", "--checkpoint-interval\n500ms"},
		{"witness: {a: b}\n", "WITNESS=a,,b, c", "--witness\n,"},
		{"", "DATA=/d\nDATA_DIR=/old\nLISTEN=:0", "--data\n/flag\n--metrics-public"},
		{"dedup_window: 99999999999999999999\n", "DEDUP_WINDOW=-5", ""},
		{"[1, 2]", "", "positional"},
		{"a: &x [*x]\n", "", ""},
		{"data_dir: \"\\u0000\"\n", "", "--max-line-bytes\n10"},
		{"outputs:\n- name: es\n  type: elasticsearch\n  url: https://es.example:9200\n- name: vl\n  type: victorialogs\n  url: http://127.0.0.1:9428\n  stream_fields: [service.name]\n", "", ""},
	} {
		f.Add([]byte(c.yaml), c.env, c.args)
	}
	f.Fuzz(func(t *testing.T, file []byte, env, args string) {
		dir := t.TempDir()
		path := filepath.Join(dir, "tg.yaml")
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		var environ []string
		for kv := range strings.SplitSeq(env, "\n") {
			if !strings.HasPrefix(kv, "TRAILGUARD_") {
				kv = "TRAILGUARD_" + kv // reach the variables LoadConfig reads
			}
			environ = append(environ, kv)
		}
		argv := []string{"--config", path}
		if args != "" {
			argv = append(argv, strings.Split(args, "\n")...)
		}
		cfg, err := LoadConfig(argv, environ)
		if err != nil {
			return
		}
		again := cfg
		if err := again.validate(); err != nil || !reflect.DeepEqual(again, cfg) {
			t.Fatalf("accepted %+v, which validation then refuses (%v) or changes", cfg, err)
		}
		if cfg.DataDir != filepath.Clean(cfg.DataDir) {
			t.Fatalf("data_dir %q not cleaned", cfg.DataDir)
		}
		// Written back as YAML (what an operator copies into a file), it
		// loads to the same configuration. Strings YAML cannot carry as
		// plain scalars are left to the YAML library's own tests.
		if !printable(cfg) {
			return
		}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatalf("marshal %+v: %v", cfg, err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		back, err := LoadConfig([]string{"--config", path}, nil)
		if err != nil {
			t.Fatalf("accepted configuration written back does not load: %v\n%s", err, out)
		}
		// Compared as YAML, where an empty list and none read the same.
		out2, err := yaml.Marshal(back)
		if err != nil || string(out2) != string(out) {
			t.Fatalf("round trip through YAML changed the configuration (%v):\n%s\nbecame\n%s", err, out, out2)
		}
	})
}

// printable reports whether every string in cfg, nested ones included,
// is printable text.
func printable(cfg Config) bool {
	var walk func(v reflect.Value) bool
	walk = func(v reflect.Value) bool {
		switch v.Kind() {
		case reflect.String:
			for _, r := range v.String() {
				if !unicode.IsPrint(r) || r == unicode.ReplacementChar {
					return false
				}
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				if !walk(v.Index(i)) {
					return false
				}
			}
		case reflect.Map:
			for it := v.MapRange(); it.Next(); {
				if !walk(it.Key()) || !walk(it.Value()) {
					return false
				}
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if !walk(v.Field(i)) {
					return false
				}
			}
		case reflect.Pointer, reflect.Interface:
			return v.IsNil() || walk(v.Elem())
		}
		return true
	}
	return walk(reflect.ValueOf(cfg))
}
