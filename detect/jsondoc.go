package detect

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"unsafe"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/jsonscan"
)

// The engine reads only the fields its rules use: one pass over the JSON
// document walks a trie of the wanted dotted paths, records where each
// wanted value is (a span of the input, no copy) and skips everything
// else. Decoding whole events (event.Decode, encoding/json) costs
// microseconds and allocations per event; this costs a few hundred
// nanoseconds and none.

// vkind is the JSON type of an extracted value.
type vkind uint8

const (
	vAbsent vkind = iota
	vString
	vNumber
	vBool
	vNull
	vArray
	vObject
)

// span is where a value is in the document: for strings the bytes between
// the quotes (esc says they hold escapes), for arrays the whole [..].
type span struct {
	start, end int32
	kind       vkind
	esc        bool
	// arr says the value was found in an object inside an array.
	arr bool
	// extra counts the field's further values in document.more: a field
	// inside an array of objects has one value per object.
	extra uint16
}

// extraSpan is a further value of the field at slot (see span.extra).
type extraSpan struct {
	slot int32
	sp   span
}

// maxFieldValues bounds the values of one field an event gives the
// engine: the elements of an array, nested arrays included, and the
// field's values in the objects of an array. A field holds its first
// maxFieldValues values, in the event's order; later ones are not seen.
// Without the bound an event of a few megabytes, [{"f":1},{"f":2},...],
// would give every rule on f hundreds of thousands of values to test, and
// the engine's per-field buffers, reused from event to event, would keep
// the memory. Events that are not hostile hold a handful.
const maxFieldValues = 1024

// trieNode is one level of the wanted paths.
type trieNode struct {
	edges []trieEdge // sorted by name
	// first maps a key's first byte to 1 + the index of the first edge
	// starting with it (0: none), so most keys cost one lookup.
	first [256]uint8
	slot  int32 // -1 when no value is wanted here
	// below says some wanted path goes through this node.
	below bool
}

type trieEdge struct {
	name string
	node *trieNode
}

func newTrieNode() *trieNode { return &trieNode{slot: -1} }

func (n *trieNode) child(name []byte) *trieNode {
	if len(name) == 0 {
		return nil
	}
	c := name[0]
	for i := int(n.first[c]) - 1; i >= 0 && i < len(n.edges) && n.edges[i].name[0] == c; i++ {
		if e := &n.edges[i]; e.name == string(name) {
			return e.node
		}
	}
	return nil
}

func (n *trieNode) add(seg string) *trieNode {
	if c := n.child([]byte(seg)); c != nil {
		return c
	}
	c := newTrieNode()
	n.edges = append(n.edges, trieEdge{seg, c})
	slices.SortFunc(n.edges, func(a, b trieEdge) int { return strings.Compare(a.name, b.name) })
	clear(n.first[:])
	for i := len(n.edges) - 1; i >= 0; i-- {
		if e := n.edges[i]; e.name != "" && i < 255 {
			n.first[e.name[0]] = uint8(i + 1)
		}
	}
	return c
}

// extractor knows the wanted paths; it is immutable once built and shared.
type extractor struct {
	root  *trieNode
	paths []string // by slot
	slots map[string]int32
}

func newExtractor() *extractor {
	return &extractor{root: newTrieNode(), slots: map[string]int32{}}
}

// slot registers a dotted ECS path and returns its slot.
func (x *extractor) slot(path string) int32 {
	if s, ok := x.slots[path]; ok {
		return s
	}
	s := int32(len(x.paths))
	x.paths = append(x.paths, path)
	x.slots[path] = s
	n := x.root
	for _, seg := range strings.Split(path, ".") {
		n.below = true
		n = n.add(seg)
	}
	n.slot = s
	return s
}

