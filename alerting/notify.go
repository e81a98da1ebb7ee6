package alerting

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// NotifierConfig configures one notifier (the `notifiers:` list of the
// collector's configuration).
type NotifierConfig struct {
	// Name labels the notifier in metrics and logs (default: its type):
	// up to 64 letters, digits, '_', '-' or '.', one per notifier, so
	// two of one type need names.
	Name string `yaml:"name"`
	// Type is webhook, slack, syslog or alertmanager.
	Type string `yaml:"type"`
	// URL is where alerts go: the webhook's URL, Slack's incoming webhook
	// URL, Alertmanager's base URL (http://am:9093), or for syslog
	// tcp://host:port, tls://host:port or udp://host:port.
	URL string `yaml:"url"`
	// SecretFile holds the webhook's HMAC-SHA256 key.
	SecretFile string `yaml:"secret_file"`
	// CAFile is a PEM bundle to verify an https or tls:// server with.
	CAFile string `yaml:"ca_file"`
	// MinLevel is the lowest level delivered (default low: everything but
	// informational).
	MinLevel string `yaml:"min_level"`
	// Timeout bounds one delivery attempt (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// QueueSize bounds the notices waiting for delivery (default 1000).
	QueueSize int `yaml:"queue_size"`
	// QueueBytes bounds the memory those notices hold (default 8 MiB: an
	// alert document keeps up to ~70 KB of client-chosen values). When
	// either bound is reached a notice is dropped and counted: the oldest
	// of the lowest level queued (the new one when it is lower than all).
	QueueBytes int `yaml:"queue_bytes"`
	// AppName is syslog's APP-NAME (default trailguard).
	AppName string `yaml:"app_name"`
	// GeneratorURL is the link Alertmanager shows, e.g. the collector's
	// /v1/alerts (optional).
	GeneratorURL string `yaml:"generator_url"`
}

// sender delivers one notice; a *permanent error is not retried, a
// *retryLater error says when the receiver asked to be tried again.
type sender interface {
	send(ctx context.Context, n Notice) error
	close()
}

type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// retryLater is a refusal to retry (429, 503) with the receiver's
// Retry-After.
type retryLater struct {
	err   error
	after time.Duration
}

func (r *retryLater) Error() string { return r.err.Error() }
func (r *retryLater) Unwrap() error { return r.err }

// Bounds of what a receiver can make a notifier hold or wait for.
const (
	defaultQueueSize  = 1000
	defaultQueueBytes = 8 << 20
	// maxResponseHeader bounds a receiver's response headers (Go's
	// default is 10 MB, held per attempt).
	maxResponseHeader = 64 << 10
	// maxErrorBody is what is read of a refusal's body for its message,
	// of which maxErrorText bytes are kept (quoted); maxDrain more is read
	// and discarded so the connection can be reused, and past that the
	// connection is closed.
	maxErrorBody = 1 << 10
	maxErrorText = 256
	maxDrain     = 4 << 10
)

// retryPolicy is how a notifier retries; tests shorten it.
type retryPolicy struct {
	// base is the first backoff; a notice waits base*2^attempts after its
	// own failures (at most noticeMax), the receiver base*2^(failures in a
	// row - 1) after any failure (at most receiverMax), jittered.
	base, noticeMax, receiverMax time.Duration
	// A notice is given up as undeliverable after giveUpAttempts failed
	// attempts and giveUpAge since its first, whichever comes last.
	giveUpAttempts int
	giveUpAge      time.Duration
	// retryAfterMax caps a receiver's Retry-After.
	retryAfterMax time.Duration
}

var defaultPolicy = retryPolicy{base: time.Second, noticeMax: 5 * time.Minute, receiverMax: time.Minute,
	giveUpAttempts: 8, giveUpAge: 15 * time.Minute, retryAfterMax: 5 * time.Minute}

