package detect_test

import (
	"fmt"

	"github.com/trailguard/trailguard/detect"
)

func Example() {
	rules := detect.ParseRules("my-rules.yml", []byte(`
title: Admin console probed by an unknown tool
id: 7b6d8f0e-4c8a-4f57-9a43-0c8f1e2d3b4a
logsource:
    category: webserver
detection:
    path:
        cs-uri-stem|startswith: /admin
    tool:
        c-useragent|contains: [sqlmap, nikto]
    condition: path and tool
level: high
`), "custom")
	e, errs := detect.NewEngine(rules, detect.Options{})
	fmt.Println("errors:", len(rules.Errors)+len(errs))

	events := []string{
		`{"@timestamp":"2026-03-01T10:00:00Z","event":{"id":"e1","category":["web"]},"url":{"path":"/admin/login"},"user_agent":{"original":"Mozilla/5.0"}}`,
		`{"@timestamp":"2026-03-01T10:00:01Z","event":{"id":"e2","category":["web"]},"url":{"path":"/admin/setup"},"user_agent":{"original":"sqlmap/1.8"},"client":{"ip":"203.0.113.7"}}`,
	}
	for i, ev := range events {
		e.Process(detect.Record{Index: uint64(i), Data: []byte(ev)}, func(a *detect.Alert) {
			fmt.Println(a.Rule.Level, a.Message(), "event", a.EventID)
		})
	}
	// Output:
	// errors: 0
	// high Admin console probed by an unknown tool (client.ip=203.0.113.7, url.original=/admin/setup, user_agent.original=sqlmap/1.8) event e2
}
