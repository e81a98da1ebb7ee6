package event

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"time"
	"unsafe"
)

// AppendNormalized is the collector's per-event hot path: it appends to dst
// the stored form of a submitted event document, in one pass over doc and
// without building an Event, and returns the event.id the client sent
// (nil when none; a slice of doc when it needed no unescaping). When it
// reports ok, the bytes it appended are exactly those of
//
//	ev, err := Decode(doc)                  // err == nil
//	err = ev.CheckECS()                     // err == nil
//	// event.kind, event.category, event.type and event.outcome hold
//	// only values ECSAllowed lists (empty kind and outcome: not sent)
//	if ev.Timestamp.IsZero() { ev.Timestamp = now }
//	if ev.Kind == "" { ev.Kind = KindEvent }
//	if ev.ID == "" { ev.ID = string(newID(nil)) }
//	ev.Ingested = now
//	dst = ev.AppendJSON(dst)
//
// (TestNormalizedMatchesDecode and FuzzNormalized hold it to that). It
// reports !ok, leaving dst as it was, for any document it does not handle
// itself: invalid ones, fields Event does not model (Extra), labels given
// as dotted names, duplicate keys, escaped keys, integers written with a
// fraction or an exponent. The caller then takes the path above, which
// also says what is wrong with an invalid document. newID appends a new
// event.id to its argument; it is called only when doc has none.
func AppendNormalized(dst, doc []byte, now time.Time, newID func([]byte) []byte) (out []byte, id []byte, ok bool) {
	return AppendNormalizedSpans(dst, doc, now, newID, nil)
}

// AppendNormalizedSpans is AppendNormalized that also notes in sp, when
// it is not nil and ok is reported, where the record it appended holds
// each modelled field's value (see Spans): the collector hands these to
// the ledger's followers so that they need not parse the record again.
func AppendNormalizedSpans(dst, doc []byte, now time.Time, newID func([]byte) []byte, sp *Spans) (out []byte, id []byte, ok bool) {
	return AppendNormalizedScrubbed(dst, doc, now, newID, sp, nil)
}

// Scrubber is what AppendNormalizedScrubbed asks about each part of the
// document while it reads it: whether scrubbing the document would change
// that part. redact.Tokens implements it, for redact.Redactor.JSON.
type Scrubber interface {
	// MaxDepth is the deepest nesting the scrubber accepts.
	MaxDepth() int
	// Unchanged reports whether scrubbing leaves tok, a string token
	// (quotes included, as in the document) or a number, found inside
	// depth open objects and arrays, as it is.
	Unchanged(tok []byte, depth int) bool
	// UnchangedText is Unchanged for a string token without escapes,
	// quotes or control characters, given its content.
	UnchangedText(content []byte) bool
	// Sensitive reports whether scrubbing replaces the value of the
	// member named key in an object that is the value of the member named
	// parent (nil for the top-level object).
	Sensitive(parent, key []byte) bool
}

// ScrubPass is a Scrubber for AppendNormalizedScrubbed, with what the
// passes learnt about it: whether each modelled name, written as one
// member of its parent's object ({"user":{"name":…}}), keeps its name and
// value — a verdict that depends only on the two names, asked once
// instead of for every event (the scrubber's key matching was a fifth of
// the pass). A ScrubPass is for one goroutine.
//
// It also remembers, by normTree node, which member came first in that
// object and which came after each, in the last document that had them:
// a shipper writes its events alike, so the next key is usually the one
// predicted, and checking that the document holds that name followed by
// its closing quote replaces reading the key and looking it up (a quarter
// of the pass). A wrong prediction costs one comparison.
type ScrubPass struct {
	sc       Scrubber
	maxDepth int
	names    []uint8 // by normTree node: 0 not asked yet, 1 clean, 2 not
	// first[node] is the child whose member came first in node's object,
	// after[child] the one after child's member; 0 for none (the document
	// node is nobody's child). Only children reached by one name alone.
	first, after []int32
	// clean[f] is the text last found clean as a value of field f, and
	// cleanNum[f] the number token.
	clean, cleanNum [len(normFields)]cleanText
	// nowText is now in TimeFormat: a request's events share their
	// event.ingested, written once.
	now     time.Time
	nowText []byte
	// tmpl is the document the next is read along (docTemplate); rec
	// the values the current one's long reading noted.
	tmpl docTemplate
	rec  []tmplStep
}

// appendNow appends now as AppendTime does.
func (p *ScrubPass) appendNow(b []byte, now time.Time) []byte {
	if p == nil {
		return AppendTime(b, now)
	}
	if len(p.nowText) == 0 || !p.now.Equal(now) {
		p.now, p.nowText = now, AppendTime(p.nowText[:0], now)
	}
	return append(b, p.nowText...)
}

// NewScrubPass returns a ScrubPass asking sc.
func NewScrubPass(sc Scrubber) *ScrubPass {
	return &ScrubPass{sc: sc, maxDepth: sc.MaxDepth(), names: make([]uint8, len(normTree)),
		first: make([]int32, len(normTree)), after: make([]int32, len(normTree))}
}

// predicted reads at s the key the pass expects after the member of prev
// (0: the first member of node's object): when the document holds
// exactly that child's name there, it consumes the key and returns the
// child; otherwise it consumes nothing and returns 0.
func (p *ScrubPass) predicted(s *scanner, node, prev int) int {
	var c int32
	if prev == 0 {
		c = p.first[node]
	} else {
		c = p.after[prev]
	}
	if c == 0 {
		return 0
	}
	at := s.Pos + 1
	if k := &normKeys[c]; at+16 <= len(s.Data) && k.n != 0 {
		// The name and its closing quote, two words at most, compared
		// at once (a call to compare the strings, and the bounds
		// checks, were a third of predicted's time).
		a := binary.LittleEndian.Uint64(s.Data[at:])
		b := binary.LittleEndian.Uint64(s.Data[at+8:])
		if (a^k.w[0])&k.m[0]|(b^k.w[1])&k.m[1] != 0 {
			return 0
		}
		s.Pos = at + int(k.n)
		return int(c)
	}
	name := normNames[c]
	end := at + len(name)
	if end >= len(s.Data) || s.Data[end] != '"' || string(s.Data[at:end]) != name {
		return 0
	}
	s.Pos = end + 1
	return int(c)
}

