package event_test

import (
	"fmt"
	"time"

	"github.com/trailguard/trailguard/event"
)

func ExampleEvent_AppendJSON() {
	ev := &event.Event{
		Timestamp: time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC),
		Kind:      event.KindEvent,
		Category:  []string{event.CategoryAuthentication},
		Type:      []string{event.TypeStart},
		Action:    event.ActionLoginFail,
		Outcome:   event.OutcomeFailure,
		Reason:    "bad password",
		UserName:  "mallory\n{\"forged\":true}", // attacker input stays inside its string
		SourceIP:  "198.51.100.4",
	}
	fmt.Println(string(ev.AppendJSON(nil)))
	// Output:
	// {"@timestamp":"2026-11-25T09:30:00.000000000Z","event":{"kind":"event","category":["authentication"],"type":["start"],"action":"authn_login_fail","outcome":"failure","reason":"bad password"},"source":{"ip":"198.51.100.4"},"user":{"name":"mallory\n{\"forged\":true}"}}
}

func ExampleDecode() {
	ev, err := event.Decode([]byte(`{"@timestamp":"2026-11-25T09:30:00Z","event.action":"authz_fail","user":{"name":"bob"},"http.version":"2"}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(ev.Action, ev.UserName, string(ev.Extra["http.version"]))
	// Output: authz_fail bob "2"
}

func ExampleValidate() {
	err := event.Validate([]byte(`{"@timestamp":"2026-11-25T09:30:00Z","http":{"response":{"status_code":"401"}}}`))
	fmt.Println(err)
	// Output: event: field http.response.status_code (ECS long): want an integer, got "401"
}
