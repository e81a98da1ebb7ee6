// Command blocktime measures how fast a brute force is stopped: hydra
// attacks a gateway (trailguard proxy, which must trust 127.0.0.1 as a
// proxy and keep a JSON trail with --trail-dir) from a different client
// address each run (X-Forwarded-For), and the gateway's own trail says when
// the failed login that crossed the threshold happened (the N-th
// authn_login_fail of that address) and when the first request of that
// address was refused: request_blocked (refused before the upstream), or
// response_withheld (a request in flight when the block came, whose answer
// the client did not get: a 403 instead). The first refusal of either kind
// is the figure; the first request_blocked is printed beside it. When
// fail2ban watches the same trail (-fail2ban-bans DIR, where its ban action
// writes one file per banned address holding the time), its ban is timed
// from the same threshold-crossing login.
//
//	go run ./cmd/blocktime -target http://127.0.0.1:8080 -trail DIR/trail.jsonl -runs 20
//
// hydra sends its requests in bursts (one per task, 16 by default as in
// hydra) about 100 ms apart; a refusal comes either from an answer of the
// threshold-crossing burst still in flight when the block came (withheld)
// or from the next burst. -procs runs several hydra processes from the same
// address, started -stagger apart, for an attacker without pauses; the
// default is one, hydra as it comes. The time the block was in force at the
// gateway (its first decisions_applied event naming the address, recorded
// just after) is printed too. A run whose threshold was crossed but that was
// never refused counts as infinitely slow.
//
// It prints one line per run and the p50, p99 and max of each, and the
// results as "RESULT name p99_ms" lines for bench/proxy.sh.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

type ev struct {
	Timestamp time.Time `json:"@timestamp"`
	Event     struct {
		Action string `json:"action"`
	} `json:"event"`
	Client struct {
		IP string `json:"ip"`
	} `json:"client"`
}

func main() {
	target := flag.String("target", "", "gateway URL, e.g. http://127.0.0.1:8080")
	trail := flag.String("trail", "", "the gateway's JSON-lines trail (--trail-dir DIR: DIR/trail.jsonl)")
	runs := flag.Int("runs", 20, "attacks, each from its own client address")
	threshold := flag.Int("threshold", 10, "failed logins that cross the detection rule's threshold (fail2ban maxretry)")
	hydra := flag.String("hydra", "hydra", "hydra binary")
	bans := flag.String("fail2ban-bans", "", "directory where fail2ban's ban action writes <address> files holding the unix time (optional)")
	path := flag.String("path", "/basic-auth/admin/secret", "the Basic-auth page hydra attacks")
	name := flag.String("name", "trailguard", "what the trailguard figure is called in the output")
	subnet := flag.Int("subnet", 77, "second octet of the attackers' addresses 10.N.run.1 (change it between invocations)")
	tasks := flag.Int("tasks", 16, "hydra's parallel tasks (-t)")
	procs := flag.Int("procs", 1, "hydra processes attacking together from the same address, each with its share of the passwords")
	stagger := flag.Duration("stagger", 25*time.Millisecond, "delay between the starts of the hydra processes (their ~100 ms bursts then interleave)")
	flag.Parse()
	if *target == "" || *trail == "" {
		flag.Usage()
		os.Exit(2)
	}
	u, err := url.Parse(*target)
	if err != nil {
		fail(err)
	}
	dir, err := os.MkdirTemp("", "blocktime")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)
	// Passwords hydra will try: none is right, each is findable on disk.
	// Each hydra process gets its share.
	*procs = max(*procs, 1)
	lists := make([]string, *procs)
	for p := range lists {
		var pw bytes.Buffer
		for i := range 400 {
			fmt.Fprintf(&pw, "blocktime-canary-%d-%04d\n", p, i)
		}
		lists[p] = filepath.Join(dir, fmt.Sprintf("passwords-%d.txt", p))
		if err := os.WriteFile(lists[p], pw.Bytes(), 0o600); err != nil {
			fail(err)
		}
	}
	var tg, before, inForce, f2b []float64
	for run := range *runs {
		addr := fmt.Sprintf("10.%d.%d.1", *subnet, run+1)
		// Each process runs in its own directory (hydra leaves
		// hydra.restore there) and stops by itself once refused (hydra
		// takes the 403 for a found password); bound it anyway.
		var wg sync.WaitGroup
		for p, list := range lists {
			if p > 0 {
				time.Sleep(*stagger)
			}
			pdir := filepath.Join(dir, strconv.Itoa(p))
			os.MkdirAll(pdir, 0o700)
			cmd := exec.Command(*hydra, "-l", "admin", "-P", list, "-s", u.Port(), "-I", "-t", strconv.Itoa(*tasks),
				u.Hostname(), "http-get", *path+`:H=X-Forwarded-For\: `+addr)
			cmd.Stdout, cmd.Stderr, cmd.Dir = nil, nil, pdir
			if err := cmd.Start(); err != nil {
				fail(fmt.Errorf("hydra: %w", err))
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				done := make(chan struct{})
				go func() { cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					cmd.Process.Kill()
					<-done
				}
			}()
		}
		wg.Wait()
		time.Sleep(300 * time.Millisecond) // the trail's last batch
		cross, applied, blocked, refusedBefore := scan(*trail, addr, *threshold)
		line := fmt.Sprintf("run %2d %s:", run+1, addr)
		if cross.IsZero() {
			fmt.Printf("%s fewer than %d failed logins recorded\n", line, *threshold)
			continue
		}
		if blocked.IsZero() {
			line += fmt.Sprintf(" %s: not blocked", *name)
			tg = append(tg, math.Inf(1))
			before = append(before, math.Inf(1))
		} else {
			ms := blocked.Sub(cross).Seconds() * 1000
			tg = append(tg, ms)
			line += fmt.Sprintf(" %s %.1f ms", *name, ms)
			if refusedBefore.IsZero() {
				before = append(before, math.Inf(1))
				line += " (none refused before the upstream)"
			} else {
				ms := refusedBefore.Sub(cross).Seconds() * 1000
				before = append(before, ms)
				line += fmt.Sprintf(" (first refused before the upstream %.1f ms)", ms)
			}
		}
		if !applied.IsZero() {
			ms := applied.Sub(cross).Seconds() * 1000
			inForce = append(inForce, ms)
			line += fmt.Sprintf(" (decision in force after %.1f ms)", ms)
		}
		if *bans != "" {
			if t, ok := banTime(filepath.Join(*bans, addr), 5*time.Second); ok {
				ms := t.Sub(cross).Seconds() * 1000
				f2b = append(f2b, ms)
				line += fmt.Sprintf(", fail2ban %.1f ms", ms)
			} else {
				line += ", fail2ban: no ban"
			}
		}
		fmt.Println(line)
	}
	report(*name, tg, *runs)
	report(*name+"-before-upstream", before, *runs)
	report(*name+"-in-force", inForce, *runs)
	if *bans != "" {
		report("fail2ban", f2b, *runs)
	}
}

