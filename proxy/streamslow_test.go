package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStreamSlowFullList: a startup list that keeps coming is read to its
// end however long it takes, and one that stops coming is cut after
// streamWait without a byte. Before, a poll was cut 5 s after it began,
// body included: a full list of 100,000 decisions (~12 MB of JSON) that
// took longer to read on a loaded machine (29-117 s at load 14-20 in
// TestRangeBansAtCap, whose gateway never applied it) was cut, asked
// for again in full, and never applied. Here a list sent over ~7 s, a
// piece every 0.5 s, is applied, and one that stops half-way is given up
// (health reports the cut) within streamWait and a margin.
func TestStreamSlowFullList(t *testing.T) {
	t.Parallel()
	const n = 14
	var body strings.Builder
	body.WriteString(`{"new":[`)
	for i := range n {
		if i > 0 {
			body.WriteString(",")
		}
		fmt.Fprintf(&body, `{"type":"ban","scope":"Ip","value":"192.0.2.%d","duration":"1h","origin":"trailguard"}`, i+1)
	}
	body.WriteString(`],"deleted":[]}`)
	full := body.String()
	for _, tc := range []struct {
		name  string
		stall bool // stop sending half-way and hold the connection
	}{{"slow but steady", false}, {"stalled half-way", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var polls atomic.Int32
			release := make(chan struct{})
			var once sync.Once
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			lapi := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if polls.Add(1) > 1 || r.URL.Query().Get("startup") != "true" {
					w.Write([]byte(`{"new":[],"deleted":[]}`))
					return
				}
				w.Header().Set("Content-Type", "application/json")
				pieces := 14
				for i := range pieces {
					if tc.stall && i == pieces/2 {
						select {
						case <-release:
						case <-r.Context().Done():
						}
						return
					}
					w.Write([]byte(full[i*len(full)/pieces : (i+1)*len(full)/pieces]))
					w.(http.Flusher).Flush()
					time.Sleep(500 * time.Millisecond)
				}
			}))
			t.Cleanup(lapi.Close)
			t.Cleanup(func() { once.Do(func() { close(release) }) })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			applied, failed := make(chan Update, 10), make(chan error, 10)
			src := &StreamSource{URL: lapi.URL, APIKey: "k", Interval: 50 * time.Millisecond}
			start := time.Now()
			go src.Run(ctx, func(u Update) { applied <- u }, func(err error) {
				if err != nil {
					failed <- err
				}
			})
			select {
			case u := <-applied:
				if tc.stall {
					t.Fatalf("an answer stalled half-way was applied: %d decisions", len(u.New))
				}
				if !u.Full || len(u.New) != n {
					t.Fatalf("applied %d decisions (full %v), want the %d of the startup list", len(u.New), u.Full, n)
				}
				t.Logf("the full list, sent over ~7 s, applied after %v", time.Since(start))
			case err := <-failed:
				if !tc.stall {
					t.Fatalf("a list that kept coming was cut after %v: %v", time.Since(start), err)
				}
				// Half the list came in ~3.5 s; then nothing for streamWait.
				took := time.Since(start)
				t.Logf("cut after %v: %v", took, err)
				if took < streamWait {
					t.Errorf("cut after %v, before streamWait (%v) without a byte", took, streamWait)
				}
			case <-time.After(2 * time.Minute):
				t.Fatal("neither applied nor cut after 2 minutes")
			}
		})
	}
}
