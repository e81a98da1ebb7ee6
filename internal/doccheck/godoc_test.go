package doccheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportedNamesHaveGodoc: every exported name of the module's library
// packages has a doc comment, methods of exported types included (an
// Error, String or Read is where a reader learns what the message is for,
// or what the type promises beyond the interface). Before, 22 had none,
// nearly all Error, String, Read and Write methods.
func TestExportedNamesHaveGodoc(t *testing.T) {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// bench is its own module; testdata and dot directories are not code.
			if p != root && (d.Name() == "bench" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		if f.Name.Name == "main" {
			return nil
		}
		for _, missing := range undocumented(f) {
			t.Errorf("%s: exported %s has no doc comment (say why it is there, not what it does)", fset.Position(missing.Pos()), declName(missing))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// undocumented lists f's exported declarations without a doc comment:
// functions, methods of exported types, types, and constants and
// variables outside a documented group.
func undocumented(f *ast.File) []ast.Node {
	var out []ast.Node
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Name.IsExported() && d.Doc == nil && exportedRecv(d) {
				out = append(out, d)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				switch s := s.(type) {
				case *ast.TypeSpec:
					if s.Name.IsExported() && s.Doc == nil && d.Doc == nil {
						out = append(out, s)
					}
				case *ast.ValueSpec:
					for _, n := range s.Names {
						if n.IsExported() && s.Doc == nil && d.Doc == nil && s.Comment == nil {
							out = append(out, n)
						}
					}
				}
			}
		}
	}
	return out
}

// exportedRecv reports whether d is a function or a method of an exported
// type: an unexported type's methods are not in the package's godoc.
func exportedRecv(d *ast.FuncDecl) bool {
	if d.Recv == nil {
		return true
	}
	t := d.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	id, ok := t.(*ast.Ident)
	return ok && id.IsExported()
}

// declName names a declaration undocumented found, for the message.
func declName(n ast.Node) string {
	switch n := n.(type) {
	case *ast.FuncDecl:
		return "func " + n.Name.Name
	case *ast.TypeSpec:
		return "type " + n.Name.Name
	case *ast.Ident:
		return n.Name
	}
	return "name"
}
