package report

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/rfc3339"
)

// fields are the values of one ledger record a report looks at, read in a
// single pass over its JSON without decoding the rest. Byte slices point
// into the record (or, for strings with escapes, into decoded copies).
type fields struct {
	ts, kind, action, outcome, id, ingested, dataset      []byte
	userName, userID, targetName, targetID                []byte
	srcIP, cliIP, host, service, path, resource, ruleName []byte
	alertRule, afterStatus, level, evEnd                  []byte
	origin                                                []byte // trailguard.ledger.origin: another collector's record
	cats, types, roles                                    [][]byte
	status                                                int64
	unrecorded                                            int64
	trigger                                               int64 // trailguard.alert.trigger.index, -1 if none
	hasTS, hasIngested                                    bool
	tsTime, ingTime                                       time.Time
	escaped                                               [][]byte // owners of decoded strings
	stack                                                 [6]string
	// A record read from its spans leaves the fields only some records
	// need (the detail fields: id, user, target, addresses, host, path,
	// level) to detail, which acc.add calls before it reads one of them:
	// an ordinary request event needs none, and they were most of the
	// report cache's reading. more says they are still to be read from
	// moreR at moreSp.
	more   bool
	moreR  []byte
	moreSp *event.Spans
}

// detail reads the detail fields a record read from its spans left
// (fromSpans); it does nothing for a parsed record or when they were read.
func (f *fields) detail() {
	if !f.more {
		return
	}
	f.more = false
	rec, sp := f.moreR, f.moreSp
	f.moreR, f.moreSp = nil, nil
	p := parser{f: f}
	f.id = p.spanStr(rec, sp, spanID)
	f.userName = p.spanStr(rec, sp, spanUserName)
	f.userID = p.spanStr(rec, sp, spanUserID)
	f.targetName = p.spanStr(rec, sp, spanTargetName)
	f.targetID = p.spanStr(rec, sp, spanTargetID)
	f.srcIP = p.spanStr(rec, sp, spanSrcIP)
	f.cliIP = p.spanStr(rec, sp, spanCliIP)
	f.host = p.spanStr(rec, sp, spanHost)
	f.path = p.spanStr(rec, sp, spanPath)
	f.level = p.spanStr(rec, sp, spanLevel)
}

var errNotObject = errors.New("record is not a JSON object")

// parse fills f from rec. Only the paths in want are extracted; every
// other value is skipped by bracket counting.
func (f *fields) parse(rec []byte) error {
	cats, types, roles, esc := f.cats[:0], f.types[:0], f.roles[:0], f.escaped[:0]
	*f = fields{cats: cats, types: types, roles: roles, escaped: esc, trigger: -1}
	p := parser{b: rec, f: f}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return errNotObject
	}
	if err := p.object(0); err != nil {
		return err
	}
	if len(f.ts) > 0 {
		f.tsTime, f.hasTS = parseTime(f.ts)
	}
	if len(f.ingested) > 0 {
		f.ingTime, f.hasIngested = parseTime(f.ingested)
	}
	return nil
}

// The fields parse reads that a record event.Spans describes can hold
// (the others, of alerts and the collector's own audit events, it never
// holds), by their numbers in event.Spans.
var (
	spanTS         = event.SpanField("@timestamp")
	spanKind       = event.SpanField("event.kind")
	spanAction     = event.SpanField("event.action")
	spanOutcome    = event.SpanField("event.outcome")
	spanID         = event.SpanField("event.id")
	spanIngested   = event.SpanField("event.ingested")
	spanDataset    = event.SpanField("event.dataset")
	spanUserName   = event.SpanField("user.name")
	spanUserID     = event.SpanField("user.id")
	spanTargetName = event.SpanField("user.target.name")
	spanTargetID   = event.SpanField("user.target.id")
	spanSrcIP      = event.SpanField("source.ip")
	spanCliIP      = event.SpanField("client.ip")
	spanHost       = event.SpanField("host.name")
	spanService    = event.SpanField("service.name")
	spanPath       = event.SpanField("url.path")
	spanLevel      = event.SpanField("log.level")
	spanCats       = event.SpanField("event.category")
	spanTypes      = event.SpanField("event.type")
	spanRoles      = event.SpanField("user.roles")
	spanStatus     = event.SpanField("http.response.status_code")
)