// item is a queued notice and its delivery state.
type item struct {
	no       Notice
	seq      uint64 // arrival order
	rank     int    // levelRank of the alert
	size     int    // noticeBytes
	attempts int
	first    time.Time // first attempt
	next     time.Time // not tried before
	lastFail time.Time
	// suspect: it failed while the receiver took the notice tried after
	// it, or failed again after the receiver took others since its last
	// failure: it is tried only when no other notice is due, and its
	// failures do not back the receiver off.
	suspect bool
}

// Notifier delivers notices from a queue bounded in count and bytes, in
// order, retrying failures with backoff on two levels: each notice waits
// longer after each of its own failures, and the receiver after failures
// in a row, so that a notice a receiver keeps refusing (a 5xx for that
// alert alone) does not hold back the ones after it (it becomes suspect:
// tried only when nothing else is due), and a receiver that is down is
// tried about once a minute rather than once a notice. A
// notice is given up as undeliverable (logged with its alert id) after 8
// attempts and 15 minutes, refused for good on a 4xx other than 408 and
// 429 or a redirect, or dropped from a full queue.
type Notifier struct {
	name     string
	typ      string
	minLevel int
	s        sender
	log      *slog.Logger
	timeout  time.Duration
	policy   retryPolicy
	done     chan struct{}
	stop     context.CancelFunc
	ctx      context.Context
	wake     chan struct{}

	maxCount, maxBytes int

	mu       sync.Mutex
	items    []*item // waiting, by seq
	bytes    int     // of items
	seq      uint64
	inFlight bool
	// gate: the receiver is not tried before it; streak counts its
	// failures in a row since streakStart, the first of them of notice
	// streakSeq; streakMixed: of other notices too.
	gate        time.Time
	streak      int
	streakStart time.Time
	streakSeq   uint64
	streakMixed bool
	lastOK      time.Time // the receiver's last answer
	// A burst of drops from a full queue is logged when it starts and
	// when the queue has room again.
	burst                 int
	burstFirst, burstLast string

	sent, failures, dropped, refused, undeliverable atomic.Uint64
}

// NotifierStats are a notifier's counters.
type NotifierStats struct {
	Name, Type                       string
	Sent, Failures, Dropped, Refused uint64
	// Undeliverable counts notices given up after their retries.
	Undeliverable uint64
	// Queued and QueuedBytes are the notices waiting and what they hold.
	Queued, QueuedBytes int
}

// NewNotifier builds a notifier and starts its delivery goroutine.
func NewNotifier(c NotifierConfig, log *slog.Logger) (*Notifier, error) {
	return newNotifier(c, log, defaultPolicy)
}

