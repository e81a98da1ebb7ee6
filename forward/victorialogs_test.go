package forward

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/ledger"
)

const vlInstall = "bash .ci/victoria-logs.sh && export TRAILGUARD_TOOLS=~/.cache/trailguard-ci/bin"

// vlNode is a VictoriaLogs process on 127.0.0.1 with its own data
// directory: a single node, or a storage, insert or select node of a
// cluster (the same binary with other flags).
type vlNode struct {
	t    testing.TB
	bin  string
	addr string // where the forwarder and the other nodes reach it
	dir  string
	args []string
	cmd  *exec.Cmd
	srv  *testenv.Server
	// For a node the test kills and starts again (startKillable): the
	// port at addr, which the test keeps while the node is down, and the
	// relay from it to where the node listens now.
	port  *testenv.Port
	relay func()
}

// startVL starts a node on a free port (testenv.StartServer: another, if
// another process took it meanwhile).
func startVL(t testing.TB, bin string, args ...string) *vlNode {
	t.Helper()
	n := &vlNode{t: t, bin: bin, dir: t.TempDir(), args: args}
	n.run()
	return n
}

// startKillable starts a node that the test kills and starts again (kill,
// start) at the address the forwarder and the other nodes know it by.
// That address is a testenv.Port, which the test keeps from start to end
// and which relays to the node, wherever it listens: a port the node
// itself left when killed may be taken by another process before it
// comes back. While the node is down the port accepts and closes each
// connection at once, which its clients see as the node being down.
func startKillable(t testing.TB, bin string, args ...string) *vlNode {
	t.Helper()
	n := &vlNode{t: t, bin: bin, dir: t.TempDir(), args: args, port: testenv.NewPort(t)}
	n.addr = n.port.Addr()
	n.run()
	return n
}

// run starts the node's process on a free port, with the node's data
// directory, and waits until it is healthy at n.addr.
func (n *vlNode) run() {
	n.t.Helper()
	n.srv = testenv.StartServer(n.t, n.name(), n.command)
	cmd := n.srv.Cmd
	n.cmd = cmd
	n.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if n.port != nil {
		n.relay = n.port.Relay(n.srv.Addr)
	} else {
		n.addr = n.srv.Addr
	}
	n.healthy()
}

func (n *vlNode) name() string {
	return strings.TrimSpace("victoria-logs " + strings.Join(n.args, " "))
}

func (n *vlNode) command(addr string) *exec.Cmd {
	return exec.Command(n.bin, append([]string{"-httpListenAddr=" + addr, "-storageDataPath=" + filepath.Join(n.dir, "data"),
		"-retentionPeriod=30d", "-loggerLevel=WARN", "-inmemoryDataFlushInterval=" + vlFlush.String()}, n.args...)...)
}

func (n *vlNode) url() string { return "http://" + n.addr }

// start starts a killed node (startKillable's) again, on its data
// directory, reached at the same address.
func (n *vlNode) start() {
	n.t.Helper()
	if n.port == nil || n.cmd != nil {
		n.t.Fatalf("%s: start is for a node of startKillable's that was killed", n.name())
	}
	n.run()
}

