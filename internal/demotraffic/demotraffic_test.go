package demotraffic

import (
	"encoding/json"
	"testing"
	"time"
)

// TestReplay: every event is valid JSON with fresh ids, events of one
// request share theirs, and the mix and size are the demo's.
func TestReplay(t *testing.T) {
	g := New(1, time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), time.Millisecond)
	n := 3 * len(Templates())
	ids := map[string]bool{}
	reqs := map[string]int{}
	bytes := 0
	var last time.Time
	for range n {
		line := g.Next(nil)
		bytes += len(line) + 1
		var e struct {
			Timestamp time.Time `json:"@timestamp"`
			Event     struct{ ID, Action string }
			HTTP      struct{ Request struct{ ID string } }
			Source    struct{ Port int }
			Client    struct{ IP string }
		}
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if ids[e.Event.ID] || len(e.Event.ID) != 36 {
			t.Fatalf("event.id %q repeated or malformed", e.Event.ID)
		}
		ids[e.Event.ID] = true
		reqs[e.HTTP.Request.ID]++
		if !e.Timestamp.After(last) || e.Source.Port < 1024 || e.Client.IP == "" {
			t.Fatalf("time %v after %v, port %d, client %q", e.Timestamp, last, e.Source.Port, e.Client.IP)
		}
		last = e.Timestamp
	}
	if avg := bytes / n; avg < 700 || avg > 800 {
		t.Fatalf("%d bytes per event", avg)
	}
	shared := 0
	for _, c := range reqs {
		if c > 1 {
			shared++
		}
	}
	if shared < len(reqs)/4 {
		t.Fatalf("only %d of %d request ids are shared by several events", shared, len(reqs))
	}
}
