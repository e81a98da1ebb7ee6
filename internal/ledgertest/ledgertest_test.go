package ledgertest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/ledger"
)

// TestWritePCIDSS: the ledger is what the tests that read it rely on: 360
// records, of which the prune removed a prefix under policy pci-dss, and
// none when not pruned, as the ledger on disk says; the signer key is
// readable beside it.
func TestWritePCIDSS(t *testing.T) {
	for _, prune := range []bool{false, true} {
		t.Run(strconv.FormatBool(prune), func(t *testing.T) {
			dir := t.TempDir()
			w := WritePCIDSS(t, dir, "test.example/ledgertest", prune)
			if w.Size != 360 {
				t.Errorf("Size %d, want 360", w.Size)
			}
			if !prune {
				if len(w.Pruned) != 0 || w.End != 0 || w.Day != "" {
					t.Errorf("not pruned, yet %+v", w)
				}
				return
			}
			if w.End == 0 || w.End >= 350 {
				t.Errorf("End %d: the prune should remove some, not all, of the 350 records before the recent ten", w.End)
			}
			for _, p := range w.Pruned {
				if p.Policy != "pci-dss" {
					t.Errorf("retention record under policy %q", p.Policy)
				}
			}
			if _, err := ledger.LoadSigner(filepath.Join(dir, "keys", "signer.key")); err != nil {
				t.Fatal(err)
			}
			l, err := ledger.OpenReadOnly(filepath.Join(dir, "ledger"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if l.Size() != w.Size || l.Pruned() != w.End {
				t.Errorf("the ledger on disk holds %d records, %d pruned; WritePCIDSS says %d, %d", l.Size(), l.Pruned(), w.Size, w.End)
			}
		})
	}
}

// TestImportedOnlyByTests: no file of the product imports ledgertest: it
// fails tests rather than returning errors.
func TestImportedOnlyByTests(t *testing.T) {
	const self = "github.com/trailguard/trailguard/internal/ledgertest"
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == self {
				t.Errorf("%s imports %s, which only tests may import", path, self)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d files of the module from %s", checked, root)
	}
}
