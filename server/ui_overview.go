package server

// GET /v1/overview: what the UI's Overview draws, from counts kept as the
// ledger grows, so that a dashboard over millions of events answers in
// milliseconds instead of counting index rows at every refresh.
//
// A follower reads each record once, as the index does, and adds it to
// per-minute counts of five series (every event; 401 web responses;
// authorization failures; successful and failed authentications), in all
// and per service, for the last overviewDays days of event time; and, per
// hour for the last overviewTopHours hours, counts per source address and
// per user of failed authentications, from which the top lists are made.
// The series mean exactly what the same queries to /v1/stats mean
// (TestOverviewMatchesStats); the top lists cover whole hours. Ranges the
// counts do not cover are answered with "covered": false, and the UI asks
// /v1/stats instead.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/jsonscan"
	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/internal/rfc3339"
	"github.com/trailguard/trailguard/ledger"
)

const (
	overviewDays     = 31
	overviewTopHours = 25
	// overviewMaxServices bounds the services counted apart; the rest are
	// counted in all services only.
	overviewMaxServices = 256
	// overviewMaxKeys bounds the distinct addresses and users kept per
	// hour (~60 MB at most for both over overviewTopHours); an hour that
	// reaches it has incomplete top lists, and the answer says so.
	overviewMaxKeys = 20000
)

// The series, in the order of the answer's names.
const (
	serEvents = iota
	ser401
	serAuthzFail
	serAuthOK
	serAuthFail
	nSeries
)

var seriesNames = [nSeries]string{"events", "http_401", "authz_fail", "auth_success", "auth_failure"}

// seriesQueries are the /v1/stats queries each series answers for.
var seriesQueries = [nSeries]string{"", "event.category:web and http.response.status_code:401", "event.action:authz_fail",
	"event.category:authentication and event.outcome:success", "event.category:authentication and event.outcome:failure"}

type counts [nSeries]uint32

type minuteCounts struct {
	all   counts
	bySvc map[uint16]*counts
}

type hourTops struct {
	src, failUser map[string]uint32
	full          bool // reached overviewMaxKeys: its top lists are incomplete
}

// overviewRollup is the follower's state.
type overviewRollup struct {
	mu       sync.RWMutex
	minutes  map[int64]*minuteCounts // unix minute → counts
	hours    map[int64]*hourTops     // unix hour → counts per value
	services map[string]uint16       // service name → slot (from 1)
	names    []string                // slot-1 → name
	next     uint64                  // next ledger index to read
	readyAt  uint64                  // the ledger size when following began
	ready    bool
	lastTrim time.Time
	// The minute and hour add counted in last, kept out of the maps'
	// lookups while records of one minute follow each other (nil after a
	// trim or a load, which change the maps).
	lastMin, lastHr int64
	lastM           *minuteCounts
	lastH           *hourTops
	// The service add counted in last within lastSvcM, kept out of the
	// services' and the minute's maps while a shipper's records of one
	// service follow each other (two map lookups were half of add's time
	// under ingest load; nil after a trim or a load).
	lastSvcM    *minuteCounts
	lastSvcName string
	lastSvc     *counts
	now         func() time.Time
	path        string // where the counts are saved ("" not at all)
	loaded      uint64 // the ledger index the saved counts ended at
	// pace: once caught up, wait this long before following again
	// (Config.FollowerPace; 0: at every commit).
	pace time.Duration
}

func newOverviewRollup(path string) *overviewRollup {
	return &overviewRollup{path: path, minutes: map[int64]*minuteCounts{}, hours: map[int64]*hourTops{}, services: map[string]uint16{}, now: time.Now}
}

// overviewSaveEvery is how often the counts are saved, so that a restart
// reads only the records appended since instead of the whole ledger.
const overviewSaveEvery = time.Minute

