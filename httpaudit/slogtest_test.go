package httpaudit

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"

	"github.com/trailguard/trailguard/event"
)

// TestSlogConformance runs the standard library's handler conformance
// suite. The handler's events put the message in message, the level in
// log.level and attributes under trailguard.attrs; results maps them back
// onto the shape slogtest reads.
func TestSlogConformance(t *testing.T) {
	var l *Logger
	var buf *syncBuffer
	newHandler := func(t *testing.T) slog.Handler {
		l, buf = newTestLogger(t, Config{})
		return l.SlogHandler(nil)
	}
	result := func(t *testing.T) map[string]any {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(strings.NewReader(buf.String()))
		if !sc.Scan() {
			t.Fatal("no event written")
		}
		ev, err := event.Decode(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		if len(ev.Attrs) > 0 {
			if err := json.Unmarshal(ev.Attrs, &m); err != nil {
				t.Fatal(err)
			}
		}
		m["msg"] = ev.Message
		m["level"] = strings.ToUpper(ev.LogLevel)
		if !ev.Timestamp.IsZero() {
			m["time"] = ev.Timestamp
		}
		return m
	}
	slogtest.Run(t, newHandler, result)
}
