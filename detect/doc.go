// Package detect is trailguard's streaming detection engine: it evaluates
// Sigma rules (https://github.com/SigmaHQ/sigma-specification) over stored
// events, in ledger order, and raises alerts as ECS documents
// (event.kind alert).
//
// Rules are parsed from YAML (ParseRules, LoadDir, Builtin) into a RuleSet;
// NewEngine compiles them, reporting each rule it cannot use with its
// file, line and reason, and keeps the others. Engine.Process evaluates one
// record and calls back with the alerts it raises; Runner follows a ledger
// with a persisted cursor, so a restart resumes and raises exactly the
// alerts an uninterrupted run would have.
//
// Supported: detection rules (maps, lists of maps, keywords; the value
// modifiers contains, startswith, endswith, all, cased, re, cidr, exists,
// gt, gte, lt, lte, neq, fieldref, base64, base64offset, utf16*, windash;
// conditions with and, or, not, parentheses, "1 of", "all of", "them"),
// correlation rules (event_count, value_count, temporal,
// temporal_ordered, chained, with aliases) and trailguard's extension
// rate_of_rise. Web rules (logsource category webserver or proxy) name
// fields in Sigma's web taxonomy, mapped onto ECS by WebFieldMap; c-uri is
// the request target as the client sent it. Rule tests (x.test.yml next to
// x.yml) feed events and expect alerts: see RunTests.
//
// The engine is fast because it reads only what rules use: one pass over
// each JSON document records the spans of the wanted fields, all string
// tests of a field run in one pass over its value, and state per
// correlation group is bounded and expires by generations. See
// docs/detection.md for semantics, the field mapping and figures.
package detect