// follow reads the ledger, from where the saved counts end (or its oldest
// record), until ctx ends or the ledger closes, saving the counts now and
// then.
func (o *overviewRollup) follow(ctx context.Context, l *ledger.Ledger) {
	from := l.Pruned()
	if next, ok := o.load(l.Size()); ok {
		from = max(from, next)
	}
	o.mu.Lock()
	o.next, o.readyAt = from, l.Size()
	o.ready = o.readyAt <= from
	o.mu.Unlock()
	done := make(chan struct{})
	defer close(done)
	if o.path != "" {
		go func() {
			t := time.NewTicker(overviewSaveEvery)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					o.save()
				}
			}
		}()
	}
	var x overviewFields
	// The clock is read once per nowEvery records, and again for a record
	// appended after the last reading (so one that arrives after a wait
	// is judged by a fresh clock): time.Now per record was a fifth of the
	// rollup's CPU under ingest load. A reading is stale by at most the
	// work of nowEvery records: the windows it decides are a day and more.
	var now time.Time
	sinceNow := nowEvery
	for e, err := range l.FollowAppended(ctx, from) {
		if err != nil {
			return // stopped, or the ledger closed
		}
		// Outside the lock: the slow part (unless ingest located the
		// fields already).
		if sps, ok := e.Aux.([]event.Spans); ok && e.AuxPos < len(sps) && sps[e.AuxPos].OK() {
			x.extractSpans(e.Data, &sps[e.AuxPos])
		} else {
			x.extract(e.Data)
		}
		if sinceNow++; sinceNow >= nowEvery || e.Time.After(now) {
			now, sinceNow = o.now(), 0
		}
		// Whether it caught up is decided before its position is
		// published: decided after, a commit in between (a descheduled
		// follower) let it follow at once, though it had been seen
		// caught up (TestOverviewPaced).
		pause := o.pace > 0 && e.Index+1 >= l.Size()
		o.mu.Lock()
		o.add(&x, e.Time, now)
		o.next = e.Index + 1
		if o.next >= o.readyAt {
			o.ready = true
		}
		o.mu.Unlock()
		if pause && !sleepCtx(ctx, o.pace) {
			return
		}
	}
}

// sleepCtx waits d, or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// overviewFile is the saved form of the counts.
type overviewFile struct {
	Version int                       `json:"version"`
	Next    uint64                    `json:"next"`
	Minutes map[int64]overviewMinute  `json:"minutes"`
	Hours   map[int64]overviewHourTop `json:"hours"`
}

type overviewMinute struct {
	All counts            `json:"all"`
	Svc map[string]counts `json:"svc,omitempty"`
}

type overviewHourTop struct {
	Src      map[string]uint32 `json:"src"`
	FailUser map[string]uint32 `json:"fail_user"`
	Full     bool              `json:"full,omitempty"`
}

// save writes the counts to o.path (atomically: a crash leaves the old
// file or the new one).
func (o *overviewRollup) save() error {
	o.mu.RLock()
	f := overviewFile{Version: 1, Next: o.next, Minutes: make(map[int64]overviewMinute, len(o.minutes)), Hours: make(map[int64]overviewHourTop, len(o.hours))}
	for k, m := range o.minutes {
		om := overviewMinute{All: m.all}
		if len(m.bySvc) > 0 {
			om.Svc = make(map[string]counts, len(m.bySvc))
			for slot, c := range m.bySvc {
				om.Svc[o.names[slot-1]] = *c
			}
		}
		f.Minutes[k] = om
	}
	for k, h := range o.hours {
		f.Hours[k] = overviewHourTop{Src: maps.Clone(h.src), FailUser: maps.Clone(h.failUser), Full: h.full}
	}
	o.mu.RUnlock()
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	tmp := o.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("overview: save: %w", err)
	}
	return os.Rename(tmp, o.path)
}

// maxOverviewFile bounds the saved counts read back: they cover a bounded
// window of minutes and hours, some hundreds of KB.
const maxOverviewFile = 64 << 20

