package proxy

import (
	"fmt"
	"strings"
)

// pattern is a compiled path pattern: segments that are literal, one
// wildcard segment ("*" or "{name}"), or the rest of the path ("**" or
// "{name...}", last only).
type pattern struct {
	text  string
	segs  []patSeg
	names []string
}

type patSeg struct {
	lit  string
	name string // for {name} and {name...}
	wild bool   // one segment
	rest bool   // any number of segments, last
}

func compilePattern(p string) (*pattern, error) {
	if p == "" || p[0] != '/' {
		return nil, fmt.Errorf("path %q: want a pattern starting with / (e.g. /api/users/{id}/role)", p)
	}
	pt := &pattern{text: p}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		var sg patSeg
		switch {
		case s == "*":
			sg.wild = true
		case s == "**":
			sg.rest = true
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "...}"):
			sg.rest, sg.name = true, s[1:len(s)-4]
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			sg.wild, sg.name = true, s[1:len(s)-1]
		case strings.ContainsAny(s, "{}*"):
			return nil, fmt.Errorf("path %q: segment %q: wildcards take a whole segment (*, **, {name}, {name...})", p, s)
		default:
			sg.lit = s
		}
		if sg.rest && i != len(parts)-1 {
			return nil, fmt.Errorf("path %q: %q must be the last segment", p, s)
		}
		if (sg.wild || sg.rest) && sg.name != "" {
			for _, n := range pt.names {
				if n == sg.name {
					return nil, fmt.Errorf("path %q: {%s} appears twice", p, sg.name)
				}
			}
			pt.names = append(pt.names, sg.name)
		}
		pt.segs = append(pt.segs, sg)
	}
	if n := len(pt.segs); n > 1 && pt.segs[n-1] == (patSeg{}) {
		// "/login/" is "/login": a trailing slash never matters (below).
		pt.segs = pt.segs[:n-1]
	}
	return pt, nil
}

func (pt *pattern) has(name string) bool {
	for _, n := range pt.names {
		if n == name {
			return true
		}
	}
	return false
}

// match reports whether path (a matchPath) matches and, when want names
// a wildcard, returns the segment it matched.
//
// Literal segments match in any case, and one trailing slash on
// the path or the pattern does not matter: Express and ASP.NET route
// /API/Users/7/Role/ to /api/users/7/role, so a rule that told them apart
// could be walked around. Matching more than a case-sensitive upstream
// serves only records a request that upstream answers 404.
func (pt *pattern) match(path, want string) (string, bool) {
	if path == "" || path[0] != '/' {
		return "", false
	}
	if len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	rest := path[1:]
	var got string
	for i, sg := range pt.segs {
		if sg.rest {
			if sg.name == want {
				got = rest
			}
			return got, true
		}
		seg, after, more := strings.Cut(rest, "/")
		switch {
		case sg.wild:
			if seg == "" {
				return "", false
			}
			if sg.name != "" && sg.name == want {
				got = seg
			}
		case !strings.EqualFold(seg, sg.lit):
			return "", false
		}
		if i == len(pt.segs)-1 {
			if more {
				return "", false
			}
			return got, true
		}
		if !more {
			if next := pt.segs[i+1]; next.rest {
				// "/files/**" takes /files/ and so /files (no trailing
				// slash matters).
				return got, true
			}
			return "", false
		}
		rest = after
	}
	return got, true
}