// spanPlan is, by slot, the event.Spans field of each wanted path (-1: a
// record Spans describes never holds it), or nil when some wanted path
// can be in such a record without being one of its fields (an object, a
// label, a header): then every event is scanned.
func (x *extractor) spanPlan() []int {
	plan := make([]int, len(x.paths))
	for slot, p := range x.paths {
		if plan[slot] = event.SpanField(p); plan[slot] < 0 && !event.SpanAbsent(p) {
			return nil
		}
	}
	return plan
}

// reset makes d a document of data with n empty spans, reusing its memory.
func (d *document) reset(data []byte, n int) {
	d.data = data
	if cap(d.spans) < n {
		d.spans = make([]span, n)
	}
	d.spans = d.spans[:n]
	clear(d.spans)
	d.scratch = d.scratch[:0]
	d.more = d.more[:0]
}

// fromSpans is scan for a record sp describes, with spanPlan's plan: it
// records the span scan would find for each wanted field at the place sp
// gives (such a record holds each field once, and no other wanted path).
func (x *extractor) fromSpans(d *document, data []byte, sp *event.Spans, plan []int) {
	d.reset(data, len(x.paths))
	for slot, f := range plan {
		if f < 0 {
			continue
		}
		start, end := sp.Span(f)
		if end == 0 || end > len(data) {
			continue
		}
		if end-start >= 2 && data[start] == '"' {
			// A string token, its quotes at both ends: what value would
			// find without looking for the closing quote.
			// (A plain token has no escapes: nothing to look for.)
			d.spans[slot] = span{start: int32(start + 1), end: int32(end - 1), kind: vString,
				esc: !sp.Plain(f) && bytes.IndexByte(data[start+1:end-1], '\\') >= 0}
			continue
		}
		_, s, err := value(data[:end], start, 0)
		if err != nil {
			continue
		}
		if s.kind != vString {
			s.start = int32(start)
		}
		d.spans[slot] = s
	}
}

// document is one event being evaluated: the input and the spans of the
// wanted values. It is reused from event to event.
type document struct {
	data  []byte
	spans []span
	// scratch holds unescaped strings; views into it stay valid until the
	// next event.
	scratch []byte
	keyBuf  []byte
	// more holds the values of fields met again in arrays of objects
	// after their first (span.extra counts them per field), in the
	// event's order; at most maxFieldValues-1 per field.
	more []extraSpan
}

var errJSON = errors.New("malformed JSON")

// maxDocDepth bounds object nesting in a document.
const maxDocDepth = 32

// scan fills d.spans for data. An error means the document is not a JSON
// object; the spans found before it are cleared.
func (x *extractor) scan(d *document, data []byte) error {
	d.reset(data, len(x.paths))
	i := skipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return errJSON
	}
	end, err := x.object(d, data, i, x.root, 0, false)
	if err != nil {
		clear(d.spans)
		return err
	}
	if skipWS(data, end) != len(data) {
		clear(d.spans)
		return errJSON
	}
	return nil
}

