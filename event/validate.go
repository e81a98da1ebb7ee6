package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Validate checks an encoded event document against the Elastic Common
// Schema: every field outside trailguard.* and labels.* must be an ECS
// field, its JSON value must suit the field's ECS type (a string for
// keyword, an integer for long, an address for ip, …), and categorisation
// fields must hold values ECS allows. It returns every problem found,
// joined, or nil.
func Validate(doc []byte) error {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(doc, &root); err != nil {
		return fmt.Errorf("event: validate: %w", err)
	}
	var errs []error
	walkFields("", root, 0, func(name string, v json.RawMessage) {
		if err := validateField(name, v); err != nil {
			errs = append(errs, err)
		}
	})
	if _, ok := root["@timestamp"]; !ok {
		errs = append(errs, errors.New("event: validate: @timestamp missing"))
	}
	return errors.Join(errs...)
}

// walkFields calls fn for every leaf of a JSON document by dotted name.
func walkFields(prefix string, m map[string]json.RawMessage, depth int, fn func(string, json.RawMessage)) {
	for k, v := range m {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		v = bytes.TrimSpace(v)
		if len(v) > 0 && v[0] == '{' && depth < MaxDecodeDepth && !rawPaths[name] {
			if f, ok := ecsFields[name]; !ok || (f.typ != "object" && f.typ != "flattened" && f.typ != "geo_point") {
				var sub map[string]json.RawMessage
				if json.Unmarshal(v, &sub) == nil {
					walkFields(name, sub, depth+1, fn)
					continue
				}
			}
		}
		fn(name, v)
	}
}

func validateField(name string, v json.RawMessage) error {
	if name == "trailguard" || strings.HasPrefix(name, "trailguard.") || strings.HasPrefix(name, labelsPrefix+".") {
		return nil
	}
	f, ok := ecsFields[name]
	if !ok {
		return fmt.Errorf("event: field %s is not in ECS %s", name, ECSVersion)
	}
	var vals []json.RawMessage
	if len(v) > 0 && v[0] == '[' && f.typ != "nested" {
		if err := json.Unmarshal(v, &vals); err != nil {
			return fmt.Errorf("event: field %s: %w", name, err)
		}
	} else {
		vals = []json.RawMessage{v}
	}
	for _, x := range vals {
		if err := checkType(f, x); err != nil {
			return fmt.Errorf("event: field %s (ECS %s): %w", name, f.typ, err)
		}
	}
	return nil
}

func checkType(f ecsField, v json.RawMessage) error {
	var x any
	dec := json.NewDecoder(bytes.NewReader(v))
	dec.UseNumber()
	if err := dec.Decode(&x); err != nil {
		return err
	}
	switch f.typ {
	case "keyword", "constant_keyword", "wildcard", "text", "match_only_text":
		s, ok := x.(string)
		if !ok {
			return fmt.Errorf("want a string, got %s", v)
		}
		if len(f.allowed) > 0 && !slices.Contains(f.allowed, s) {
			return fmt.Errorf("value %q is not one ECS allows (%s)", s, strings.Join(f.allowed, ", "))
		}
	case "long", "integer", "short", "byte", "unsigned_long":
		n, ok := x.(json.Number)
		if !ok {
			return fmt.Errorf("want an integer, got %s", v)
		}
		if _, err := n.Int64(); err != nil {
			return fmt.Errorf("want an integer, got %s", v)
		}
	case "float", "double", "scaled_float", "half_float":
		if _, ok := x.(json.Number); !ok {
			return fmt.Errorf("want a number, got %s", v)
		}
	case "boolean":
		if _, ok := x.(bool); !ok {
			return fmt.Errorf("want a boolean, got %s", v)
		}
	case "date":
		switch d := x.(type) {
		case string:
			if _, err := time.Parse(time.RFC3339Nano, d); err != nil {
				return fmt.Errorf("want an RFC 3339 date: %w", err)
			}
		case json.Number:
		default:
			return fmt.Errorf("want a date, got %s", v)
		}
	case "ip":
		s, ok := x.(string)
		if !ok {
			return fmt.Errorf("want an IP address string, got %s", v)
		}
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("want an IP address: %w", err)
		}
	case "object", "flattened", "nested":
		switch x.(type) {
		case map[string]any, []any:
		default:
			return fmt.Errorf("want an object, got %s", v)
		}
	}
	return nil
}
