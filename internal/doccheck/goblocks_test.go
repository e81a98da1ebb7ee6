package doccheck

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// goBlock says how a ```go block of the documents is compiled: the block
// is the body of a main function, after declarations of what it leaves to
// the reader (before) and followed by uses of what it only shows being
// made (after). A block that is not code to paste (an API summary with
// "…") says why in skip.
type goBlock struct {
	doc, first    string // the document, and the block's first line
	before, after string
	skip          string
}

var goBlocks = []goBlock{
	{doc: "README.md", first: "trail, _ := sink.OpenFile(", before: "var oldRoles, newRoles []string"},
	{doc: "docs/scale-out.md", first: "trail, _ := ship.New(ship.Options{", after: "_ = audit"},
	{doc: "docs/ledger.md", first: "l, err := ledger.Open(", skip: "a summary of the API, one call a line with … for what it leaves out"},
}

// importPaths are the packages a block may use by their names.
var importPaths = map[string]string{
	"context": "context", "errors": "errors", "fmt": "fmt", "http": "net/http", "io": "io", "log": "log",
	"os": "os", "slog": "log/slog", "strings": "strings", "time": "time",
}

func init() {
	for _, p := range []string{"access", "alerting", "decision", "detect", "event", "forward", "httpaudit", "index",
		"ledger", "proxy", "query", "redact", "report", "retention", "server", "ship", "sink"} {
		importPaths[p] = "github.com/trailguard/trailguard/" + p
	}
}

// TestDocGoExamplesCompile type-checks and vets every ```go block of
// README.md and docs/ as the program a reader makes of it, against this
// checkout: a renamed function, field or constant fails here, not in the
// hands of the developer pasting it. Each block must be listed in
// goBlocks, so that a new one is not left unchecked.
func TestDocGoExamplesCompile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module with go vet")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	mod := t.TempDir()
	sum, err := os.ReadFile(filepath.Join(abs, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	goMod := "module doccheck.example/blocks\n\ngo 1.26\n\nrequire github.com/trailguard/trailguard v0.0.0\n\nreplace github.com/trailguard/trailguard => " + strconv.Quote(abs) + "\n"
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	used := map[int]bool{}
	var pkgs []string
	ident := regexp.MustCompile(`\b([a-z]+)\.[A-Z]`)
	for name, text := range docs(t) {
		for _, b := range fenced(name, text, "go") {
			at := b.doc + ":" + strconv.Itoa(b.line)
			i := slices.IndexFunc(goBlocks, func(g goBlock) bool {
				return g.doc == b.doc && strings.HasPrefix(strings.TrimSpace(b.text), g.first)
			})
			if i < 0 {
				t.Errorf("%s: a Go block this test does not know: add it to goBlocks (what it needs declared, or why it is not code to paste)", at)
				continue
			}
			used[i] = true
			g := goBlocks[i]
			if g.skip != "" {
				continue
			}
			var imports []string
			for _, m := range ident.FindAllStringSubmatch(b.text, -1) {
				if p, ok := importPaths[m[1]]; ok && !slices.Contains(imports, strconv.Quote(p)) {
					imports = append(imports, strconv.Quote(p))
				}
			}
			pkg := fmt.Sprintf("b%d", len(pkgs))
			// The //line comment makes the compiler's messages name the
			// document's own lines.
			src := fmt.Sprintf("package main\n\nimport (\n%s\n)\n\n%s\n\nfunc main() {\n//line %s:%d\n%s\n%s\n}\n",
				strings.Join(imports, "\n"), g.before, b.doc, b.line+1, b.text, g.after)
			if err := os.MkdirAll(filepath.Join(mod, pkg), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(mod, pkg, "main.go"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			pkgs = append(pkgs, "./"+pkg)
		}
	}
	for i, g := range goBlocks {
		if !used[i] {
			t.Errorf("goBlocks names a block %s no longer has (%q): remove it", g.doc, g.first)
		}
	}
	if len(pkgs) < 2 {
		t.Fatalf("found %d Go blocks to compile; README.md and docs/scale-out.md have one each", len(pkgs))
	}
	// Offline: the module's dependencies are this checkout's, already in
	// the module cache for its own build.
	cmd := exec.Command("go", append([]string{"vet"}, pkgs...)...)
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("the documents' Go blocks do not compile: %v\n%s", err, out)
	}
}
