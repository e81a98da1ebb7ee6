package httpaudit

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/tick"
	"github.com/trailguard/trailguard/sink"
)

func TestStampAt(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)
	s := stamp{tick.Reading{Time: t0, Ticks: 1000}, 0.5}
	for _, tt := range []struct {
		ticks int64
		want  time.Time
	}{
		{1000, t0},
		{3000, t0.Add(1000 * time.Nanosecond)},
		{0, t0.Add(-500 * time.Nanosecond)},
	} {
		if got := s.at(tt.ticks); !got.Equal(tt.want) {
			t.Errorf("at(%d) = %v, want %v", tt.ticks, got, tt.want)
		}
	}
}

// TestIDTimeExtrapolatesOnlyNearby checks where a generated id's time
// comes from: the writer's last stamp when the request started within
// maxIDExtrapolation of it and no farther from it than the stamp is from
// New (the span its scale was measured over), a fresh reading of the clock
// otherwise. The stamps planted here carry a time an hour off, so that
// which one was used shows.
func TestIDTimeExtrapolatesOnlyNearby(t *testing.T) {
	l, err := New(Config{Sink: sink.NewWriter(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	time.Sleep(20 * time.Millisecond)
	var ri reqInfo
	l.markStart(&ri)
	fresh := l.startOf(&ri, l.stamp())
	scale := l.stamp().scale
	ticks := func(d time.Duration) int64 { return int64(float64(d) / float64(scale)) }
	off := time.Now().Add(-time.Hour)
	for _, tt := range []struct {
		name   string
		ticks  int64 // of the planted stamp
		stamps bool  // the planted stamp is used
	}{
		{"stamp just before the start", ri.startTick - ticks(5*time.Millisecond), true},
		{"stamp just after the start", ri.startTick + ticks(5*time.Millisecond), true},
		{"stamp long before", ri.startTick - ticks(2*time.Second), false},
		{"stamp long after", ri.startTick + ticks(2*time.Second), false},
		{"stamp close to New", l.base.Ticks + ticks(time.Millisecond), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			planted := &stamp{tick.Reading{Time: off, Ticks: tt.ticks}, scale}
			l.recent.Store(planted)
			got := l.idTime(&ri)
			if tt.stamps {
				if want := planted.at(ri.startTick); !got.Equal(want) {
					t.Errorf("idTime = %v, want %v from the planted stamp", got, want)
				}
			} else if d := got.Sub(fresh).Abs(); d > 10*time.Millisecond {
				t.Errorf("idTime = %v, want about %v (a fresh reading)", got, fresh)
			}
		})
	}
}

// TestGeneratedIDsCarryTheStart sends requests without an id of their
// own, some right after another request's event was written (the writer's
// stamp is then recent and extrapolated), and checks that each generated
// id's millisecond is the event's @timestamp's, give or take the one the
// two conversions may straddle.
func TestGeneratedIDsCarryTheStart(t *testing.T) {
	l, buf := newTestLogger(t, Config{})
	h := l.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	var ids []string
	for i := range 20 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		ids = append(ids, rec.Header().Get("X-Request-ID"))
		if i%2 == 0 {
			time.Sleep(2 * time.Millisecond) // a batch written in between: a recent stamp
		}
	}
	evs := events(t, l, buf)
	if len(evs) != len(ids) {
		t.Fatalf("%d events for %d requests", len(evs), len(ids))
	}
	if l.recent.Load() == nil {
		t.Fatal("the writer left no stamp")
	}
	for i, ev := range evs {
		id := ids[i]
		ms, err := strconv.ParseInt(id[0:8]+id[9:13], 16, 64)
		if d := ms - ev.Timestamp.UnixMilli(); err != nil || ev.RequestID != id || d < -1 || d > 1 {
			t.Errorf("request %d: id %q (ms %d, %v), event id %q at %v", i, id, ms, err, ev.RequestID, ev.Timestamp)
		}
	}
}

// TestTimestampMatchesStartOf holds the encoder's @timestamp (startUnix
// and timeCache.appendUnix, arithmetic on seconds and nanoseconds) to the
// text of startOf's time.Time as event.AppendTime writes it, across the
// borrow of a second, a start a few seconds back, a start after the stamp
// (no ticks elapsed: the stamp's own time), and with the stamp changing
// between events of one writerCache.
func TestTimestampMatchesStartOf(t *testing.T) {
	l := &Logger{realClock: true}
	var wc writerCache
	for _, tt := range []struct {
		name  string
		now   time.Time
		scale tick.Scale
		ticks int64 // the stamp's ticks less the request's start tick
	}{
		{"same second", time.Date(2026, 12, 3, 14, 0, 0, 900_000_000, time.UTC), 1, 1000},
		{"borrows a second", time.Date(2026, 12, 3, 14, 0, 1, 300, time.UTC), 1, 1000},
		{"borrows at a whole second", time.Date(2026, 12, 3, 14, 0, 2, 0, time.UTC), 0.25, 4},
		{"seconds back", time.Date(2026, 12, 3, 14, 0, 5, 5, time.UTC), 0.5, 7_000_000_011},
		{"start after the stamp", time.Date(2026, 12, 3, 14, 0, 6, 123_456_789, time.UTC), 1, -50},
		{"across midnight", time.Date(2027, 1, 1, 0, 0, 0, 10, time.UTC), 1, 20},
		{"local time zone", time.Date(2026, 12, 3, 15, 0, 0, 1, time.FixedZone("x", 3600)), 1, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wc.now = stamp{tick.Reading{Time: tt.now, Ticks: 1 << 40}, tt.scale}
			ri := reqInfo{startTick: 1<<40 - tt.ticks}
			want := event.AppendTime(nil, l.startOf(&ri, wc.now))
			sec, nsec := wc.startUnix(ri.startTick)
			if got := wc.time.appendUnix(nil, sec, nsec); string(got) != string(want) {
				t.Errorf("@timestamp %s, want %s", got, want)
			}
		})
	}
}
