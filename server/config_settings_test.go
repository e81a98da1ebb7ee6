package server

import (
	"errors"
	"flag"
	"reflect"
	"strings"
	"testing"
)

// TestSettingsCoverConfig keeps the help honest: every Config field has a
// sentence of help, every setting a field, and --help shows each flag with
// its type and default.
func TestSettingsCoverConfig(t *testing.T) {
	cfgType := reflect.TypeFor[Config]()
	helped := map[string]bool{}
	for _, h := range settingsHelp {
		if helped[h.key] {
			t.Errorf("setting %s has two help entries", h.key)
		}
		helped[h.key] = true
		if len(h.help) < 20 || !strings.HasSuffix(h.help, ".") {
			t.Errorf("setting %s: help %q is not a sentence", h.key, h.help)
		}
	}
	for i := range cfgType.NumField() {
		if key := cfgType.Field(i).Tag.Get("yaml"); !helped[key] && key != "-" {
			t.Errorf("Config.%s (%s) has no entry in settingsHelp: say in a sentence what it does", cfgType.Field(i).Name, key)
		}
	}
	var out strings.Builder
	Usage(&out)
	for _, st := range settings() {
		line := "  --" + st.flag
		if !strings.Contains(out.String(), line) || !strings.Contains(out.String(), "("+st.typ+", default "+st.defaultText()+")") {
			t.Errorf("--help lacks %s with its type and default:\n%s", line, out.String())
		}
		for _, a := range st.aliases {
			if strings.Contains(out.String(), "--"+a+" ") {
				t.Errorf("hidden alias --%s shown in --help", a)
			}
		}
	}
	for _, want := range []string{"--data DIR (string, default ./trailguard-data)", "--listen ADDR (string, default 127.0.0.1:8600)",
		"--checkpoint-interval DURATION (duration, default 1s)", "--legal-hold (bool, default false)", "env TRAILGUARD_DATA\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "see Config") {
		t.Error("--help still points at Go field names")
	}
}

// TestMistypedEnv: a variable within two letters of a setting's is named
// with the one meant; settings, their older names and other programs'
// TRAILGUARD_* variables are not.
func TestMistypedEnv(t *testing.T) {
	got := MistypedEnv([]string{"TRAILGUARD_MAX_LINE_BYTE=10", "TRAILGUARD_LISTN=x", "TRAILGUARD_DATA_DIR=/a", "TRAILGUARD_DATA=/b",
		"TRAILGUARD_CI=1", "TRAILGUARD_PROXY_TOKEN=t", "TRAILGUARD_BOUNCER_KEY=k", "TRAILGUARD_PPROF=x", "TRAILGUARD_TOOLS=/t", "PATH=/bin"})
	want := []string{"TRAILGUARD_MAX_LINE_BYTE is not a setting and is ignored; did you mean TRAILGUARD_MAX_LINE_BYTES?",
		"TRAILGUARD_LISTN is not a setting and is ignored; did you mean TRAILGUARD_LISTEN?"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MistypedEnv: %q, want %q", got, want)
	}
}

// TestDataDirNames checks the one name of the data directory on the command
// line, in the environment and in YAML, and the older names still work.
func TestDataDirNames(t *testing.T) {
	tests := []struct {
		args []string
		env  []string
		want string
	}{
		{nil, nil, "trailguard-data"},
		{[]string{"--data", "/a"}, nil, "/a"},
		{[]string{"--data-dir", "/b"}, nil, "/b"},
		{[]string{"-data=/c"}, nil, "/c"},
		{nil, []string{"TRAILGUARD_DATA=/d"}, "/d"},
		{nil, []string{"TRAILGUARD_DATA_DIR=/e"}, "/e"},
		{nil, []string{"TRAILGUARD_DATA_DIR=/old", "TRAILGUARD_DATA=/new"}, "/new"},
		{[]string{"--data", "/flag"}, []string{"TRAILGUARD_DATA=/env"}, "/flag"},
	}
	for _, tt := range tests {
		cfg, err := LoadConfig(tt.args, tt.env)
		if err != nil || cfg.DataDir != tt.want {
			t.Errorf("LoadConfig(%q, %q): data %q, %v; want %q", tt.args, tt.env, cfg.DataDir, err, tt.want)
		}
	}
	// A bare boolean flag means true; -h is help, not an error to print.
	if cfg, err := LoadConfig([]string{"--legal-hold", "--metrics-public=false"}, nil); err != nil || !cfg.LegalHold || cfg.MetricsPublic {
		t.Errorf("bool flags: %+v %v", cfg, err)
	}
	if _, err := LoadConfig([]string{"--help"}, nil); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
	if _, err := LoadConfig([]string{"--no-such-flag"}, nil); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Errorf("unknown flag: %v", err)
	}
	// A value of the wrong form names the setting and the form it wants.
	for _, tt := range []struct {
		args, env []string
		want      string
	}{
		{[]string{"--checkpoint-interval", "soon"}, nil, `--checkpoint-interval: want a duration such as 500ms, 30s, 5m or 2h, got "soon"`},
		{nil, []string{"TRAILGUARD_MAX_LINE_BYTES=1MiB"}, `TRAILGUARD_MAX_LINE_BYTES: want a whole number (bytes are plain numbers: 1048576, not 1MiB), got "1MiB"`},
		{[]string{"--legal-hold=yes"}, nil, `--legal-hold: want true or false, got "yes"`},
	} {
		if _, err := LoadConfig(tt.args, tt.env); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("LoadConfig(%q, %q): %v, want %q", tt.args, tt.env, err, tt.want)
		}
	}
}
