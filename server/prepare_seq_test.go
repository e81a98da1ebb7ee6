package server

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/redact"
)

// sequenceRedactors are onePassRedactors and configurations that make a
// modelled name sensitive by its own name (the verdicts a ScrubPass keeps
// on canonical members, and the names it predicts, are those names).
var sequenceRedactors = func() []*redact.Redactor {
	rs := append([]*redact.Redactor{}, onePassRedactors...)
	for _, cfg := range []redact.Config{
		{Keys: []string{"name"}},
		{Keys: []string{"id", "*original"}},
		{Keys: []string{"ip", "port", "*bytes"}},
		{Keys: []string{"duration", "statuscode", "roles"}},
		{Keys: []string{"*er*", "*en*", "*ti*", "u*", "*s"}},
		{AllowKeys: []string{"password", "token"}, Emails: true},
	} {
		r, err := redact.New(cfg)
		if err != nil {
			panic(err)
		}
		rs = append(rs, r)
	}
	return rs
}()

// primingLines are clean events whose members come in the orders a
// shipper writes: a ScrubPass that read them predicts those names next.
var primingLines = []string{
	`{"user":{"name":"bob","id":"u1","roles":["viewer"]},"event":{"action":"x","id":"e1"},"source":{"ip":"10.0.0.1","port":1}}`,
	`{"event":{"id":"e1","action":"x","duration":5},"http":{"request":{"id":"r","method":"GET"},"response":{"status_code":200,"body":{"bytes":4}}},"url":{"query":"a=1","path":"/"}}`,
	`{"labels":{"env":"prod"},"trailguard":{"http":{"request":{"headers":{"accept":"*/*"}}}},"user_agent":{"original":"curl"}}`,
	prepareSeeds[0], prepareSeeds[1],
}

// TestOnePassSequences: a ScrubPass carries what it learnt from one event
// to the next (verdicts on canonical names, the member order it
// predicts). An attacker who primes it with clean events and then sends a
// secret in the predicted place, or under a name written another way,
// must not get anything past the scrubber: every line the one pass takes,
// in any order after any others, is one scrubbing leaves as it is, and
// the one pass stores what the two passes store.
func TestOnePassSequences(t *testing.T) {
	t.Parallel()
	attacks := append(append([]string{}, secretLines()...), prepareSeeds...)
	attacks = append(attacks,
		// The predicted name, then a longer one that starts with it.
		`{"user":{"name":"bob","id":"u1","roles":["viewer"]},"event":{"action":"x","id":"e1"},"source":{"ip":"10.0.0.1","port":4111111111111111}}`,
		`{"user":{"name":"AKIAIOSFODNN7EXAMPLE","id":"u1"}}`, `{"user":{"names":"x","name":"bob"}}`, `{"user":{"name\u0000":"x"}}`,
		`{"user":{"nam\u0065":"4111111111111111"}}`, `{"user":{"Name":"bob"}}`, `{"user":{"name":"bob","name":"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"}}`,
		`{"user":{"name":"bob","id":"Bearer abcdef123456"}}`, `{"user":{"name":"bob","password":"hunter2"}}`, `{"user":{"name":"bob","id":null,"token":"t"}}`,
		`{"labels":{"env":"prod","secret":"s"}}`, `{"trailguard":{"http":{"request":{"headers":{"accept":"*/*","authorization":"Basic dXNlcjpwYXNz"}}}}}`,
		`{"http":{"request":{"id":"r","method":"GET","body":{"content":"{\"password\":\"x\"}"}}}}`,
		`{"event":{"id":"e1","action":"x","duration":4111111111111111}}`, `{"url":{"query":"password=hunter2&a=1","path":"/"}}`,
		`{"user_agent":{"original":"`+strings.Repeat("a", 9000)+` 4111 1111 1111 1111"}}`,
		`{"user":{"name":"`+strings.Repeat("x", 300)+`","id":"u1"}}`,
	)
	rng := rand.New(rand.NewPCG(7, 9))
	for ri, r := range sequenceRedactors {
		p := event.NewScrubPass(r.NewTokens())
		took := 0
		for round := range 2 {
			order := rng.Perm(len(attacks))
			for _, i := range order {
				// Primed each time: the attack follows clean events.
				for _, prime := range primingLines[round%len(primingLines):] {
					checkOnePass(t, r, p, []byte(prime))
				}
				if checkOnePass(t, r, p, []byte(attacks[i])) {
					took++
				}
			}
		}
		if ri == 0 && took == 0 {
			t.Errorf("the one pass took none of the lines under the default redactor")
		}
	}
}