func newNotifier(c NotifierConfig, log *slog.Logger, policy retryPolicy) (*Notifier, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := c.Check(); err != nil {
		return nil, err
	}
	if c.Name == "" {
		c.Name = c.Type
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.QueueSize <= 0 {
		c.QueueSize = defaultQueueSize
	}
	if c.QueueBytes <= 0 {
		c.QueueBytes = defaultQueueBytes
	}
	if c.MinLevel == "" {
		c.MinLevel = "low"
	}
	lvl := levelRank(c.MinLevel)
	tc, err := tlsConfig(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("notifier %s: %w", c.Name, err)
	}
	client := newHTTPClient(c.Timeout, tc)
	var s sender
	switch c.Type {
	case "webhook":
		key, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("notifier %s: %w", c.Name, err)
		}
		key = bytes.TrimSpace(key)
		if len(key) < 16 {
			return nil, fmt.Errorf("notifier %s: secret in %s is shorter than 16 bytes", c.Name, c.SecretFile)
		}
		s = &webhook{url: c.URL, key: key, client: client}
	case "slack":
		s = &slack{url: c.URL, client: client}
	case "alertmanager":
		s = &alertmanager{url: strings.TrimRight(c.URL, "/") + "/api/v2/alerts", client: client, generator: c.GeneratorURL}
	case "syslog":
		s, err = newSyslog(c, tc)
		if err != nil {
			return nil, fmt.Errorf("notifier %s: %w", c.Name, err)
		}
	default:
		panic(fmt.Sprintf("alerting: Check let notifier type %q through", c.Type))
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{name: c.Name, typ: c.Type, minLevel: lvl, s: s, log: log, timeout: c.Timeout, policy: policy,
		done: make(chan struct{}), ctx: ctx, stop: cancel, wake: make(chan struct{}, 1), maxCount: c.QueueSize, maxBytes: c.QueueBytes}
	go n.run()
	return n, nil
}

// newHTTPClient bounds what a receiver (hostile, broken, or anyone on the
// path of an http:// URL) can cost an attempt: each phase has a timeout
// within the attempt's, and response headers are held to 64 KiB.
func newHTTPClient(timeout time.Duration, tc *tls.Config) *http.Client {
	phase := min(timeout, 10*time.Second)
	d := &net.Dialer{Timeout: phase, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            d.DialContext,
		TLSClientConfig:        tc,
		TLSHandshakeTimeout:    phase,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxResponseHeader,
		MaxIdleConns:           2,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
	}
	// Redirects are not followed: a 301 or 302 turns the POST into a GET
	// without the alert, which the target may answer 200 (an alert counted
	// sent and lost), and the receiver, or anyone on the path of an http://
	// URL, would choose where the collector's requests go (an address
	// inside its network) and get the signed headers sent there.
	return &http.Client{Timeout: timeout, Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func tlsConfig(caFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

func levelRank(l string) int {
	switch l {
	case "informational":
		return 0
	case "low":
		return 1
	case "medium", "":
		return 2
	case "high":
		return 3
	case "critical":
		return 4
	}
	return -1
}

// noticeBytes estimates the memory a queued notice holds: its document,
// the alert's strings and maps, and the structures around them.
func noticeBytes(no Notice) int {
	a := no.Alert
	s := 512 + len(no.Doc) + len(no.Change) + len(a.ID) + len(a.RuleID) + len(a.RuleName) + len(a.Title) + len(a.Level) +
		len(a.Ruleset) + len(a.Message) + len(a.Status) + len(a.UpdatedBy) + len(a.Note)
	for k, v := range a.Group {
		s += len(k) + len(v) + 64
	}
	for k, v := range a.Fields {
		s += len(k) + len(v) + 64
	}
	return s
}

// Enqueue queues a notice without waiting. When the queue is full (in
// count or bytes) the oldest notice of the lowest level queued is dropped
// and counted (the new one when its level is below all): a flood of low
// alerts does not push out a critical one, and of equals the newest are
// kept, what a receiver back from an outage should show. Every alert stays
// in the ledger and the alert store.
func (n *Notifier) Enqueue(no Notice) {
	rank := levelRank(no.Alert.Level)
	if rank < n.minLevel {
		return
	}
	n.mu.Lock()
	n.seq++
	it := &item{no: no, seq: n.seq, rank: rank, size: noticeBytes(no)}
	n.items = append(n.items, it)
	n.bytes += it.size
	n.trim()
	n.mu.Unlock()
	n.signal()
}

func (n *Notifier) signal() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// trim drops notices until the queue is within its bounds (one notice
// larger than queue_bytes is kept alone). Called with mu held.
func (n *Notifier) trim() {
	for len(n.items) > n.maxCount || (n.bytes > n.maxBytes && len(n.items) > 1) {
		v := 0
		for i, it := range n.items {
			if it.rank < n.items[v].rank {
				v = i
			}
		}
		it := n.items[v]
		n.items = slices.Delete(n.items, v, v+1)
		n.bytes -= it.size
		n.dropped.Add(1)
		if n.burst == 0 {
			n.burstFirst = it.no.Alert.ID
			n.log.Warn("notifier queue full: dropping notices, the oldest of the lowest level first, until it has room; the alerts are in the ledger and GET /v1/alerts",
				"notifier", n.name, "alert", it.no.Alert.ID, "level", it.no.Alert.Level, "queue_size", n.maxCount, "queue_bytes", n.maxBytes)
		}
		n.burst++
		n.burstLast = it.no.Alert.ID
	}
}

// take removes and returns the oldest notice due, or says how long to wait
// (0: until woken).
func (n *Notifier) take(now time.Time) (*item, time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.burst > 0 && 2*len(n.items) <= n.maxCount && 2*n.bytes <= n.maxBytes {
		n.log.Info("notifier queue has room again", "notifier", n.name, "dropped", n.burst, "first", n.burstFirst, "last", n.burstLast)
		n.burst = 0
	}
	if len(n.items) == 0 {
		return nil, 0
	}
	if now.Before(n.gate) {
		return nil, n.gate.Sub(now)
	}
	// The oldest notice due that is not suspect; while the receiver is
	// failing, the newest: the latest alert is the one an on-call
	// engineer needs first, and the least likely to be refused for the
	// same reason as the older ones (a flood of one attacker's alerts),
	// so it tells best whether the receiver is down. Suspects only
	// when nothing else is due.
	var soonest time.Time
	pick, suspect := -1, -1
	for i, it := range n.items {
		if soonest.IsZero() || it.next.Before(soonest) {
			soonest = it.next
		}
		if now.Before(it.next) {
			continue
		}
		if it.suspect {
			if suspect < 0 {
				suspect = i
			}
			continue
		}
		if pick < 0 || n.streak > 0 {
			pick = i
		}
	}
	if pick < 0 {
		pick = suspect
	}
	if pick < 0 {
		return nil, soonest.Sub(now)
	}
	it := n.items[pick]
	n.items = slices.Delete(n.items, pick, pick+1)
	n.bytes -= it.size
	n.inFlight = true
	return it, 0
}

func (n *Notifier) run() {
	defer close(n.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	// Stopped is checked before each take, not only while waiting: an
	// attempt cut short by Close requeues its notice, which is due at
	// once, and the loop would otherwise take it and fail it again
	// forever, so that Close never returned.
	for n.ctx.Err() == nil {
		it, wait := n.take(time.Now())
		if it != nil {
			n.attempt(it)
			continue
		}
		var tc <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-n.ctx.Done():
			return
		case <-n.wake:
		case <-tc:
		}
		timer.Stop()
	}
}

// jitter returns d/2 plus up to d/2, so that many collectors do not retry
// in step.
func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// backoff is base*2^(k-1), at most limit.
func backoff(base, limit time.Duration, k int) time.Duration {
	d := base
	for i := 1; i < k && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// attempt sends one notice once and decides what follows.
func (n *Notifier) attempt(it *item) {
	now := time.Now()
	if it.first.IsZero() {
		it.first = now
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.timeout)
	err := n.s.send(ctx, it.no)
	cancel()
	now = time.Now()
	var p *permanent
	n.mu.Lock()
	defer n.mu.Unlock()
	n.inFlight = false
	if err != nil && n.ctx.Err() != nil {
		// Stopped mid-attempt: not the receiver's doing (Close counts it
		// undelivered).
		n.requeue(it)
		return
	}
	if err == nil || errors.As(err, &p) {
		// The receiver answered: it is up.
		switch {
		case n.streakMixed:
			// Different notices failed in a row: the failures were the
			// receiver's, not the notices'; those waiting go now.
			n.log.Info("notifier receiver answers again", "notifier", n.name, "failures", n.streak, "for", now.Sub(n.streakStart).Round(time.Second).String())
			for _, o := range n.items {
				if !o.suspect {
					o.next = time.Time{}
				}
			}
		case n.streak > 0:
			// One notice failed and the next is taken: that one is
			// suspect.
			if i, ok := n.find(n.streakSeq); ok {
				n.items[i].suspect = true
			}
		}
		n.streak, n.streakMixed, n.gate, n.lastOK = 0, false, time.Time{}, now
		if err == nil {
			n.sent.Add(1)
			return
		}
		n.refused.Add(1)
		n.log.Error("notifier refused an alert for good", "notifier", n.name, "alert", it.no.Alert.ID, "err", err)
		return
	}
	n.failures.Add(1)
	if it.attempts > 0 && n.lastOK.After(it.lastFail) {
		it.suspect = true
	}
	it.attempts++
	it.lastFail = now
	pol := n.policy
	if it.suspect {
		// The receiver took others since this one failed: a short pause,
		// not a backoff of the receiver.
		n.gate = now.Add(jitter(pol.base))
		n.retryOrGiveUp(it, now, err)
		return
	}
	if n.streak == 0 {
		n.streakStart, n.streakSeq, n.streakMixed = now, it.seq, false
	}
	n.streak++
	n.streakMixed = n.streakMixed || it.seq != n.streakSeq
	// Logged: a notice's first failure, and a receiver failing every
	// attempt (3 in a row, then every 10th), not every retry.
	if it.attempts == 1 && n.streak == 1 {
		n.log.Warn("notifier failed; retrying with backoff", "notifier", n.name, "alert", it.no.Alert.ID, "err", err)
	} else if n.streakMixed && (n.streak == 3 || n.streak%10 == 0) {
		n.log.Warn("notifier receiver failing every attempt; backing off", "notifier", n.name, "failures", n.streak,
			"for", now.Sub(n.streakStart).Round(time.Second).String(), "queued", len(n.items)+1, "err", err)
	}
	n.gate = now.Add(jitter(backoff(pol.base, pol.receiverMax, n.streak)))
	n.retryOrGiveUp(it, now, err)
}

// retryOrGiveUp requeues a failed notice for its next attempt, or gives
// it up. Called with mu held.
func (n *Notifier) retryOrGiveUp(it *item, now time.Time, err error) {
	pol := n.policy
	var rl *retryLater
	if errors.As(err, &rl) && rl.after > 0 {
		n.gate = maxTime(n.gate, now.Add(min(rl.after, pol.retryAfterMax)))
	}
	if it.attempts >= pol.giveUpAttempts && now.Sub(it.first) >= pol.giveUpAge {
		n.undeliverable.Add(1)
		n.log.Error("notifier gave up on an alert: undeliverable (it is in the ledger and GET /v1/alerts)", "notifier", n.name,
			"alert", it.no.Alert.ID, "change", it.no.Change, "attempts", it.attempts, "for", now.Sub(it.first).Round(time.Second).String(), "err", err)
		return
	}
	// A notice waits longer than the receiver after a failure, so that
	// the next one is tried first: if that is delivered, the receiver
	// refuses this notice alone, and the others go on.
	it.next = maxTime(now.Add(jitter(backoff(2*pol.base, pol.noticeMax, it.attempts))), n.gate.Add(time.Millisecond))
	n.requeue(it)
}

// find returns where the notice seq is, or would be, in the queue.
// Called with mu held.
func (n *Notifier) find(seq uint64) (int, bool) {
	return slices.BinarySearchFunc(n.items, seq, func(o *item, seq uint64) int { return cmp.Compare(o.seq, seq) })
}

// requeue puts a notice back in its place in arrival order. Called with
// mu held.
func (n *Notifier) requeue(it *item) {
	i, _ := n.find(it.seq)
	n.items = slices.Insert(n.items, i, it)
	n.bytes += it.size
	n.trim()
}

// Stats returns the counters.
func (n *Notifier) Stats() NotifierStats {
	n.mu.Lock()
	queued, qbytes := len(n.items), n.bytes
	n.mu.Unlock()
	return NotifierStats{Name: n.name, Type: n.typ, Sent: n.sent.Load(), Failures: n.failures.Load(),
		Dropped: n.dropped.Load(), Refused: n.refused.Load(), Undeliverable: n.undeliverable.Load(), Queued: queued, QueuedBytes: qbytes}
}

// Close delivers what is queued for at most grace, then stops; what is
// left is logged (the alerts are in the ledger).
func (n *Notifier) Close(grace time.Duration) {
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		n.mu.Lock()
		idle := len(n.items) == 0 && !n.inFlight
		n.mu.Unlock()
		if idle {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.stop()
	<-n.done
	n.s.close()
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.items) > 0 || n.burst > 0 {
		n.log.Warn("notifier stopped with notices undelivered; the alerts are in the ledger and GET /v1/alerts", "notifier", n.name,
			"undelivered", len(n.items), "dropped_in_last_burst", n.burst)
	}
}

// httpPost sends body and classifies the answer: 2xx is delivered, 408,
// 429 and 5xx are retried (429 and 503 after their Retry-After), a
// redirect and other 4xx are refused for good. At most maxErrorBody +
// maxDrain bytes of the answer's body are read.
func httpPost(ctx context.Context, client *http.Client, u string, body []byte, header http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return &permanent{err}
	}
	req.Header = header
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "trailguard-notifier")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var msg []byte
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		msg, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	}
	// A short rest is read so the connection can be reused; past that,
	// Close closes it rather than read on.
	io.CopyN(io.Discard, resp.Body, maxDrain)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == 429 || resp.StatusCode == 503:
		return &retryLater{statusError(resp.Status, msg), retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	case resp.StatusCode == 408 || resp.StatusCode >= 500:
		return statusError(resp.Status, msg)
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return &permanent{fmt.Errorf("%s to %s: notifiers do not follow redirects; set url to the address that takes the alerts", resp.Status, errorText([]byte(resp.Header.Get("Location"))))}
	}
	return &permanent{statusError(resp.Status, msg)}
}

// statusError is an answer's status with the start of its body.
func statusError(status string, body []byte) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New(status)
	}
	return fmt.Errorf("%s: %s", status, errorText(body))
}

