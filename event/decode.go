package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

const headersPrefix = "trailguard.http.request.headers"

// MaxDecodeDepth bounds object nesting in Decode; ECS documents are at most
// a handful of levels deep, and an attacker's deeper input is rejected
// rather than recursed into.
const MaxDecodeDepth = 32

// rawPaths are fields Decode keeps as JSON values instead of flattening:
// their content is free-form by design.
var rawPaths = map[string]bool{
	headersPrefix:             true,
	"trailguard.audit.before": true,
	"trailguard.audit.after":  true,
	"trailguard.attrs":        true,
}

// Decode parses one ECS JSON document into an Event. It accepts nested
// objects ({"event":{"action":…}}), dotted keys ({"event.action":…}) and any
// mix of the two, as Elasticsearch does. Fields Event does not model are
// kept in Extra under their dotted name. A modelled field with the wrong
// JSON type is an error that names the field.
func Decode(data []byte) (*Event, error) {
	ev := new(Event)
	if err := decodeObject(ev, "", data, 0); err != nil {
		return nil, err
	}
	return ev, nil
}

func decodeObject(ev *Event, prefix string, data []byte, depth int) error {
	if depth > MaxDecodeDepth {
		return fmt.Errorf("event: decode: nesting deeper than %d at %q", MaxDecodeDepth, prefix)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		if prefix == "" {
			return fmt.Errorf("event: decode: %w", err)
		}
		return fmt.Errorf("event: decode %s: %w", prefix, err)
	}
	if m == nil && prefix == "" {
		return errors.New("event: decode: document is null, want an object")
	}
	for k, v := range m {
		if k == "" {
			return fmt.Errorf("event: decode: empty field name under %q", prefix)
		}
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		v = bytes.TrimSpace(v)
		if len(v) > 0 && v[0] == '{' && !rawPaths[name] && name != labelsPrefix {
			if err := decodeObject(ev, name, v, depth+1); err != nil {
				return err
			}
			continue
		}
		if err := ev.set(name, v); err != nil {
			return fmt.Errorf("event: decode field %s: %w", name, err)
		}
	}
	return nil
}

func (ev *Event) set(name string, v json.RawMessage) error {
	if string(v) == "null" {
		return nil
	}
	if strings.HasPrefix(name, labelsPrefix+".") {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		if ev.Labels == nil {
			ev.Labels = map[string]string{}
		}
		ev.Labels[strings.TrimPrefix(name, labelsPrefix+".")] = s
		return nil
	}
	switch name {
	case headersPrefix:
		return json.Unmarshal(v, &ev.RequestHeaders)
	case "@timestamp":
		return setTime(&ev.Timestamp, v)
	case "event.kind":
		return json.Unmarshal(v, &ev.Kind)
	case "event.category":
		return setStrings(&ev.Category, v)
	case "event.type":
		return setStrings(&ev.Type, v)
	case "event.action":
		return json.Unmarshal(v, &ev.Action)
	case "event.outcome":
		return json.Unmarshal(v, &ev.Outcome)
	case "event.reason":
		return json.Unmarshal(v, &ev.Reason)
	case "event.severity":
		return json.Unmarshal(v, &ev.Severity)
	case "event.duration":
		var n int64
		err := json.Unmarshal(v, &n)
		ev.Duration = time.Duration(n)
		return err
	case "event.id":
		return json.Unmarshal(v, &ev.ID)
	case "event.dataset":
		return json.Unmarshal(v, &ev.Dataset)
	case "event.ingested":
		return setTime(&ev.Ingested, v)
	case "message":
		return json.Unmarshal(v, &ev.Message)
	case "log.level":
		return json.Unmarshal(v, &ev.LogLevel)
	case "error.message":
		return json.Unmarshal(v, &ev.ErrorMessage)
	case "http.request.id":
		return json.Unmarshal(v, &ev.RequestID)
	case "http.request.method":
		return json.Unmarshal(v, &ev.Method)
	case "http.request.referrer":
		return json.Unmarshal(v, &ev.Referrer)
	case "http.request.body.bytes":
		return json.Unmarshal(v, &ev.RequestBodyBytes)
	case "http.request.body.content":
		return json.Unmarshal(v, &ev.RequestBody)
	case "http.response.status_code":
		return json.Unmarshal(v, &ev.StatusCode)
	case "http.response.body.bytes":
		return json.Unmarshal(v, &ev.ResponseBodyBytes)
	case "url.path":
		return json.Unmarshal(v, &ev.Path)
	case "url.query":
		return json.Unmarshal(v, &ev.Query)
	case "source.ip":
		return json.Unmarshal(v, &ev.SourceIP)
	case "source.port":
		return json.Unmarshal(v, &ev.SourcePort)
	case "client.ip":
		return json.Unmarshal(v, &ev.ClientIP)
	case "user.id":
		return json.Unmarshal(v, &ev.UserID)
	case "user.name":
		return json.Unmarshal(v, &ev.UserName)
	case "user.roles":
		return setStrings(&ev.UserRoles, v)
	case "user.target.id":
		return json.Unmarshal(v, &ev.TargetUserID)
	case "user.target.name":
		return json.Unmarshal(v, &ev.TargetUserName)
	case "user_agent.original":
		return json.Unmarshal(v, &ev.UserAgent)
	case "trace.id":
		return json.Unmarshal(v, &ev.TraceID)
	case "span.id":
		return json.Unmarshal(v, &ev.SpanID)
	case "service.name":
		return json.Unmarshal(v, &ev.ServiceName)
	case "host.name":
		return json.Unmarshal(v, &ev.HostName)
	case "labels":
		return json.Unmarshal(v, &ev.Labels)
	case "trailguard.audit.resource":
		return json.Unmarshal(v, &ev.audit().Resource)
	case "trailguard.audit.before":
		ev.audit().Before = compact(v)
		return nil
	case "trailguard.audit.after":
		ev.audit().After = compact(v)
		return nil
	case "trailguard.attrs":
		ev.Attrs = compact(v)
		return nil
	}
	if ev.Extra == nil {
		ev.Extra = map[string]json.RawMessage{}
	}
	ev.Extra[name] = compact(v)
	return nil
}

func (ev *Event) audit() *Audit {
	if ev.Audit == nil {
		ev.Audit = new(Audit)
	}
	return ev.Audit
}

func compact(v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return append(json.RawMessage(nil), v...)
	}
	return b.Bytes()
}

func setTime(t *time.Time, v json.RawMessage) error {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return err
	}
	p, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	*t = p.UTC()
	return nil
}

// setStrings accepts a single string as well as an array, as Elasticsearch
// does for every field.
func setStrings(dst *[]string, v json.RawMessage) error {
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return err
		}
		*dst = []string{s}
		return nil
	}
	return json.Unmarshal(v, dst)
}