func skipWS(b []byte, i int) int {
	if i < len(b) && b[i] > ' ' {
		return i // encoders write no white space: the common case
	}
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// object reads the object at data[i] ('{') under trie node n and returns
// the offset after it. inArr says the object is inside an array: the
// values it gives are added to those the field already has (as
// query.Flatten and Elasticsearch flatten arrays of objects), where a
// field met again outside arrays (a duplicate key) replaces its value.
func (x *extractor) object(d *document, data []byte, i int, n *trieNode, depth int, inArr bool) (int, error) {
	if depth > maxDocDepth {
		return 0, errJSON
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return 0, errJSON
		}
		ks, ke, esc, err := stringEnd(data, i)
		if err != nil {
			return 0, err
		}
		key := data[ks:ke]
		if esc {
			d.keyBuf, _ = jsonscan.AppendUnescaped(d.keyBuf[:0], key)
			key = d.keyBuf
		}
		i = skipWS(data, ke+1)
		if i >= len(data) || data[i] != ':' {
			return 0, errJSON
		}
		i = skipWS(data, i+1)
		if i >= len(data) {
			return 0, errJSON
		}
		// Dotted keys ({"event.action":…}) walk the trie one segment at a
		// time, so nested and dotted documents give the same fields. An
		// empty segment ("n.", "a..b", "" below the top) names no wanted
		// field: query names such a field "n." or "a..b"; it used to
		// stand for the object's own field (n). At the top, as in
		// query, an empty key is no level: {"":{"n":1}} gives n.
		target := n
		if len(key) == 0 && n != x.root {
			target = nil
		}
		for len(key) > 0 && target != nil {
			seg := key
			if dot := indexByte(key, '.'); dot >= 0 {
				seg, key = key[:dot], key[dot+1:]
				if len(key) == 0 {
					target = nil // "n."
					break
				}
			} else {
				key = nil
			}
			target = target.child(seg) // nil for an empty segment
		}
		if target != nil && data[i] == '{' && target.below {
			if i, err = x.object(d, data, i, target, depth+1, inArr); err != nil {
				return 0, err
			}
		} else if target != nil && data[i] == '[' && target.below {
			// An array on the way to a wanted path: its objects hold
			// values of the paths below.
			start := i
			if i, err = x.array(d, data, i, target, depth+1); err != nil {
				return 0, err
			}
			if target.slot >= 0 {
				// Its scalars, nested arrays' included, are the
				// field's own values (appendElems reads them).
				d.set(target.slot, span{start: int32(start), end: int32(i), kind: vArray}, inArr)
			}
		} else {
			start := i
			var sp span
			if i, sp, err = value(data, i, depth); err != nil {
				return 0, err
			}
			if target != nil && target.slot >= 0 {
				if sp.kind != vString {
					sp.start = int32(start)
				}
				d.set(target.slot, sp, inArr)
			}
		}
		i = skipWS(data, i)
		if i >= len(data) {
			return 0, errJSON
		}
		switch data[i] {
		case ',':
			i = skipWS(data, i+1)
		case '}':
			return i + 1, nil
		default:
			return 0, errJSON
		}
	}
}

// set records sp as a value of the field at slot, found inside an array
// of objects or not (inArr). Outside arrays a value replaces the one the
// field had outside arrays, as the last of duplicate keys wins in
// encoding/json; otherwise it is added, up to maxFieldValues.
func (d *document) set(slot int32, sp span, inArr bool) {
	cur := &d.spans[slot]
	if !inArr && !cur.arr {
		sp.extra = cur.extra
		*cur = sp
		return
	}
	if cur.kind == vAbsent {
		sp.arr = true
		*cur = sp
		return
	}
	if int(cur.extra) >= maxFieldValues-1 {
		return
	}
	cur.extra++
	d.more = append(d.more, extraSpan{slot, sp})
}