// errorText is a receiver's words for an error message: cut to
// maxErrorText bytes on a rune boundary and quoted, so that they cannot
// forge log lines or fill them.
func errorText(b []byte) string {
	b = bytes.TrimSpace(b)
	cut := len(b) > maxErrorText
	if cut {
		k := maxErrorText
		for k > 0 && !utf8.RuneStart(b[k]) {
			k--
		}
		b = b[:k]
	}
	s := strconv.Quote(string(b))
	if cut {
		s += "…"
	}
	return s
}

// retryAfter reads a Retry-After header (seconds or an HTTP date); 0 when
// absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(min(s, 1<<20)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// Webhook signature headers: the signature is HMAC-SHA256 of
// "<timestamp>.<body>" under the shared key, hex, after "v1=". Receivers
// recompute it and refuse timestamps too far from their clock, so a
// captured request cannot be replayed later (see VerifyWebhook).
const (
	HeaderTimestamp = "X-Trailguard-Timestamp"
	HeaderSignature = "X-Trailguard-Signature"
	HeaderEvent     = "X-Trailguard-Event"
)

type webhook struct {
	url    string
	key    []byte
	client *http.Client
}

func (w *webhook) send(ctx context.Context, n Notice) error {
	body := n.Doc
	if n.Change != "raised" || len(body) == 0 {
		body, _ = json.Marshal(map[string]any{"alert": n.Alert, "change": n.Change})
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	h := http.Header{}
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, Sign(w.key, ts, body))
	h.Set(HeaderEvent, n.Change)
	return httpPost(ctx, w.client, w.url, body, h)
}

