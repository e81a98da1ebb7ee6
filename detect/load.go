package detect

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// LoadError is a rule that was not loaded, and why. The other rules of
// the same file and set still load.
type LoadError struct {
	File      string
	Line, Col int
	// Rule is the rule's name, id or title when it was read that far.
	Rule   string
	Reason string
}

// Error returns "file:line:col: rule \"name\": reason".
func (e *LoadError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Col > 0 {
			fmt.Fprintf(&b, ":%d", e.Col)
		}
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, ": rule %q", e.Rule)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// RuleSet is a collection of parsed rules and the errors met reading them.
type RuleSet struct {
	Rules  []*Rule
	Errors []*LoadError
	// Files are the rule files read from a directory (LoadFS), in the
	// order read: what the collector records in its ledger at start.
	Files []RuleFile
}

// RuleFile is one rule file as read: its name (as errors give it), its
// size and the SHA-256 of its content, hex.
type RuleFile struct {
	Name   string `json:"name"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
}

// TestSuffix marks rule test files (see RunTests), which rule loading
// skips: brute_force.yml is tested by brute_force.test.yml.
const TestSuffix = ".test.yml"

// IsRuleFile reports whether a file name is a rule file: .yml or .yaml,
// not a test file.
func IsRuleFile(name string) bool {
	return (strings.HasSuffix(name, ".yml") || strings.HasSuffix(name, ".yaml")) &&
		!strings.HasSuffix(name, TestSuffix) && !strings.HasSuffix(name, ".test.yaml")
}

// ParseRules parses the rules of one file (any number of YAML documents).
// file names the file in errors; ruleset is recorded on each rule.
func ParseRules(file string, data []byte, ruleset string) *RuleSet {
	rs := &RuleSet{}
	if len(data) > MaxRuleFileBytes {
		rs.Errors = append(rs.Errors, &LoadError{File: file, Reason: fmt.Sprintf("file larger than %d bytes", MaxRuleFileBytes)})
		return rs
	}
	for _, d := range splitDocs(data) {
		n, err := parseYAML(d.text)
		if err != nil {
			rs.Errors = append(rs.Errors, docError(file, d.line, err, nil))
			continue
		}
		if n.kind == yNull {
			continue
		}
		r, err := parseRule(n)
		if err != nil {
			rs.Errors = append(rs.Errors, docError(file, d.line, err, n))
			continue
		}
		r.Source = Location{File: file, Line: d.line + n.line - 1}
		r.docLine = d.line
		r.Ruleset = ruleset
		rs.Rules = append(rs.Rules, r)
	}
	return rs
}

// docError places an error of a document in its file.
func docError(file string, docLine int, err error, n *ynode) *LoadError {
	le := &LoadError{File: file, Line: docLine, Reason: err.Error()}
	var pe *posError
	if errors.As(err, &pe) && pe.line > 0 {
		le.Line, le.Col = docLine+pe.line-1, pe.col
	}
	if pe != nil && error(pe) == err {
		le.Reason = pe.inFile(docLine)
	}
	if n != nil {
		for _, k := range []string{"name", "id", "title"} {
			if v := n.get(k); v != nil && v.kind == yScalar && v.str != "" {
				le.Rule = v.str
				break
			}
		}
	}
	return le
}

// LoadDir reads every rule file under dir (recursively; see IsRuleFile).
// A file that cannot be read or parsed is reported, and the others load.
func LoadDir(dir string) *RuleSet {
	return LoadFS(os.DirFS(dir), ".", dir, "custom")
}

// LoadFS reads every rule file under root in fsys; errors name files as
// display/relative-path.
func LoadFS(fsys fs.FS, root, display, ruleset string) *RuleSet {
	rs := &RuleSet{}
	var files []string
	err := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// The error names the path inside fsys ("stat .: no such file
			// or directory" for a rules directory that does not exist);
			// File names it as the operator gave it.
			reason := err.Error()
			var pe *fs.PathError
			if errors.As(err, &pe) {
				reason = pe.Op + ": " + pe.Err.Error()
			}
			rs.Errors = append(rs.Errors, &LoadError{File: filepath.Join(display, p), Reason: reason})
			return nil
		}
		if !d.IsDir() && IsRuleFile(d.Name()) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		rs.Errors = append(rs.Errors, &LoadError{File: display, Reason: err.Error()})
	}
	sort.Strings(files)
	for _, p := range files {
		rel := p
		if root != "." {
			rel = strings.TrimPrefix(p, root+"/")
		}
		name := filepath.Join(display, filepath.FromSlash(rel))
		data, err := readLimited(fsys, p)
		if err != nil {
			rs.Errors = append(rs.Errors, &LoadError{File: name, Reason: err.Error()})
			continue
		}
		sum := sha256.Sum256(data)
		rs.Files = append(rs.Files, RuleFile{Name: name, Size: len(data), SHA256: hex.EncodeToString(sum[:])})
		rs.add(ParseRules(name, data, ruleset))
	}
	return rs
}

func readLimited(fsys fs.FS, p string) ([]byte, error) {
	// Only a regular file (links followed) is opened: a FIFO planted in a
	// rules directory (the data directory's rules/ is read by every
	// collector start and every report) would hang the open, and a link
	// to /dev/zero, whose size is 0, would be read for ever.
	st, err := fs.Stat(fsys, p)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	if st.Size() > MaxRuleFileBytes {
		return nil, fmt.Errorf("file larger than %d bytes", MaxRuleFileBytes)
	}
	f, err := fsys.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	// At most the bound, should it grow meanwhile.
	data, err := io.ReadAll(io.LimitReader(f, MaxRuleFileBytes+1))
	if err == nil && len(data) > MaxRuleFileBytes {
		err = fmt.Errorf("file larger than %d bytes", MaxRuleFileBytes)
	}
	return data, err
}

func (rs *RuleSet) add(o *RuleSet) {
	rs.Rules = append(rs.Rules, o.Rules...)
	rs.Errors = append(rs.Errors, o.Errors...)
}

// Merge returns the rules of rs followed by those of o. A rule of o with
// the id or name of a rule of rs replaces it: that is how a user tunes a
// built-in rule (copy it, keep its id, change it).
func (rs *RuleSet) Merge(o *RuleSet) *RuleSet {
	out := &RuleSet{Errors: append(append([]*LoadError(nil), rs.Errors...), o.Errors...),
		Files: append(append([]RuleFile(nil), rs.Files...), o.Files...)}
	replaced := map[*Rule]bool{}
	for _, r := range o.Rules {
		for _, b := range rs.Rules {
			if r.ID != "" && r.ID == b.ID || r.Name != "" && r.Name == b.Name {
				replaced[b] = true
			}
		}
	}
	for _, b := range rs.Rules {
		if !replaced[b] {
			out.Rules = append(out.Rules, b)
		}
	}
	out.Rules = append(out.Rules, o.Rules...)
	return out
}

//go:embed rules
var builtinFS embed.FS

// Builtin returns trailguard's built-in rules (detect/rules in the source
// tree), embedded in the binary.
func Builtin() *RuleSet {
	return LoadFS(builtinFS, "rules", "builtin:rules", "trailguard")
}

// BuiltinFS is the embedded directory of built-in rules and their tests.
func BuiltinFS() fs.FS {
	sub, _ := fs.Sub(builtinFS, "rules")
	return sub
}
