package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// client is one simulated party. The sample API trusts the loopback proxy
// in front of it, so each party's X-Forwarded-For gives it its own client
// address in the trail.
type client struct {
	base  string
	ip    string
	ua    string
	http  *http.Client
	token string
	// secrets collects every credential this client sent, so the summary
	// can prove none of them reached the trail.
	secrets *secretSet
}

type secretSet struct {
	mu sync.Mutex
	m  map[string]bool
}

func (s *secretSet) add(v string) {
	s.mu.Lock()
	s.m[v] = true
	s.mu.Unlock()
}

func (s *secretSet) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.m))
	for k := range s.m {
		out = append(out, k)
	}
	return out
}

func (c *client) do(ctx context.Context, method, path string, body any) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Forwarded-For", c.ip)
	req.Header.Set("User-Agent", c.ua)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, out
}

func (c *client) login(ctx context.Context, name, password string) bool {
	c.secrets.add(password)
	status, body := c.do(ctx, "POST", "/api/login", map[string]string{"username": name, "password": password})
	if status != http.StatusOK {
		return false
	}
	var out struct{ Token string }
	json.Unmarshal(body, &out)
	c.token = out.Token
	c.secrets.add(out.Token)
	return true
}

// testCards are the card networks' published test numbers (Luhn-valid).
var testCards = []string{"4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "6011111111111117"}

// pause sleeps for a human-ish think time, or returns false when the demo
// is over.
func pause(ctx context.Context, min, max time.Duration) bool {
	d := min + rand.N(max-min+1)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// pace is how long the parties keep going: every party plays at least its
// minimum number of rounds, which only hard (the caller's context) stops,
// so that every run shows each kind of event however slow the machine;
// after those, rounds go on until soft (the demo's duration) ends.
type pace struct{ hard, soft context.Context }

// round waits a think time before round i and reports whether to play it.
func (p pace) round(i, min int, lo, hi time.Duration) bool {
	if i < min {
		return pause(p.hard, lo, hi)
	}
	return pause(p.soft, lo, hi)
}

// Minimum rounds per party.
const (
	shopperRounds = 40 // with two shoppers: ≥ 50 successful requests, ≥ 3 orders
	adminRounds   = 6
	snoopRounds   = 9
)

// shopper logs in and browses and buys until the pace says stop.
func shopper(p pace, c *client, name, password string) {
	ctx := p.hard
	for !c.login(ctx, name, password) {
		if !pause(p.soft, 50*time.Millisecond, 100*time.Millisecond) {
			return
		}
	}
	for i := 0; p.round(i, shopperRounds, 15*time.Millisecond, 60*time.Millisecond); i++ {
		switch i % 6 {
		case 0, 3:
			c.do(ctx, "GET", "/api/orders", nil)
		case 1:
			card := testCards[rand.N(len(testCards))]
			c.secrets.add(card)
			c.do(ctx, "POST", "/api/orders", map[string]any{"item": "book", "amount_cents": 1200 + rand.N(5000), "card_number": card})
		case 2:
			c.do(ctx, "GET", fmt.Sprintf("/api/orders/%d", 1+rand.N(20)), nil)
		case 4:
			c.do(ctx, "POST", "/api/orders", map[string]any{"item": "", "amount_cents": 0}) // fails validation
		case 5:
			c.do(ctx, "GET", "/healthz", nil)
		}
	}
	c.do(context.Background(), "POST", "/api/logout", nil)
}

// admin manages users: lists them and moves dave between roles.
func admin(p pace, c *client, password string) {
	ctx := p.hard
	if !c.login(ctx, "alice", password) {
		return
	}
	roles := []string{"viewer", "clerk"}
	for i := 0; p.round(i, adminRounds, 100*time.Millisecond, 250*time.Millisecond); i++ {
		if i%2 == 0 {
			c.do(ctx, "GET", "/api/users", nil)
		} else {
			c.do(ctx, "PUT", "/api/users/dave/role", map[string]string{"role": roles[i/2%2]})
		}
	}
}

// snoop is a viewer poking at what a viewer may not touch: authz failures.
func snoop(p pace, c *client, password string) {
	ctx := p.hard
	if !c.login(ctx, "bob", password) {
		return
	}
	for i := 0; p.round(i, snoopRounds, 80*time.Millisecond, 200*time.Millisecond); i++ {
		switch i % 3 {
		case 0:
			c.do(ctx, "GET", "/api/users", nil)
		case 1:
			c.do(ctx, "PUT", "/api/users/bob/role", map[string]string{"role": "admin"})
		case 2:
			c.do(ctx, "GET", "/api/orders/1", nil)
		}
	}
}

// attacker waits a moment, then runs a password-guessing burst against one
// account, a credential-stuffing pass over many user names, and a few
// injection probes, all from one address: what the detection stage must
// catch. Its script always runs to the end (only the caller's context
// stops it).
func attacker(p pace, c *client, wordlist []string, alicePassword string) {
	ctx := p.hard
	if !pause(ctx, 500*time.Millisecond, 800*time.Millisecond) {
		return
	}
	for _, pw := range wordlist { // brute force: fast failed logins
		if ctx.Err() != nil {
			return
		}
		c.login(ctx, "alice", pw)
		pause(ctx, 5*time.Millisecond, 15*time.Millisecond)
	}
	c.login(ctx, "alice", alicePassword) // the guess that works: success after many failures
	for i := range 30 {                  // stuffing: one try per leaked account
		if ctx.Err() != nil {
			return
		}
		c.login(ctx, fmt.Sprintf("user%03d@example.com", i), fmt.Sprintf("Leaked#%04d", i*7919%10000))
		pause(ctx, 5*time.Millisecond, 15*time.Millisecond)
	}
	c.ua = "sqlmap/1.8.4#stable (https://sqlmap.org)"
	for _, probe := range []string{"/api/orders/1%27%20OR%20%271%27=%271", "/api/orders?id=1%20UNION%20SELECT%20password%20FROM%20users--", "/api/../../etc/passwd"} {
		c.do(ctx, "GET", probe, nil)
	}
}
