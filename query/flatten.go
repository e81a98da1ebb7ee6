package query

import (
	"encoding/json"
	"unicode/utf8"
)

// flattenFast is Flatten without decoding into maps first: one pass over
// the bytes writes every field into the Doc. It gives up (ok false) on
// anything where the two could differ — invalid JSON, a top level that is
// not an object, nesting past the limit, a key repeated in one object
// (decoding keeps the last) — and Flatten then takes the slow path, which
// also produces its errors.
func flattenFast(raw []byte) (doc Doc, ok bool) {
	if !json.Valid(raw) {
		return nil, false
	}
	f := flattener{b: raw, doc: Doc{}}
	f.ws()
	if f.b[f.i] != '{' {
		return nil, false
	}
	if !f.object("", 0) {
		return nil, false
	}
	return f.doc, true
}

// flattener walks JSON that json.Valid accepted.
type flattener struct {
	b   []byte
	i   int
	doc Doc
}

func (f *flattener) ws() {
	for f.i < len(f.b) {
		switch f.b[f.i] {
		case ' ', '\t', '\n', '\r':
			f.i++
		default:
			return
		}
	}
}

func (f *flattener) name(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// object reads an object whose members are named under prefix.
func (f *flattener) object(prefix string, depth int) bool {
	if depth > maxFlattenDepth {
		return false
	}
	f.i++ // {
	// Keys seen: a short list, then a set, so that many keys stay cheap.
	var seenBuf [16]string
	seen := seenBuf[:0]
	var seenSet map[string]struct{}
	for {
		f.ws()
		switch f.b[f.i] {
		case '}':
			f.i++
			return true
		case ',':
			f.i++
			f.ws()
		}
		key := f.str()
		if seenSet != nil {
			if _, dup := seenSet[key]; dup {
				return false
			}
			seenSet[key] = struct{}{}
		} else {
			for _, k := range seen {
				if k == key {
					return false
				}
			}
			seen = append(seen, key)
			if len(seen) == len(seenBuf) {
				seenSet = make(map[string]struct{}, 64)
				for _, k := range seen {
					seenSet[k] = struct{}{}
				}
			}
		}
		f.ws()
		f.i++ // :
		if !f.value(f.name(prefix, key), depth+1) {
			return false
		}
	}
}

// value reads one value of the field name, as flatten does.
func (f *flattener) value(name string, depth int) bool {
	if depth > maxFlattenDepth {
		return false
	}
	f.ws()
	switch c := f.b[f.i]; c {
	case '{':
		return f.object(name, depth)
	case '[':
		f.i++
		f.ws()
		if f.b[f.i] == ']' {
			f.i++
			if _, ok := f.doc[name]; !ok {
				f.doc[name] = []any{}
			}
			return true
		}
		for {
			if !f.value(name, depth+1) {
				return false
			}
			f.ws()
			if f.b[f.i] == ']' {
				f.i++
				return true
			}
			f.i++ // ,
		}
	case '"':
		add(f.doc, name, f.str())
	case 't':
		f.i += 4
		add(f.doc, name, true)
	case 'f':
		f.i += 5
		add(f.doc, name, false)
	case 'n':
		f.i += 4
		add(f.doc, name, nil)
	default:
		start := f.i
		for f.i < len(f.b) && isNumByte(f.b[f.i]) {
			f.i++
		}
		add(f.doc, name, json.Number(f.b[start:f.i]))
	}
	return true
}

func isNumByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// str reads a string token as encoding/json decodes it (escapes resolved,
// invalid UTF-8 replaced).
func (f *flattener) str() string {
	start := f.i
	f.i++
	plain := true
	for {
		c := f.b[f.i]
		if c == '"' {
			break
		}
		if c == '\\' {
			plain = false
			f.i += 2
			continue
		}
		if c >= utf8.RuneSelf {
			plain = false
		}
		f.i++
	}
	f.i++
	if plain {
		return string(f.b[start+1 : f.i-1])
	}
	var v string
	json.Unmarshal(f.b[start:f.i], &v)
	return v
}
