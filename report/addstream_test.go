package report

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/quick"
	"time"
	"unsafe"

	"github.com/trailguard/trailguard/event"
)

// addStream is a trail of varied records as the report cache reads them:
// most with the spans ingest located, some (alerts, the collector's own
// records, a record that is not JSON) without, so that one fields is
// reused across both ways of reading; the events' minutes change every
// few records, some events are ahead of the checkpoint covering them and
// some were ingested late.
func addStream(n int) (recs [][]byte, sps []*event.Spans) {
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	for i := range n {
		ts := t0.Add(time.Duration(i) * 7 * time.Second)
		ing := ts.Add(time.Second)
		switch {
		case i%97 == 5:
			ts = ts.Add(10 * time.Minute) // ahead of its checkpoint
		case i%89 == 3:
			ing = ts.Add(2 * time.Hour) // delayed
		}
		var doc string
		switch k := i % 13; k {
		case 0:
			doc = fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","category":["authentication"],"type":["start"],"action":"authn_login_fail","outcome":"failure","dataset":"trailguard.auth","ingested":%q},"source":{"ip":"203.0.113.%d"},"user":{"name":"user%d"},"http":{"response":{"status_code":401}},"service":{"name":"shop"}}`,
				ts.Format(time.RFC3339Nano), ing.Format(time.RFC3339Nano), i%7, i%5)
		case 1:
			doc = fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","category":["iam"],"type":["change"],"action":"user_password_change","outcome":"success"},"user":{"id":"u%d","roles":["admin","viewer"],"target":{"name":"eve"}},"client":{"ip":"198.51.100.%d"},"url":{"path":"/api/users/7"},"service":{"name":"shop"},"host":{"name":"api-%d"}}`,
				ts.Format(time.RFC3339Nano), i%3, i%9, i%2)
		case 2:
			doc = fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","category":["web","configuration"],"type":["access","info"],"action":"http_request","outcome":"success","id":"id-%d"},"url":{"path":"/card\u00e9/%d"},"http":{"response":{"status_code":200}},"log":{"level":"warn"},"service":{"name":"pay\"ments"}}`,
				ts.Format(time.RFC3339Nano), i, i)
		case 3:
			// An alert the collector raised: no spans.
			recs = append(recs, fmt.Appendf(nil, `{"@timestamp":%q,"event":{"kind":"alert","dataset":"trailguard.alert","id":"a%d","end":%q},"rule":{"id":"r1","name":"Brute force"},"log":{"level":"high"},"client":{"ip":"203.0.113.9"},"trailguard":{"alert":{"rule":"brute_force","trigger":{"index":%d}}}}`,
				ts.Format(time.RFC3339Nano), i, ts.Add(time.Minute).Format(time.RFC3339Nano), i-1))
			sps = append(sps, nil)
			continue
		case 4:
			// The collector's own audit record: no spans.
			recs = append(recs, fmt.Appendf(nil, `{"@timestamp":%q,"event":{"kind":"event","action":"alert_status_changed","outcome":"success","ingested":%q},"trailguard":{"audit":{"resource":"alert/a%d"},"after":{"status":"closed"}},"user":{"name":"soc"},"service":{"name":"trailguard-collector"}}`,
				ts.Format(time.RFC3339Nano), ing.Format(time.RFC3339Nano), i-1))
			sps = append(sps, nil)
			continue
		case 5:
			if i%5 == 0 {
				recs = append(recs, []byte(`not json`))
				sps = append(sps, nil)
				continue
			}
			doc = `{"event":{"action":"sys_startup","category":["process"],"type":["start"]},"service":{"name":"shop"}}`
		case 6:
			// A sensitive change to cardholder data (p.chd).
			doc = fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","category":["database"],"type":["change"],"action":"sensitive_update","outcome":"success","id":"id-%d"},"url":{"path":"/card%d/x"},"user":{"name":"clerk%d"},"source":{"ip":"10.0.0.%d"},"service":{"name":"shop"}}`,
				ts.Format(time.RFC3339Nano), i, i%2, i%3, i%4)
		case 7:
			doc = fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","action":"authn_password_change","outcome":"success","id":"pw-%d"},"client":{"ip":"203.0.113.%d"},"user":{"target":{"name":"mallory"}}}`,
				ts.Format(time.RFC3339Nano), i, i%5)
		case 8:
			doc = fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","action":"sys_shutdown","outcome":"success"},"client":{"ip":"203.0.113.%d"},"user":{"target":{"name":"t%d"}},"host":{"name":"gw"},"service":{"name":"gateway"}}`,
				ts.Format(time.RFC3339Nano), i%5, i%2)
		case 9:
			// The collector's own record of a read (ingest refuses its
			// marks: only the collector appends it, without spans).
			recs = append(recs, fmt.Appendf(nil, `{"@timestamp":%q,"event":{"kind":"event","action":"sensitive_read","outcome":"success"},"user":{"id":"u%d"},"service":{"name":"trailguard-collector"}}`,
				ts.Format(time.RFC3339Nano), i%3))
			sps = append(sps, nil)
			continue
		case 10:
			doc = fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","category":["iam"],"type":["denied"],"action":"authz_fail","outcome":"failure"},"http":{"response":{"status_code":403}},"user":{"name":"user%d","target":{"id":"t%d"}},"host":{"name":"api-2"},"service":{"name":"shop"}}`,
				ts.Format(time.RFC3339Nano), i%5, i%3)
		case 11:
			// A rare record that is not auditable: its host is read.
			doc = fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","action":"forward_records_lost","outcome":"failure"},"host":{"name":"fw-%d"},"service":{"name":"shipper"}}`,
				ts.Format(time.RFC3339Nano), i%3)
		default:
			doc = fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","category":["web"],"type":["access"],"action":"http_request","outcome":"success","id":"id-%d","ingested":%q},"url":{"path":"/api/orders/%d"},"http":{"response":{"status_code":%d}},"source":{"ip":"10.0.0.2"},"client":{"ip":"198.51.100.%d"},"user":{"name":"user%d"},"service":{"name":"shop"},"host":{"name":"api-1"}}`,
				ts.Format(time.RFC3339Nano), i, ing.Format(time.RFC3339Nano), i, []int{200, 403, 401, 404}[i%4], i%11, i%6)
		}
		sp := new(event.Spans)
		rec, _, ok := event.AppendNormalizedSpans(nil, []byte(doc), now, event.AppendID, sp)
		if !ok || !sp.OK() {
			panic("addStream: not normalised: " + doc)
		}
		recs, sps = append(recs, rec), append(sps, sp)
	}
	return recs, sps
}