// fromSpans is parse for a record sp describes: each field is read where
// sp says it is, as parse reads it (TestReportSpans, FuzzReportSpans),
// the detail fields once detail is called.
//
// Every field parse sets is set here, one by one: assigning a whole new
// fields (~800 bytes) zeroed a copy and copied it into f with write
// barriers, a fifth of the report cache's work per record
// (TestFromSpansSetsEveryField fills f with values first). stack is
// parse's own scratch, and escaped keeps its backing array.
func (f *fields) fromSpans(rec []byte, sp *event.Spans) {
	f.escaped = f.escaped[:0]
	p := parser{f: f}
	f.ts = p.spanStr(rec, sp, spanTS)
	f.kind = p.spanStr(rec, sp, spanKind)
	f.action = p.spanStr(rec, sp, spanAction)
	f.outcome = p.spanStr(rec, sp, spanOutcome)
	f.ingested = p.spanStr(rec, sp, spanIngested)
	f.dataset = p.spanStr(rec, sp, spanDataset)
	f.service = p.spanStr(rec, sp, spanService)
	// The detail fields, read by detail when a record needs them.
	f.id, f.userName, f.userID, f.targetName, f.targetID = nil, nil, nil, nil, nil
	f.srcIP, f.cliIP, f.host, f.path, f.level = nil, nil, nil, nil, nil
	f.more, f.moreR, f.moreSp = true, rec, sp
	// Never in a record spans describe.
	f.resource, f.ruleName, f.alertRule, f.afterStatus, f.evEnd, f.origin = nil, nil, nil, nil, nil, nil
	f.unrecorded, f.trigger = 0, -1
	f.cats = p.spanList(rec, sp, spanCats, f.cats[:0])
	f.types = p.spanList(rec, sp, spanTypes, f.types[:0])
	f.roles = p.spanList(rec, sp, spanRoles, f.roles[:0])
	f.status = 0
	if tok := sp.Token(rec, spanStatus); len(tok) > 0 {
		if n, ok := digits(tok); ok {
			f.status = n
		} else if n, err := strconv.ParseInt(string(tok), 10, 64); err == nil {
			f.status = n
		}
	}
	// The instants ingest parsed or chose (event.Spans.Timestamp), parsed
	// here only when it did not carry them.
	f.tsTime, f.hasTS = time.Time{}, false
	if len(f.ts) > 0 {
		if ns, ok := sp.Timestamp(); ok {
			f.tsTime, f.hasTS = time.Unix(0, ns).UTC(), true
		} else {
			f.tsTime, f.hasTS = parseTime(f.ts)
		}
	}
	f.ingTime, f.hasIngested = time.Time{}, false
	if len(f.ingested) > 0 {
		if ns, ok := sp.Ingested(); ok {
			f.ingTime, f.hasIngested = time.Unix(0, ns).UTC(), true
		} else {
			f.ingTime, f.hasIngested = parseTime(f.ingested)
		}
	}
}

// spanStr is the string at sp's field as parse reads it (nil if the
// field holds no string).
func (p *parser) spanStr(rec []byte, sp *event.Spans, field int) []byte {
	tok := sp.Token(rec, field)
	if len(tok) == 0 || tok[0] != '"' {
		return nil
	}
	if sp.Plain(field) && len(tok) >= 2 && tok[len(tok)-1] == '"' {
		// No escapes: the value is between the quotes, as str finds it.
		return tok[1 : len(tok)-1]
	}
	p.b, p.i = tok, 0
	if v, err := p.str(); err == nil {
		return v
	}
	return nil
}

// spanList appends the string elements of the array at sp's field to
// dst, as parse reads them.
func (p *parser) spanList(rec []byte, sp *event.Spans, field int, dst [][]byte) [][]byte {
	tok := sp.Token(rec, field)
	if len(tok) == 0 || tok[0] != '[' {
		return dst
	}
	if n := len(tok); n >= 4 && tok[1] == '"' && tok[n-2] == '"' && tok[n-1] == ']' {
		// One string without quotes or escapes inside (["web"], the
		// usual list of one): what strings reads, without reading it
		// byte by byte.
		if v := tok[2 : n-2]; bytes.IndexByte(v, '"') < 0 && bytes.IndexByte(v, '\\') < 0 {
			return append(dst, v)
		}
	}
	p.b, p.i = tok, 0
	p.strings(&dst)
	return dst
}

// digits is strconv.ParseInt(b, 10, 64) for b of 1 to 18 ASCII digits
// (a status code), without its string; ok is false for anything else.
func digits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseTime is the instant an RFC 3339 date in a record names, as
// time.Parse and ingest read it (internal/rfc3339): a date no calendar
// has is none, not the day time.Date would move it to.
func parseTime(b []byte) (time.Time, bool) {
	t, err := rfc3339.ParseBytes(b)
	return t, err == nil
}