// normKey is a normTree node's name followed by a quote, as two
// little-endian words w under masks m, when it fits (n its length, 0
// when it does not).
type normKey struct {
	w, m [2]uint64
	n    int
}

var normKeys = func() []normKey {
	keys := make([]normKey, len(normTree))
	for i := range normTree {
		k := []byte(normTree[i].name + `"`)
		if len(k) > 16 {
			continue
		}
		keys[i].n = len(k)
		for j, c := range k {
			keys[i].w[j/8] |= uint64(c) << (8 * (j % 8))
			keys[i].m[j/8] |= 0xff << (8 * (j % 8))
		}
	}
	return keys
}()

// saw records that child's member came after prev's in node's object.
func (p *ScrubPass) saw(node, prev, child int) {
	if prev == 0 {
		p.first[node] = int32(child)
	} else {
		p.after[prev] = int32(child)
	}
}

// AppendNormalizedScrubbed is AppendNormalizedSpans over the document
// scrubbing doc would give, in the same single pass: it asks p's
// scrubber (when p is not nil) about every key, string and number of
// doc, and reports !ok, leaving dst as it was, unless every answer is that
// scrubbing would leave the document as it is, in which case scrubbing
// doc first is doc and its output is the same. The caller then scrubs and
// normalises in two passes (what it did for every event before): a
// document with anything to scrub is scrubbed by the scrubber itself,
// never here.
func AppendNormalizedScrubbed(dst, doc []byte, now time.Time, newID func([]byte) []byte, sp *Spans, p *ScrubPass) (out []byte, id []byte, ok bool) {
	var n normalizer
	n.init(doc, sp, p)
	s := newScanner(doc, 0)
	tried := p != nil && p.tmpl.try()
	fromTmpl := tried && n.fromTemplate(&s, &p.tmpl)
	if p != nil && !fromTmpl {
		if tried {
			p.tmpl.missed()
			n.reset(doc, sp, p) // what the template's reading found is dropped
			s.Pos = 0
		}
		// A document that does not follow the template replaces it only
		// when the one before did not either: a shipper whose events
		// mostly share a layout (one field more in some) keeps reading
		// most of them along it.
		if len(doc) <= maxTemplateDoc && (!p.tmpl.ok || p.tmpl.misses >= 2) {
			p.rec = p.rec[:0]
			n.rec = &p.rec
		}
	}
	if !fromTmpl {
		if s.Peek() != '{' {
			return dst, nil, false
		}
		if !n.object(&s, 0, 1, nil, true) {
			return dst, nil, false
		}
	}
	end := s.Pos
	if s.SkipSpace(); s.Pos < len(s.Data) {
		return dst, nil, false
	}
	out, ok = n.emit(dst, now, newID)
	if !ok {
		return dst, nil, false
	}
	if n.rec != nil && len(p.rec) > 0 {
		p.tmpl.set(doc, end, &p.rec)
	}
	return out, n.id, true
}

// init readies n, the zero normalizer, for a pass over doc with p (nil:
// no scrubber). It sets fields instead of assigning a whole normalizer:
// the assignment zeroed a temporary of the size of slots and copied it
// over n, itself zeroed where it was declared, for every event (1.5 % of
// the collector's CPU under ingest load). reset readies a normalizer
// that was used.
func (n *normalizer) init(doc []byte, sp *Spans, p *ScrubPass) {
	n.sp, n.doc, n.maxDepth = sp, doc, 1<<30
	if p != nil {
		n.sc, n.pass, n.maxDepth = p.sc, p, p.maxDepth
	}
}

// reset is init for a normalizer that was used.
func (n *normalizer) reset(doc []byte, sp *Spans, p *ScrubPass) {
	*n = normalizer{}
	n.init(doc, sp, p)
}

// maxTemplateDoc is the longest document a ScrubPass keeps as its
// template (a copy of it is kept).
const maxTemplateDoc = 4 << 10

// docTemplate is a document a ScrubPass read the long way and took
// (every part clean, every check passed; the first, and then the second
// of two in a row that did not follow the template), with where it held
// each modelled value: the events of one shipper share their layout, keys and
// most values, so the next document usually holds the same bytes between
// its values (the gaps) and many of the same values.
//
// fromTemplate reads a document along it: it compares each gap with the
// template's, byte for byte, and reads each value with field, as object
// would. The long way is a function of the document's bytes alone (and of
// the scrubber's verdicts, which are functions of the bytes too): where
// the gaps are the same bytes, it reaches each value in the same state
// (field, depth, key) and reads it the same way, so reading along the
// template gives what object gives. A value equal to the template's,
// byte for byte, gave the template's result then and gives it now: its
// slot is the template's, moved to where the value lies (except
// @timestamp and event.id, whose reading sets more than a slot). Any
// difference sends the document the long way, from its start.
type docTemplate struct {
	doc   []byte
	steps []tmplStep
	end   int // where the document's object ended
	ok    bool
	// misses counts the documents in a row that did not follow the
	// template (two replace it).
	misses int
	// score rises by one for each document that followed the template and
	// falls by missCost for each that did not, within ±maxScore: a miss
	// costs about three times what a hit saves (the document is read up to
	// where it differs, then again the long way), so below zero (fewer
	// than three in four followed it) only one document in missEvery is
	// read along the template, to notice when its layout comes back.
	score, skip int
	tries       int // documents read along a template (for tests)
}