// comparable returns a's figures as a chunk file with its counters and
// per-second and per-minute counts in order.
func comparableFigures(a *acc) *chunkFile {
	f := toFile(a, [32]byte{})
	cfs := []*counterFile{&f.Actions, &f.Services, &f.Srcs, &f.Users, &f.Readers}
	for i := range f.CovAct {
		cfs = append(cfs, &f.CovAct[i])
	}
	for i := range f.MissingBy {
		cfs = append(cfs, &f.MissingBy[i])
	}
	for _, c := range cfs {
		idx := make([]int, len(c.Keys))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(x, y int) int { return strings.Compare(c.Keys[x], c.Keys[y]) })
		var keys []string
		var counts []uint64
		for _, i := range idx {
			keys, counts = append(keys, c.Keys[i]), append(counts, c.Counts[i])
		}
		c.Keys, c.Counts = keys, counts
	}
	for _, s := range [][]intCount{f.FailSec, f.EvMin} {
		slices.SortFunc(s, func(x, y intCount) int { return int(x.K - y.K) })
	}
	return f
}

// TestAddKeepsNothingBetweenRecords: the report cache's figures of a
// trail read record by record into one acc with one fields (what it keeps
// from one record for the next: the last action, the checkpoint covering
// the last record, the last minute counted, the fields it does not clear)
// are those of each record read on its own, parsed from its bytes, and
// merged in ledger order.
func TestAddKeepsNothingBetweenRecords(t *testing.T) {
	recs, sps := addStream(3000)
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	p := &computeParams{tolerance: time.Second, maxDelay: time.Minute, adminRoles: set("admin"), chd: []string{"/card1"}}
	for i := uint64(40); i < 3200; i += 37 + i%50 {
		p.cpSizes = append(p.cpSizes, i)
		// Signed 2 s before record i's @timestamp: ahead of the
		// checkpoint before it (beyond the 1 s tolerance), not of its own.
		p.cpTimes = append(p.cpTimes, t0.Add(time.Duration(i)*7*time.Second-2*time.Second).UnixNano())
	}
	one := newAcc(p)
	var f fields
	spans := 0
	for i, rec := range recs {
		if sps[i] != nil {
			spans++
		}
		one.add(uint64(i), t0, rec, sps[i], &f)
	}
	ref := newAcc(p)
	for i, rec := range recs {
		a := newAcc(p)
		var rf fields
		a.add(uint64(i), t0, rec, nil, &rf)
		ref.merge(a)
	}
	if spans < len(recs)/2 || one.ahead == 0 || one.delayed == 0 || one.alerts == 0 || one.undec == 0 || len(one.rares) < 2 || one.authFail == 0 ||
		one.cov[0] == 0 || one.reads == 0 || len(one.examples) == 0 {
		t.Fatalf("the stream does not cover the cases: %d with spans, %d ahead, %d delayed, %d alerts, %d undecodable, %d rare, %d failed logins, %d sensitive, %d reads, %d examples",
			spans, one.ahead, one.delayed, one.alerts, one.undec, len(one.rares), one.authFail, one.cov[0], one.reads, len(one.examples))
	}
	got, want := comparableFigures(one), comparableFigures(ref)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("figures read in one acc differ from each record's own:\n got  %+v\n want %+v", got, want)
	}
}

