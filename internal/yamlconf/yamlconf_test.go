package yamlconf

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type limits struct {
	Rate  float64       `yaml:"rate"`
	Burst int           `yaml:"burst"`
	Wait  time.Duration `yaml:"wait"`
}

type route struct {
	Path  string `yaml:"path"`
	Limit limits `yaml:"rate_limit"`
}

type config struct {
	Interval time.Duration     `yaml:"interval"`
	Hold     bool              `yaml:"hold"`
	Max      int               `yaml:"max"`
	Size     uint64            `yaml:"size"`
	Proxies  []string          `yaml:"proxies"`
	Routes   []route           `yaml:"routes"`
	Timeouts limits            `yaml:"timeouts"`
	Named    map[string]limits `yaml:"named"`
	Ptr      *limits           `yaml:"ptr"`
}

// TestValueErrors: a value of the wrong type is reported with the key's
// path as written, what the key takes, what came and its line — never
// with Go's names for it, and never without a place.
func TestValueErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // all in the error
	}{
		{"int for a duration", "interval: 5\n", []string{"[1:11] interval: want a duration such as 500ms", `got "5"`}},
		{"bad unit", "max: 3\ninterval: 5x\n", []string{"[2:11] interval: want a duration", `got "5x"`, "> 2 | interval: 5x"}},
		{"nested flow mapping", "timeouts: {wait: 10}\n", []string{"timeouts.wait: want a duration", `got "10"`}},
		{"nested bad unit", "timeouts: {burst: 1, wait: 1y}\n", []string{"timeouts.wait: want a duration", `got "1y"`}},
		{"in a list", "routes:\n  - path: /\n  - path: /api/\n    rate_limit: {rate: fast}\n", []string{"[4:24] routes[1].rate_limit.rate: want a number", `got "fast"`}},
		{"duration in a list", "routes:\n  - path: /\n    rate_limit:\n      wait: soon\n", []string{"[4:13] routes[0].rate_limit.wait: want a duration", `got "soon"`}},
		{"map value", "named:\n  a: {wait: 2 days}\n", []string{"named.a.wait: want a duration", `got "2 days"`}},
		{"pointer", "ptr: {wait: x}\n", []string{"ptr.wait: want a duration"}},
		{"bool", "hold: yes-please\n", []string{"[1:7] hold: want true or false", `got "yes-please"`}},
		{"int", "max: 10k\n", []string{"max: want a whole number", `got "10k"`}},
		{"scalar for a list", "proxies: 10.0.0.0/8\n", []string{"proxies: want a list", `got "10.0.0.0/8"`}},
		{"mapping for a list", "routes: {path: /}\n", []string{"routes: want a list", "got a mapping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c config
			err := Unmarshal([]byte(tt.yaml), &c)
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.yaml)
			}
			var ve *ValueError
			if !errors.As(err, &ve) {
				t.Errorf("not a ValueError: %v", err)
			}
			msg := strings.Join(strings.Fields(err.Error()), " ")
			for _, w := range tt.want {
				if !strings.Contains(msg, strings.Join(strings.Fields(w), " ")) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, bad := range []string{"Go struct field", "Go value", "time.Duration"} {
				if strings.Contains(msg, bad) {
					t.Errorf("error speaks Go (%q):\n%v", bad, err)
				}
			}
		})
	}
}

// TestValid: what is right decodes, and an unknown key is still refused.
func TestValid(t *testing.T) {
	var c config
	if err := Unmarshal([]byte("interval: 2s\nroutes:\n  - {path: /, rate_limit: {rate: 1.5, wait: 1m}}\nnamed: {a: {wait: 3h}}\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Interval != 2*time.Second || c.Routes[0].Limit.Wait != time.Minute || c.Named["a"].Wait != 3*time.Hour {
		t.Errorf("decoded %+v", c)
	}
	if err := Unmarshal([]byte("intervall: 2s\n"), &c); err == nil || !strings.Contains(err.Error(), `unknown field "intervall"`) {
		t.Errorf("unknown key: %v", err)
	}
}
