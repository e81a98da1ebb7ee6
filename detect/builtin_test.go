package detect

import (
	"strings"
	"testing"
)

// TestBuiltinRules runs the test files next to the built-in rules
// (rules/*.test.yml): attacks raise the expected alerts, benign traffic
// none.
func TestBuiltinRules(t *testing.T) {
	rs := Builtin()
	for _, err := range rs.Errors {
		t.Errorf("built-in rule: %v", err)
	}
	if _, errs := NewEngine(rs, Options{}); len(errs) > 0 {
		for _, err := range errs {
			t.Errorf("built-in rule: %v", err)
		}
	}
	results, err := RunTests(rs, BuiltinFS(), "builtin:rules")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]bool{}
	for _, r := range results {
		files[r.File] = true
		if len(r.Failures) > 0 {
			t.Errorf("%s:%d: case %q:\n\t%s", r.File, r.Line, r.Case, strings.Join(r.Failures, "\n\t"))
		}
	}
	// Every rule file that raises alerts has tests.
	for _, r := range rs.Rules {
		if strings.HasSuffix(r.Source.File, "base.yml") {
			continue
		}
		test := strings.TrimSuffix(r.Source.File, ".yml") + TestSuffix
		if !files[test] {
			t.Errorf("%s has no test file %s", r.Source.File, test)
		}
	}
	if len(results) < 40 {
		t.Errorf("only %d test cases ran", len(results))
	}
}