// healthy waits for the listening node to answer its health check.
func (n *vlNode) healthy() {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(n.url() + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s listens on %s but is not healthy: %v\n%s", n.name(), n.addr, err, n.srv.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the process with SIGKILL: no flush, no goodbye. The relay
// stops first (the connections it carried are cut, as the kill cuts
// them), so that nothing reaches the node's own port once it is free.
func (n *vlNode) kill() {
	if n.relay != nil {
		n.relay()
		n.relay = nil
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	n.cmd.Wait()
	n.cmd = nil
}

func forceFlush(t testing.TB, nodes ...*vlNode) {
	t.Helper()
	for _, n := range nodes {
		resp, err := http.Get(n.url() + "/internal/force_flush")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
}

// storedIDs queries selectURL for every stored event.id of the test ledger
// and counts each one's copies.
func storedIDs(t testing.TB, selectURL string) map[string]int {
	t.Helper()
	form := url.Values{"query": {`trailguard.ledger.origin:="` + testOrigin + `" | fields event.id`}}
	resp, err := http.PostForm(selectURL+"/select/logsql/query", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("query: %s", resp.Status)
	}
	ids := map[string]int{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	pre := []byte(`{"event.id":"`)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, pre) {
			t.Fatalf("unexpected answer line %q", line)
		}
		ids[string(line[len(pre):len(line)-2])]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// checkAll requires every event [0, n) stored, and reports duplicates.
func checkAll(t testing.TB, ids map[string]int, n int) (dups int) {
	t.Helper()
	missing := 0
	for i := range n {
		c := ids[fmt.Sprintf("ev-%08d", i)]
		if c == 0 {
			if missing < 5 {
				t.Errorf("ev-%08d not stored", i)
			}
			missing++
		}
		if c > 1 {
			dups += c - 1
		}
	}
	if missing > 0 || len(ids) != n {
		t.Fatalf("%d of %d events missing; %d distinct ids stored", missing, n, len(ids))
	}
	return dups
}

// vlFlush is the test nodes' -inmemoryDataFlushInterval unless a test
// gives its own (a later flag wins), and vlOutput's StorageFlushInterval.
const vlFlush = time.Second

func vlOutput(name, insertURL, selectURL string) Config {
	return Config{Name: name, Type: TypeVictoriaLogs, URL: insertURL, VerifyURL: selectURL,
		StreamFields: []string{"service.name", "trailguard.ledger.origin"},
		VerifyDelay:  3 * time.Second, StorageFlushInterval: vlFlush, BatchEvents: 2000, FlushInterval: 100 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, Timeout: 5 * time.Second}
}

// TestVictoriaLogsSingleNode forwards events to a real VictoriaLogs and
// finds every event.id there exactly once, the documents as sent.
// TRAILGUARD_FORWARD_EVENTS sets the count (.ci/run runs 1,000,000).
func TestVictoriaLogsSingleNode(t *testing.T) {
	t.Parallel()
	bin := testenv.Tool(t, "victoria-logs", vlInstall)
	n := testenv.Count(t, "TRAILGUARD_FORWARD_EVENTS", 20000)
	vl := startVL(t, bin)
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	now := time.Now()
	appendEvents(t, l, 0, n, now)
	cfg := vlOutput("vl", vl.url(), "")
	cfg.Workers = 4
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m.Start(l)
	defer m.Close()
	waitFor(t, time.Duration(n/1000+60)*time.Second, "every record verified", func() bool { return statsOf(m, "vl").Cursor == uint64(n) })
	st := statsOf(m, "vl")
	t.Logf("%d events forwarded and verified in %v (acknowledged at %.0f events/s over the last minute); %+v", n, time.Since(start).Round(time.Millisecond), st.Rate, st)
	forceFlush(t, vl)
	ids := storedIDs(t, vl.url())
	if dups := checkAll(t, ids, n); dups != 0 || st.Resent != 0 || st.DeadLettered != 0 {
		t.Errorf("%d duplicates, %d resent, %d dead-lettered on a run without failures", dups, st.Resent, st.DeadLettered)
	}
	// One document, field by field as the ledger holds it.
	resp, err := http.PostForm(vl.url()+"/select/logsql/query", url.Values{"query": {`event.id:="ev-00000042"`}})
	if err != nil {
		t.Fatal(err)
	}
	var doc bytes.Buffer
	doc.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"event.action":"authn_login_fail"`, `"source.ip":"203.0.113.42"`, `"user.name":"user42"`,
		`"service.name":"api-0"`, `"trailguard.ledger.index":"42"`, `"event.category":"[\"authentication\"]"`,
		`"_time":"` + now.UTC().Format(time.RFC3339Nano)} {
		if !strings.Contains(doc.String(), want) {
			t.Errorf("stored document lacks %s:\n%s", want, doc.String())
		}
	}
}

// feed appends events [0, n) to l over about d, as a collector would
// while ingesting, and returns when done.
func feed(t testing.TB, l *ledger.Ledger, n int, d time.Duration) {
	steps := 50
	per := n / steps
	for s := range steps {
		k := per
		if s == steps-1 {
			k = n - per*(steps-1)
		}
		appendEvents(t, l, s*per, k, time.Now())
		time.Sleep(d / time.Duration(steps))
	}
}

// TestVictoriaLogsKilled kills VictoriaLogs with SIGKILL while events are
// being forwarded, once it holds records the output verified (on its
// disk) and records acknowledged but not yet on its disk, and restarts
// it: the verified records are still there, the lost ones are sent again,
// and every event.id ends up stored (duplicates are counted).
func TestVictoriaLogsKilled(t *testing.T) {
	t.Parallel()
	testenv.Long(t)
	bin := testenv.Tool(t, "victoria-logs", vlInstall)
	vl := startKillable(t, bin, "-inmemoryDataFlushInterval=2s")
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	cfg := vlOutput("vl", vl.url(), "")
	cfg.StorageFlushInterval = 2 * time.Second
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	defer m.Close()
	const n = 30000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); feed(t, l, n, 10*time.Second) }()
	// Kill it right after an acknowledgement, while records it
	// acknowledged are still only in its memory, and some it holds are
	// verified.
	waitFor(t, 30*time.Second, "records verified, and more acknowledged and not verified", func() bool {
		st := statsOf(m, "vl")
		return st.Cursor > 0 && st.Unverified > 2000
	})
	before := statsOf(m, "vl")
	vl.kill()
	t.Logf("killed VictoriaLogs with %d records acknowledged, %d of them not verified", before.Acknowledged, before.Unverified)
	time.Sleep(time.Second)
	vl.start()
	if got := countOn(t, vl.url(), 0, before.Cursor); got < int(before.Cursor) {
		t.Errorf("%d of the %d records verified before the kill are stored after the restart", got, before.Cursor)
	}
	wg.Wait()
	waitFor(t, 60*time.Second, "every record verified", func() bool { return statsOf(m, "vl").Cursor == n })
	forceFlush(t, vl)
	st := statsOf(m, "vl")
	dups := checkAll(t, storedIDs(t, vl.url()), n)
	if st.Resent == 0 || st.DeadLettered != 0 {
		t.Errorf("VictoriaLogs was killed holding acknowledged rows in memory, yet %d records were sent again and %d dead-lettered: %+v", st.Resent, st.DeadLettered, st)
	}
	t.Logf("after kill -9 and restart: all %d events stored; %d duplicates; %d records sent again after verification, %d retries", n, dups, st.Resent, st.Retried)
}

// countOn counts the rows of the test ledger with a ledger index in
// [lo, hi) that the node at nodeURL answers for: a storage node answers for
// the rows on it alone (it is a single node to its own query API), a
// select node for the whole cluster.
func countOn(t testing.TB, nodeURL string, lo, hi uint64) int {
	t.Helper()
	q := fmt.Sprintf(`trailguard.ledger.origin:=%q trailguard.ledger.index:range[%d, %d) | count() as n`, testOrigin, lo, hi)
	resp, err := http.PostForm(nodeURL+"/select/logsql/query", url.Values{"query": {q}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("count on %s: %s: %s", nodeURL, resp.Status, b.String())
	}
	var r struct{ N string }
	if err := json.Unmarshal(bytes.TrimSpace(b.Bytes()), &r); err != nil {
		t.Fatalf("count on %s: %q: %v", nodeURL, b.String(), err)
	}
	c, err := strconv.Atoi(r.N)
	if err != nil {
		t.Fatalf("count on %s: %q: %v", nodeURL, b.String(), err)
	}
	return c
}

// TestVictoriaLogsCluster forwards through a cluster on loopback — two
// storage nodes, an insert node and a select node, all the same binary —
// kills storage node a with SIGKILL mid-stream, while it holds rows the
// output has verified (on its disk) and rows only acknowledged (in its
// memory, lost by the kill), and brings it back: the cursor never passes
// what was stored, the lost rows are sent again, and every event.id ends
// up stored (at least once, the package's guarantee). The insert node
// spreads rows over the storage nodes by stream; user.name as a stream
// field makes 300 streams, so that a holds rows whatever the hashes.
func TestVictoriaLogsCluster(t *testing.T) {
	t.Parallel()
	testenv.Long(t)
	bin := testenv.Tool(t, "victoria-logs", vlInstall)
	a := startKillable(t, bin, "-inmemoryDataFlushInterval=2s")
	b := startVL(t, bin, "-inmemoryDataFlushInterval=2s")
	nodes := "-storageNode=" + a.addr + "," + b.addr
	insert := startVL(t, bin, nodes, "-select.disable")
	sel := startVL(t, bin, nodes, "-insert.disable")
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	cfg := vlOutput("vlc", insert.url(), sel.url())
	cfg.StreamFields = append(cfg.StreamFields, "user.name")
	cfg.StorageFlushInterval = 2 * time.Second
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	defer m.Close()
	const n = 30000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); feed(t, l, n, 10*time.Second) }()
	// Kill a once some records are verified and more are acknowledged
	// after them, while rows still arrive.
	waitFor(t, 30*time.Second, "records verified, and more acknowledged and not verified", func() bool {
		st := statsOf(m, "vlc")
		return st.Cursor > 0 && st.Unverified > 2000
	})
	down := statsOf(m, "vlc")
	held := countOn(t, a.url(), 0, down.Cursor)
	if held == 0 || held == int(down.Cursor) {
		t.Fatalf("storage node a holds %d of the %d verified records: the kill would test nothing (or b nothing)", held, down.Cursor)
	}
	a.kill()
	time.Sleep(3 * time.Second)
	// While a storage node is down, queries fail and the cursor waits.
	if st := statsOf(m, "vlc"); st.Cursor > down.Acknowledged {
		t.Errorf("cursor moved to %d, past what was acknowledged (%d) when a storage node died", st.Cursor, down.Acknowledged)
	}
	a.start()
	// What a held and the output had verified is on its disk.
	if after := countOn(t, a.url(), 0, down.Cursor); after < held {
		t.Errorf("storage node a held %d of the verified records [0, %d) before the kill, %d after the restart", held, down.Cursor, after)
	}
	wg.Wait()
	waitFor(t, 60*time.Second, "every record verified", func() bool { return statsOf(m, "vlc").Cursor == n })
	forceFlush(t, a, b)
	st := statsOf(m, "vlc")
	dups := checkAll(t, storedIDs(t, sel.url()), n)
	if st.Resent == 0 || st.DeadLettered != 0 {
		t.Errorf("storage node a was killed holding acknowledged rows in memory, yet %d records were sent again and %d dead-lettered: %+v", st.Resent, st.DeadLettered, st)
	}
	t.Logf("cluster, storage node a (%d of the first %d verified records) killed and restarted: all %d events stored; %d duplicates; %d sent again after verification", held, down.Cursor, n, dups, st.Resent)
}

// TestVictoriaLogsBulk forwards through VictoriaLogs' Elasticsearch _bulk
// endpoint (protocol: bulk) with gzip: every event stored once.
func TestVictoriaLogsBulk(t *testing.T) {
	t.Parallel()
	bin := testenv.Tool(t, "victoria-logs", vlInstall)
	vl := startVL(t, bin)
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	const n = 5000
	appendEvents(t, l, 0, n, time.Now())
	cfg := vlOutput("vlbulk", vl.url(), "")
	cfg.Protocol, cfg.BatchEvents = "bulk", 700
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	defer m.Close()
	waitFor(t, 60*time.Second, "every record verified", func() bool { return statsOf(m, "vlbulk").Cursor == n })
	forceFlush(t, vl)
	if dups := checkAll(t, storedIDs(t, vl.url()), n); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestVictoriaLogsClusterAllStorageDown is the trap of a VictoriaLogs
// cluster: with every storage node down the insert node still answers 200
// and keeps the rows in its memory. The output must not take that for
// delivery: its cursor stays put, and when the insert node dies with the
// rows (kill -9) and the cluster comes back, the rows are sent again.
func TestVictoriaLogsClusterAllStorageDown(t *testing.T) {
	t.Parallel()
	testenv.Long(t)
	bin := testenv.Tool(t, "victoria-logs", vlInstall)
	a := startKillable(t, bin, "-inmemoryDataFlushInterval="+vlFlush.String())
	b := startKillable(t, bin, "-inmemoryDataFlushInterval="+vlFlush.String())
	nodes := "-storageNode=" + a.addr + "," + b.addr
	insert := startKillable(t, bin, nodes, "-select.disable")
	sel := startVL(t, bin, nodes, "-insert.disable")
	dir := t.TempDir()
	l := openLedger(t, filepath.Join(dir, "ledger"), nil)
	defer l.Close()
	cfg := vlOutput("vlc", insert.url(), sel.url())
	cfg.Timeout = 2 * time.Second
	m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.Start(l)
	defer m.Close()
	const n1, n2 = 5000, 5000
	appendEvents(t, l, 0, n1, time.Now())
	waitFor(t, 30*time.Second, "the first records verified", func() bool { return statsOf(m, "vlc").Cursor == n1 })

	a.kill()
	b.kill()
	appendEvents(t, l, n1, n2, time.Now())
	// The insert node accepts them with no storage node up ...
	waitFor(t, 20*time.Second, "the insert node to answer 200 for the new records", func() bool { return statsOf(m, "vlc").Acknowledged == n1+n2 })
	// ... but the cursor does not move past what is stored.
	time.Sleep(2 * cfg.VerifyDelay)
	if st := statsOf(m, "vlc"); st.Cursor != n1 {
		t.Fatalf("cursor moved to %d with every storage node down (%+v)", st.Cursor, st)
	}
	// The insert node dies holding the rows; the cluster comes back.
	insert.kill()
	a.start()
	b.start()
	insert.start()
	waitFor(t, 60*time.Second, "every record verified", func() bool { return statsOf(m, "vlc").Cursor == n1+n2 })
	forceFlush(t, a, b)
	st := statsOf(m, "vlc")
	dups := checkAll(t, storedIDs(t, sel.url()), n1+n2)
	if st.Resent == 0 {
		t.Errorf("nothing was sent again, yet the insert node died holding %d rows: %+v", n2, st)
	}
	t.Logf("all storage nodes down, insert node killed: all %d events stored; %d sent again after verification; %d duplicates", n1+n2, st.Resent, dups)
}

// TestVictoriaLogsMessage: the victorialogs output's default msg_field is
// a list (message, else url.path), over both of its protocols, against a
// real VictoriaLogs: an event with a message has it as _msg, an access
// event (httpaudit's have no message) its url.path, instead of
// VictoriaLogs' placeholder for every access event.
func TestVictoriaLogsMessage(t *testing.T) {
	t.Parallel()
	bin := testenv.Tool(t, "victoria-logs", vlInstall)
	vl := startVL(t, bin)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	recs := map[string]struct{ rec, msg string }{
		"alert": {fmt.Sprintf(`{"@timestamp":%q,"message":"brute force from 203.0.113.9","event":{"kind":"alert","action":"brute_force","id":"%%s"},"url":{"path":"/login"},"service":{"name":"api"}}`, now),
			"brute force from 203.0.113.9"},
		"access": {fmt.Sprintf(`{"@timestamp":%q,"event":{"kind":"event","action":"http_request","dataset":"trailguard.access","id":"%%s"},"http":{"request":{"method":"GET"},"response":{"status_code":404}},"url":{"path":"/orders/42"},"service":{"name":"api"}}`, now),
			"/orders/42"},
	}
	for _, protocol := range []string{"jsonline", "bulk"} {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			l := openLedger(t, filepath.Join(dir, "ledger"), nil)
			defer l.Close()
			want := map[string]string{}
			var batch [][]byte
			for kind, r := range recs {
				id := protocol + "-" + kind
				batch = append(batch, fmt.Appendf(nil, r.rec, id))
				want[id] = r.msg
			}
			if _, err := l.Append(t.Context(), batch...); err != nil {
				t.Fatal(err)
			}
			cfg := vlOutput("vl", vl.url(), "")
			cfg.Protocol = protocol
			m, err := Open([]Config{cfg}, Options{Dir: filepath.Join(dir, "forward"), Origin: testOrigin, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			m.Start(l)
			defer m.Close()
			waitFor(t, time.Minute, "every record verified", func() bool { return statsOf(m, "vl").Cursor == uint64(len(batch)) })
			forceFlush(t, vl)
			for id, msg := range want {
				resp, err := http.PostForm(vl.url()+"/select/logsql/query", url.Values{"query": {`event.id:="` + id + `" | uniq by (_msg)`}}) // (a batch not yet confirmed may be sent again)
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				got.ReadFrom(resp.Body)
				resp.Body.Close()
				if w := fmt.Sprintf(`{"_msg":%q}`, msg); strings.TrimSpace(got.String()) != w {
					t.Errorf("%s: %s; want %s", id, got.String(), w)
				}
			}
		})
	}
}
