package ship_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/trailguard/trailguard/ship"
)

// Ship events to a collector's POST /v1/events. Write returns once the
// events are fsynced in the spool; Flush waits until the collector has them.
func Example() {
	// A stand-in for `trailguard serve`.
	received := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sc := bufio.NewScanner(r.Body)
		n := 0
		for sc.Scan() {
			received <- sc.Text()
			n++
		}
		fmt.Fprintf(w, `{"accepted":%d}`, n)
	}))
	defer srv.Close()

	spool, err := os.MkdirTemp("", "spool")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(spool)

	s, err := ship.New(ship.Options{
		URL:      srv.URL + "/v1/events",
		Protocol: ship.NDJSON,
		Token:    "ingest-token",
		SpoolDir: spool,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	ctx := context.Background()
	err = s.Write(ctx, [][]byte{
		[]byte(`{"event":{"id":"0193b1c2-0001","action":"authn_login_fail","outcome":"failure"}}`),
		[]byte(`{"event":{"id":"0193b1c2-0002","action":"authn_login_success","outcome":"success"}}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-received)
	fmt.Println(<-received)
	st := s.Stats()
	fmt.Println("shipped:", st.Shipped, "pending:", st.Pending)
	// Output:
	// {"event":{"id":"0193b1c2-0001","action":"authn_login_fail","outcome":"failure"}}
	// {"event":{"id":"0193b1c2-0002","action":"authn_login_success","outcome":"success"}}
	// shipped: 2 pending: 0
}
