package index

import (
	"database/sql/driver"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"time"

	"modernc.org/sqlite"

	"github.com/trailguard/trailguard/ledger"
)

const (
	insertCols = `INSERT INTO events(idx, ts, event_id, action, outcome, kind, dataset, category,
	request_id, method, url_path, status, source_ip, source_ipb, client_ip, client_ipb,
	user_id, user_name, user_agent, service, host, duration, raw) VALUES `
	numCols     = 23
	insertGroup = 64
)

// insertSQLRows is an INSERT of n rows.
func insertSQLRows(n int) string {
	one := "(" + strings.Repeat("?,", numCols-1) + "?)"
	return insertCols + strings.Repeat(one+",", n-1) + one
}

// doc is the part of an encoded event (event/encode.go) that has columns.
// The encoder writes these fields nested; fields in dotted form
// ({"user.name":…}) are not read into columns (they are still searchable
// through the raw JSON as non-column fields are).
type doc struct {
	Timestamp string `json:"@timestamp"`
	Event     struct {
		ID       string   `json:"id"`
		Action   string   `json:"action"`
		Outcome  string   `json:"outcome"`
		Kind     string   `json:"kind"`
		Dataset  string   `json:"dataset"`
		Category []string `json:"category"`
		Duration *int64   `json:"duration"`
	} `json:"event"`
	HTTP struct {
		Request struct {
			ID     string `json:"id"`
			Method string `json:"method"`
		} `json:"request"`
		Response struct {
			StatusCode *int64 `json:"status_code"`
		} `json:"response"`
	} `json:"http"`
	URL struct {
		Path string `json:"path"`
	} `json:"url"`
	Source struct {
		IP string `json:"ip"`
	} `json:"source"`
	Client struct {
		IP string `json:"ip"`
	} `json:"client"`
	User struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"user"`
	UserAgent struct {
		Original string `json:"original"`
	} `json:"user_agent"`
	Service struct {
		Name string `json:"name"`
	} `json:"service"`
	Host struct {
		Name string `json:"name"`
	} `json:"host"`
}

// row is the column values of one record.
type row struct {
	idx uint64
	ts  int64
	d   doc
	raw string
}

// rec is one record ready to insert: its ledger index and column values.
// Records are decoded into recs off the writer's path (see Run).
type rec struct {
	idx  uint64
	vals [numCols]any
}

// decode extracts the columns of a ledger entry.
func decode(e ledger.Entry) rec {
	var r row
	r.fill(e)
	out := rec{idx: e.Index}
	r.args(out.vals[:0])
	return out
}

// fill extracts the columns of e. A record that is not a JSON object is
// still indexed, as a JSON string holding its bytes, at its append time.
func (r *row) fill(e ledger.Entry) {
	r.idx = e.Index
	r.d = doc{}
	r.ts = e.Time.UnixNano()
	r.raw = string(e.Data)
	var syn *json.SyntaxError
	if err := json.Unmarshal(e.Data, &r.d); errors.As(err, &syn) || firstByte(e.Data) != '{' {
		b, _ := json.Marshal(r.raw)
		r.raw = string(b)
		r.d = doc{}
		return
	}
	// A typed field of the wrong JSON type leaves its column empty; the
	// raw JSON stays queryable.
	if t, err := time.Parse(time.RFC3339Nano, r.d.Timestamp); err == nil {
		r.ts = clampNanos(t)
	}
}

func firstByte(b []byte) byte {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c
		}
	}
	return 0
}

func (r *row) args(v []any) []any {
	d := &r.d
	v = append(v, int64(r.idx), r.ts, str(d.Event.ID), str(d.Event.Action), str(d.Event.Outcome), str(d.Event.Kind),
		str(d.Event.Dataset), str(strings.Join(d.Event.Category, ",")), str(d.HTTP.Request.ID), str(d.HTTP.Request.Method),
		str(d.URL.Path), intp(d.HTTP.Response.StatusCode), str(d.Source.IP), ipBlob(d.Source.IP), str(d.Client.IP),
		ipBlob(d.Client.IP), str(d.User.ID), str(d.User.Name), str(d.UserAgent.Original), str(d.Service.Name),
		str(d.Host.Name), intp(d.Event.Duration), r.raw)
	return v
}

// str stores an absent (empty) string as NULL, as the encoder omits it.
func str(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func intp(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

// ipBlob is the sortable form of an address: 16 bytes, IPv4 as
// IPv4-mapped IPv6, so that a CIDR network is a contiguous range.
func ipBlob(s string) any {
	if s == "" {
		return nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil
	}
	b := a.Unmap().WithZone("").As16()
	return b[:]
}

func clampNanos(t time.Time) int64 {
	switch {
	case t.Before(minTime):
		return minTime.UnixNano()
	case t.After(maxTime):
		return maxTime.UnixNano()
	}
	return t.UnixNano()
}

// The instants UnixNano can represent.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

// SQL functions for non-column fields, so that they are matched exactly as
// query.Expr.Match matches them in memory.
func init() {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	// tg_ip(text) is the 16-byte form of an address, or NULL.
	must(sqlite.RegisterDeterministicScalarFunction("tg_ip", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		s, ok := args[0].(string)
		if !ok {
			return nil, nil
		}
		return ipBlob(s), nil
	}))
	// tg_time(text) is an RFC 3339 time in unix nanoseconds, or NULL.
	must(sqlite.RegisterDeterministicScalarFunction("tg_time", 1, func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
		s, ok := args[0].(string)
		if !ok {
			return nil, nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, nil
		}
		return clampNanos(t), nil
	}))
}