// load reads the saved counts; ok is false (and nothing is loaded) when
// there are none or they cannot belong to this ledger (they end beyond it).
func (o *overviewRollup) load(size uint64) (next uint64, ok bool) {
	if o.path == "" {
		return 0, false
	}
	// A regular file of at most maxOverviewFile bytes (regfile): a FIFO
	// planted at the name would hang the collector's start, a link to
	// /dev/zero take all its memory. Anything else is rebuilt.
	b, err := regfile.Read(o.path, maxOverviewFile)
	if err != nil {
		return 0, false
	}
	var f overviewFile
	if json.Unmarshal(b, &f) != nil || f.Version != 1 || f.Next > size {
		return 0, false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lastM, o.lastH, o.lastSvcM, o.lastSvc = nil, nil, nil, nil
	for k, om := range f.Minutes {
		m := &minuteCounts{all: om.All}
		for name, c := range om.Svc {
			if slot := o.slot([]byte(name)); slot != 0 {
				if m.bySvc == nil {
					m.bySvc = map[uint16]*counts{}
				}
				cc := c
				m.bySvc[slot] = &cc
			}
		}
		o.minutes[k] = m
	}
	for k, h := range f.Hours {
		if h.Src == nil {
			h.Src = map[string]uint32{}
		}
		if h.FailUser == nil {
			h.FailUser = map[string]uint32{}
		}
		o.hours[k] = &hourTops{src: h.Src, failUser: h.FailUser, full: h.Full}
	}
	o.loaded = f.Next
	return f.Next, true
}

// loadedUpTo is the ledger index the saved counts read at start-up ended
// at (0 until they are loaded, or when there were none).
func (o *overviewRollup) loadedUpTo() uint64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.loaded
}

// caughtUp is the next ledger index the follower will read.
func (o *overviewRollup) caughtUp() uint64 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.next
}

// time is the event's @timestamp, or appended when it has none that
// parses.
func (x *overviewFields) time(appended time.Time) time.Time {
	if x.ts != nil {
		if x.hasTS {
			return time.Unix(0, x.tsNanos).UTC()
		}
		if p, err := rfc3339.ParseBytes(x.ts); err == nil {
			return p
		}
	}
	return appended
}

// nowEvery is how many records follow counts with one reading of the
// clock at most.
const nowEvery = 256

// add counts a record appended at appended, now being the time.
func (o *overviewRollup) add(x *overviewFields, appended, now time.Time) {
	t := x.time(appended)
	if now.Sub(o.lastTrim) > time.Minute {
		o.trim(now)
	}
	if t.Before(now.Add(-overviewDays*24*time.Hour)) || t.After(now.Add(24*time.Hour)) {
		return
	}
	var c counts
	c[serEvents] = 1
	web, auth := false, false
	for _, cat := range x.category {
		web = web || string(cat) == "web"
		auth = auth || string(cat) == "authentication"
	}
	if web && x.status == 401 {
		c[ser401] = 1
	}
	if string(x.action) == "authz_fail" {
		c[serAuthzFail] = 1
	}
	if auth && string(x.outcome) == "success" {
		c[serAuthOK] = 1
	}
	failed := auth && string(x.outcome) == "failure"
	if failed {
		c[serAuthFail] = 1
	}
	min := t.Unix() / 60
	if t.Unix() < 0 && t.Unix()%60 != 0 {
		min--
	}
	m := o.lastM
	if m == nil || o.lastMin != min {
		if m = o.minutes[min]; m == nil {
			m = &minuteCounts{}
			o.minutes[min] = m
		}
		o.lastMin, o.lastM = min, m
	}
	addCounts(&m.all, &c)
	if x.service != nil {
		if o.lastSvc != nil && o.lastSvcM == m && string(x.service) == o.lastSvcName {
			addCounts(o.lastSvc, &c)
		} else if svc := o.slot(x.service); svc != 0 {
			if m.bySvc == nil {
				m.bySvc = map[uint16]*counts{}
			}
			sc := m.bySvc[svc]
			if sc == nil {
				sc = &counts{}
				m.bySvc[svc] = sc
			}
			addCounts(sc, &c)
			o.lastSvcM, o.lastSvcName, o.lastSvc = m, o.names[svc-1], sc
		}
	}
	if now.Sub(t) > overviewTopHours*time.Hour {
		return
	}
	hr := min / 60
	h := o.lastH
	if h == nil || o.lastHr != hr {
		if h = o.hours[hr]; h == nil {
			h = &hourTops{src: map[string]uint32{}, failUser: map[string]uint32{}}
			o.hours[hr] = h
		}
		o.lastHr, o.lastH = hr, h
	}
	bump := func(m map[string]uint32, v []byte) {
		if c, ok := m[string(v)]; ok { // no allocation for a known value
			m[string(v)] = c + 1
			return
		}
		if len(m) >= overviewMaxKeys {
			h.full = true
			return
		}
		m[string(v)] = 1
	}
	if x.sourceIP != nil {
		bump(h.src, x.sourceIP)
	}
	if failed && x.userName != nil {
		bump(h.failUser, x.userName)
	}
}

