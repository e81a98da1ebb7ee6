package httpaudit

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"

	"github.com/trailguard/trailguard/event"
)

// SlogHandler returns a slog.Handler that turns the application's own log
// records into events (dataset trailguard.app, action "log") written
// through the same scrubber, queue and sink as the audit trail. Records
// logged with a request's context carry its http.request.id, trace and
// user. The message and every attribute are scrubbed: an attribute named
// like a secret ("password", "api_key", …) is redacted whatever its value,
// and free-text detectors run over every string. Attributes land in
// trailguard.attrs, groups as nested objects. A record with a zero time
// (never one from a slog.Logger) is written without @timestamp, as slog
// requires of handlers. A nil opts logs Info and above.
func (l *Logger) SlogHandler(opts *slog.HandlerOptions) slog.Handler {
	h := &slogHandler{l: l, level: slog.LevelInfo}
	if opts != nil && opts.Level != nil {
		h.level = opts.Level
	}
	return h
}

type slogHandler struct {
	l     *Logger
	level slog.Leveler
	// pre is the attrs object's content so far (attributes from WithAttrs
	// and the groups WithGroup opened), rendered once, not per record.
	pre   []byte
	open  int
	comma bool
	// pending are groups named by WithGroup that no attribute has been
	// added to yet: slog asks that empty groups not appear.
	pending []string
}

func (h *slogHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

func (h *slogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.pre = append([]byte(nil), h.pre...)
	h2.pre, h2.comma = openGroups(h2.pre, h.pending, h2.comma)
	added := false
	for _, a := range attrs {
		before := len(h2.pre)
		h2.pre, h2.comma = h.l.appendAttr(h2.pre, a, h2.comma)
		added = added || len(h2.pre) > before
	}
	if !added { // only empty attributes: the groups stay pending
		return h
	}
	h2.open += len(h.pending)
	h2.pending = nil
	return &h2
}

// openGroups renders the opening of each named group.
func openGroups(buf []byte, groups []string, comma bool) ([]byte, bool) {
	for _, g := range groups {
		if comma {
			buf = append(buf, ',')
		}
		buf = event.AppendString(buf, g)
		buf = append(buf, ':', '{')
		comma = false
	}
	return buf, comma
}

func (h *slogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.pending = append(h.pending[:len(h.pending):len(h.pending)], name)
	return &h2
}

func (h *slogHandler) Handle(ctx context.Context, r slog.Record) error {
	l := h.l
	var ev *event.Event
	if st := stateFrom(ctx); st != nil {
		ev = l.contextEvent(st)
	} else {
		ev = l.newEvent(l.cfg.Now())
	}
	// A record's zero time means "no time" (slog.Handler's contract): the
	// event then has no @timestamp rather than an invented one; a
	// collector stamps it on arrival.
	ev.Timestamp = r.Time
	ev.Category = categoryWeb
	ev.Type = []string{event.TypeInfo}
	if r.Level >= slog.LevelError {
		ev.Type = []string{event.TypeError}
	}
	ev.Action = event.ActionLog
	ev.Dataset = event.DatasetApp
	ev.Message = l.red.String(r.Message)
	ev.LogLevel, ev.Severity = levelName(r.Level)

	buf := append(make([]byte, 0, len(h.pre)+64), '{')
	buf = append(buf, h.pre...)
	mark := len(buf)
	buf, comma := openGroups(buf, h.pending, h.comma)
	withGroups := len(buf)
	r.Attrs(func(a slog.Attr) bool {
		buf, comma = l.appendAttr(buf, a, comma)
		return true
	})
	open := h.open + len(h.pending)
	if len(buf) == withGroups { // no attributes: drop the empty groups
		buf = buf[:mark]
		open = h.open
	}
	for range open {
		buf = append(buf, '}')
	}
	buf = append(buf, '}')
	if len(buf) > 2 {
		ev.Attrs = buf
	}
	return l.enqueue(context.Background(), ev, false)
}

// levelName maps a slog level onto log.level and a syslog-style
// event.severity (lower is more severe).
func levelName(l slog.Level) (string, int) {
	switch {
	case l >= slog.LevelError:
		return "error", 3
	case l >= slog.LevelWarn:
		return "warn", 4
	case l >= slog.LevelInfo:
		return "info", 6
	default:
		return "debug", 7
	}
}

// appendAttr renders one attribute as a JSON member, scrubbed.
func (l *Logger) appendAttr(buf []byte, a slog.Attr, comma bool) ([]byte, bool) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return buf, comma
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return buf, comma
		}
		if a.Key == "" { // inline group, as slog specifies
			for _, g := range attrs {
				buf, comma = l.appendAttr(buf, g, comma)
			}
			return buf, comma
		}
		if comma {
			buf = append(buf, ',')
		}
		buf = event.AppendString(buf, a.Key)
		buf = append(buf, ':', '{')
		inner := false
		for _, g := range attrs {
			buf, inner = l.appendAttr(buf, g, inner)
		}
		return append(buf, '}'), true
	}
	if comma {
		buf = append(buf, ',')
	}
	buf = event.AppendString(buf, a.Key)
	buf = append(buf, ':')
	if l.red.SensitiveKey(a.Key) {
		s, _ := l.red.Value(a.Key, a.Value.String()).(string)
		return event.AppendString(buf, s), true
	}
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		buf = event.AppendString(buf, l.red.String(v.String()))
	case slog.KindInt64:
		buf = strconv.AppendInt(buf, v.Int64(), 10)
	case slog.KindUint64:
		buf = strconv.AppendUint(buf, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if b, err := json.Marshal(f); err == nil {
			buf = append(buf, b...)
		} else { // NaN, Inf
			buf = event.AppendString(buf, strconv.FormatFloat(f, 'g', -1, 64))
		}
	case slog.KindBool:
		buf = strconv.AppendBool(buf, v.Bool())
	case slog.KindDuration:
		buf = strconv.AppendInt(buf, int64(v.Duration()), 10)
	case slog.KindTime:
		buf = append(buf, '"')
		buf = event.AppendTime(buf, v.Time())
		buf = append(buf, '"')
	default:
		buf = l.appendAny(buf, v.Any())
	}
	return buf, true
}

func (l *Logger) appendAny(buf []byte, v any) []byte {
	if err, ok := v.(error); ok {
		return event.AppendString(buf, l.red.String(err.Error()))
	}
	b, err := json.Marshal(v)
	if err != nil {
		return event.AppendString(buf, "!ERROR: "+strings.ReplaceAll(err.Error(), "\n", " "))
	}
	out, err := l.red.JSON(buf, b)
	if err != nil {
		return event.AppendString(buf, l.red.String(string(b)))
	}
	return out
}