func (w *webhook) close() {}

// Sign returns the webhook signature header value for a timestamp and body.
func Sign(key []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// VerifyWebhook checks a webhook request's signature and that its
// timestamp is within tolerance of now: what a receiver does.
func VerifyWebhook(key []byte, timestamp, signature string, body []byte, now time.Time, tolerance time.Duration) error {
	sec, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return errors.New("webhook: bad timestamp")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhook: timestamp %s is %v away from now: replayed or clock skew", timestamp, d.Round(time.Second))
	}
	if !hmac.Equal([]byte(Sign(key, timestamp, body)), []byte(signature)) {
		return errors.New("webhook: signature mismatch")
	}
	return nil
}

// slack posts a one-line message Slack (and Mattermost, Rocket.Chat)
// incoming webhooks accept.
type slack struct {
	url    string
	client *http.Client
}

func (s *slack) send(ctx context.Context, n Notice) error {
	a := n.Alert
	var text string
	if n.Change == "raised" {
		text = fmt.Sprintf(":rotating_light: *[%s] %s* — %s (alert `%s`)", a.Level, escapeSlack(a.Title), escapeSlack(a.Message), a.ID)
	} else {
		text = fmt.Sprintf(":white_check_mark: alert `%s` (%s) is now *%s*%s", a.ID, escapeSlack(a.Title), n.Change, byNote(a))
	}
	body, _ := json.Marshal(map[string]string{"text": text})
	return httpPost(ctx, s.client, s.url, body, nil)
}

