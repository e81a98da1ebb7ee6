package detect

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Limits on rule files, so that a hostile or broken file costs little.
const (
	// MaxRuleFileBytes is the largest rule file read.
	MaxRuleFileBytes = 4 << 20
	// maxNodes bounds the YAML nodes of one document, counting every use
	// of an alias as a copy (a "billion laughs" document is refused).
	maxNodes = 200_000
	// maxYAMLDepth bounds nesting.
	maxYAMLDepth = 64
)

type ykind uint8

const (
	yNull ykind = iota
	yScalar
	yMap
	ySeq
)

// stype is the YAML type of a scalar, which Sigma needs to tell 404 from
// '404' only for modifiers that want numbers or booleans.
type stype uint8

const (
	sString stype = iota
	sInt
	sFloat
	sBool
)

// ynode is a YAML value with its position: the small tree rules are read
// from, so that every error can name a line.
type ynode struct {
	kind      ykind
	line, col int
	str       string // scalar text (decoded)
	stype     stype
	keys      []string // map keys, in document order
	keyNodes  []*ynode
	vals      []*ynode
	items     []*ynode // sequence items
}

func (n *ynode) get(key string) *ynode {
	if n == nil || n.kind != yMap {
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.vals[i]
		}
	}
	return nil
}

// keyNode returns the node of a map's key, for errors about its section.
func (n *ynode) keyNode(key string) *ynode {
	if n == nil || n.kind != yMap {
		return nil
	}
	for i, k := range n.keys {
		if k == key {
			return n.keyNodes[i]
		}
	}
	return nil
}

func (n *ynode) kindName() string {
	if n == nil {
		return "nothing"
	}
	switch n.kind {
	case yNull:
		return "null"
	case yScalar:
		return "a scalar"
	case yMap:
		return "a map"
	}
	return "a list"
}

// doc is one YAML document of a rule file, with the line its text starts
// on in the file.
type doc struct {
	line int
	text []byte
}

// splitDocs splits a file at its "---" document markers, so that a syntax
// error in one document of a multi-document file leaves the others
// loadable. A marker is "---" at the start of a line, alone or followed by
// a space; "..." ends a document.
func splitDocs(data []byte) []doc {
	var out []doc
	start, startLine, line := 0, 1, 1
	ended := false
	for off := 0; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end >= 0 {
			next = off + end + 1
		}
		l := bytes.TrimRight(data[off:next], "\r\n")
		isStart := bytes.Equal(l, []byte("---")) || bytes.HasPrefix(l, []byte("--- ")) || bytes.HasPrefix(l, []byte("---\t"))
		isEnd := bytes.Equal(l, []byte("...")) || bytes.HasPrefix(l, []byte("... "))
		switch {
		case isStart:
			if !ended {
				out = append(out, doc{startLine, data[start:off]})
			}
			ended = false
			// The marker line is kept (as a blank line) so that line numbers
			// inside the document stay right; content after "--- " on the
			// same line is part of the document.
			start, startLine = off+3, line
		case isEnd:
			if !ended {
				out = append(out, doc{startLine, data[start:off]})
			}
			ended = true
			start, startLine = next, line+1
		}
		off = next
	}
	if !ended {
		out = append(out, doc{startLine, data[start:]})
	}
	// Documents holding only blanks and comments are not documents.
	kept := out[:0]
	for _, d := range out {
		if hasContent(d.text) {
			kept = append(kept, d)
		}
	}
	return kept
}

func hasContent(b []byte) bool {
	for _, l := range bytes.Split(b, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) > 0 && l[0] != '#' && l[0] != '%' {
			return true
		}
	}
	return false
}

// posError is an error at a line and column of a document.
type posError struct {
	line, col int
	msg       string
	// refLine and refCol are a second place the message names, in the
	// same document (a key defined twice: the first definition).
	refLine, refCol int
}

func (e *posError) Error() string { return e.inFile(1) }

// inFile is the message for a document that starts on line docLine of
// its file: the second place it names is given as a line of the file.
func (e *posError) inFile(docLine int) string {
	if e.refLine > 0 {
		return fmt.Sprintf("%s at line %d, column %d", e.msg, docLine+e.refLine-1, e.refCol)
	}
	return e.msg
}