type parser struct {
	b []byte
	i int
	f *fields
}

var errSyntax = errors.New("record is not valid JSON")

func (p *parser) ws() {
	if p.i < len(p.b) && p.b[p.i] > ' ' {
		return // the usual case: trailguard writes no whitespace
	}
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// str reads a string at p.i (which must be '"') and returns its content;
// escaped strings are decoded into a copy. A plain loop beats
// bytes.IndexByte here: most strings of a record are short keys.
func (p *parser) str() ([]byte, error) {
	b := p.b
	start := p.i + 1
	j := start
	// Eight bytes at a time while none is a quote or a backslash.
	for j+8 <= len(b) && !quoteOrBackslash(binary.LittleEndian.Uint64(b[j:])) {
		j += 8
	}
	for ; j < len(b); j++ {
		switch b[j] {
		case '"':
			p.i = j + 1
			return b[start:j], nil
		case '\\':
			return p.escaped(start)
		}
	}
	return nil, errSyntax
}

// quoteOrBackslash reports whether any byte of w is '"' or '\\' (the
// classic has-zero-byte test on w xor each).
func quoteOrBackslash(w uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q := w ^ (lo * '"')
	bs := w ^ (lo * '\\')
	return ((q-lo)&^q|(bs-lo)&^bs)&hi != 0
}

// escaped reads a string with escapes starting at start (after its quote).
func (p *parser) escaped(start int) ([]byte, error) {
	b := p.b
	j := start
	for ; j < len(b); j++ {
		if b[j] == '\\' {
			j++ // the escaped character cannot end the string
			continue
		}
		if b[j] == '"' {
			break
		}
	}
	if j >= len(b) {
		return nil, errSyntax
	}
	p.i = j + 1
	var s string
	if err := json.Unmarshal(b[start-1:j+1], &s); err != nil {
		return nil, errSyntax
	}
	d := []byte(s)
	p.f.escaped = append(p.f.escaped, d)
	return d, nil
}

// skip skips one value of any kind.
func (p *parser) skip() error {
	p.ws()
	if p.i >= len(p.b) {
		return errSyntax
	}
	switch c := p.b[p.i]; c {
	case '"':
		_, err := p.str()
		return err
	case '{', '[':
		depth := 0
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case '"':
				if _, err := p.str(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					p.i++
					return nil
				}
			}
			p.i++
		}
		return errSyntax
	default:
		start := p.i
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r', ':':
				if p.i == start {
					return errSyntax // no value here: never loop on it
				}
				return nil
			}
			p.i++
		}
		return nil
	}
}

// object reads the object at p.i, at depth d (its path in f.stack[:d]).
func (p *parser) object(d int) error {
	p.i++ // {
	for {
		p.ws()
		if p.i >= len(p.b) {
			return errSyntax
		}
		if p.b[p.i] == '}' {
			p.i++
			return nil
		}
		if p.b[p.i] == ',' {
			p.i++
			continue
		}
		if p.b[p.i] != '"' {
			return errSyntax
		}
		key, err := p.str()
		if err != nil {
			return err
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return errSyntax
		}
		p.i++
		p.ws()
		if p.i >= len(p.b) {
			return errSyntax
		}
		if err := p.value(d, key); err != nil {
			return err
		}
	}
}

// value handles the value of key in the object at depth d.
func (p *parser) value(d int, key []byte) error {
	f := p.f
	c := p.b[p.i]
	if c == '{' {
		if d < len(f.stack) {
			if name := descend(f.stack[:d], key); name != "" {
				f.stack[d] = name
				return p.object(d + 1)
			}
		}
		return p.skip()
	}
	dst, list, num := p.slot(d, key)
	switch {
	case c == '"' && dst != nil:
		s, err := p.str()
		if err != nil {
			return err
		}
		*dst = s
		return nil
	case c == '[' && list != nil:
		return p.strings(list)
	case num != nil && (c == '-' || c >= '0' && c <= '9'):
		start := p.i
		if err := p.skip(); err != nil {
			return err
		}
		n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
		if err == nil {
			*num = n
		}
		return nil
	}
	return p.skip()
}

