package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trailguard/trailguard/access"
	"github.com/trailguard/trailguard/server"
)

// TestStolenBouncerKeyFromGatewayAddress: someone polling the decision
// stream with the gateway's bouncer key from the gateway's own address
// (the same host, a shared NAT, or a collector behind a load balancer,
// where every client has the balancer's address) and with the User-Agent
// the gateway sends (public: trailguard-proxy) must not take the changes
// the gateway has not heard (review, MEDIUM, stolen bouncer key: 2ddf419
// keyed the cursor by token, address and User-Agent, and all three were
// the thief's too, so the gateway never heard the ban).
func TestStolenBouncerKeyFromGatewayAddress(t *testing.T) {
	t.Parallel()
	sc := server.Defaults()
	sc.DataDir = t.TempDir()
	col, err := server.New(sc, quiet)
	if err != nil {
		t.Fatal(err)
	}
	_, admin, _ := col.Tokens().Create("admin", access.RoleAdmin)
	_, bouncer, _ := col.Tokens().Create("gw-bouncer", access.RoleBouncer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- col.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	base := "http://" + ln.Addr().String()

	var mu sync.Mutex
	var heard []string
	src := &StreamSource{URL: base, APIKey: bouncer, Interval: 100 * time.Millisecond}
	go src.Run(ctx, func(u Update) {
		mu.Lock()
		for _, d := range u.New {
			heard = append(heard, d.Value)
		}
		mu.Unlock()
	}, func(error) {})
	// The thief polls as fast as it can, from the same address, as the
	// gateway says it is.
	thiefStop := make(chan struct{})
	thiefDone := make(chan int)
	go func() {
		took := 0
		for {
			select {
			case <-thiefStop:
				thiefDone <- took
				return
			default:
			}
			req, _ := http.NewRequest("GET", base+"/v1/decisions/stream", nil)
			req.Header.Set("X-Api-Key", bouncer)
			req.Header.Set("User-Agent", "trailguard-proxy")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "203.0.113.9") {
				took++
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the gateway's startup poll is done
	req, _ := http.NewRequest("POST", base+"/v1/decisions", strings.NewReader(`{"scope":"Ip","value":"203.0.113.9","duration":"1h","reason":"test"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("ban: %d", resp.StatusCode)
	}
	// Whether the gateway hears the ban at all, not how soon: a loaded
	// machine (the thief takes a core) stalls it for seconds.
	deadline := time.Now().Add(30 * time.Second)
	got := false
	for !got && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		for _, v := range heard {
			got = got || v == "203.0.113.9"
		}
		mu.Unlock()
	}
	close(thiefStop)
	took := <-thiefDone
	if !got {
		t.Errorf("the gateway never heard the ban (the thief's polls took it %d times)", took)
	}
}