// FuzzPrepareSequence is FuzzPrepare over sequences of events read by one
// ScrubPass (one per line of the input, as one request's): what the pass
// learnt from the lines before must not let a later line past the
// scrubber, under every configuration.
func FuzzPrepareSequence(f *testing.F) {
	for _, line := range secretLines() {
		f.Add([]byte(strings.Join(primingLines, "\n") + "\n" + line))
	}
	for _, line := range prepareSeeds {
		f.Add([]byte(primingLines[0] + "\n" + line + "\n" + primingLines[1]))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		lines := bytes.Split(in, []byte("\n"))
		if len(lines) > 16 {
			lines = lines[:16]
		}
		for _, r := range sequenceRedactors {
			p := event.NewScrubPass(r.NewTokens())
			for _, line := range lines {
				checkOnePass(t, r, p, line)
			}
		}
	})
}

// TestOnePassTemplateSecrets: a ScrubPass reads a document along the last
// one it took when the layout is the same (the gaps between values equal
// byte for byte). An attacker who sends a clean event and then the same
// layout with a secret in one value must still meet the scrubber: each
// secret line of secretLines follows the same line with a clean value in
// the secret's place, under every configuration.
func TestOnePassTemplateSecrets(t *testing.T) {
	t.Parallel()
	clean := []string{"plain text", "x", "/a", "4111", "ab"}
	secrets := []string{"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
		"card 4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE", "Bearer abcdef123456", "bob@example.com", "123-45-6789",
		"password=hunter2&a=1", "4111111111111111"}
	places := []string{
		`{"message":%q,"user":{"name":"bob"}}`, `{"user":{"name":%q,"id":"u1"},"event":{"action":"x"}}`,
		`{"url":{"query":%q,"path":"/a"},"source":{"ip":"10.0.0.1","port":1}}`, `{"user_agent":{"original":%q}}`,
		`{"labels":{"env":%q}}`, `{"trailguard":{"http":{"request":{"headers":{"x-custom":%q,"accept":"*/*"}}}}}`,
		`{"event":{"reason":%q,"id":"e1"},"error":{"message":"x"}}`, `{"http":{"request":{"body":{"content":%q}}}}`,
	}
	took := 0
	for _, r := range sequenceRedactors {
		p := event.NewScrubPass(r.NewTokens())
		for _, place := range places {
			for _, c := range clean {
				for _, s := range secrets {
					if checkOnePass(t, r, p, []byte(strings.Replace(place, "%q", `"`+c+`"`, 1))) {
						took++
					}
					checkOnePass(t, r, p, []byte(strings.Replace(place, "%q", `"`+s+`"`, 1)))
				}
			}
		}
		// Numbers: a clean one, then a card number in its place.
		for _, place := range []string{`{"event":{"duration":%d,"id":"e"}}`, `{"source":{"ip":"10.0.0.1","port":%d}}`} {
			checkOnePass(t, r, p, fmt.Appendf(nil, place, 1234))
			checkOnePass(t, r, p, fmt.Appendf(nil, place, 4111111111111111))
		}
	}
	if took == 0 {
		t.Fatal("the one pass took none of the clean lines: the template was never kept")
	}
}