func errAt(n *ynode, format string, args ...any) *posError {
	e := &posError{msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.line, e.col = n.line, n.col
	}
	return e
}

// parseYAML parses one document. The line numbers in its nodes and errors
// are relative to the document's text, starting at 1.
func parseYAML(text []byte) (n *ynode, err error) {
	defer func() {
		// The YAML library is not ours; a panic on hostile input must cost
		// one rule, not the process.
		if r := recover(); r != nil {
			n, err = nil, &posError{msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	f, perr := parser.ParseBytes(text, 0)
	if perr != nil {
		return nil, yamlError(perr)
	}
	var body ast.Node
	for _, d := range f.Docs {
		if d == nil || d.Body == nil {
			continue
		}
		if body != nil {
			return nil, &posError{line: d.Body.GetToken().Position.Line, msg: "more than one YAML document where one was expected"}
		}
		body = d.Body
	}
	if body == nil {
		return &ynode{kind: yNull, line: 1, col: 1}, nil
	}
	c := &converter{anchors: map[string]*ynode{}}
	return c.node(body, 0)
}

// yamlError turns the library's multi-line error into one line with a
// position.
func yamlError(err error) error {
	msg := err.Error()
	line, col := 0, 0
	// goccy/go-yaml errors start "[line:col] message" followed by a source
	// excerpt.
	if strings.HasPrefix(msg, "[") {
		if end := strings.IndexByte(msg, ']'); end > 0 {
			if l, c, ok := strings.Cut(msg[1:end], ":"); ok {
				line, _ = strconv.Atoi(l)
				col, _ = strconv.Atoi(c)
				msg = strings.TrimSpace(msg[end+1:])
			}
		}
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	pe := &posError{line: line, col: col, msg: "YAML: " + msg}
	// "mapping key "a" already defined at [1:1]": the place is in the
	// document, whose first line need not be the file's.
	if m := yamlRef.FindStringSubmatchIndex(pe.msg); m != nil {
		pe.refLine, _ = strconv.Atoi(pe.msg[m[2]:m[3]])
		pe.refCol, _ = strconv.Atoi(pe.msg[m[4]:m[5]])
		pe.msg = pe.msg[:m[0]]
	}
	return pe
}

// yamlRef is a second place a goccy/go-yaml message names, at its end.
var yamlRef = regexp.MustCompile(` at \[([0-9]{1,9}):([0-9]{1,9})\]$`)

type converter struct {
	anchors map[string]*ynode
	nodes   int
	// sizes memoises the expanded size of nodes shared through aliases.
	sizes map[*ynode]int
}

func (c *converter) node(n ast.Node, depth int) (*ynode, error) {
	if depth > maxYAMLDepth {
		return nil, &posError{line: pos(n).Line, msg: fmt.Sprintf("YAML nested deeper than %d levels", maxYAMLDepth)}
	}
	c.nodes++
	if c.nodes > maxNodes {
		return nil, &posError{line: pos(n).Line, msg: fmt.Sprintf("YAML document has more than %d nodes", maxNodes)}
	}
	p := pos(n)
	out := &ynode{line: p.Line, col: p.Column}
	switch n := n.(type) {
	case *ast.NullNode:
		out.kind = yNull
	case *ast.StringNode:
		out.kind, out.str = yScalar, n.Value
	case *ast.LiteralNode:
		out.kind, out.str = yScalar, n.Value.Value
	case *ast.IntegerNode:
		out.kind, out.stype = yScalar, sInt
		switch v := n.Value.(type) {
		case int64:
			out.str = strconv.FormatInt(v, 10)
		case uint64:
			out.str = strconv.FormatUint(v, 10)
		default:
			out.str = n.Token.Value
		}
	case *ast.FloatNode:
		out.kind, out.stype = yScalar, sFloat
		out.str = strconv.FormatFloat(n.Value, 'f', -1, 64)
	case *ast.InfinityNode:
		out.kind, out.stype, out.str = yScalar, sFloat, strconv.FormatFloat(n.Value, 'f', -1, 64)
	case *ast.NanNode:
		out.kind, out.stype, out.str = yScalar, sFloat, strconv.FormatFloat(math.NaN(), 'f', -1, 64)
	case *ast.BoolNode:
		out.kind, out.stype, out.str = yScalar, sBool, strconv.FormatBool(n.Value)
	case *ast.TagNode:
		v, err := c.node(n.Value, depth+1)
		if err != nil {
			return nil, err
		}
		if n.Start != nil && n.Start.Value == "!!str" && v.kind == yScalar {
			v.stype = sString
		}
		return v, nil
	case *ast.AnchorNode:
		v, err := c.node(n.Value, depth+1)
		if err != nil {
			return nil, err
		}
		if n.Name != nil {
			c.anchors[n.Name.GetToken().Value] = v
		}
		return v, nil
	case *ast.AliasNode:
		name := ""
		if n.Value != nil {
			name = n.Value.GetToken().Value
		}
		v, ok := c.anchors[name]
		if !ok {
			return nil, &posError{line: p.Line, col: p.Column, msg: fmt.Sprintf("YAML: alias *%s names no anchor", name)}
		}
		// Count the alias as a copy of what it refers to.
		c.nodes += c.size(v)
		if c.nodes > maxNodes {
			return nil, &posError{line: p.Line, msg: fmt.Sprintf("YAML document has more than %d nodes once aliases are expanded", maxNodes)}
		}
		return v, nil
	case *ast.MappingNode:
		out.kind = yMap
		for _, mv := range n.Values {
			if err := c.pair(out, mv, depth); err != nil {
				return nil, err
			}
		}
	case *ast.MappingValueNode:
		out.kind = yMap
		if err := c.pair(out, n, depth); err != nil {
			return nil, err
		}
	case *ast.SequenceNode:
		out.kind = ySeq
		for _, v := range n.Values {
			item, err := c.node(v, depth+1)
			if err != nil {
				return nil, err
			}
			out.items = append(out.items, item)
		}
	case *ast.DocumentNode:
		if n.Body == nil {
			out.kind = yNull
			return out, nil
		}
		return c.node(n.Body, depth)
	default:
		return nil, &posError{line: p.Line, col: p.Column, msg: fmt.Sprintf("YAML: unsupported construct (%s)", n.Type())}
	}
	return out, nil
}

func (c *converter) pair(m *ynode, mv *ast.MappingValueNode, depth int) error {
	if _, ok := mv.Key.(*ast.MergeKeyNode); ok {
		p := pos(mv.Key)
		return &posError{line: p.Line, col: p.Column, msg: "YAML merge keys (<<) are not supported in rules"}
	}
	k, err := c.node(mv.Key, depth+1)
	if err != nil {
		return err
	}
	if k.kind != yScalar && k.kind != yNull {
		return errAt(k, "YAML: a map key must be a scalar")
	}
	for _, have := range m.keys {
		if have == k.str {
			return errAt(k, "duplicate key %q", k.str)
		}
	}
	v, err := c.node(mv.Value, depth+1)
	if err != nil {
		return err
	}
	m.keys = append(m.keys, k.str)
	m.keyNodes = append(m.keyNodes, k)
	m.vals = append(m.vals, v)
	return nil
}

func (c *converter) size(n *ynode) int {
	if c.sizes == nil {
		c.sizes = map[*ynode]int{}
	}
	if s, ok := c.sizes[n]; ok {
		return s
	}
	s := 1
	for _, v := range n.vals {
		s += c.size(v)
	}
	for _, v := range n.items {
		s += c.size(v)
	}
	if s > maxNodes {
		s = maxNodes + 1
	}
	c.sizes[n] = s
	return s
}

func pos(n ast.Node) struct{ Line, Column int } {
	if n == nil {
		return struct{ Line, Column int }{}
	}
	t := n.GetToken()
	if t == nil || t.Position == nil {
		return struct{ Line, Column int }{}
	}
	return struct{ Line, Column int }{t.Position.Line, t.Position.Column}
}