// tmplStep is one modelled value of a template's document: field's value
// read from start to end (its position on entering and leaving field,
// leading space included), the member named doc[key:key+keyLen] depth
// deep, and what field stored for it.
type tmplStep struct {
	field       int
	depth       int
	key, keyLen int32
	start, end  int32
	slot        normSlot
}

const (
	missCost  = 3
	maxScore  = 16
	missEvery = 16
)

// try reports whether to read the next document along the template.
func (t *docTemplate) try() bool {
	if !t.ok {
		return false
	}
	t.skip++
	if t.score >= 0 || t.skip%missEvery == 0 {
		t.tries++
		return true
	}
	return false
}

// missed notes a document that did not follow the template.
func (t *docTemplate) missed() {
	t.misses++
	t.score = max(t.score-missCost, -maxScore)
}

// set makes doc, read the long way with the steps in *rec, the template,
// and hands the template's old steps to *rec for reuse.
func (t *docTemplate) set(doc []byte, end int, rec *[]tmplStep) {
	t.doc = append(t.doc[:0], doc...)
	t.steps, *rec = *rec, t.steps[:0]
	t.end, t.ok = end, true
}

// fromTemplate reads the document at s along t (see docTemplate); false
// says it does not follow t, and leaves n and s to be reset.
func (n *normalizer) fromTemplate(s *scanner, t *docTemplate) bool {
	doc := s.Data
	pos, prev := 0, 0 // in doc; the end of the previous value in t.doc
	for i := range t.steps {
		st := &t.steps[i]
		gap := t.doc[prev:st.start]
		if len(doc)-pos < len(gap) || string(doc[pos:pos+len(gap)]) != string(gap) {
			return false
		}
		pos += len(gap)
		prev = int(st.end)
		if normFields[st.field].sameAsBefore() {
			if val := t.doc[st.start:st.end]; len(doc)-pos >= len(val) && string(doc[pos:pos+len(val)]) == string(val) {
				sl := st.slot
				shift := int32(pos) - st.start
				sl.start += shift
				sl.end += shift
				if n.slots[st.field].set {
					return false
				}
				n.slots[st.field] = sl
				n.set |= 1 << uint(st.field)
				pos += len(val)
				continue
			}
		}
		k := pos - int(st.start-st.key)
		s.Pos = pos
		if !n.field(s, st.field, st.depth, doc[k:k+int(st.keyLen)]) {
			return false
		}
		pos = s.Pos
	}
	gap := t.doc[prev:t.end]
	if len(doc)-pos < len(gap) || string(doc[pos:pos+len(gap)]) != string(gap) {
		return false
	}
	s.Pos = pos + len(gap)
	t.misses = 0
	t.score = min(t.score+1, maxScore)
	return true
}

// normKind is how a modelled field is read and written.
type normKind uint8

const (
	nkStr  normKind = iota // a string
	nkStrs                 // a string or an array of strings, written as an array
	nkInt                  // an integer, written only when not 0
	nkTime                 // an RFC 3339 date string, written in TimeFormat
	nkMap                  // an object of strings, written sorted by key
)

// Checks beyond the JSON type, as CheckECS and the collector's
// categorisation check make them.
type normCheck uint8

const (
	ncNone      normCheck = iota
	ncAllowed             // a value ECSAllowed lists (empty: not sent, for kind and outcome)
	ncAllowedEl           // every element a value ECSAllowed lists, none empty
	ncIP                  // an address netip.ParseAddr takes
	ncID                  // event.id: returned to the caller
	ncStatus              // 100-599
	ncPort                // 0-65535
	ncCount               // zero or more
	ncTimestamp           // from 1970 to 9999
	ncReserved            // not a value reserved for the collector's own records (CheckProvenance)
)

// normField is one modelled field, in the order AppendJSON writes it.
type normField struct {
	name    string
	spec    fieldSpec
	group   int // for nkMap: the object's group
	kind    normKind
	check   normCheck
	allowed []string
}

// sameAsBefore reports whether reading a value of f sets nothing but its
// slot, so that a value equal to the template's may take the template's
// slot, moved: a time sets the event's time and an id is returned to the
// caller.
func (f *normField) sameAsBefore() bool { return f.kind != nkTime && f.check != ncID }