// strings reads an array, keeping its string elements.
func (p *parser) strings(dst *[][]byte) error {
	p.i++ // [
	for {
		p.ws()
		if p.i >= len(p.b) {
			return errSyntax
		}
		switch p.b[p.i] {
		case ']':
			p.i++
			return nil
		case ',':
			p.i++
			continue
		case '"':
			s, err := p.str()
			if err != nil {
				return err
			}
			*dst = append(*dst, s)
		default:
			if err := p.skip(); err != nil {
				return err
			}
		}
	}
}

// descend returns the name of the object at path+key if it holds wanted
// fields ("" to skip it). The names are constants, so that the path costs
// no allocation.
func descend(path []string, key []byte) string {
	switch len(path) {
	case 0:
		switch string(key) {
		case "event":
			return "event"
		case "user":
			return "user"
		case "source":
			return "source"
		case "client":
			return "client"
		case "host":
			return "host"
		case "service":
			return "service"
		case "url":
			return "url"
		case "trailguard":
			return "trailguard"
		case "http":
			return "http"
		case "rule":
			return "rule"
		case "log":
			return "log"
		}
	case 1:
		switch {
		case path[0] == "user" && string(key) == "target":
			return "target"
		case path[0] == "trailguard" && string(key) == "audit":
			return "audit"
		case path[0] == "trailguard" && string(key) == "attrs":
			return "attrs"
		case path[0] == "http" && string(key) == "response":
			return "response"
		case path[0] == "trailguard" && string(key) == "alert":
			return "alert"
		}
	case 2:
		if path[0] == "trailguard" && path[1] == "audit" && string(key) == "after" {
			return "after"
		}
		if path[0] == "trailguard" && path[1] == "alert" && string(key) == "trigger" {
			return "trigger"
		}
	}
	return ""
}

// slot returns where the value of path+key goes: a string, a list of
// strings or a number; all nil to skip it.
func (p *parser) slot(d int, key []byte) (*[]byte, *[][]byte, *int64) {
	f := p.f
	path := f.stack[:d]
	k := string(key) // no allocation: used only in comparisons
	switch len(path) {
	case 0:
		switch k {
		case "@timestamp":
			return &f.ts, nil, nil
		case event.LedgerOrigin:
			return &f.origin, nil, nil
		}
	case 1:
		switch path[0] {
		case "event":
			switch k {
			case "kind":
				return &f.kind, nil, nil
			case "action":
				return &f.action, nil, nil
			case "outcome":
				return &f.outcome, nil, nil
			case "id":
				return &f.id, nil, nil
			case "ingested":
				return &f.ingested, nil, nil
			case "dataset":
				return &f.dataset, nil, nil
			case "end":
				return &f.evEnd, nil, nil
			case "category":
				return nil, &f.cats, nil
			case "type":
				return nil, &f.types, nil
			}
		case "user":
			switch k {
			case "name":
				return &f.userName, nil, nil
			case "id":
				return &f.userID, nil, nil
			case "roles":
				return nil, &f.roles, nil
			}
		case "source":
			if k == "ip" {
				return &f.srcIP, nil, nil
			}
		case "client":
			if k == "ip" {
				return &f.cliIP, nil, nil
			}
		case "host":
			if k == "name" {
				return &f.host, nil, nil
			}
		case "service":
			if k == "name" {
				return &f.service, nil, nil
			}
		case "url":
			if k == "path" {
				return &f.path, nil, nil
			}
		case "rule":
			if k == "name" {
				return &f.ruleName, nil, nil
			}
			if k == "id" {
				return &f.alertRule, nil, nil
			}
		case "log":
			if k == "level" {
				return &f.level, nil, nil
			}
		}
	case 2:
		switch {
		case path[0] == "user" && path[1] == "target":
			switch k {
			case "name":
				return &f.targetName, nil, nil
			case "id":
				return &f.targetID, nil, nil
			}
		case path[0] == "trailguard" && path[1] == "audit":
			if k == "resource" {
				return &f.resource, nil, nil
			}
		case path[0] == "trailguard" && path[1] == "attrs":
			if k == "unrecorded" {
				return nil, nil, &f.unrecorded
			}
		case path[0] == "http" && path[1] == "response":
			if k == "status_code" {
				return nil, nil, &f.status
			}
		}
	case 3:
		if k == "status" && path[0] == "trailguard" && path[1] == "audit" && path[2] == "after" {
			return &f.afterStatus, nil, nil
		}
		if k == "index" && path[0] == "trailguard" && path[1] == "alert" && path[2] == "trigger" {
			return nil, nil, &f.trigger
		}
	}
	return nil, nil, nil
}
