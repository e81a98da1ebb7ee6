package alerting

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
	"github.com/trailguard/trailguard/internal/testenv"
)

func notice() Notice {
	a := Alert{ID: "0f0e-1", RuleID: "id-brute", RuleName: "trailguard_brute_force_source", Title: "Brute force <script>",
		Level: "high", Message: "10 events (client.ip=203.0.113.5) <!channel>", Time: time.Now().UTC().Add(-time.Minute).Round(0),
		Group: map[string]string{"client.ip": "203.0.113.5"}, Status: StatusOpen}
	return Notice{Alert: a, Doc: []byte(`{"event":{"kind":"alert","id":"0f0e-1"},"message":"m"}`), Change: "raised"}
}

// fastPolicy retries in tens of milliseconds, and gives up on a notice
// after 4 attempts and 2 s.
var fastPolicy = retryPolicy{base: 20 * time.Millisecond, noticeMax: 200 * time.Millisecond, receiverMax: 100 * time.Millisecond,
	giveUpAttempts: 4, giveUpAge: 2 * time.Second, retryAfterMax: time.Second}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func secretFile(t *testing.T) (string, []byte) {
	key := []byte("a-very-secret-webhook-key-0123456789")
	p := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(p, append(key, '\n'), 0o600)
	return p, key
}

func TestWebhookSignedAndRetried(t *testing.T) {
	path, key := secretFile(t)
	var mu sync.Mutex
	var got [][]byte
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// The receiver checks what it must: the signature and the time.
		if err := VerifyWebhook(key, r.Header.Get(HeaderTimestamp), r.Header.Get(HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		// The first two deliveries meet an outage.
		if calls.Add(1) <= 2 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		got = append(got, body)
		mu.Unlock()
	}))
	defer srv.Close()
	n, err := newNotifier(NotifierConfig{Type: "webhook", URL: srv.URL, SecretFile: path}, nil, fastPolicy)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	n.Enqueue(notice())
	waitFor(t, "delivery after the outage", func() bool { return n.Stats().Sent == 1 })
	if st := n.Stats(); st.Failures != 2 {
		t.Errorf("stats %+v", st)
	}
	mu.Lock()
	if len(got) != 1 || string(got[0]) != string(notice().Doc) {
		t.Errorf("received %q", got)
	}
	mu.Unlock()

	// A signature over another body, a replayed old request, a wrong key.
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig := Sign(key, ts, []byte("a"))
	if VerifyWebhook(key, ts, sig, []byte("b"), time.Now(), time.Minute) == nil {
		t.Error("tampered body accepted")
	}
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	if VerifyWebhook(key, old, Sign(key, old, []byte("a")), []byte("a"), time.Now(), 5*time.Minute) == nil {
		t.Error("replay an hour later accepted")
	}
	if VerifyWebhook([]byte("other-key-0123456789"), ts, sig, []byte("a"), time.Now(), time.Minute) == nil {
		t.Error("wrong key accepted")
	}
}

