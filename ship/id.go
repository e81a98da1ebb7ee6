package ship

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/trailguard/trailguard/event"
)

// maxDocID is Elasticsearch's limit on _id (512 bytes).
const maxDocID = 512

// appendDocID appends the Bulk _id of record r as a JSON string: the event's
// event.id when it has a usable one, so that a batch sent twice (after a
// crash) is recognised by the engine as the same documents, and otherwise
// the first 128 bits of the record's SHA-256, which is just as stable.
func appendDocID(dst, r []byte) []byte {
	if id, ok := eventID(r); ok {
		return event.AppendString(dst, id)
	}
	sum := sha256.Sum256(r)
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, sum[:16])
	return append(dst, '"')
}

// eventID finds event.id in a JSON object, nested ({"event":{"id":…}}) or
// dotted ({"event.id":…}), without decoding the rest. ok is false when it is
// absent, not a non-empty string, too long for an _id, or the document is
// not well-formed as far as the scan went.
func eventID(doc []byte) (id string, ok bool) {
	p := idScanner{b: doc}
	p.space()
	if !p.eat('{') {
		return "", false
	}
	for first := true; ; first = false {
		p.space()
		if p.eat('}') {
			return "", false
		}
		if !first && !p.eat(',') {
			return "", false
		}
		p.space()
		key, ok := p.str()
		if !ok {
			return "", false
		}
		p.space()
		if !p.eat(':') {
			return "", false
		}
		p.space()
		switch key {
		case "event":
			if p.peek() == '{' {
				return p.idInEvent()
			}
		case "event.id":
			if p.peek() == '"' {
				v, ok := p.str()
				return v, ok && v != "" && len(v) <= maxDocID
			}
		}
		if !p.skip(0) {
			return "", false
		}
	}
}

// idInEvent reads the "event" object and returns its "id".
func (p *idScanner) idInEvent() (string, bool) {
	p.eat('{')
	for first := true; ; first = false {
		p.space()
		if p.eat('}') {
			return "", false
		}
		if !first && !p.eat(',') {
			return "", false
		}
		p.space()
		key, ok := p.str()
		if !ok {
			return "", false
		}
		p.space()
		if !p.eat(':') {
			return "", false
		}
		p.space()
		if key == "id" && p.peek() == '"' {
			v, ok := p.str()
			return v, ok && v != "" && len(v) <= maxDocID
		}
		if !p.skip(0) {
			return "", false
		}
	}
}

// idScanner is a minimal JSON reader: enough to walk keys and skip values.
type idScanner struct {
	b []byte
	i int
}

func (p *idScanner) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *idScanner) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *idScanner) eat(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

// str reads a string, unescaping it (through encoding/json, only when it
// holds an escape: ids and keys rarely do).
func (p *idScanner) str() (string, bool) {
	if !p.eat('"') {
		return "", false
	}
	start, esc := p.i, false
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '\\':
			esc = true
			p.i += 2
		case c == '"':
			raw := p.b[start:p.i]
			p.i++
			if !esc {
				return string(raw), true
			}
			var s string
			if json.Unmarshal(p.b[start-1:p.i], &s) != nil {
				return "", false
			}
			return s, true
		case c < 0x20:
			return "", false
		default:
			p.i++
		}
	}
	return "", false
}

// skip passes over one value of any kind; depth bounds nesting.
func (p *idScanner) skip(depth int) bool {
	if depth > 64 {
		return false
	}
	p.space()
	switch c := p.peek(); {
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '{' || c == '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		p.i++
		for first := true; ; first = false {
			p.space()
			if p.eat(close) {
				return true
			}
			if !first && !p.eat(',') {
				return false
			}
			p.space()
			if c == '{' {
				if _, ok := p.str(); !ok {
					return false
				}
				p.space()
				if !p.eat(':') {
					return false
				}
			}
			if !p.skip(depth + 1) {
				return false
			}
		}
	default:
		// Number, true, false, null: up to the next delimiter.
		start := p.i
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return p.i > start
			}
			p.i++
		}
		return p.i > start
	}
}
