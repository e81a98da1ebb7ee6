package redact

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
)

// Value scrubs structured data such as an audit record's before and after
// maps or a log attribute. When key is sensitive, v becomes its replacement
// string (nil stays nil: it carries nothing). Otherwise strings go through
// the detectors, maps and slices are copied with each element scrubbed
// under its own key (slice elements under none), json.RawMessage is
// scrubbed as JSON, and other scalars are returned unchanged. v is never
// modified.
func (r *Redactor) Value(key string, v any) any {
	if v == nil {
		return nil
	}
	if key != "" && r.SensitiveKey(key) {
		return r.replaceAny(v)
	}
	return r.value(v)
}

func (r *Redactor) value(v any) any {
	switch x := v.(type) {
	case string:
		return r.String(x)
	case []byte:
		if out, ok := scrub(r, nil, x); ok {
			return out
		}
		return append([]byte(nil), x...)
	case json.RawMessage:
		out, err := r.JSON(nil, x)
		if err != nil {
			return json.RawMessage(r.Bytes(nil, x))
		}
		return json.RawMessage(out)
	case json.Number:
		if r.enabled(KindCard) && isCardValue(x) {
			return string(appendMatch(r, nil, KindCard, x))
		}
		return x
	case error:
		// An error's message is free text and often quotes its input.
		return r.String(x.Error())
	case map[string]any:
		if x == nil {
			return x
		}
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[r.String(k)] = r.Value(k, e)
		}
		return out
	case []any:
		if x == nil {
			return x
		}
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = r.value(e)
		}
		return out
	case map[string]string:
		if x == nil {
			return x
		}
		out := make(map[string]string, len(x))
		for k, e := range x {
			if r.SensitiveKey(k) {
				out[r.String(k)] = r.replaceValue(e)
			} else {
				out[r.String(k)] = r.String(e)
			}
		}
		return out
	case []string:
		if x == nil {
			return x
		}
		out := make([]string, len(x))
		for i, e := range x {
			out[i] = r.String(e)
		}
		return out
	}
	return v
}

// replaceAny is the replacement for a sensitive key's value of any type.
// HMAC tokens are over the value's text: a string as is, a number as it is
// written in JSON, anything else as its JSON encoding.
func (r *Redactor) replaceAny(v any) any {
	if r.mode == Remove {
		return Marker
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case []byte:
		s = string(x)
	case json.Number:
		s = string(x)
	case int:
		s = strconv.Itoa(x)
	case int64:
		s = strconv.FormatInt(x, 10)
	case uint64:
		s = strconv.FormatUint(x, 10)
	case fmt.Stringer:
		s = x.String()
	default:
		b, err := json.Marshal(v)
		if err != nil {
			s = fmt.Sprint(v)
		} else {
			s = string(b)
		}
	}
	return r.replaceValue(s)
}

// ReplaceAttr scrubs a log attribute; its signature is that of
// [slog.HandlerOptions.ReplaceAttr], so a handler can scrub everything it
// writes:
//
//	h := slog.NewJSONHandler(w, &slog.HandlerOptions{ReplaceAttr: r.ReplaceAttr})
//
// A sensitive attribute key replaces the value; strings, errors and Any
// values are scrubbed as by [Redactor.Value]; groups are walked.
func (r *Redactor) ReplaceAttr(groups []string, a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		attrs := v.Group()
		out := make([]slog.Attr, len(attrs))
		sub := append(groups[:len(groups):len(groups)], a.Key) // never write into the caller's array
		for i, ga := range attrs {
			out[i] = r.ReplaceAttr(sub, ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	if r.SensitiveKey(a.Key) {
		return slog.String(a.Key, r.replaceAny(v.Any()).(string))
	}
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, r.String(v.String()))
	case slog.KindAny:
		return slog.Any(a.Key, r.Value("", v.Any()))
	}
	return slog.Attr{Key: a.Key, Value: v}
}