func addCounts(dst, c *counts) {
	for i := range dst {
		dst[i] += c[i]
	}
}

// slot is a service's number (0 when there are too many services).
func (o *overviewRollup) slot(b []byte) uint16 {
	if s, ok := o.services[string(b)]; ok {
		return s // (a lookup by string(b) copies nothing)
	}
	if len(o.names) >= overviewMaxServices {
		return 0
	}
	name := string(b)
	o.names = append(o.names, name)
	s := uint16(len(o.names))
	o.services[name] = s
	return s
}

// trim forgets minutes and hours that fell out of the windows.
func (o *overviewRollup) trim(now time.Time) {
	o.lastTrim = now
	o.lastM, o.lastH, o.lastSvcM, o.lastSvc = nil, nil, nil, nil
	oldMin := now.Add(-overviewDays*24*time.Hour).Unix()/60 - 1
	for k := range o.minutes {
		if k < oldMin {
			delete(o.minutes, k)
		}
	}
	oldHour := now.Add(-overviewTopHours*time.Hour).Unix()/3600 - 1
	for k := range o.hours {
		if k < oldHour {
			delete(o.hours, k)
		}
	}
}

// overviewFields are the fields of a record the rollup counts by, as
// slices of the record (strings unescaped only when they hold escapes).
type overviewFields struct {
	ts, action, outcome, service, sourceIP, userName []byte
	category                                         [][]byte
	status                                           int64
	path                                             []byte // the dotted path being read
	// tsNanos is @timestamp as ingest parsed it (event.Spans.Timestamp),
	// when hasTS: add need not parse ts again.
	tsNanos int64
	hasTS   bool
}

// wanted are the dotted paths extract keeps.
const (
	pTimestamp = iota + 1
	pCategory
	pAction
	pOutcome
	pStatus
	pService
	pSourceIP
	pUserName
)

// wantedPath is the field a dotted path holds (0: none). A switch on the
// bytes, not a map: extract asks for every key of every record, and
// hashing the paths was a third of its time.
func wantedPath(p []byte) int {
	switch string(p) {
	case "@timestamp":
		return pTimestamp
	case "event.category":
		return pCategory
	case "event.action":
		return pAction
	case "event.outcome":
		return pOutcome
	case "http.response.status_code":
		return pStatus
	case "service.name":
		return pService
	case "source.ip":
		return pSourceIP
	case "user.name":
		return pUserName
	}
	return 0
}

// wantedPrefix reports whether extract descends into the object at p.
func wantedPrefix(p []byte) bool {
	switch string(p) {
	case "event", "http", "http.response", "service", "source", "user":
		return true
	}
	return false
}

// extract reads the wanted fields of a JSON object in one pass, without
// allocating for records whose strings hold no escapes. Anything it cannot
// read leaves the fields it did not reach unset (the record still counts
// as an event), as a record the index cannot read is still a record.
func (x *overviewFields) extract(data []byte) {
	*x = overviewFields{category: x.category[:0], path: x.path[:0], status: -1}
	s := jscan{b: data}
	s.ws()
	if !s.eat('{') {
		return
	}
	s.object(x, 0)
}

// overviewSpans are the wanted fields' numbers in event.Spans.
var overviewSpans = func() (ws [8]struct{ p, f int }) {
	for i, name := range []string{"@timestamp", "event.category", "event.action", "event.outcome",
		"http.response.status_code", "service.name", "source.ip", "user.name"} {
		if wantedPath([]byte(name)) != i+1 {
			panic("server: overviewSpans out of order at " + name)
		}
		ws[i].p, ws[i].f = i+1, event.SpanField(name)
		if ws[i].f < 0 {
			panic("server: overview field " + name + " has no event.Spans number")
		}
	}
	return ws
}()