// array reads the array at data[i] ('[') under trie node n, which some
// wanted path goes through, and returns the offset after it: the objects
// in it, and in the arrays nested in it, are read under n, inside an
// array. depth counts the array, as skipNested does, so that scan
// accepts and refuses the same documents.
func (x *extractor) array(d *document, data []byte, i int, n *trieNode, depth int) (int, error) {
	if depth > maxDocDepth {
		return 0, errJSON
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == ']' {
		i++
	} else {
		for {
			if i >= len(data) {
				return 0, errJSON
			}
			var err error
			switch data[i] {
			case '{':
				i, err = x.object(d, data, i, n, depth+1, true)
			case '[':
				i, err = x.array(d, data, i, n, depth+1)
			default:
				i, _, err = value(data, i, depth)
			}
			if err != nil {
				return 0, err
			}
			i = skipWS(data, i)
			if i >= len(data) {
				return 0, errJSON
			}
			if data[i] == ']' {
				i++
				break
			}
			if data[i] != ',' {
				return 0, errJSON
			}
			i = skipWS(data, i+1)
		}
	}
	return i, nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// stringEnd reads the string literal at b[i] ('"') and returns the span of
// its content and whether it holds escapes. It finds the closing quote
// with IndexByte and does not validate the content (control characters
// are accepted): it reads what encoders wrote, and refusing is not its job.
func stringEnd(b []byte, i int) (start, end int, esc bool, err error) {
	start = i + 1
	from := start
	for {
		q := bytes.IndexByte(b[from:], '"')
		if q < 0 {
			return 0, 0, false, errJSON
		}
		q += from
		// A quote preceded by an odd run of backslashes is escaped.
		bs := 0
		for k := q - 1; k >= start && b[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return start, q, esc || bytes.IndexByte(b[start:q], '\\') >= 0, nil
		}
		esc = true
		from = q + 1
	}
}

// value skips the value at b[i] and describes it (its span's start is set
// for strings only; the caller sets it for others).
func value(b []byte, i, depth int) (int, span, error) {
	switch c := b[i]; {
	case c == '"':
		s, e, esc, err := stringEnd(b, i)
		if err != nil {
			return 0, span{}, err
		}
		return e + 1, span{start: int32(s), end: int32(e), kind: vString, esc: esc}, nil
	case c == '{' || c == '[':
		end, err := skipNested(b, i, depth)
		if err != nil {
			return 0, span{}, err
		}
		k := vObject
		if c == '[' {
			k = vArray
		}
		return end, span{end: int32(end), kind: k}, nil
	case c == '-' || c >= '0' && c <= '9':
		j := i + 1
		for j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || b[j] == '+' || b[j] == '-') {
			j++
		}
		return j, span{end: int32(j), kind: vNumber}, nil
	case c == 't' && hasPrefixAt(b, i, "true"):
		return i + 4, span{end: int32(i + 4), kind: vBool}, nil
	case c == 'f' && hasPrefixAt(b, i, "false"):
		return i + 5, span{end: int32(i + 5), kind: vBool}, nil
	case c == 'n' && hasPrefixAt(b, i, "null"):
		return i + 4, span{end: int32(i + 4), kind: vNull}, nil
	}
	return 0, span{}, errJSON
}

func hasPrefixAt(b []byte, i int, p string) bool {
	return len(b)-i >= len(p) && string(b[i:i+len(p)]) == p
}

// skipNested skips an object or array, counting brackets outside strings.
func skipNested(b []byte, i, depth int) (int, error) {
	level := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '{', '[':
			level++
			if depth+level > maxDocDepth {
				return 0, errJSON
			}
		case '}', ']':
			level--
			if level == 0 {
				return j + 1, nil
			}
		case '"':
			_, e, _, err := stringEnd(b, j)
			if err != nil {
				return 0, err
			}
			j = e
		}
	}
	return 0, errJSON
}

// str returns a scalar value as text: a string's content (unescaped), a
// number's or boolean's literal. Arrays, objects, null and absent fields
// give ok false; of a field with several values in arrays of objects, it
// reads the first. The result may point into the document: it is valid
// until the next event.
func (d *document) str(slot int32) (string, bool) {
	sp := d.spans[slot]
	switch sp.kind {
	case vString:
		return d.text(sp), true
	case vNumber, vBool:
		return bview(d.data[sp.start:sp.end]), true
	}
	return "", false
}

func (d *document) text(sp span) string {
	raw := d.data[sp.start:sp.end]
	if !sp.esc {
		return bview(raw)
	}
	start := len(d.scratch)
	d.scratch, _ = jsonscan.AppendUnescaped(d.scratch, raw)
	return bview(d.scratch[start:])
}

