package index

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/rfc3339"
	"github.com/trailguard/trailguard/query"
)

// The ECS fields the index has a column for. Every other field is matched
// by reading the record from the ledger (see Search).
const (
	fTimestamp = iota
	fEventID
	fRequestID
	fAction
	fOutcome
	fKind
	fDataset
	fCategory
	fMethod
	fPath
	fService
	fHost
	fUserID
	fUserName
	fAgent
	fStatus
	fSourceIP
	fClientIP
	nFields
)

var fieldNames = [nFields]string{
	"@timestamp", "event.id", "http.request.id", "event.action", "event.outcome", "event.kind", "event.dataset",
	"event.category", "http.request.method", "url.path", "service.name", "host.name", "user.id", "user.name",
	"user_agent.original", "http.response.status_code", "source.ip", "client.ip",
}

// fieldNum maps a dotted ECS name to its f* number.
var fieldNum = func() map[string]int {
	m := make(map[string]int, nFields)
	for i, n := range fieldNames {
		m[n] = i
	}
	return m
}()

// isTermField reports whether field f is stored as a dictionary term.
func isTermField(f int) bool { return f >= fAction && f <= fAgent }

// tnode is a node of the trie of column field names, by dotted segment.
type tnode struct {
	kids  map[string]*tnode
	field int // f* of the field ending here, or -1
}

var trie = func() *tnode {
	root := &tnode{field: -1}
	for f, name := range fieldNames {
		nd := root
		for _, seg := range strings.Split(name, ".") {
			if nd.kids == nil {
				nd.kids = map[string]*tnode{}
			}
			k := nd.kids[seg]
			if k == nil {
				k = &tnode{field: -1}
				nd.kids[seg] = k
			}
			nd = k
		}
		nd.field = f
	}
	return root
}()

// fieldVal is what one record holds for a column field: how many scalar
// values (null included) query.Flatten would give it, and the first.
type fieldVal struct {
	n    int
	kind byte   // 's' string, 'n' number, 'b' boolean, 'z' null
	s    string // the string, or the number's literal
}

// extracted is the column values of one record, read with exactly the
// semantics of query.Flatten (which search results are checked with).
type extracted struct {
	f    [nFields]fieldVal
	cats []string
	// notObject: the record is not a JSON object Flatten accepts; no field
	// has a value.
	notObject bool
	// odd: some column field has a value its column cannot represent
	// exactly (several values, a wrong JSON type, an unparsable address or
	// time, a duplicate key, …). Queries read such records from the ledger
	// and match them there rather than trusting their columns.
	odd bool
	// ts is @timestamp in Unix nanoseconds when the collector's ingest had
	// it parsed already (hasTS; event.Spans.Timestamp), so that columns
	// need not parse the text again.
	ts    int64
	hasTS bool
}

// maxScanDepth is below query.Flatten's nesting limit: deeper records are
// marked odd so that the ledger, not the columns, decides.
const maxScanDepth = 30

// extract reads the column fields of data.
func extract(data []byte, x *extracted) {
	*x = extracted{cats: x.cats[:0]}
	if !json.Valid(data) {
		x.notObject, x.odd = true, true
		return
	}
	s := scanner{b: data, x: x}
	s.ws()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		x.notObject, x.odd = true, true
		return
	}
	s.object(trie, 0)
}