// normFields mirrors AppendJSON field for field (trailguard.audit.* and
// trailguard.attrs, free-form JSON, are left to Decode).
var normFields = [...]normField{
	{name: "@timestamp", spec: fTimestamp, kind: nkTime, check: ncTimestamp},
	{name: "event.kind", spec: fKind, kind: nkStr, check: ncAllowed},
	{name: "event.category", spec: fCategory, kind: nkStrs, check: ncAllowedEl},
	{name: "event.type", spec: fType, kind: nkStrs, check: ncAllowedEl},
	{name: "event.action", spec: fAction, kind: nkStr},
	{name: "event.outcome", spec: fOutcome, kind: nkStr, check: ncAllowed},
	{name: "event.reason", spec: fReason, kind: nkStr},
	{name: "event.severity", spec: fSeverity, kind: nkInt},
	{name: "event.duration", spec: fDuration, kind: nkInt, check: ncCount},
	{name: "event.id", spec: fID, kind: nkStr, check: ncID},
	{name: "event.dataset", spec: fDataset, kind: nkStr, check: ncReserved},
	{name: "event.ingested", spec: fIngested, kind: nkTime},
	{name: "message", spec: fMessage, kind: nkStr},
	{name: "log.level", spec: fLogLevel, kind: nkStr},
	{name: "error.message", spec: fError, kind: nkStr},
	{name: "http.request.id", spec: fRequestID, kind: nkStr},
	{name: "http.request.method", spec: fMethod, kind: nkStr},
	{name: "http.request.referrer", spec: fReferrer, kind: nkStr},
	{name: "http.request.body.bytes", spec: fReqBytes, kind: nkInt, check: ncCount},
	{name: "http.request.body.content", spec: fReqBody, kind: nkStr},
	{name: "http.response.status_code", spec: fStatus, kind: nkInt, check: ncStatus},
	{name: "http.response.body.bytes", spec: fRespBytes, kind: nkInt, check: ncCount},
	{name: "url.path", spec: fPath, kind: nkStr},
	{name: "url.query", spec: fQuery, kind: nkStr},
	{name: "url.original", spec: fOriginal, kind: nkStr},
	{name: "source.ip", spec: fSourceIP, kind: nkStr, check: ncIP},
	{name: "source.port", spec: fSourcePort, kind: nkInt, check: ncPort},
	{name: "client.ip", spec: fClientIP, kind: nkStr, check: ncIP},
	{name: "user.id", spec: fUserID, kind: nkStr},
	{name: "user.name", spec: fUserName, kind: nkStr},
	{name: "user.roles", spec: fUserRoles, kind: nkStrs},
	{name: "user.target.id", spec: fTargetID, kind: nkStr},
	{name: "user.target.name", spec: fTargetName, kind: nkStr},
	{name: "user_agent.original", spec: fUserAgent, kind: nkStr},
	{name: "trace.id", spec: fTraceID, kind: nkStr},
	{name: "span.id", spec: fSpanID, kind: nkStr},
	{name: "service.name", spec: fServiceName, kind: nkStr, check: ncReserved},
	{name: "host.name", spec: fHostName, kind: nkStr},
	{name: labelsPrefix, group: gLabels, kind: nkMap},
	{name: headersPrefix, group: gHeaders, kind: nkMap},
}

const (
	nfTimestamp = 0
	nfKind      = 1
	nfID        = 9
	nfIngested  = 11
)

// normNode is an object on the way to modelled fields, or one of them: the
// tree of dotted names, so that a key is found by comparing it with a
// node's few children (a map lookup per key cost a third of the pass).
type normNode struct {
	name     string
	field    int // index in normFields, or -1 for an object
	children []int32
	// byLen holds the children by the length of their name, so that a
	// key is compared with one or two names at most, each with its first
	// eight bytes as one word (most names are no longer) and without
	// touching the child's node.
	byLen [maxSegment + 1][]normKid
}

// normKid is a child in normNode.byLen.
type normKid struct {
	w    uint64 // the name's first eight bytes (word8)
	rest string // the name's bytes after them
	node int32
}

// word8 is the first eight bytes of b, zero-padded, as one word.
func word8[T string | []byte](b T) uint64 {
	if len(b) >= 8 {
		return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
			uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
	}
	var w uint64
	for i := len(b) - 1; i >= 0; i-- {
		w = w<<8 | uint64(b[i])
	}
	return w
}

// maxSegment is the longest name of an object or field on the way to a
// modelled field ("status_code", "user_agent", "headers", …).
const maxSegment = 16

// normTree holds the nodes; 0 is the document.
var normTree = func() []normNode {
	tree := []normNode{{field: -1}}
	for i := range normFields {
		f := &normFields[i]
		if f.check == ncAllowed || f.check == ncAllowedEl {
			f.allowed = ecsFields[f.name].allowed
		}
		cur := 0
		rest := f.name
		for rest != "" {
			seg := rest
			if j := indexByte(rest, '.'); j >= 0 {
				seg, rest = rest[:j], rest[j+1:]
			} else {
				rest = ""
			}
			next := -1
			for _, c := range tree[cur].children {
				if tree[c].name == seg {
					next = int(c)
				}
			}
			if next < 0 {
				next = len(tree)
				tree = append(tree, normNode{name: seg, field: -1})
				tree[cur].children = append(tree[cur].children, int32(next))
				if len(seg) > maxSegment {
					panic("event: a modelled name's part is longer than maxSegment: " + seg)
				}
				kid := normKid{w: word8(seg), node: int32(next)}
				if len(seg) > 8 {
					kid.rest = seg[8:]
				}
				tree[cur].byLen[len(seg)] = append(tree[cur].byLen[len(seg)], kid)
			}
			cur = next
		}
		tree[cur].field = i
	}
	return tree
}()

// normNames is each normTree node's name, by itself: the key predictions
// read one name per member, and a node (its children by length) spans
// several cache lines.
var normNames = func() []string {
	names := make([]string, len(normTree))
	for i := range normTree {
		names[i] = normTree[i].name
	}
	return names
}()

// normFieldOf is each normTree node's field (-1: an object), by itself
// for the same reason.
var normFieldOf = func() []int8 {
	f := make([]int8, len(normTree))
	for i := range normTree {
		f[i] = int8(normTree[i].field)
	}
	return f
}()

