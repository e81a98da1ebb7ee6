package redact_test

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/trailguard/trailguard/redact"
)

func ExampleNew() {
	// HMAC mode: analysts can tell that two events carried the same
	// password or card without seeing either.
	r, err := redact.New(redact.Config{
		Mode:   redact.HMAC,
		Secret: []byte("a 32-byte key from your secret store"),
	})
	if err != nil {
		panic(err)
	}
	a := r.String("card 4111 1111 1111 1111")
	b := r.String("card 4111-1111-1111-1111")
	fmt.Println(a == b)
	fmt.Println(a == "card "+r.Hash("4111111111111111"))
	fmt.Println(r.Query("user=bob&password=hunter2") == "user=bob&password="+r.Hash("hunter2"))

	_, err = redact.New(redact.Config{Mode: redact.HMAC})
	fmt.Println(err)
	// Output:
	// true
	// true
	// true
	// redact: mode hmac-sha256 needs a secret of at least 16 bytes, got 0
}

func ExampleRedactor_JSON() {
	r, _ := redact.New(redact.Config{})
	body := []byte(`{"user":"alice","password":"hunter2","card":{"number":"4111 1111 1111 1111","exp":"12/29"},` +
		`"pass\u0077ord_confirmation":"hunter2","tokens_used":12,"note":"call 555-0100"}`)
	out, err := r.JSON(nil, body)
	if err != nil {
		// Not JSON: scrub it as text instead.
		out = []byte(r.String(string(body)))
	}
	fmt.Println(string(out))
	// Output:
	// {"user":"alice","password":"[REDACTED]","card":{"number":"[REDACTED]","exp":"12/29"},"pass\u0077ord_confirmation":"[REDACTED]","tokens_used":12,"note":"call 555-0100"}
}

func ExampleRedactor_Query() {
	r, _ := redact.New(redact.Config{Keys: []string{"code"}})
	fmt.Println(r.Query("state=xyz&code=SplxlOBeZQQYbYS6WxSbIA&redirect_uri=https%3A%2F%2Fapp.example%2Fcb"))
	fmt.Println(r.Form("username=alice&password=correct+horse&remember=on"))
	// Output:
	// state=xyz&code=[REDACTED]&redirect_uri=https%3A%2F%2Fapp.example%2Fcb
	// username=alice&password=[REDACTED]&remember=on
}

func ExampleRedactor_String() {
	r, _ := redact.New(redact.Config{Mode: redact.Mask, Emails: true})
	fmt.Println(r.String("refund to 4111-1111-1111-1111 for bob@example.com"))
	fmt.Println(r.String("GET /orders Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"))
	fmt.Println(r.String("retry with AKIAIOSFODNN7EXAMPLE, ssn 123-45-6789"))
	// Output:
	// refund to ************1111 for b***@example.com
	// GET /orders Authorization: [REDACTED]
	// retry with [REDACTED:aws-key], ssn [REDACTED:ssn]
}

func ExampleRedactor_Header() {
	r, _ := redact.New(redact.Config{Headers: []string{"X-Tenant-Key"}})
	fmt.Println(r.Header("Authorization", "Bearer abc.def.ghi"))
	fmt.Println(r.Header("X-Tenant-Key", "t-123"))
	fmt.Println(r.Header("User-Agent", "curl/8.5.0"))
	// Output:
	// [REDACTED]
	// [REDACTED]
	// curl/8.5.0
}

func ExampleRedactor_Value() {
	r, _ := redact.New(redact.Config{})
	before := map[string]any{"role": "viewer", "api_key": "k-1"}
	after := map[string]any{"role": "admin", "api_key": "k-2", "history": []any{"ssn 123-45-6789"}}
	fmt.Println(r.Value("before", before))
	fmt.Println(r.Value("after", after))
	// Output:
	// map[api_key:[REDACTED] role:viewer]
	// map[api_key:[REDACTED] history:[ssn [REDACTED:ssn]] role:admin]
}

func ExampleRedactor_ReplaceAttr() {
	r, _ := redact.New(redact.Config{})
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // keep the example's output stable
			}
			return r.ReplaceAttr(groups, a)
		},
	}))
	log.Info("token refreshed", "user", "alice", "refresh_token", "rt-9f8e7d", "client", "Bearer abcdef123456")
	// Output:
	// level=INFO msg="token refreshed" user=alice refresh_token=[REDACTED] client="Bearer [REDACTED:bearer]"
}