func byNote(a Alert) string {
	s := ""
	if a.UpdatedBy != "" {
		s += " by " + escapeSlack(a.UpdatedBy)
	}
	if a.Note != "" {
		s += ": " + escapeSlack(a.Note)
	}
	return s
}

// escapeSlack escapes what Slack's mrkdwn treats as markup, so attacker-
// chosen text (a user name, a URL) cannot ping channels or forge links:
// <, > and & for Slack's <!channel> and <url|text>; for Mattermost and
// Rocket.Chat, which take the same webhooks but read Markdown and plain
// mentions, a word joiner (U+2060, not shown) after @ and ] so that
// @all, @channel, @here, [text](url), ![image](url) and [ref]: url are no
// longer those; line breaks become spaces, keeping the message one line.
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "@", "@\u2060", "]", "]\u2060",
	"\r\n", " ", "\n", " ", "\r", " ", "\u2028", " ", "\u2029", " ")

func escapeSlack(s string) string { return slackEscaper.Replace(s) }

func (s *slack) close() {}

// alertmanager posts to Prometheus Alertmanager's v2 API.
type alertmanager struct {
	url       string
	client    *http.Client
	generator string
}

var labelName = regexp.MustCompile(`[^a-zA-Z0-9_]`)

func (am *alertmanager) send(ctx context.Context, n Notice) error {
	a := n.Alert
	if n.Change != "raised" && n.Change != StatusResolved {
		return nil // acknowledging is not an Alertmanager state
	}
	name := a.RuleName
	if name == "" {
		name = a.RuleID
	}
	labels := map[string]string{"alertname": labelName.ReplaceAllString(name, "_"), "severity": a.Level,
		"rule_id": a.RuleID, "alert_id": a.ID, "source": "trailguard"}
	keys := make([]string, 0, len(a.Group))
	for k := range a.Group {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		labels[labelName.ReplaceAllString(k, "_")] = a.Group[k]
	}
	pa := map[string]any{
		"labels":      labels,
		"annotations": map[string]string{"summary": a.Title, "description": a.Message},
		"startsAt":    a.Time.UTC().Format(time.RFC3339Nano),
	}
	if am.generator != "" {
		pa["generatorURL"] = am.generator
	}
	if n.Change == StatusResolved {
		end := a.Updated
		if end.IsZero() || end.Before(a.Time) {
			end = time.Now()
		}
		pa["endsAt"] = end.UTC().Format(time.RFC3339Nano)
	}
	body, _ := json.Marshal([]any{pa})
	return httpPost(ctx, am.client, am.url, body, nil)
}