func TestNotifierRefusedAndOverflow(t *testing.T) {
	block := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.URL.Path == "/bad" {
			http.Error(w, "no such hook", http.StatusNotFound)
			return
		}
		<-block
	}))
	defer srv.Close()
	defer close(block)
	bad, _ := NewNotifier(NotifierConfig{Type: "slack", URL: srv.URL + "/bad"}, nil)
	bad.Enqueue(notice())
	waitFor(t, "refusal", func() bool { return bad.Stats().Refused == 1 })
	if calls.Load() != 1 {
		t.Errorf("a 404 was retried: %d calls", calls.Load())
	}
	bad.Close(0)

	// A receiver that hangs: the queue fills, the oldest are dropped, and
	// Enqueue never blocks.
	slow, _ := NewNotifier(NotifierConfig{Type: "slack", URL: srv.URL + "/slow", QueueSize: 5, Timeout: time.Hour}, nil)
	// In a goroutine, so that an Enqueue that blocks fails the test
	// rather than hangs it; the bound allows the longest stall of this
	// process seen meanwhile (a loaded machine stops it for seconds).
	watch := stalltest.Start(t)
	took, stalled, ok := stalltest.Run(func() {
		for range 100 {
			slow.Enqueue(notice())
		}
	}, watch, time.Second)
	if !ok || took > time.Second+stalled {
		t.Fatalf("100 Enqueues with a full queue: done %v after %v (stalled %v): Enqueue blocked", ok, took.Round(time.Millisecond), stalled.Round(time.Millisecond))
	}
	// The delivery goroutine takes one notice and hangs on it, before or
	// after the Enqueues (a loaded machine may start it late): once it
	// has, 99 are queued or dropped, whatever the order.
	waitFor(t, "the hanging delivery", func() bool { return calls.Load() == 2 })
	if st := slow.Stats(); st.Queued < 4 || st.Queued > 5 || st.Queued+int(st.Dropped) != 99 {
		t.Errorf("stats %+v: want 4-5 queued, the rest of 99 dropped", st)
	}
	// Levels below min_level are not queued.
	quiet, _ := NewNotifier(NotifierConfig{Type: "slack", URL: srv.URL, MinLevel: "critical"}, nil)
	quiet.Enqueue(notice())
	if quiet.Stats().Queued != 0 {
		t.Error("a high alert queued for a critical-only notifier")
	}
	quiet.Close(0)
	go slow.Close(0)
}

func TestSlackEscapes(t *testing.T) {
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { body, _ = io.ReadAll(r.Body) }))
	defer srv.Close()
	n, _ := NewNotifier(NotifierConfig{Type: "slack", URL: srv.URL}, nil)
	n.Enqueue(notice())
	waitFor(t, "slack", func() bool { return n.Stats().Sent == 1 })
	n.Close(0)
	var msg struct{ Text string }
	json.Unmarshal(body, &msg)
	if !strings.Contains(msg.Text, "&lt;!channel&gt;") || strings.Contains(msg.Text, "<!channel>") || !strings.Contains(msg.Text, "[high]") {
		t.Errorf("slack text %q", msg.Text)
	}
}

// mentionOrLink matches what Mattermost and Rocket.Chat (which take
// Slack's webhooks) read as a mention of everyone, a Markdown link or
// image, or a reference definition.
var mentionOrLink = regexp.MustCompile(`(?i)@(all|channel|here|everyone)\b|\]\(|\]\[|\]:|\n`)

// TestSlackMarkdown: the values an attacker chooses (a user name at a
// login form, a URL) appear in the message as text: no @all, @channel or
// @here that pings everyone in Mattermost or Rocket.Chat, no Markdown
// link that shows one address and opens another, no image their clients
// load from the attacker's server, no second line.
func TestSlackMarkdown(t *testing.T) {
	var mu sync.Mutex
	var texts []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg struct{ Text string }
		json.NewDecoder(r.Body).Decode(&msg)
		mu.Lock()
		texts = append(texts, msg.Text)
		mu.Unlock()
	}))
	defer srv.Close()
	hostile := []string{"@channel", "@all please reset", "@here", "[https://sso.example/reset](https://evil.example/)",
		"![x](https://evil.example/pixel.png)", "alice\n[r]: https://evil.example/\n[click][r]", "x\r\n@everyone"}
	n, _ := NewNotifier(NotifierConfig{Type: "slack", URL: srv.URL}, nil)
	for i, h := range hostile {
		no := notice()
		no.Alert.ID = strconv.Itoa(i)
		no.Alert.Message = "Brute force (user.name=" + h + ")"
		no.Alert.Title = h
		n.Enqueue(no)
		resolved := no
		resolved.Change, resolved.Alert.UpdatedBy, resolved.Alert.Note = StatusResolved, h, h
		n.Enqueue(resolved)
	}
	waitFor(t, "slack", func() bool { return n.Stats().Sent == uint64(2*len(hostile)) })
	n.Close(0)
	mu.Lock()
	defer mu.Unlock()
	for _, text := range texts {
		if m := mentionOrLink.FindString(text); m != "" {
			t.Errorf("slack text %q has %q", text, m)
		}
		if shown := strings.ReplaceAll(text, "\u2060", ""); !strings.Contains(shown, "user.name=") && !strings.Contains(shown, "is now *resolved* by ") {
			t.Errorf("slack text %q", text)
		}
	}
}