func indexByte(s string, c byte) int {
	for i := range len(s) {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// lookup finds the node of key (which may be dotted: "request.id") below
// node; -1 when the name is not on the way to a modelled field.
func lookup(node int, key []byte) int {
	for start := 0; ; {
		end := start
		for end < len(key) && key[end] != '.' {
			end++
		}
		seg := key[start:end]
		if len(seg) > maxSegment {
			return -1
		}
		next := -1
		w := word8(seg)
		for _, k := range normTree[node].byLen[len(seg)] {
			if k.w == w && (len(seg) <= 8 || k.rest == string(seg[8:])) {
				next = int(k.node)
				break
			}
		}
		if next < 0 {
			return -1
		}
		node = next
		if end == len(key) {
			return node
		}
		if normTree[node].field >= 0 {
			return -1 // a name below a field: Decode's Extra
		}
		start = end + 1
	}
}

// normSlot is where a field's value lies in the document.
type normSlot struct {
	start, end int32 // the value's bytes (a string token with its quotes)
	set        bool
	// plain: a string token that appendString writes as it is; for nkInt,
	// digits that strconv.AppendInt writes as they are (no leading zero,
	// no "-0"); for nkStrs, an array of at least one such string without
	// space, which writeStrs writes as it is.
	plain bool
	n     int64 // nkInt: the value
}

// normalizer holds what one AppendNormalized pass found.
type normalizer struct {
	doc   []byte
	slots [len(normFields)]normSlot
	// set has bit i set when slots[i] is: emit visits only those and
	// the fields it always writes.
	set uint64
	id  []byte
	ts  time.Time
	// tsFast says @timestamp took parseTimeFast's quick path: emit copies
	// its digits (appendFastTime) instead of formatting ts.
	tsFast bool
	sp     *Spans // where emit notes the values it writes (nil: nowhere)
	// sc, when not nil, is asked about every key, string and number; the
	// pass fails on any part it would change or on nesting past maxDepth.
	sc       Scrubber
	pass     *ScrubPass
	maxDepth int
	// rec, when not nil, is where object notes each value it reads, for
	// pass's next template.
	rec *[]tmplStep
}

// clean asks the scrubber whether tok, at depth, stays as it is.
func (n *normalizer) clean(tok []byte, depth int) bool {
	return n.sc == nil || n.sc.Unchanged(tok, depth)
}

// cleanStr asks the scrubber whether the string token at sl, at depth, a
// value of field f (-1: a map's), stays as it is: a plain one (printable
// ASCII without escapes) by its text alone, which is answered at once when
// it is the text the pass last found clean for f (events repeat most of
// their values: the action, the outcome, the user agent, the service).
func (n *normalizer) cleanStr(sl *normSlot, depth, f int) bool {
	switch {
	case n.sc == nil:
		return true
	case !sl.plain:
		return n.sc.Unchanged(n.doc[sl.start:sl.end], depth)
	}
	text := n.doc[sl.start+1 : sl.end-1]
	if f < 0 {
		return n.sc.UnchangedText(text)
	}
	last := &n.pass.clean[f]
	if last.ok && string(last.text) == string(text) {
		return true
	}
	if !n.sc.UnchangedText(text) {
		return false
	}
	if len(text) <= maxCleanText {
		last.text, last.ok = append(last.text[:0], text...), true
	}
	return true
}

// cleanNum is clean for the number token num, a value of field i: the
// token the pass last found clean for i at the same depth is answered at
// once (events repeat their status codes, sizes, ports).
func (n *normalizer) cleanNum(num []byte, depth, i int) bool {
	if n.sc == nil {
		return true
	}
	last := &n.pass.cleanNum[i]
	if last.ok && last.depth == depth && string(last.text) == string(num) {
		return true
	}
	if !n.sc.Unchanged(num, depth) {
		return false
	}
	if len(num) <= maxCleanText {
		last.text, last.depth, last.ok = append(last.text[:0], num...), depth, true
	}
	return true
}

// maxCleanText is the longest value a ScrubPass remembers as clean.
const maxCleanText = 128

// cleanText is the text a ScrubPass last found clean for a field (at
// depth, for a number).
type cleanText struct {
	text  []byte
	depth int
	ok    bool
}

// cleanKey asks the scrubber whether the member key (its token kt, with
// the quotes) of an object that is parent's value keeps its name and its
// value.
func (n *normalizer) cleanKey(parent, key, kt []byte, depth int) bool {
	return n.sc == nil || (!n.sc.Sensitive(parent, key) && n.sc.Unchanged(kt, depth))
}

// cleanMember is cleanKey for the member leading to normTree node child;
// canon says it is child's canonical member, whose verdict depends on
// nothing else (a plain key's text is scrubbed alike at any depth).
func (n *normalizer) cleanMember(parent, key, kt []byte, depth, child int, canon bool) bool {
	if n.sc == nil {
		return true
	}
	if !canon {
		return n.cleanKey(parent, key, kt, depth)
	}
	v := &n.pass.names[child]
	if *v == 0 {
		*v = 2
		if n.cleanKey(parent, key, kt, depth) {
			*v = 1
		}
	}
	return *v == 1
}

// object reads the object at s, the value of node (reached by the
// member named parent, nil for the document), depth objects and arrays
// deep counting itself.
//
// canon says parent was written as node's name alone (or node is the
// document), so that a member whose key is its child's name alone is
// that child's canonical member, whose verdict n.pass keeps.
func (n *normalizer) object(s *scanner, node, depth int, parent []byte, canon bool) bool {
	if depth > n.maxDepth {
		return false
	}
	s.Pos++ // '{'
	if s.Peek() == '}' {
		s.Pos++
		return true
	}
	prev := 0 // the child of the previous member read by one name
	for {
		if s.Peek() != '"' {
			return false
		}
		ks := s.Pos
		child := 0 // 0: not found yet; -1: not modelled
		if n.pass != nil {
			child = n.pass.predicted(s, node, prev)
		}
		var k []byte
		if child > 0 {
			k = s.Data[ks+1 : s.Pos-1]
		} else {
			var esc bool
			var err error
			if k, esc, err = s.RawString(); err != nil || esc || len(k) == 0 {
				return false // (escapes: not a plain key)
			}
		}
		kt := s.Data[ks:s.Pos]
		if s.Peek() != ':' {
			return false
		}
		s.Pos++
		c := s.Peek()
		if c == 'n' {
			// null: not sent, whatever the name (as Decode). A sensitive
			// key's null stays null: only the key's text can change.
			if !n.clean(kt, depth) || s.Literal("null") != nil {
				return false
			}
		} else {
			if child == 0 {
				child = lookup(node, k)
			}
			one := child >= 0 && len(k) == len(normNames[child]) // one name, not dotted
			if one && n.pass != nil {
				n.pass.saw(node, prev, child)
				prev = child
			}
			kcanon := canon && one
			if child >= 0 && !n.cleanMember(parent, k, kt, depth, child, kcanon) {
				return false
			}
			switch {
			case child < 0:
				return false // a field Event does not model: Decode's Extra
			case normFieldOf[child] >= 0:
				f, at := int(normFieldOf[child]), s.Pos
				if !n.field(s, f, depth, k) {
					return false
				}
				if n.rec != nil {
					*n.rec = append(*n.rec, tmplStep{field: f, depth: depth, key: int32(ks + 1), keyLen: int32(len(k)),
						start: int32(at), end: int32(s.Pos), slot: n.slots[f]})
				}
			case c == '{':
				if !n.object(s, child, depth+1, k, kcanon) {
					return false
				}
			default:
				return false
			}
		}
		switch s.Peek() {
		case ',':
			s.Pos++
		case '}':
			s.Pos++
			return true
		default:
			return false
		}
	}
}

// str reads a string token into sl. A plain string (printable ASCII
// without escapes) is kept as a slice of the document; any other is
// decoded as Decode decodes it, and v returns it.
func (n *normalizer) str(s *scanner, sl *normSlot) (v string, ok bool) {
	start := s.Pos
	i := s.Pos + 1
	d := s.Data
	for i+8 <= len(d) && plain8(binary.LittleEndian.Uint64(d[i:])) {
		i += 8
	}
	for i < len(d) && d[i] >= 0x20 && d[i] < 0x7f && d[i] != '"' && d[i] != '\\' {
		i++
	}
	if i < len(d) && d[i] == '"' {
		s.Pos = i + 1
		*sl = normSlot{start: int32(start), end: int32(s.Pos), set: true, plain: true}
		return unsafe.String(unsafe.SliceData(d[start+1:]), i-start-1), true
	}
	v, err := s.Str()
	if err != nil {
		return "", false
	}
	*sl = normSlot{start: int32(start), end: int32(s.Pos), set: true}
	return v, true
}

// field reads the value of modelled field i, the member named key of an
// object depth deep, and checks it.
func (n *normalizer) field(s *scanner, i, depth int, key []byte) bool {
	f := &normFields[i]
	sl := &n.slots[i]
	if sl.set {
		return false // a repeated field: Decode keeps the last, left to it
	}
	n.set |= 1 << uint(i) // (when !ok, emit is not called)
	switch f.kind {
	case nkStr:
		if s.Peek() != '"' {
			return false
		}
		v, ok := n.str(s, sl)
		if !ok || !n.cleanStr(sl, depth, i) {
			return false
		}
		switch f.check {
		case ncAllowed:
			return v == "" || slices.Contains(f.allowed, v)
		case ncReserved:
			return !reservedValue(i, v)
		case ncIP:
			if v != "" {
				if _, err := netip.ParseAddr(v); err != nil {
					return false
				}
			}
		case ncID:
			if v != "" {
				if sl.plain {
					n.id = n.doc[sl.start+1 : sl.end-1]
				} else {
					n.id = []byte(v)
				}
			}
		}
		return true
	case nkStrs:
		start := s.Pos
		var el normSlot
		switch s.Peek() {
		case '"':
			start = s.Pos
			v, ok := n.str(s, &el)
			if !ok || (f.check == ncAllowedEl && !slices.Contains(f.allowed, v)) || !n.cleanStr(&el, depth, i) {
				return false
			}
		case '[':
			if depth+1 > n.maxDepth {
				return false
			}
			start = s.Pos
			s.Pos++
			if s.Peek() == ']' {
				s.Pos++
				break
			}
			// asIs: no space anywhere and every element plain, so the
			// array is written as it stands (emit copies it).
			asIs := true
			for {
				if s.Peek() != '"' {
					return false
				}
				asIs = asIs && (s.Data[s.Pos-1] == '[' || s.Data[s.Pos-1] == ',')
				v, ok := n.str(s, &el)
				if !ok || (f.check == ncAllowedEl && !slices.Contains(f.allowed, v)) || !n.cleanStr(&el, depth+1, i) {
					return false
				}
				asIs = asIs && el.plain
				at := s.Pos
				c := s.Peek()
				asIs = asIs && s.Pos == at
				s.Pos++
				if c == ']' {
					break
				}
				if c != ',' {
					return false
				}
			}
			*sl = normSlot{start: int32(start), end: int32(s.Pos), set: true, plain: asIs}
			return true
		default:
			return false
		}
		*sl = normSlot{start: int32(start), end: int32(s.Pos), set: true}
		return true
	case nkInt:
		c := s.Peek()
		if c != '-' && (c < '0' || c > '9') {
			return false
		}
		num, err := s.Number()
		if err != nil || !n.cleanNum(num, depth, i) {
			return false
		}
		v, ok := simpleInt(num)
		if !ok {
			return false // 1e3, 5.0, 19 digits: Decode's slower parse
		}
		switch f.check {
		case ncCount:
			if v < 0 {
				return false
			}
		case ncStatus:
			if v != 0 && (v < 100 || v > 599) {
				return false
			}
		case ncPort:
			if v < 0 || v > 65535 {
				return false
			}
		}
		*sl = normSlot{set: true, n: v, start: int32(s.Pos - len(num)), end: int32(s.Pos), plain: canonicalInt(num)}
		return true
	case nkTime:
		if s.Peek() != '"' {
			return false
		}
		v, ok := n.str(s, sl)
		if !ok || !n.cleanStr(sl, depth, i) {
			return false
		}
		t, fast, err := parseTimeFast(v)
		if err != nil || t.IsZero() {
			return false
		}
		t = t.UTC()
		if y := t.Year(); y < 0 || y > 9999 {
			return false // Decode refuses it (setTime)
		}
		if f.check == ncTimestamp {
			if t.Before(minTime) || t.After(maxTime) {
				return false
			}
			n.ts, n.tsFast = t, fast && sl.plain
		}
		return true
	case nkMap:
		if s.Peek() != '{' || depth+1 > n.maxDepth {
			return false
		}
		start := s.Pos
		s.Pos++
		var el normSlot
		if s.Peek() == '}' {
			s.Pos++
		} else {
			for {
				if s.Peek() != '"' {
					return false
				}
				if _, ok := n.str(s, &el); !ok || !el.plain {
					return false
				}
				if kt := s.Data[el.start:el.end]; !n.cleanKey(key, kt[1:len(kt)-1], kt, depth+1) {
					return false
				}
				if s.Peek() != ':' {
					return false
				}
				s.Pos++
				if s.Peek() != '"' {
					return false
				}
				if _, ok := n.str(s, &el); !ok || !n.cleanStr(&el, depth+1, -1) {
					return false
				}
				c := s.Peek()
				s.Pos++
				if c == '}' {
					break
				}
				if c != ',' {
					return false
				}
			}
		}
		*sl = normSlot{start: int32(start), end: int32(s.Pos), set: true}
		return true
	}
	return false
}

// canonicalInt reports whether num, which simpleInt took, is written as
// strconv.AppendInt writes its value: no leading zero, no "-0".
func canonicalInt(num []byte) bool {
	d := num
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	return len(d) > 0 && (d[0] != '0' || len(num) == 1)
}

// simpleInt parses what Decode's int parses without a float: an optional
// minus and at most 18 digits.
func simpleInt(num []byte) (int64, bool) {
	b := num
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}

// writeStr appends the string token at sl as appendString writes its
// decoded value.
func (n *normalizer) writeStr(b []byte, sl normSlot) []byte {
	if sl.plain {
		return append(b, n.doc[sl.start:sl.end]...)
	}
	s := newScanner(n.doc, int(sl.start))
	v, _ := s.Str()
	return appendString(b, v)
}

// isEmptyStr reports whether the string token at sl is "".
func (n *normalizer) isEmptyStr(sl normSlot) bool { return sl.end-sl.start == 2 }

// emit writes the event in AppendJSON's order, with the collector's
// defaults.
//
// A shipper that writes its events as trailguard stores them (the same
// order, no space, plain values: bench/cmd/ingestload, httpaudit, a
// collector forwarding to another) leaves most of the record equal to
// the document: emit then copies the document's bytes in runs instead of
// writing each key and value. A field's bytes are copied with the run
// when the document holds, between the previous value it read and this
// field's value, exactly what the encoder would write there (gapKeys)
// and the value as it would be written: the record is the same byte for
// byte either way (TestNormalizedMatchesDecode, FuzzNormalized). Writing
// keys and values one by one was a quarter of the one-pass prepare.
func (n *normalizer) emit(dst []byte, now time.Time, newID func([]byte) []byte) ([]byte, bool) {
	base := len(dst)
	b := append(dst, '{')
	sp := n.sp
	if sp != nil {
		*sp = Spans{}
	}
	doc := n.doc
	// doc[from:to] is what the record holds next, not yet copied to b;
	// to is where the document's last value read ended (-1: none yet).
	from, to := 0, -1
	last := -1 // the field written last
	// note records that field i's value is b[vs:ve] (positions in the
	// record, copied or not yet), a plain string token (Spans.Plain) if
	// plain.
	note := func(i, vs, ve int, plain bool) {
		if sp != nil && ve-base <= maxSpanRecord {
			sp.at[i] = span{uint16(vs - base), uint16(ve - base)}
			if plain {
				sp.plain |= 1 << uint(i)
			}
		}
	}
	for m := n.set | alwaysWritten; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		f := &normFields[i]
		sl := &n.slots[i]
		var gen bool // a value the document does not hold as written
		switch i {
		case nfTimestamp, nfIngested:
			gen = true
		case nfKind:
			gen = !sl.set || n.isEmptyStr(*sl) || !sl.plain
		case nfID:
			gen = n.id == nil || !sl.plain
		default:
			if !sl.set {
				continue
			}
			switch f.kind {
			case nkStr:
				if n.isEmptyStr(*sl) {
					continue
				}
			case nkInt:
				if sl.n == 0 {
					continue
				}
			case nkStrs:
				if n.emptyArray(*sl) {
					continue // not written
				}
			case nkMap:
				// The last fields (normTree's check): written as before,
				// the encoder told where the others left it.
				b = append(b, doc[from:max(from, to)]...)
				from = max(from, to)
				e := n.encoderAfter(last)
				var ok bool
				vs := len(b)
				if b, ok = n.writeMap(&e, b, f.group, *sl); !ok {
					return dst, false
				}
				if len(b) > vs {
					if sp != nil {
						sp.maps = true
					}
					// The encoder's group is the map's now: close from
					// there at the end.
					last = -2 - f.group
				}
				continue
			}
			gen = !sl.plain
		}
		gap := gapKeys[last+1][i]
		vs, ve := int(sl.start), int(sl.end)
		if !gen && to >= 0 && vs-to == len(gap) && string(doc[to:vs]) == gap {
			// The document holds the key and the value as written: the
			// run goes on.
			off := len(b) - from
			note(i, vs+off, ve+off, f.kind == nkStr)
			to = ve
			last = i
			continue
		}
		if to > from {
			b = append(b, doc[from:to]...)
		}
		b = append(b, gap...)
		at := len(b)
		plain := true
		switch i {
		case nfTimestamp:
			b = append(b, '"')
			if sl.set && n.tsFast {
				b = appendFastTime(b, doc[sl.start+1:sl.end-1])
			} else {
				t := now
				if sl.set {
					t = n.ts
				}
				b = AppendTime(b, t)
			}
			b = append(b, '"')
			if sp != nil {
				t := now
				if sl.set {
					t = n.ts
				}
				sp.ts, sp.hasTS = unixNanos(t)
			}
		case nfIngested:
			b = append(b, '"')
			b = n.pass.appendNow(b, now)
			b = append(b, '"')
			if sp != nil {
				sp.ing, sp.hasI = unixNanos(now)
			}
		case nfKind:
			if !sl.set || n.isEmptyStr(*sl) {
				b = append(b, `"event"`...)
			} else {
				b, plain = n.writeStr(b, *sl), sl.plain
			}
		case nfID:
			if n.id == nil {
				// A new id is a UUID, plain.
				b = append(b, '"')
				b = newID(b)
				b = append(b, '"')
			} else {
				b, plain = n.writeStr(b, *sl), sl.plain
			}
		default:
			switch f.kind {
			case nkStr:
				b, plain = n.writeStr(b, *sl), sl.plain
			case nkInt:
				plain = false
				if sl.plain {
					b = append(b, doc[sl.start:sl.end]...)
				} else {
					b = strconv.AppendInt(b, sl.n, 10)
				}
			case nkStrs:
				plain = false
				b = n.writeStrs(b, *sl)
			}
		}
		note(i, at, len(b), plain)
		// The next run starts after this field's value in the document
		// (where its successor's key must follow), or where the last
		// one read ended when the document has none.
		if sl.set {
			to = ve
		}
		from = max(to, 0)
		last = i
	}
	if to > from {
		b = append(b, doc[from:to]...)
	}
	e := n.encoderAfter(last)
	b = e.to(b, 0)
	b = append(b, '}')
	if sp != nil {
		if len(b)-base > maxSpanRecord {
			*sp = Spans{}
		} else {
			sp.ok = true
		}
	}
	return b, true
}

// alwaysWritten are the fields every record holds.
const alwaysWritten = 1<<nfTimestamp | 1<<nfKind | 1<<nfID | 1<<nfIngested

// normalizer.set has a bit per field.
var _ [64 - len(normFields)]struct{}

// encoderAfter is the encoder's state once emit wrote field last (-1:
// none; -2-g: a map's members, in group g).
func (n *normalizer) encoderAfter(last int) encoder {
	switch {
	case last >= 0:
		return encoder{cur: normFields[last].spec.g, comma: true}
	case last <= -2:
		return encoder{cur: -2 - last, comma: true}
	}
	return encoder{}
}

// emptyArray reports whether the value at sl is an array of nothing.
func (n *normalizer) emptyArray(sl normSlot) bool {
	s := newScanner(n.doc[:sl.end], int(sl.start)+1)
	return n.doc[sl.start] == '[' && s.Peek() == ']'
}

// gapKeys[l+1][i] is what the encoder writes between the value of field
// l (-1: none, after the record's '{') and that of field i, for fields
// other than maps: the objects it closes and opens and i's key.
var gapKeys = func() (t [len(normFields) + 1][len(normFields)]string) {
	for l := -1; l < len(normFields); l++ {
		for i := range normFields {
			var e encoder
			if l >= 0 {
				e.cur, e.comma = normFields[l].spec.g, true
			}
			t[l+1][i] = string(e.key(nil, normFields[i].spec))
		}
	}
	// emit writes maps after every other field.
	for i := range normFields {
		if normFields[i].kind == nkMap {
			for _, f := range normFields[i+1:] {
				if f.kind != nkMap {
					panic("event: a map field before " + f.name)
				}
			}
		}
	}
	return t
}()

func bytesIndexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// writeStrs writes the value of the string or non-empty array of strings
// at sl as an array.
func (n *normalizer) writeStrs(b []byte, sl normSlot) []byte {
	s := newScanner(n.doc[:sl.end], int(sl.start))
	var el normSlot
	if s.Peek() == '"' {
		n.str(&s, &el)
		return append(n.writeStr(append(b, '['), el), ']')
	}
	s.Pos++
	b = append(b, '[')
	for first := true; ; first = false {
		s.Peek()
		n.str(&s, &el)
		if !first {
			b = append(b, ',')
		}
		b = n.writeStr(b, el)
		c := s.Peek()
		s.Pos++
		if c == ']' {
			return append(b, ']')
		}
	}
}

// writeMap writes the object of strings at sl as the members of group g,
// sorted by key. Repeated keys (Decode keeps the last) and more keys than
// it sorts here are left to Decode.
func (n *normalizer) writeMap(e *encoder, b []byte, g int, sl normSlot) ([]byte, bool) {
	type member struct{ k, v normSlot }
	var small [16]member
	ms := small[:0]
	s := newScanner(n.doc[:sl.end], int(sl.start)+1)
	if s.Peek() == '}' {
		return b, true
	}
	for {
		var m member
		n.str(&s, &m.k)
		s.Peek()
		s.Pos++ // ':'
		s.Peek()
		n.str(&s, &m.v)
		if len(ms) == len(small) {
			return b, false
		}
		ms = append(ms, m)
		c := s.Peek()
		s.Pos++
		if c == '}' {
			break
		}
	}
	key := func(m member) string {
		return unsafe.String(unsafe.SliceData(n.doc[m.k.start+1:]), m.k.end-m.k.start-2)
	}
	slices.SortFunc(ms, func(a, b member) int {
		ka, kb := key(a), key(b)
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
	for i, m := range ms {
		if i > 0 && key(ms[i-1]) == key(m) {
			return b, false
		}
	}
	for _, m := range ms {
		b = e.to(b, g)
		if e.comma {
			b = append(b, ',')
		}
		e.comma = true
		b = append(n.writeStr(b, m.k), ':')
		b = n.writeStr(b, m.v)
	}
	return b, true
}
