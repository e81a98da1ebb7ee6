package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/ledger"
)

// record is what the live view and the story read of a ledger record
// besides the event model: alerts and block decisions.
type record struct {
	TS    time.Time `json:"@timestamp"`
	Event struct {
		Kind, Action, Dataset, Reason string
		End                           time.Time `json:"end"`
	} `json:"event"`
	Rule    struct{ Name string }  `json:"rule"`
	Log     struct{ Level string } `json:"log"`
	Client  struct{ IP string }    `json:"client"`
	Source  struct{ IP string }    `json:"source"`
	User    struct{ Name string }  `json:"user"`
	Svc     struct{ Name string }  `json:"service"`
	Message string                 `json:"message"`
	TG      struct {
		Alert struct {
			Count   int `json:"count"`
			Trigger struct {
				Index *uint64 `json:"index"`
			} `json:"trigger"`
		} `json:"alert"`
		Decision struct {
			Duration string `json:"duration"`
		} `json:"decision"`
	} `json:"trailguard"`
}

// Happening is an alert, a block decision, or the gateway's first refusal
// of a blocked client, as the live view saw it in the collector's ledger.
type Happening struct {
	At      time.Time // the record's @timestamp
	Kind    string    // "alert", "block" or "refused"
	Address string
	Text    string
	// Delay is from the event that completed the attack (the alert's
	// last event) to this.
	Delay time.Duration
}

// watcher follows the collector's ledger and reports alerts, blocks and
// the first refusal of each blocked client as they are stored.
type watcher struct {
	start time.Time
	out   io.Writer
	mu    sync.Mutex
	seen  []Happening
	// crossed is, per address, the record that completed its first alert
	// (the tenth failed login of a brute force): when it was appended to
	// the ledger, and its @timestamp.
	crossed  map[string]trigger
	refused  map[string]bool
	blockCnt map[string]int
	// pending holds a block stored before the alert that asked for it (they
	// are appended together, in either order) until the alert is seen.
	pending map[string]Happening
}

func newWatcher(start time.Time, out io.Writer) *watcher {
	return &watcher{start: start, out: out, crossed: map[string]trigger{}, refused: map[string]bool{}, blockCnt: map[string]int{},
		pending: map[string]Happening{}}
}

type trigger struct{ appended, stamped time.Time }

// run follows l from index from until ctx ends.
func (w *watcher) run(ctx context.Context, l *ledger.Ledger, from uint64) {
	for e, err := range l.Follow(ctx, from) {
		if err != nil {
			return
		}
		w.record(l, e)
	}
}

// record looks at one ledger record. Alerts and decisions are timed by
// the ledger's append times (the collector's clock, from the record that
// completed the attack); the gateway's refusal by the @timestamps of the
// refused request and of that record (the same clock in this process).
func (w *watcher) record(l *ledger.Ledger, e ledger.Entry) {
	data := e.Data
	isAlert := bytes.Contains(data, []byte(`"kind":"alert"`))
	isBlock := bytes.Contains(data, []byte(`"block_decision_created"`))
	isRefusal := bytes.Contains(data, []byte(`"request_blocked"`)) || bytes.Contains(data, []byte(`"response_withheld"`))
	if !isAlert && !isBlock && !isRefusal {
		return
	}
	var r record
	if json.Unmarshal(data, &r) != nil {
		return
	}
	addr := r.Client.IP
	w.mu.Lock()
	defer w.mu.Unlock()
	var h Happening
	switch {
	case isAlert && r.Event.Dataset == "trailguard.alert":
		// A rule counted per service (the rate of 401s) raises one alert
		// for each service that saw the wave: the gateway and the shop.
		at := ""
		if r.Svc.Name != "" && strings.Contains(r.Message, "service.name=") {
			at = " at " + display(r.Svc.Name)
		}
		h = Happening{At: e.Time, Kind: "alert", Address: addr,
			Text: fmt.Sprintf("ALERT %-6s %s%s: %s", r.Log.Level, display(r.Rule.Name), at, display(addr))}
		if r.TG.Alert.Count > 1 {
			h.Text += fmt.Sprintf(" (%d events)", r.TG.Alert.Count)
		}
		if ix := r.TG.Alert.Trigger.Index; ix != nil {
			if te, err := l.Read(*ix); err == nil {
				var tr record
				json.Unmarshal(te.Data, &tr)
				if _, ok := w.crossed[addr]; !ok {
					w.crossed[addr] = trigger{te.Time, tr.TS}
				}
				h.Delay = e.Time.Sub(te.Time)
				h.Text += fmt.Sprintf(" — raised %s after the record that completed it", msDur(h.Delay))
			}
		}
	case isBlock && r.Event.Action == "block_decision_created":
		w.blockCnt[addr]++
		if w.blockCnt[addr] > 1 {
			return // an escalation of the same attack: the first says it
		}
		h = Happening{At: e.Time, Kind: "block", Address: addr,
			Text: fmt.Sprintf("BLOCK %s for %s (%s)", display(addr), shortDur(r.TG.Decision.Duration), display(r.Rule.Name))}
		t, ok := w.crossed[addr]
		if !ok {
			w.pending[addr] = h
			return
		}
		h.Delay = e.Time.Sub(t.appended)
		h.Text += fmt.Sprintf(" — decided %s after the attack crossed the threshold", msDur(h.Delay))
	case isRefusal && (r.Event.Action == "request_blocked" || r.Event.Action == "response_withheld") && !w.refused[addr]:
		// A request in flight when the block came is the first refused:
		// its answer is withheld (the shop's verdict stays in the trail).
		w.refused[addr] = true
		h = Happening{At: r.TS, Kind: "refused", Address: addr, Text: fmt.Sprintf("REFUSED at the gateway: %s gets 403", display(addr))}
		if r.Event.Action == "response_withheld" {
			h.Text += " (the answer to a request in flight withheld)"
		}
		if t, ok := w.crossed[addr]; ok {
			h.Delay = r.TS.Sub(t.stamped)
			h.Text += fmt.Sprintf(" — %s after the attack crossed the threshold", msDur(h.Delay))
		}
	default:
		return
	}
	w.show(h)
	if p, ok := w.pending[addr]; ok && h.Kind == "alert" {
		delete(w.pending, addr)
		if t, ok := w.crossed[addr]; ok {
			p.Delay = p.At.Sub(t.appended)
			p.Text += fmt.Sprintf(" — decided %s after the attack crossed the threshold", msDur(p.Delay))
		}
		w.show(p)
	}
}

func (w *watcher) show(h Happening) {
	w.seen = append(w.seen, h)
	fmt.Fprintf(w.out, "  %-8s %s\n", fmt.Sprintf("+%.2fs", h.At.Sub(w.start).Seconds()), h.Text)
}

// flush shows the blocks whose alert never came (a decision made by hand).
func (w *watcher) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range w.pending {
		w.show(h)
	}
	clear(w.pending)
}

func (w *watcher) happenings() []Happening {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Happening(nil), w.seen...)
}

func msDur(d time.Duration) string {
	switch {
	case d < 0:
		return "0 ms"
	case d < 10*time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

// shortDur shows "1h0m0s" as "1h".
func shortDur(s string) string {
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}