// scanner walks JSON that json.Valid accepted.
type scanner struct {
	b     []byte
	i     int
	x     *extracted
	plain bool // the last string read had no escapes and was ASCII
	// alias makes the strings it returns share b's bytes instead of
	// copying them (decodeSpans: b is a record the ledger never changes;
	// the index copies what it keeps, see Index.term).
	alias bool
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// object reads an object whose members' names continue the path at nd.
func (s *scanner) object(nd *tnode, depth int) {
	if depth > maxScanDepth {
		s.x.odd = true
	}
	s.i++ // {
	var seenBuf [8][]byte
	seen := seenBuf[:0]
	for {
		s.ws()
		if s.b[s.i] == '}' {
			s.i++
			return
		}
		if s.b[s.i] == ',' {
			s.i++
			s.ws()
		}
		key := s.strBytes()
		s.ws()
		s.i++ // :
		kid := walk(nd, key)
		if kid != nil {
			// Flatten keeps the last of duplicate keys; the columns would
			// keep both.
			for _, k := range seen {
				if bytes.Equal(k, key) {
					s.x.odd = true
				}
			}
			seen = append(seen, key)
		}
		s.value(kid, depth+1)
	}
}

// walk follows a member name, which may itself be dotted ("user.name"),
// from nd; nil if no column field lies below.
func walk(nd *tnode, key []byte) *tnode {
	for nd != nil {
		seg, rest, more := bytes.Cut(key, dot)
		nd = nd.kids[string(seg)]
		if !more {
			return nd
		}
		key = rest
	}
	return nil
}

var dot = []byte{'.'}

// value reads one value at trie node nd (nil: no column field below).
func (s *scanner) value(nd *tnode, depth int) {
	s.ws()
	if depth > maxScanDepth {
		s.x.odd = true
	}
	switch c := s.b[s.i]; c {
	case '{':
		if nd == nil || nd.field >= 0 {
			// An object at a field gives it no value (Flatten names its
			// members field.member).
			s.skip(depth)
			return
		}
		s.object(nd, depth)
	case '[':
		if nd == nil {
			s.skip(depth)
			return
		}
		// Arrays are transparent: every element is a value of the field.
		s.i++
		for {
			s.ws()
			switch s.b[s.i] {
			case ']':
				s.i++
				return
			case ',':
				s.i++
				continue
			}
			s.value(nd, depth+1)
		}
	case '"':
		v := s.str()
		if nd != nil && nd.field >= 0 {
			s.add(nd.field, 's', v)
		}
	default:
		start := s.i
		for s.i < len(s.b) && !isDelim(s.b[s.i]) {
			s.i++
		}
		if nd == nil || nd.field < 0 {
			return
		}
		lit := s.string(s.b[start:s.i])
		switch c {
		case 't', 'f':
			s.add(nd.field, 'b', lit)
		case 'n':
			s.add(nd.field, 'z', "")
		default:
			s.add(nd.field, 'n', lit)
		}
	}
}

func isDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

func (s *scanner) add(f int, kind byte, v string) {
	fv := &s.x.f[f]
	fv.n++
	if fv.n == 1 {
		fv.kind, fv.s = kind, v
	}
	if f == fCategory {
		if kind == 's' {
			s.x.cats = append(s.x.cats, v)
		} else {
			s.x.odd = true
		}
	}
}

// str reads a string token and returns its value as encoding/json decodes
// it (escapes resolved, invalid UTF-8 replaced).
func (s *scanner) str() string { return s.string(s.strBytes()) }

// string is b as a string: a copy, or with alias b itself.
func (s *scanner) string(b []byte) string {
	if s.alias {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	return string(b)
}

// strBytes reads a string token and returns its value, decoded only if it
// holds escapes or non-ASCII bytes (s.plain reports which); the bytes of
// a plain string are the input's own.
func (s *scanner) strBytes() []byte {
	start := s.i
	s.i++
	s.plain = true
	for {
		// Eight plain bytes at a time (printable ASCII, no quote or
		// backslash): most values are mostly those.
		for s.i+8 <= len(s.b) && event.Plain8(binary.LittleEndian.Uint64(s.b[s.i:])) {
			s.i += 8
		}
		c := s.b[s.i]
		if c == '"' {
			break
		}
		if c == '\\' {
			s.plain = false
			s.i += 2
			continue
		}
		if c >= utf8.RuneSelf {
			s.plain = false
		}
		s.i++
	}
	s.i++
	if s.plain {
		return s.b[start+1 : s.i-1]
	}
	var v string
	json.Unmarshal(s.b[start:s.i], &v)
	return []byte(v)
}

// skip passes over one value at the given depth, noting nesting beyond
// maxScanDepth.
func (s *scanner) skip(base int) {
	depth := 0
	for {
		switch c := s.b[s.i]; c {
		case '"':
			s.i++
			for s.b[s.i] != '"' {
				if s.b[s.i] == '\\' {
					s.i++
				}
				s.i++
			}
			s.i++
		case '{', '[':
			depth++
			if base+depth > maxScanDepth {
				s.x.odd = true
			}
			s.i++
		case '}', ']':
			depth--
			s.i++
		default:
			s.i++
		}
		if depth == 0 {
			// A scalar ends at a delimiter, a container at its bracket.
			if c := s.b[s.i-1]; c == '"' || c == '}' || c == ']' {
				return
			}
			for s.i < len(s.b) && !isDelim(s.b[s.i]) {
				s.i++
			}
			return
		}
	}
}

// columns turns what extract found into column values. appendTime is used
// as the time of records without a usable @timestamp.
func (x *extracted) columns(appendTime time.Time) (c cols) {
	c.ts = appendTime.UnixNano()
	if x.notObject {
		c.odd = true
		return c
	}
	c.odd = x.odd
	single := func(f int, kind byte) (string, bool) {
		fv := &x.f[f]
		switch {
		case fv.n == 0 || fv.n == 1 && fv.kind == 'z':
			return "", false
		case fv.n == 1 && fv.kind == kind:
			return fv.s, true
		}
		c.odd = true
		return "", false
	}
	if v, ok := single(fTimestamp, 's'); ok {
		if x.hasTS {
			c.ts = x.ts
		} else if t, err := rfc3339.Parse(v); err == nil && !t.Before(minTime) && !t.After(maxTime) {
			c.ts = t.UnixNano()
		} else {
			c.odd = true
		}
	} else {
		// A record without @timestamp sorts by its append time, but a
		// query on @timestamp must not match it.
		c.odd = true
	}
	for f := fEventID; f <= fClientIP; f++ {
		if f == fCategory {
			continue
		}
		kind := byte('s')
		if f == fStatus {
			kind = 'n'
		}
		v, ok := single(f, kind)
		if !ok {
			continue
		}
		switch {
		case f == fStatus:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n > 1<<53 || n < -(1<<53) {
				c.odd = true // Match compares numbers as float64
				continue
			}
			c.status, c.has[f] = n, true
		case f == fSourceIP || f == fClientIP:
			a, err := netip.ParseAddr(v)
			if err != nil {
				c.odd = true
				continue
			}
			c.ip[f-fSourceIP], c.has[f] = a.Unmap().WithZone(""), true
		default:
			c.str[f], c.has[f] = v, true
		}
	}
	if fv := x.f[fCategory]; fv.n > 0 && fv.n == len(x.cats) {
		for _, v := range x.cats {
			if strings.IndexByte(v, ',') >= 0 {
				c.odd = true
				return c
			}
		}
		c.str[fCategory], c.has[fCategory] = strings.Join(x.cats, ","), true
	} else if fv.n > 0 {
		c.odd = true
	}
	return c
}

// cols is the column values of one record.
type cols struct {
	ts     int64
	odd    bool
	has    [nFields]bool
	str    [nFields]string // term fields, event.id, http.request.id
	status int64
	ip     [2]netip.Addr // source, client
}

// doc is the record's column fields as query.Flatten gives them. For a
// record that is not odd, a query on column fields only (an exact plan)
// matches it exactly when it matches the whole record, so checking a row
// against its record need not decode the rest.
func (x *extracted) doc() query.Doc {
	d := make(query.Doc, nFields)
	for f := range nFields {
		fv := &x.f[f]
		if fv.n != 1 {
			continue
		}
		switch fv.kind {
		case 's':
			d[fieldNames[f]] = fv.s
		case 'n':
			d[fieldNames[f]] = json.Number(fv.s)
		case 'b':
			d[fieldNames[f]] = fv.s == "true"
		case 'z':
			d[fieldNames[f]] = nil
		}
	}
	if len(x.cats) > 1 {
		l := make([]any, len(x.cats))
		for i, c := range x.cats {
			l[i] = c
		}
		d[fieldNames[fCategory]] = l
	}
	return d
}