// extractSpans is extract for a record sp describes (one object, each
// field at most once): it reads the wanted fields' values where sp says
// they are, as extract reads them (TestOverviewSpans, FuzzOverviewSpans).
func (x *overviewFields) extractSpans(data []byte, sp *event.Spans) {
	*x = overviewFields{category: x.category[:0], path: x.path[:0], status: -1}
	for _, w := range overviewSpans {
		tok := sp.Token(data, w.f)
		if len(tok) == 0 {
			continue
		}
		s := jscan{b: tok}
		switch c := tok[0]; {
		case c == '"' && w.p != pStatus && sp.Plain(w.f) && len(tok) >= 2:
			// No escapes, printable ASCII: the value is between the quotes,
			// as str finds it.
			x.set(w.p, tok[1:len(tok)-1:len(tok)-1])
		case c == '"' && w.p != pStatus:
			if v, ok := s.str(x); ok {
				x.set(w.p, v)
			}
		case c == '[' && w.p == pCategory:
			s.category(x)
		case w.p == pStatus && (c == '-' || c >= '0' && c <= '9'):
			if n, err := strconv.ParseInt(string(tok), 10, 64); err == nil {
				x.status = n
			}
		}
	}
	if x.ts != nil {
		x.tsNanos, x.hasTS = sp.Timestamp()
	}
}

type jscan struct {
	b   []byte
	i   int
	bad bool
}

func (s *jscan) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *jscan) eat(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// object reads the members of an object whose '{' was read; x.path holds
// the object's dotted path.
func (s *jscan) object(x *overviewFields, depth int) {
	if depth > 8 {
		s.bad = true
		return
	}
	base := len(x.path)
	if s.eat('}') {
		return
	}
	for !s.bad {
		s.ws()
		key, ok := s.str(x)
		if !ok || !s.eat(':') {
			s.bad = true
			return
		}
		x.path = x.path[:base]
		if base > 0 {
			x.path = append(x.path, '.')
		}
		x.path = append(x.path, key...)
		s.ws()
		if s.i >= len(s.b) {
			s.bad = true
			return
		}
		p := wantedPath(x.path)
		switch c := s.b[s.i]; {
		case c == '{' && wantedPrefix(x.path):
			s.i++
			s.object(x, depth+1)
		case c == '"' && p != 0 && p != pStatus:
			v, ok := s.str(x)
			if !ok {
				s.bad = true
				return
			}
			x.set(p, v)
		case c == '[' && p == pCategory:
			if !s.category(x) {
				s.bad = true
				return
			}
		case p == pStatus && (c == '-' || c >= '0' && c <= '9'):
			start := s.i
			s.skip(0)
			if n, err := strconv.ParseInt(string(bytes.TrimSpace(s.b[start:s.i])), 10, 64); err == nil && x.status < 0 {
				x.status = n
			}
		default:
			s.skip(0)
		}
		x.path = x.path[:base]
		if s.eat(',') {
			continue
		}
		if !s.eat('}') {
			s.bad = true
		}
		return
	}
}

func (x *overviewFields) set(p int, v []byte) {
	at := func(dst *[]byte) {
		if *dst == nil { // the first of repeated keys
			*dst = v
		}
	}
	switch p {
	case pTimestamp:
		at(&x.ts)
	case pCategory:
		x.category = append(x.category, v)
	case pAction:
		at(&x.action)
	case pOutcome:
		at(&x.outcome)
	case pService:
		at(&x.service)
	case pSourceIP:
		at(&x.sourceIP)
	case pUserName:
		at(&x.userName)
	}
}

// category reads the array of strings at s.i ('[') into x.category. It
// reports false when a member that starts as a string cannot be read as
// one; other members are skipped.
func (s *jscan) category(x *overviewFields) bool {
	s.i++
	for !s.bad && !s.eat(']') {
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == '"' {
			v, ok := s.str(x)
			if !ok {
				return false
			}
			x.category = append(x.category, v)
		} else {
			s.skip(0)
		}
		if !s.eat(',') {
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] != ']' {
				s.bad = true
			}
		}
	}
	return true
}

