package doccheck

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/ui"
)

// TestUIHeadersDocumented: the headers docs/ui.md says every UI answer
// carries are those ui.SetSecurityHeaders sets, each with its value, and
// none is left out (the document once omitted Permissions-Policy): a
// reviewer judging the UI's defences, or a proxy operator deciding which
// headers to leave alone, reads that block, not the code.
func TestUIHeadersDocumented(t *testing.T) {
	text := read(t, "docs/ui.md")
	_, after, ok := strings.Cut(text, "Every answer carries:\n\n```\n")
	if !ok {
		t.Fatal("docs/ui.md: no ``` block after \"Every answer carries:\"")
	}
	body, _, _ := strings.Cut(after, "```")
	// A line that starts with a space continues the header before it;
	// headers on one line are three or more spaces apart.
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		if strings.HasPrefix(l, " ") && len(lines) > 0 {
			lines[len(lines)-1] += " " + strings.TrimSpace(l)
			continue
		}
		lines = append(lines, l)
	}
	documented := http.Header{}
	for _, l := range lines {
		for _, item := range regexp.MustCompile(`\s{3,}`).Split(strings.TrimSpace(l), -1) {
			name, value, ok := strings.Cut(item, ": ")
			if !ok {
				t.Errorf("docs/ui.md: %q is not \"Name: value\"", item)
				continue
			}
			documented.Set(name, value)
		}
	}
	set := http.Header{}
	ui.SetSecurityHeaders(set)
	for name := range set {
		if got, want := documented.Get(name), set.Get(name); got != want {
			t.Errorf("docs/ui.md: %s is %q, the UI sends %q", name, got, want)
		}
	}
	for name := range documented {
		if set.Get(name) == "" {
			t.Errorf("docs/ui.md names %s, which the UI does not send", name)
		}
	}
}