// TestFromSpansSetsEveryField: fromSpans gives the same fields whatever
// the fields it fills held before (it sets them one by one instead of
// clearing the whole struct), including fields added after it was
// written.
func TestFromSpansSetsEveryField(t *testing.T) {
	recs, sps := addStream(40)
	for i, rec := range recs {
		if sps[i] == nil {
			continue
		}
		var fresh fields
		fresh.fromSpans(rec, sps[i])
		for seed := range 5 {
			var dirty fields
			fillFields(t, &dirty, int64(seed))
			dirty.fromSpans(rec, sps[i])
			if g, w := fieldsString(&dirty), fieldsString(&fresh); g != w {
				t.Fatalf("record %d: fromSpans over filled fields:\n got  %s\n want %s", i, g, w)
			}
		}
	}
}

// fillFields sets every field of f to a random value.
func fillFields(t *testing.T, f *fields, seed int64) {
	t.Helper()
	v := reflect.ValueOf(f).Elem()
	r := quickRand(seed)
	for i := range v.NumField() {
		fv := v.Field(i)
		fv = reflect.NewAt(fv.Type(), unsafe.Pointer(fv.UnsafeAddr())).Elem()
		if fv.Kind() == reflect.Pointer {
			fv.Set(reflect.New(fv.Type().Elem()))
			continue
		}
		if fv.Type() == reflect.TypeFor[time.Time]() {
			fv.Set(reflect.ValueOf(time.Unix(int64(seed)*1000+17, 5)))
			continue
		}
		x, ok := quick.Value(fv.Type(), r)
		if !ok {
			t.Fatalf("cannot fill field %s", v.Type().Field(i).Name)
		}
		fv.Set(x)
	}
}

// fieldsString is f as text with its detail fields read, parse's scratch
// (stack, escaped) left out and an empty list the same as none.
func fieldsString(f *fields) string {
	c := *f
	c.detail()
	c.stack, c.escaped = [6]string{}, nil
	return fmt.Sprintf("%+v", c)
}

func quickRand(seed int64) *rand.Rand { return rand.New(rand.NewSource(seed)) }
