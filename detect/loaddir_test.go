package detect

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadDir: a rules directory as the operator names it (serve's and
// the proxy's detection.rules): the example rules of the repository load
// and pass their tests; a directory that does not exist is one error
// naming it as given ("stat .: no such file or directory" named no
// directory).
func TestLoadDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "rules")
	cases := []struct {
		name   string
		dir    string
		rules  int
		errors []string // each error's text must contain
	}{
		{"the repository's example rules", filepath.Join("..", "examples", "rules"), 1, nil},
		{"a directory that does not exist", missing, 0, []string{missing + ": stat: no such file or directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := LoadDir(c.dir)
			if len(rs.Rules) != c.rules || len(rs.Errors) != len(c.errors) {
				t.Fatalf("%d rules, errors %v; want %d rules, %d errors", len(rs.Rules), rs.Errors, c.rules, len(c.errors))
			}
			for i, want := range c.errors {
				if got := rs.Errors[i].Error(); !strings.Contains(got, want) {
					t.Errorf("error %q; want it to contain %q", got, want)
				}
			}
		})
	}
	results, err := RunTests(LoadDir(filepath.Join("..", "examples", "rules")), os.DirFS(filepath.Join("..", "examples", "rules")), "examples/rules")
	if err != nil || len(results) < 2 {
		t.Fatalf("example rule tests: %d results, %v", len(results), err)
	}
	for _, r := range results {
		if len(r.Failures) > 0 {
			t.Errorf("%s:%d %s: %v", r.File, r.Line, r.Case, r.Failures)
		}
	}
}
