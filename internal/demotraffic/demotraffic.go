// Package demotraffic replays the demo's mixed traffic at any volume, for
// storage and ingest benchmarks: the 610 events one run of `trailguard
// demo` left in its trail (access events, failed and successful logins,
// authorization failures, validation errors, sensitive operations, the
// application's own logs, the attacker's probes; ~750 bytes of JSON each),
// cycled in order with fresh event and request ids, times, source ports and
// client addresses. Events of one request keep sharing their request id,
// port and address, as the demo wrote them.
//
// The events were made by (trail files in DIR/trail):
//
//	go run ./cmd/trailguard demo --data DIR
//	cat DIR/trail/trail-*.jsonl DIR/trail/trail.jsonl | gzip -9n > internal/demotraffic/demo-events.ndjson.gz
package demotraffic

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"time"
)

//go:embed demo-events.ndjson.gz
var eventsGz []byte

// A slot is where a template holds one of the values replaced.
type slot int

const (
	slotTime slot = iota
	slotEventID
	slotRequestID
	slotPort
	slotClientIP
)

type part struct {
	lit  []byte
	slot slot // after lit; -1 for none
	key  string
}

type template struct{ parts []part }

// Generator makes events. It is not safe for concurrent use.
type Generator struct {
	tmpls []template
	rng   *rand.Rand
	now   time.Time
	step  time.Duration
	i     int
	// per cycle: the demo's request ids and client addresses → fresh ones
	reqs  map[string]req
	addrs map[string]string
}

type req struct {
	id   string
	port int
}

// Templates returns the demo's events as it wrote them.
func Templates() [][]byte {
	zr, err := gzip.NewReader(bytes.NewReader(eventsGz))
	if err != nil {
		panic(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		panic(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// New returns a generator whose events start at start and are step apart
// (with random nanoseconds), seeded for repeatable runs.
func New(seed uint64, start time.Time, step time.Duration) *Generator {
	g := &Generator{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: start, step: step}
	for _, line := range Templates() {
		g.tmpls = append(g.tmpls, parse(line))
	}
	return g
}

// parse cuts an event at the values the replay changes.
func parse(line []byte) template {
	var e struct {
		Timestamp string `json:"@timestamp"`
		Event     struct {
			ID string `json:"id"`
		} `json:"event"`
		HTTP struct {
			Request struct {
				ID string `json:"id"`
			} `json:"request"`
		} `json:"http"`
		Source struct {
			Port int `json:"port"`
		} `json:"source"`
		Client struct {
			IP string `json:"ip"`
		} `json:"client"`
	}
	if err := json.Unmarshal(line, &e); err != nil {
		panic(err)
	}
	type find struct {
		needle string
		slot   slot
		key    string
	}
	finds := []find{
		{`"@timestamp":"` + e.Timestamp + `"`, slotTime, ""},
		{`"id":"` + e.Event.ID + `"`, slotEventID, ""},
	}
	if e.HTTP.Request.ID != "" {
		finds = append(finds, find{`"id":"` + e.HTTP.Request.ID + `"`, slotRequestID, e.HTTP.Request.ID})
	}
	if e.Source.Port != 0 {
		finds = append(finds, find{`"port":` + strconv.Itoa(e.Source.Port), slotPort, e.HTTP.Request.ID})
	}
	if e.Client.IP != "" {
		finds = append(finds, find{`"client":{"ip":"` + e.Client.IP + `"`, slotClientIP, e.Client.IP})
	}
	var t template
	rest := line
	for len(rest) > 0 {
		best, at := -1, len(rest)
		for k, f := range finds {
			if i := bytes.Index(rest, []byte(f.needle)); i >= 0 && i < at {
				best, at = k, i
			}
		}
		if best < 0 {
			t.parts = append(t.parts, part{lit: rest, slot: -1})
			break
		}
		f := finds[best]
		t.parts = append(t.parts, part{lit: rest[:at], slot: f.slot, key: f.key})
		rest = rest[at+len(f.needle):]
		finds = append(finds[:best], finds[best+1:]...)
	}
	return t
}

// Next appends the next event (one line of JSON, no newline) to dst.
func (g *Generator) Next(dst []byte) []byte {
	k := g.i % len(g.tmpls)
	if k == 0 {
		g.reqs, g.addrs = map[string]req{}, map[string]string{}
	}
	g.i++
	g.now = g.now.Add(g.step)
	ts := g.now.Add(time.Duration(g.rng.IntN(int(max(g.step, 1)))))
	for _, p := range g.tmpls[k].parts {
		dst = append(dst, p.lit...)
		switch p.slot {
		case slotTime:
			dst = append(dst, `"@timestamp":"`...)
			dst = ts.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000000Z")
			dst = append(dst, '"')
		case slotEventID:
			dst = append(dst, `"id":"`...)
			dst = g.uuid7(dst, ts)
			dst = append(dst, '"')
		case slotRequestID:
			dst = append(dst, `"id":"`...)
			dst = append(dst, g.request(p.key, ts).id...)
			dst = append(dst, '"')
		case slotPort:
			dst = append(dst, `"port":`...)
			dst = strconv.AppendInt(dst, int64(g.request(p.key, ts).port), 10)
		case slotClientIP:
			a, ok := g.addrs[p.key]
			if !ok {
				// Fresh addresses from TEST-NET-2/3 and benchmarking
				// space, as many as the demo had.
				a = fmt.Sprintf("198.%d.%d.%d", 18+g.rng.IntN(2), g.rng.IntN(256), 1+g.rng.IntN(254))
				g.addrs[p.key] = a
			}
			dst = append(dst, `"client":{"ip":"`...)
			dst = append(dst, a...)
			dst = append(dst, '"')
		}
	}
	return dst
}

// request returns the fresh request id and source port standing for the
// demo's request old in this cycle.
func (g *Generator) request(old string, ts time.Time) req {
	if r, ok := g.reqs[old]; ok && old != "" {
		return r
	}
	r := req{id: string(g.uuid7(nil, ts)), port: 1024 + g.rng.IntN(64512)}
	g.reqs[old] = r
	return r
}

// uuid7 appends a UUIDv7 for time ts.
func (g *Generator) uuid7(dst []byte, ts time.Time) []byte {
	var b [16]byte
	ms := uint64(ts.UnixMilli())
	for i := range 6 {
		b[i] = byte(ms >> (40 - 8*i))
	}
	r1, r2 := g.rng.Uint64(), g.rng.Uint64()
	b[6], b[7] = byte(r1), byte(r1>>8)
	for i := range 8 {
		b[8+i] = byte(r2 >> (8 * i))
	}
	b[6] = 0x70 | b[6]&0x0f
	b[8] = 0x80 | b[8]&0x3f
	const hex = "0123456789abcdef"
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hex[c>>4], hex[c&15])
	}
	return dst
}
