package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/proxy"
	"github.com/trailguard/trailguard/sink"
)

// A gateway in front of an API that knows nothing of trailguard: its
// login route's failures become authn_login_fail events with the user
// name, never the password.
func Example() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad credentials", http.StatusUnauthorized)
	}))
	defer api.Close()

	var trail bytes.Buffer
	gw, err := proxy.New(proxy.Config{
		Routes: []proxy.Route{{Upstream: api.URL}},
		Logins: []proxy.Login{{Method: "POST", Path: "/login", User: "json:username"}},
		Sink:   sink.NewWriter(&trail),
	}, nil)
	if err != nil {
		panic(err)
	}
	front := httptest.NewServer(gw)
	defer front.Close()

	resp, err := http.Post(front.URL+"/login", "application/json",
		strings.NewReader(`{"username":"alice","password":"hunter2"}`))
	if err != nil {
		panic(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	front.Close()
	gw.Close() // drains the events into the sink

	for _, line := range strings.Split(strings.TrimSpace(trail.String()), "\n") {
		ev, _ := event.Decode([]byte(line))
		if ev.Action == event.ActionLoginFail {
			fmt.Println(ev.Action, ev.UserName, ev.Reason)
		}
	}
	fmt.Println("password recorded:", strings.Contains(trail.String(), "hunter2"))
	// Output:
	// authn_login_fail alice upstream answered 401 Unauthorized
	// password recorded: false
}