// str reads a JSON string at the current position: a slice of the input,
// or, if it holds escapes, its unescaped copy.
func (s *jscan) str(x *overviewFields) ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	start := s.i + 1
	j := start
	ascii := true
	// Eight plain bytes (printable ASCII, no quote or backslash) at a time.
	for j+8 <= len(s.b) && event.Plain8(binary.LittleEndian.Uint64(s.b[j:])) {
		j += 8
	}
	for j < len(s.b) && s.b[j] != '"' && s.b[j] != '\\' {
		ascii = ascii && s.b[j] < utf8.RuneSelf
		j++
	}
	if j < len(s.b) && s.b[j] == '"' && (ascii || utf8.Valid(s.b[start:j])) {
		s.i = j + 1
		return s.b[start:j:j], true
	}
	// Escapes, or invalid UTF-8: read the string as encoding/json (and so
	// the index) reads it.
	k := j
	for k < len(s.b) {
		if s.b[k] == '\\' {
			k += 2
			continue
		}
		if s.b[k] == '"' {
			break
		}
		k++
	}
	if k >= len(s.b) {
		return nil, false
	}
	v, ok := jsonscan.AppendText(nil, s.b[start:k])
	if !ok {
		return nil, false
	}
	s.i = k + 1
	return v, true
}

// skip passes over one JSON value.
func (s *jscan) skip(depth int) {
	s.ws()
	if s.i >= len(s.b) || depth > 64 {
		s.bad = true
		return
	}
	switch s.b[s.i] {
	case '"':
		var dummy overviewFields
		if _, ok := s.str(&dummy); !ok {
			s.bad = true
		}
	case '{', '[':
		open, close := s.b[s.i], byte('}')
		if open == '[' {
			close = ']'
		}
		s.i++
		if s.eat(close) {
			return
		}
		for !s.bad {
			if open == '{' {
				s.ws()
				var dummy overviewFields
				if _, ok := s.str(&dummy); !ok || !s.eat(':') {
					s.bad = true
					return
				}
			}
			s.skip(depth + 1)
			if s.eat(',') {
				continue
			}
			if !s.eat(close) {
				s.bad = true
			}
			return
		}
	default:
		start := s.i
		for s.i < len(s.b) && !isJSONDelim(s.b[s.i]) {
			s.i++
		}
		if s.i == start { // not a value: a stray delimiter
			s.bad = true
		}
	}
}

func isJSONDelim(c byte) bool {
	return c == ',' || c == '}' || c == ']' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ':'
}

// overviewSeries is one series of an answer.
type overviewSeries struct {
	Start  time.Time `json:"start"`
	Counts []uint32  `json:"counts"`
}

type overviewTop struct {
	Value string `json:"value"`
	Count uint64 `json:"count"`
}

