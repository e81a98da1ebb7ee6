package detect

import (
	"fmt"
	"testing"
)

// TestUserNameConditionsByAccount: a rule's condition on a user name
// field tests the name as the account store sees it (username.Key's
// fold: characters whose NFKC form is ASCII, spaces around; case as any
// Sigma test), with the built-in rules loaded beside it, as the collector
// runs them. An attacker logging in as ａｄｍｉｎ or " admin" (which
// Django's NFKC-normalising login, stripping forms and case-insensitive
// stores take for admin) dodged an operator's `user.name: admin` watch,
// while the correlations already grouped them as one account. Without
// the fold the fullwidth, padded and mathematical spellings do not match.
func TestUserNameConditionsByAccount(t *testing.T) {
	const watch = `title: privileged account used
id: 11111111-2222-3333-4444-555555555555
logsource:
    category: authentication
detection:
    name: {user.name: admin}
    target: {user.target.name|startswith: root}
    re: {user.name|re: '^svc-[a-z]+$'}
    cased: {user.name|cased: Backup}
    ref: {user.name|fieldref: user.target.name}
    method: {http.request.method: get}
    condition: %s
`
	event := func(fields string) string {
		return `{"@timestamp":"2026-11-30T12:00:00Z","event":{"category":["authentication"],"action":"authn_login_success","outcome":"success"},` + fields + `}`
	}
	cases := []struct {
		cond, fields string
		want         bool
	}{
		{"name", `"user":{"name":"admin"}`, true},
		{"name", `"user":{"name":"Admin"}`, true},
		{"name", `"user":{"name":"ａｄｍｉｎ"}`, true},
		{"name", `"user":{"name":"ＡＤＭＩＮ"}`, true},
		{"name", `"user":{"name":" admin\t"}`, true},
		{"name", `"user":{"name":"𝐚𝐝𝐦𝐢𝐧"}`, true},
		{"name", `"user":{"name":"　admin"}`, true}, // ideographic space: NFKC is a space
		{"name", `"user":{"name":"admins"}`, false},
		{"name", `"user":{"name":"аdmin"}`, false}, // Cyrillic а: another account
		{"target", `"user":{"name":"x","target":{"name":"ｒｏｏｔ2"}}`, true},
		{"re", `"user":{"name":"ｓｖｃ-backup"}`, true},
		{"re", `"user":{"name":"svc-1"}`, false},
		{"cased", `"user":{"name":"Ｂａｃｋｕｐ"}`, true},
		{"cased", `"user":{"name":"backup"}`, false},
		{"ref", `"user":{"name":"ａｌｉｃｅ","target":{"name":"alice "}}`, true},
		{"ref", `"user":{"name":"alice","target":{"name":"bob"}}`, false},
		// Not a user name: tested as sent.
		{"method", `"http":{"request":{"method":"ＧＥＴ"}}`, false},
		{"method", `"http":{"request":{"method":"GET"}}`, true},
	}
	for _, c := range cases {
		t.Run(c.cond+" "+c.fields, func(t *testing.T) {
			custom := ParseRules("custom.yml", []byte(fmt.Sprintf(watch, c.cond)), "custom")
			for _, err := range custom.Errors {
				t.Fatalf("parse: %v", err)
			}
			e, errs := NewEngine(Builtin().Merge(custom), Options{})
			for _, err := range errs {
				t.Fatalf("compile: %v", err)
			}
			got := false
			for _, a := range runEvents(e, event(c.fields)) {
				if a.Rule.Title == "privileged account used" {
					got = true
				}
			}
			if got != c.want {
				t.Errorf("fired = %v, want %v", got, c.want)
			}
		})
	}
}