func (am *alertmanager) close() {}

// syslogSender writes RFC 5424 messages over TCP or TLS (octet-counted
// framing, RFC 6587 and 5425) or UDP (one message per datagram, RFC 5426),
// reconnecting as needed.
type syslogSender struct {
	network, addr string
	tls           *tls.Config
	app, host     string
	mu            sync.Mutex
	conn          net.Conn
}

func newSyslog(c NotifierConfig, tc *tls.Config) (*syslogSender, error) {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("url %q: want tcp://host:port, tls://host:port or udp://host:port", c.URL)
	}
	s := &syslogSender{addr: u.Host, app: c.AppName}
	switch u.Scheme {
	case "tcp", "udp":
		s.network = u.Scheme
	case "tls":
		s.network = "tcp"
		s.tls = tc.Clone()
		if s.tls.ServerName == "" {
			s.tls.ServerName = u.Hostname()
		}
	default:
		return nil, fmt.Errorf("url %q: scheme must be tcp, tls or udp", c.URL)
	}
	if s.app == "" {
		s.app = "trailguard"
	}
	s.host, _ = os.Hostname()
	if s.host == "" {
		s.host = "-"
	}
	return s, nil
}

// syslogSeverity maps Sigma levels onto RFC 5424 severities.
func syslogSeverity(level string) int {
	switch level {
	case "critical":
		return 2
	case "high":
		return 3
	case "medium":
		return 4
	case "low":
		return 5
	}
	return 6
}

