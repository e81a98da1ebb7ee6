package redact

import (
	"strings"
	"testing"
)

// TestTrailguardTokens: with Config.Tokens, a trailguard API token in free
// text is replaced whole; lookalikes stay; without it nothing changes.
func TestTrailguardTokens(t *testing.T) {
	const tok = "tg_fkntehj5_42tehrqlapscxvaddjefj57ia2oftk5t"
	on, err := New(Config{Tokens: true})
	if err != nil {
		t.Fatal(err)
	}
	off, _ := New(Config{})
	for _, c := range []struct{ in, want string }{
		{tok, "[REDACTED:trailguard-token]"},
		{"/v1/events/" + tok, "/v1/events/[REDACTED:trailguard-token]"},
		{"message:" + tok + " and x", "message:[REDACTED:trailguard-token] and x"},
		{"a " + tok + "," + tok, "a [REDACTED:trailguard-token],[REDACTED:trailguard-token]"},
		{"xtg_fkntehj5_42tehrqlapscxvaddjefj57ia2oftk5t", "xtg_fkntehj5_42tehrqlapscxvaddjefj57ia2oftk5t"}, // part of a longer word
		{tok + "a", tok + "a"},
		{"tg_fkntehj5_42tehrqlapscxvaddjefj57ia2oftk5", "tg_fkntehj5_42tehrqlapscxvaddjefj57ia2oftk5"},   // too short
		{"tg_FKNTEHJ5_42tehrqlapscxvaddjefj57ia2oftk5t", "tg_FKNTEHJ5_42tehrqlapscxvaddjefj57ia2oftk5t"}, // not base32 lower case
		{"http_request user_agent tg_", "http_request user_agent tg_"},
	} {
		if got := on.String(c.in); got != c.want {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
		if got := off.String(c.in); got != c.in {
			t.Errorf("without Tokens, %q became %q", c.in, got)
		}
	}
	out, err := on.JSON(nil, []byte(`{"q":"user.name:`+tok+`"}`))
	if err != nil || strings.Contains(string(out), tok) {
		t.Errorf("JSON: %s, %v", out, err)
	}
}
