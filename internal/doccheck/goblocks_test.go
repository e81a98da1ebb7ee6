package doccheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
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
	{doc: "README.md", first: "trail, err := sink.OpenFile(", before: "var oldRoles, newRoles []string"},
	{doc: "docs/scale-out.md", first: "trail, err := ship.New(ship.Options{", after: "_ = audit"},
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
			for _, e := range droppedErrors(b.text) {
				t.Errorf("%s:%d: %s: a reader copies the block as it is; handle the error", b.doc, b.line+e.line, e.what)
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

// droppedError is a place a Go block throws an error away.
type droppedError struct {
	line int // within the block, from 1
	what string
}

// droppedErrors finds where a block drops an error, by its shape (the
// blocks are compiled apart from their types): a blank identifier last
// on the left of an assignment from a call (Go's results end in the
// error), and a call whose result is unused when it is one of those that
// return only an error (serving, closing, writing). The README's first
// block had both ("trail, _ := sink.OpenFile(…)", a bare
// "http.ListenAndServe(…)", "defer audit.Close()"), and a newcomer
// copies the block as it is.
func droppedErrors(block string) []droppedError {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "", "package p\nfunc _() {\n"+block+"\n}\n", 0)
	if err != nil {
		return []droppedError{{1, "does not parse: " + err.Error()}}
	}
	errOnly := map[string]bool{"ListenAndServe": true, "ListenAndServeTLS": true, "Serve": true, "Close": true,
		"Shutdown": true, "Flush": true, "Sync": true, "Audit": true, "Auth": true}
	var out []droppedError
	at := func(n ast.Node) int { return fset.Position(n.Pos()).Line - 2 }
	unused := func(call *ast.CallExpr, how string) {
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && errOnly[sel.Sel.Name] {
			out = append(out, droppedError{at(call), strings.TrimSpace(how + " " + sel.Sel.Name + "'s error is not looked at")})
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			if len(n.Rhs) == 1 && len(n.Lhs) > 1 {
				if _, ok := n.Rhs[0].(*ast.CallExpr); ok {
					if id, ok := n.Lhs[len(n.Lhs)-1].(*ast.Ident); ok && id.Name == "_" {
						out = append(out, droppedError{at(n), "an error assigned to _"})
					}
				}
			}
		case *ast.ExprStmt:
			if call, ok := n.X.(*ast.CallExpr); ok {
				unused(call, "")
			}
		case *ast.DeferStmt:
			unused(n.Call, "deferred:")
		}
		return true
	})
	return out
}

// TestDroppedErrors: the check finds the shapes the README's first block
// had, and passes the same block with its errors handled.
func TestDroppedErrors(t *testing.T) {
	for _, tt := range []struct {
		block string
		want  int
	}{
		{"trail, _ := sink.OpenFile(o)\naudit, _ := httpaudit.New(c)\ndefer audit.Close()\nhttp.ListenAndServe(\":8080\", h)", 4},
		{"trail, err := sink.OpenFile(o)\nif err != nil {\n\tlog.Fatal(err)\n}\nerr = http.ListenAndServe(\":8080\", h)\nlog.Fatal(err)", 0},
		{"_, _ = fmt.Println(1)\nx, ok := m[k]\n_ = x\n_ = ok", 1},
	} {
		if got := droppedErrors(tt.block); len(got) != tt.want {
			t.Errorf("%q: %d dropped errors %v, want %d", tt.block, len(got), got, tt.want)
		}
	}
}
