// Package yamlconf decodes the YAML configuration files of the collector
// and the gateway: strictly (a key the configuration does not have is an
// error) and, for a value of the wrong type, with an error in the file's
// own terms — the key's path as written, what it takes and what came, at
// its line. The YAML library names Go struct fields instead ("cannot
// unmarshal uint64 into Go struct field Config.CheckpointInterval of type
// time.Duration"), and for a duration it cannot parse ("5x") gives no key
// and no line at all.
package yamlconf

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/printer"
	"github.com/goccy/go-yaml/token"
)

// Unmarshal decodes data into v (a pointer to a configuration struct),
// refusing unknown keys.
func Unmarshal(data []byte, v any) error {
	err := yaml.UnmarshalWithOptions(data, v, yaml.Strict())
	if err == nil {
		return nil
	}
	file, perr := parser.ParseBytes(data, 0)
	if perr != nil {
		return err
	}
	var te *yaml.TypeError
	if errors.As(err, &te) && te.Token != nil {
		path, _ := pathTo(file, te.Token)
		return &ValueError{Path: path, Want: want(te.DstType), Got: got(te.Token), Token: te.Token, err: err}
	}
	var ne *yaml.UnexpectedNodeTypeError
	if errors.As(err, &ne) && ne.Token != nil {
		path, _ := pathTo(file, ne.Token)
		return &ValueError{Path: path, Want: nodeKind(ne.Expected, ""), Got: strings.TrimSuffix(nodeKind(ne.Actual, ne.Token.Value), " (key: value)"), Token: ne.Token, err: err}
	}
	var tokened interface{ GetToken() *token.Token }
	if !errors.As(err, &tokened) || tokened.GetToken() == nil {
		// No place given: a value the decoder parses itself (a
		// duration) failed. Find it by the type it is decoded into.
		for _, doc := range file.Docs {
			if e := badDuration(doc.Body, reflect.TypeOf(v), ""); e != nil {
				e.err = err
				return e
			}
		}
	}
	return err
}

// ValueError is a value of the wrong type in a configuration file.
type ValueError struct {
	Path  string       // the key as written, from the top: timeouts.dial, routes[0].upstream
	Want  string       // what the key takes
	Got   string       // the value found
	Token *token.Token // where the value is
	err   error
}

// Error gives the place, the key, what it takes and what came, and the
// lines of the file around it, as the YAML library shows its own errors.
func (e *ValueError) Error() string {
	var pp printer.Printer
	key := e.Path
	if key == "" {
		key = "value"
	}
	msg := fmt.Sprintf("%s: want %s, got %s", key, e.Want, e.Got)
	if e.Token == nil {
		return msg
	}
	return pp.PrintErrorMessage(fmt.Sprintf("[%d:%d] %s", e.Token.Position.Line, e.Token.Position.Column, msg), false) +
		"\n" + pp.PrintErrorToken(e.Token, false)
}

// Unwrap returns the YAML library's error.
func (e *ValueError) Unwrap() error { return e.err }

var durationType = reflect.TypeFor[time.Duration]()

// want says what a value of type t is written as.
func want(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return "a duration such as 500ms, 30s, 5m or 2h"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "text"
	case reflect.Slice, reflect.Array:
		return "a list ([a, b], or one \"- item\" a line)"
	case reflect.Struct, reflect.Map:
		return "a mapping (key: value)"
	}
	return t.String()
}

// got shows the value at tk as written.
func got(tk *token.Token) string {
	switch tk.Type {
	case token.MappingStartType:
		return "a mapping"
	case token.SequenceStartType, token.SequenceEntryType:
		return "a list"
	}
	return strconv.Quote(tk.Value)
}

// nodeKind says what a YAML node of type t is; value is its text, shown
// for a scalar.
func nodeKind(t ast.NodeType, value string) string {
	switch t {
	case ast.MappingType, ast.MappingValueType:
		return "a mapping (key: value)"
	case ast.SequenceType:
		return "a list ([a, b], or one \"- item\" a line)"
	}
	if value != "" {
		return strconv.Quote(value)
	}
	return t.String()
}

// pathTo finds the node at tk's place and returns its key path. The
// file is parsed again for it, so its tokens are others than the
// decoder's: they are matched by position.
func pathTo(file *ast.File, tk *token.Token) (string, bool) {
	for _, doc := range file.Docs {
		if p, ok := walkPath(doc.Body, tk, ""); ok {
			return p, true
		}
	}
	return "", false
}

func walkPath(n ast.Node, tk *token.Token, path string) (string, bool) {
	if n == nil {
		return "", false
	}
	if samePlace(n.GetToken(), tk) {
		return path, true
	}
	switch n := n.(type) {
	case *ast.MappingNode:
		for _, mv := range n.Values {
			if p, ok := walkPath(mv, tk, path); ok {
				return p, true
			}
		}
	case *ast.MappingValueNode:
		if samePlace(n.Key.GetToken(), tk) {
			return join(path, keyName(n.Key)), true
		}
		return walkPath(n.Value, tk, join(path, keyName(n.Key)))
	case *ast.SequenceNode:
		for i, v := range n.Values {
			if p, ok := walkPath(v, tk, fmt.Sprintf("%s[%d]", path, i)); ok {
				return p, true
			}
		}
	case *ast.TagNode:
		return walkPath(n.Value, tk, path)
	}
	return "", false
}

func samePlace(a, b *token.Token) bool {
	return a != nil && b != nil && a.Position.Offset == b.Position.Offset && a.Position.Line == b.Position.Line && a.Position.Column == b.Position.Column
}

// badDuration returns the first value under n that is decoded into a
// time.Duration (by t, the type n is decoded into) and does not parse
// as one.
func badDuration(n ast.Node, t reflect.Type, path string) *ValueError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n == nil {
		return nil
	}
	if tag, ok := n.(*ast.TagNode); ok {
		return badDuration(tag.Value, t, path)
	}
	if t == durationType {
		if s, ok := n.(*ast.StringNode); ok {
			if _, err := time.ParseDuration(s.Value); err != nil {
				return &ValueError{Path: path, Want: want(t), Got: strconv.Quote(s.Value), Token: s.GetToken()}
			}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		for _, mv := range mappingValues(n) {
			name := keyName(mv.Key)
			if f, ok := fieldByKey(t, name); ok {
				if e := badDuration(mv.Value, f.Type, join(path, name)); e != nil {
					return e
				}
			}
		}
	case reflect.Map:
		for _, mv := range mappingValues(n) {
			if e := badDuration(mv.Value, t.Elem(), join(path, keyName(mv.Key))); e != nil {
				return e
			}
		}
	case reflect.Slice, reflect.Array:
		if seq, ok := n.(*ast.SequenceNode); ok {
			for i, v := range seq.Values {
				if e := badDuration(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); e != nil {
					return e
				}
			}
		}
	}
	return nil
}

func mappingValues(n ast.Node) []*ast.MappingValueNode {
	switch n := n.(type) {
	case *ast.MappingNode:
		return n.Values
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{n}
	}
	return nil
}

// fieldByKey finds the field of struct t that the YAML key decodes into:
// its yaml tag's name, or, without one, its name in lower case (the YAML
// library's default), looking into inlined structs.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				if sf, ok := fieldByKey(ft, key); ok {
					return sf, true
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		if name == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func keyName(k ast.MapKeyNode) string {
	if s, ok := k.(*ast.StringNode); ok {
		return s.Value
	}
	return k.GetToken().Value
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