// rfc5424 matches the header of an RFC 5424 message.
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ trailguard - raised \[trailguard@32473 alert_id="0f0e-1" rule_id="id-brute" level="high"\] \{`)

func TestSyslog(t *testing.T) {
	cert := selfSigned(t)
	for _, network := range []string{"tcp", "tls", "udp"} {
		t.Run(network, func(t *testing.T) {
			msgs := make(chan string, 4)
			var addr string
			switch network {
			case "udp":
				pc, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				addr = pc.LocalAddr().String()
				go func() {
					buf := make([]byte, 65536)
					for {
						n, _, err := pc.ReadFrom(buf)
						if err != nil {
							return
						}
						msgs <- string(buf[:n])
					}
				}()
			default:
				var ln net.Listener
				var err error
				if network == "tls" {
					ln, err = tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert.tls}})
				} else {
					ln, err = net.Listen("tcp", "127.0.0.1:0")
				}
				if err != nil {
					t.Fatal(err)
				}
				defer ln.Close()
				addr = ln.Addr().String()
				go func() {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					defer c.Close()
					r := bufio.NewReader(c)
					for {
						// Octet counting: "<len> <message>".
						l, err := r.ReadString(' ')
						if err != nil {
							return
						}
						n, _ := strconv.Atoi(strings.TrimSpace(l))
						buf := make([]byte, n)
						if _, err := io.ReadFull(r, buf); err != nil {
							return
						}
						msgs <- string(buf)
					}
				}()
			}
			n, err := NewNotifier(NotifierConfig{Type: "syslog", URL: network + "://" + addr, CAFile: cert.caFile}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close(0)
			n.Enqueue(notice())
			n.Enqueue(notice())
			for range 2 {
				select {
				case m := <-msgs:
					sm := rfc5424.FindStringSubmatch(m)
					if sm == nil || sm[1] != strconv.Itoa(13*8+3) || !strings.HasSuffix(m, string(notice().Doc)) {
						t.Errorf("message %q", m)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("no syslog message")
				}
			}
		})
	}
}

type testCert struct {
	tls    tls.Certificate
	caFile string
}

func selfSigned(t *testing.T) testCert {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(p, certPEM, 0o644)
	return testCert{tls: c, caFile: p}
}

// TestAlertmanager delivers to a real Prometheus Alertmanager (Debian's
// prometheus-alertmanager), reads the alert back from its v2 API, then
// resolves it.
func TestAlertmanager(t *testing.T) {
	bin := testenv.Tool(t, "prometheus-alertmanager", "apt-get install prometheus-alertmanager")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	os.WriteFile(cfg, []byte("route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n"), 0o644)
	am := testenv.StartServer(t, "prometheus-alertmanager", func(addr string) *exec.Cmd {
		cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr, "--cluster.listen-address=", "--log.level=warn")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		return cmd
	})
	defer func() { am.Cmd.Process.Kill(); am.Cmd.Wait() }()
	base := "http://" + am.Addr
	waitFor(t, "alertmanager ready", func() bool {
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	n, err := NewNotifier(NotifierConfig{Type: "alertmanager", URL: base, GeneratorURL: "http://collector:8600/v1/alerts"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	no := notice()
	n.Enqueue(no)
	type amAlert struct {
		Labels      map[string]string
		Annotations map[string]string
		Status      struct{ State string }
		EndsAt      time.Time
	}
	read := func(q string) []amAlert {
		resp, err := http.Get(base + "/api/v2/alerts" + q)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var out []amAlert
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	var got []amAlert
	waitFor(t, "the alert in Alertmanager", func() bool { got = read(""); return len(got) == 1 })
	a := got[0]
	if a.Labels["alertname"] != "trailguard_brute_force_source" || a.Labels["client_ip"] != "203.0.113.5" || a.Labels["severity"] != "high" ||
		a.Labels["alert_id"] != no.Alert.ID || a.Annotations["description"] != no.Alert.Message || a.Status.State != "active" {
		t.Fatalf("alertmanager holds %+v", a)
	}
	// Resolving sends endsAt: the alert leaves the active list.
	no.Alert.Status, no.Alert.Updated = StatusResolved, time.Now().UTC()
	n.Enqueue(Notice{Alert: no.Alert, Change: StatusResolved})
	waitFor(t, "the alert resolved", func() bool { return len(read("?active=true")) == 0 })
	waitFor(t, "both deliveries counted", func() bool { return n.Stats().Sent == 2 })
}

// TestNotifierRedirectRefused: a receiver answering with a redirect (an
// http:// URL moved to https, a receiver that was taken over, or anyone on
// its path) gets the alert refused and logged, not followed: a 302 made
// the POST a GET without the alert to wherever the Location said (an
// address inside the collector's network), with the signed headers, and
// its 200 counted the alert as sent. 307 and 308 would resend the body
// there.
func TestNotifierRedirectRefused(t *testing.T) {
	path, _ := secretFile(t)
	var elsewhere atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer target.Close()
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			http.Redirect(w, r, target.URL+"/latest/meta-data/", code)
		}))
		for _, c := range []NotifierConfig{{Type: "webhook", URL: srv.URL, SecretFile: path}, {Type: "slack", URL: srv.URL}, {Type: "alertmanager", URL: srv.URL}} {
			n, err := NewNotifier(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			n.Enqueue(notice())
			waitFor(t, "the refusal", func() bool { st := n.Stats(); return st.Refused+st.Sent > 0 })
			n.Close(0)
			if st := n.Stats(); st.Refused != 1 || st.Sent != 0 {
				t.Errorf("%s answered %d: %+v, want refused", c.Type, code, st)
			}
		}
		srv.Close()
		if calls.Load() != 3 {
			t.Errorf("%d: %d calls to the receiver, want 3 (a refusal is not retried)", code, calls.Load())
		}
	}
	if elsewhere.Load() != 0 {
		t.Errorf("the redirects were followed: %d requests to their target", elsewhere.Load())
	}
}

// TestSyslogUDPLongAlert: an alert document longer than a UDP datagram
// holds (its values chosen by clients) is sent as the stored alert, and
// the alerts after it are delivered. Before, the write failed (EMSGSIZE)
// at every retry, with backoff up to 5 minutes, and every later alert
// waited behind it until dropped from the queue.
func TestSyslogUDPLongAlert(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	got := make(chan string, 8)
	go func() {
		buf := make([]byte, 1<<16)
		for {
			k, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- string(buf[:k])
		}
	}()
	n, err := NewNotifier(NotifierConfig{Type: "syslog", URL: "udp://" + pc.LocalAddr().String()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(0)
	long := notice()
	long.Doc = []byte(`{"user_agent":{"original":"` + strings.Repeat("A", 70_000) + `"}}`)
	n.Enqueue(long)
	next := notice()
	next.Alert.ID = "0f0e-2"
	n.Enqueue(next)
	for i, want := range []string{`alert_id="0f0e-1"`, `alert_id="0f0e-2"`} {
		select {
		case m := <-got:
			if !strings.Contains(m, want) || len(m) > maxDatagram {
				t.Errorf("datagram %d: %d bytes %.200q, want %s", i, len(m), m, want)
			}
			if i == 0 && !strings.Contains(m, `{"alert":{"id":"0f0e-1"`) {
				t.Errorf("the long alert was sent as %.300q, want the stored alert", m)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("datagram %d (%s) not received in 15 s: %+v", i, want, n.Stats())
		}
	}
}