// answer sums the counts into buckets of interval over [from, to) (the rate
// series from `warm` earlier), for one service or all (""), with top lists
// over the whole hours around [from, to) when they are kept.
func (o *overviewRollup) answer(from, to time.Time, interval, warm time.Duration, service string, n int) (map[string]any, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	now := o.now()
	if !o.ready || from.Before(now.Add(-overviewDays*24*time.Hour).Add(warm)) {
		return map[string]any{"covered": false, "ready": o.ready, "following": o.next, "catching_up_to": o.readyAt}, false
	}
	if from.Unix()%60 != 0 || to.Unix()%60 != 0 || warm%time.Minute != 0 || from.Nanosecond() != 0 || to.Nanosecond() != 0 {
		return map[string]any{"covered": false, "reason": "from, to and warm must be whole minutes"}, false
	}
	var svc uint16
	if service != "" {
		var ok bool
		if svc, ok = o.services[service]; !ok {
			if len(o.names) >= overviewMaxServices {
				return map[string]any{"covered": false, "reason": "too many services to count apart"}, false
			}
			svc = 0xffff // no such service: zeros
		}
	}
	iv := int64(interval / time.Minute)
	series := map[string]overviewSeries{}
	for si := range nSeries {
		start := from
		if si == ser401 || si == serAuthzFail {
			start = from.Add(-warm)
		}
		first := floorDiv(start.Unix(), 60)
		b0 := floorDiv(first, iv) * iv // buckets aligned as /v1/stats aligns them
		end := floorDiv(to.Unix(), 60) // minutes before this one are in
		out := make([]uint32, 0, (end-b0)/iv+1)
		for b := b0; b < end; b += iv {
			var sum uint32
			for m := max(b, first); m < min(b+iv, end); m++ {
				mc := o.minutes[m]
				if mc == nil {
					continue
				}
				if service == "" {
					sum += mc.all[si]
				} else if sc := mc.bySvc[svc]; sc != nil {
					sum += sc[si]
				}
			}
			out = append(out, sum)
		}
		series[seriesNames[si]] = overviewSeries{Start: time.Unix(b0*60, 0).UTC(), Counts: out}
	}
	svcs := make([]string, len(o.names))
	copy(svcs, o.names)
	slices.Sort(svcs)
	res := map[string]any{"covered": true, "from": from.UTC(), "to": to.UTC(), "interval": shortDuration(interval), "series": series,
		"services": svcs, "queries": seriesQueries, "indexed_through": o.next}
	// Top lists over the whole hours around the range, if all are kept
	// (for all services: a service's top lists come from /v1/stats).
	h0, h1 := floorDiv(from.Unix(), 3600), floorDiv(to.Unix()-1, 3600)
	if service == "" && now.Sub(time.Unix(h0*3600, 0)) <= overviewTopHours*time.Hour {
		src, users := map[string]uint64{}, map[string]uint64{}
		complete := true
		for hr := h0; hr <= h1; hr++ {
			h := o.hours[hr]
			if h == nil {
				continue
			}
			complete = complete && !h.full
			for k, c := range h.src {
				src[k] += uint64(c)
			}
			for k, c := range h.failUser {
				users[k] += uint64(c)
			}
		}
		res["tops"] = map[string]any{"from": time.Unix(h0*3600, 0).UTC(), "to": time.Unix((h1+1)*3600, 0).UTC(), "complete": complete,
			"source_ip": topN(src, n), "failing_users": topN(users, n)}
	}
	return res, true
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func topN(m map[string]uint64, n int) []overviewTop {
	out := make([]overviewTop, 0, len(m))
	for v, c := range m {
		out = append(out, overviewTop{v, c})
	}
	slices.SortFunc(out, func(a, b overviewTop) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Value, b.Value))
	})
	return out[:min(n, len(out))]
}

// handleOverview is GET /v1/overview?from=&to=&interval=&warm=&service=&n=:
// from and to are whole minutes (RFC 3339); without to, the range ends with
// the current minute, and a from of 24h (the default) reaches back from there.
func (s *Server) handleOverview(w http.ResponseWriter, r *http.Request) {
	s.StartOverview() // Config.OverviewOnDemand: the first request starts the counting
	p, ok := s.startRead(w, r, "from", "to", "interval", "warm", "service", "n")
	if !ok {
		return
	}
	now := time.Now()
	from, to, err := p.timeRange(now)
	if err == nil && to.IsZero() {
		// Up to now means up to the end of this minute: the counts are
		// per minute.
		to = now.Truncate(time.Minute).Add(time.Minute)
	}
	if d, derr := time.ParseDuration(p.get("from")); err == nil && (p.get("from") == "" || derr == nil) {
		if p.get("from") == "" {
			d = 24 * time.Hour
		}
		from = to.Add(-d) // "24h" back from the end
	}
	if err == nil && !to.After(from) {
		err = badParam("from", "not before to")
	}
	interval, warm, n := time.Minute, time.Duration(0), 10
	if err == nil && p.get("interval") != "" {
		interval, err = time.ParseDuration(p.get("interval"))
		if err != nil || interval < time.Minute || interval%time.Minute != 0 || to.Sub(from)/interval > 10000 {
			err = badParam("interval", "want whole minutes (1m, 10m, 1h), at most 10,000 buckets over the range, got %q", p.get("interval"))
		}
	}
	if err == nil && p.get("warm") != "" {
		warm, err = time.ParseDuration(p.get("warm"))
		if err != nil || warm < 0 || warm > 7*24*time.Hour {
			err = badParam("warm", "want a duration up to 168h, got %q", p.get("warm"))
		}
	}
	if err == nil && p.get("n") != "" {
		n, err = p.positive("n", 100)
	}
	if err != nil {
		s.readError(w, err)
		return
	}
	recordRead(r, "overview", nil)
	res, _ := s.ui.overview.answer(from, to, interval, warm, p.get("service"), n)
	writeReadJSON(w, http.StatusOK, res)
}