// appendEach appends every scalar value of the field, in the event's
// order, as query.Flatten and Elasticsearch flatten them: the value
// itself, or each scalar element of an array and of the arrays nested in
// it (["a",["b"]] gives a and b), and the field's value in each object of
// an array ({"c":[{"f":"a"},{"f":"b"}]} gives c.f a and b); objects in
// the field's own array are skipped, and null is no value. At most
// maxFieldValues are appended.
func (d *document) appendEach(dst []string, slot int32) []string {
	sp := d.spans[slot]
	if sp.kind != vArray && sp.extra == 0 {
		if s, ok := d.str(slot); ok {
			dst = append(dst, s)
		}
		return dst
	}
	limit := len(dst) + maxFieldValues
	dst = d.appendSpan(dst, sp, limit)
	for k := 0; sp.extra > 0 && k < len(d.more) && len(dst) < limit; k++ {
		if m := &d.more[k]; m.slot == slot {
			dst = d.appendSpan(dst, m.sp, limit)
		}
	}
	return dst
}

// appendSpan appends the scalar values of sp, up to len(dst) == limit.
func (d *document) appendSpan(dst []string, sp span, limit int) []string {
	switch sp.kind {
	case vString:
		return append(dst, d.text(sp))
	case vNumber, vBool:
		return append(dst, bview(d.data[sp.start:sp.end]))
	case vArray:
		return d.appendElems(dst, d.data[:sp.end], int(sp.start), limit)
	}
	return dst
}

// isNull reports whether the field is absent or null: it has no value
// but nulls ([], [null] and a field null in every object of an array
// included), as query and Elasticsearch find no value in it.
func (d *document) isNull(slot int32) bool {
	sp := d.spans[slot]
	if !d.nullSpan(sp) {
		return false
	}
	for k := 0; sp.extra > 0 && k < len(d.more); k++ {
		if m := &d.more[k]; m.slot == slot && !d.nullSpan(m.sp) {
			return false
		}
	}
	return true
}

func (d *document) nullSpan(sp span) bool {
	switch sp.kind {
	case vAbsent, vNull:
		return true
	case vArray:
		var one [1]string
		return len(d.appendElems(one[:0], d.data[:sp.end], int(sp.start), 1)) == 0
	}
	return false
}

// appendElems appends the scalar elements of the array at b[start] ('[')
// and of the arrays in it, up to len(dst) == limit. scan has checked the
// array, nesting included: value is given depth 0, so that no element is
// refused for its depth (an element nested two deeper used to end the
// list there).
func (d *document) appendElems(dst []string, b []byte, start, limit int) []string {
	i := skipWS(b, start+1)
	for i < len(b) && b[i] != ']' && len(dst) < limit {
		next, v, err := value(b, i, 0)
		if err != nil {
			return dst
		}
		switch v.kind {
		case vString:
			dst = append(dst, d.text(v))
		case vNumber, vBool:
			dst = append(dst, bview(b[i:next]))
		case vArray:
			dst = d.appendElems(dst, b[:next], i, limit)
		}
		i = skipWS(b, next)
		if i < len(b) && b[i] == ',' {
			i = skipWS(b, i+1)
		}
	}
	return dst
}

// appendAllStrings appends every string value of the document (never
// keys), at any depth: what keyword searches look through.
func (d *document) appendAllStrings(dst []string) []string {
	b := d.data
	inKey := false // the next string is an object key
	var stack [maxDocDepth + 2]byte
	top := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{':
			if top < len(stack) {
				stack[top] = '{'
				top++
			}
			inKey = true
		case '[':
			if top < len(stack) {
				stack[top] = '['
				top++
			}
			inKey = false
		case '}', ']':
			if top > 0 {
				top--
			}
			inKey = false
		case ',':
			inKey = top > 0 && stack[top-1] == '{'
		case ':':
			inKey = false
		case '"':
			s, e, esc, err := stringEnd(b, i)
			if err != nil {
				return dst
			}
			if !inKey {
				dst = append(dst, d.text(span{start: int32(s), end: int32(e), kind: vString, esc: esc}))
			}
			i = e
		}
	}
	return dst
}

// bview returns the bytes as a string without copying. The engine never
// modifies a document while views into it are live, and copies a view
// (strings.Clone) before keeping it past the event.
func bview(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