// Message formats the RFC 5424 message of a notice: facility security (13,
// "log audit"), the alert's severity, MSGID the change, structured data
// with the alert and rule ids, and the alert document as MSG.
func (s *syslogSender) Message(n Notice) []byte { return s.message(n, false) }

// maxDatagram is the largest UDP payload over IPv4: a longer message
// fails to send (EMSGSIZE) at every try.
const maxDatagram = 65507

// message formats a notice; compact sends the stored alert
// ({"alert", "change"}, its values cut by the store) instead of the
// document.
func (s *syslogSender) message(n Notice, compact bool) []byte {
	a := n.Alert
	pri := 13*8 + syslogSeverity(a.Level)
	msg := n.Doc
	if compact || n.Change != "raised" || len(msg) == 0 {
		msg, _ = json.Marshal(map[string]any{"alert": a, "change": n.Change})
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "<%d>1 %s %s %s - %s [trailguard@32473 alert_id=\"%s\" rule_id=\"%s\" level=\"%s\"] ",
		pri, time.Now().UTC().Format("2006-01-02T15:04:05.000000Z"), headerField(s.host, 255), headerField(s.app, 48),
		headerField(n.Change, 32), sdEscape(a.ID), sdEscape(a.RuleID), sdEscape(a.Level))
	b.Write(msg)
	return b.Bytes()
}

// headerField makes a header field printable US-ASCII without spaces.
func headerField(s string, n int) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(out) < n; i++ {
		if c := s[i]; c > 32 && c < 127 {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return string(out)
}

// sdEscape escapes a structured-data parameter value (RFC 5424 6.3.3).
func sdEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, `]`, `\]`).Replace(s)
}

func (s *syslogSender) send(ctx context.Context, n Notice) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	msg := s.Message(n)
	if s.conn == nil {
		d := &net.Dialer{}
		var c net.Conn
		var err error
		if s.tls != nil {
			c, err = (&tls.Dialer{NetDialer: d, Config: s.tls}).DialContext(ctx, s.network, s.addr)
		} else {
			c, err = d.DialContext(ctx, s.network, s.addr)
		}
		if err != nil {
			return err
		}
		s.conn = c
	}
	if dl, ok := ctx.Deadline(); ok {
		s.conn.SetWriteDeadline(dl)
	}
	var frame []byte
	if s.network == "udp" {
		// A datagram too long for UDP would fail at every retry and hold
		// back every later alert: the stored alert is sent instead of the
		// document, cut if even that is too long.
		if len(msg) > maxDatagram {
			msg = s.message(n, true)
		}
		if len(msg) > maxDatagram {
			k := maxDatagram
			for k > 0 && !utf8.RuneStart(msg[k]) {
				k--
			}
			msg = msg[:k]
		}
		frame = msg
	} else {
		frame = append(strconv.AppendInt(nil, int64(len(msg)), 10), ' ')
		frame = append(frame, msg...)
	}
	if _, err := s.conn.Write(frame); err != nil {
		s.conn.Close()
		s.conn = nil
		return err
	}
	return nil
}

func (s *syslogSender) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}
