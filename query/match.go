package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/trailguard/trailguard/internal/glob"
)

// Doc is one event flattened by dotted field name ("http.request.id").
// Values are string, json.Number, bool, nil, or []any of those for arrays.
type Doc map[string]any

// maxFlattenDepth bounds object and array nesting in Flatten, as
// event.MaxDecodeDepth does for Decode.
const maxFlattenDepth = 32

// Flatten decodes one JSON event into a Doc. Nested objects
// ({"user":{"name":"a"}}) and dotted keys ({"user.name":"a"}) give the same
// field; arrays of objects give each nested field the list of its values.
func Flatten(raw []byte) (Doc, error) {
	if doc, ok := flattenFast(raw); ok {
		return doc, nil
	}
	return flattenSlow(raw)
}

// flattenSlow decodes into maps, then flattens them: the reference
// flattenFast is checked against, and the path for what it declines.
func flattenSlow(raw []byte) (Doc, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("query: flatten: %w", err)
	}
	if d.More() {
		return nil, errors.New("query: flatten: data after the JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("query: flatten: not a JSON object")
	}
	doc := Doc{}
	if err := flatten(doc, "", m, 0); err != nil {
		return nil, err
	}
	return doc, nil
}

func flatten(doc Doc, prefix string, v any, depth int) error {
	if depth > maxFlattenDepth {
		return fmt.Errorf("query: flatten: nested deeper than %d", maxFlattenDepth)
	}
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			name := k
			if prefix != "" {
				name = prefix + "." + k
			}
			if err := flatten(doc, name, x, depth+1); err != nil {
				return err
			}
		}
	case []any:
		if _, ok := doc[prefix]; !ok && len(v) == 0 {
			doc[prefix] = []any{}
		}
		for _, x := range v {
			if err := flatten(doc, prefix, x, depth+1); err != nil {
				return err
			}
		}
	default:
		add(doc, prefix, v)
	}
	return nil
}

// add records a scalar value of a field, turning the field into a list
// when it has several.
func add(doc Doc, name string, v any) {
	old, ok := doc[name]
	if !ok {
		doc[name] = v
		return
	}
	if l, isList := old.([]any); isList {
		doc[name] = append(l, v)
		return
	}
	doc[name] = []any{old, v}
}

// any reports whether fn is true for any scalar value of the field.
func (d Doc) any(field string, fn func(v any) bool) bool {
	v, ok := d[field]
	if !ok {
		return false
	}
	if l, isList := v.([]any); isList {
		for _, x := range l {
			if fn(x) {
				return true
			}
		}
		return false
	}
	return fn(v)
}

// Match implements Expr.
func (e *And) Match(d Doc) bool {
	for _, x := range e.X {
		if !x.Match(d) {
			return false
		}
	}
	return true
}

// Match implements Expr.
func (e *Or) Match(d Doc) bool {
	for _, x := range e.X {
		if x.Match(d) {
			return true
		}
	}
	return false
}

// Match implements Expr.
func (e *Not) Match(d Doc) bool { return !e.X.Match(d) }

// Match implements Expr.
func (e *Exists) Match(d Doc) bool {
	return d.any(e.Field, func(v any) bool { return v != nil })
}

// Match implements Expr.
func (e *Term) Match(d Doc) bool {
	return d.any(e.Field, e.matchValue)
}

func (e *Term) matchValue(v any) bool {
	if e.Wildcard {
		s, ok := v.(string)
		return ok && glob.Match(Pattern(e.Value), s, false)
	}
	switch e.Type {
	case TypeIP:
		s, ok := v.(string)
		if !ok {
			return false
		}
		a, err := netip.ParseAddr(s)
		return err == nil && e.Prefix.Contains(a.Unmap().WithZone(""))
	case TypeDate:
		s, ok := v.(string)
		if !ok {
			return false
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		return err == nil && t.Equal(e.Time)
	}
	switch v := v.(type) {
	case string:
		return v == e.Value
	case json.Number:
		if !e.Numeric {
			return false
		}
		f, err := strconv.ParseFloat(string(v), 64)
		return err == nil && f == e.Num
	case bool:
		return strconv.FormatBool(v) == e.Value
	}
	return false
}

// Match implements Expr.
func (e *Range) Match(d Doc) bool {
	return d.any(e.Field, func(v any) bool {
		var c int
		switch e.Kind {
		case RangeNumber:
			n, ok := v.(json.Number)
			if !ok {
				return false
			}
			f, err := strconv.ParseFloat(string(n), 64)
			if err != nil {
				return false
			}
			c = cmpFloat(f, e.Num)
		case RangeTime:
			s, ok := v.(string)
			if !ok {
				return false
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return false
			}
			c = t.Compare(e.Time)
		default:
			s, ok := v.(string)
			if !ok {
				return false
			}
			c = strings.Compare(s, e.Value)
		}
		switch e.Op {
		case Lt:
			return c < 0
		case Le:
			return c <= 0
		case Gt:
			return c > 0
		}
		return c >= 0
	})
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Match implements Expr.
func (e *Text) Match(d Doc) bool {
	var parts []PatternPart
	if e.Wildcard {
		parts = Pattern(e.Value)
	} else {
		parts = []PatternPart{{Lit: e.Value}}
	}
	// A substring test is the pattern with * at both ends.
	parts = append(append([]PatternPart{{Star: true}}, parts...), PatternPart{Star: true})
	for _, v := range d {
		l, isList := v.([]any)
		if !isList {
			l = []any{v}
		}
		for _, x := range l {
			var s string
			switch x := x.(type) {
			case string:
				s = x
			case json.Number:
				if _, err := strconv.ParseInt(string(x), 10, 64); err != nil {
					continue
				}
				s = string(x)
			default:
				continue
			}
			if glob.Match(parts, s, true) {
				return true
			}
		}
	}
	return false
}