// scan reads the trail for one address: the threshold-crossing failed
// login, the first decisions_applied naming the address after it, the
// first refusal of any kind after it and the first request_blocked.
func scan(path, addr string, threshold int) (cross, applied, refused, blocked time.Time) {
	f, err := os.Open(path)
	if err != nil {
		fail(err)
	}
	defer f.Close()
	var fails []time.Time
	var refusals, blocks []time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	needle := []byte(`"ip":"` + addr + `"`)
	quoted := []byte(`"` + addr + `"`)
	var applies []time.Time
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(`"action":"decisions_applied"`)) && bytes.Contains(sc.Bytes(), quoted) {
			var e ev
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				applies = append(applies, e.Timestamp)
			}
			continue
		}
		if !bytes.Contains(sc.Bytes(), needle) {
			continue
		}
		var e ev
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Client.IP != addr {
			continue
		}
		switch e.Event.Action {
		case "authn_login_fail":
			fails = append(fails, e.Timestamp)
		case "request_blocked":
			refusals = append(refusals, e.Timestamp)
			blocks = append(blocks, e.Timestamp)
		case "response_withheld":
			// Answered by the upstream after the block and withheld: the
			// client got a refusal, not the answer.
			refusals = append(refusals, e.Timestamp)
		}
	}
	slices.SortFunc(fails, func(a, b time.Time) int { return a.Compare(b) })
	if len(fails) < threshold {
		return
	}
	cross = fails[threshold-1]
	for _, a := range applies {
		if a.After(cross) {
			applied = a
			break
		}
	}
	return cross, applied, firstAfter(refusals, cross), firstAfter(blocks, cross)
}

// firstAfter is the earliest of ts after t, or the zero time.
func firstAfter(ts []time.Time, t time.Time) time.Time {
	var first time.Time
	for _, x := range ts {
		if x.After(t) && (first.IsZero() || x.Before(first)) {
			first = x
		}
	}
	return first
}

func banTime(path string, wait time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(wait)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			if s, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64); err == nil {
				return time.Unix(0, int64(s*1e9)), true
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func report(name string, ms []float64, runs int) {
	if len(ms) == 0 {
		fmt.Printf("%s: no measurement in %d runs\nRESULT %s none\n", name, runs, name)
		return
	}
	slices.Sort(ms)
	q := func(p float64) float64 {
		i := int(p*float64(len(ms)) + 0.999999)
		return ms[min(max(i-1, 0), len(ms)-1)]
	}
	fmt.Printf("%s: %d of %d runs measured (never refused: +Inf); attack to block p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		name, len(ms), runs, q(0.5), q(0.99), ms[len(ms)-1])
	fmt.Printf("RESULT %s %.1f\n", name, q(0.99))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "blocktime:", err)
	os.Exit(1)
}
