// Command idleconns measures what idle client connections cost a running
// trailguard serve or proxy: it opens -n connections spread over
// -addresses loopback sources (127.0.1.1, 127.0.1.2, …: one address may
// hold only an eighth of max_connections_per_address before it presents a
// token), optionally sends half a request head on each (-head), and prints
// the process's resident memory before and after, per connection.
//
//	trailguard serve --data /tmp/idle &
//	go run ./cmd/idleconns -addr 127.0.0.1:8600 -pid $!
//
// Linux only (/proc/PID/status). The connections close when it exits.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8600", "the server's address")
	pid := flag.Int("pid", 0, "the server's process id (its VmRSS is read)")
	n := flag.Int("n", 2000, "connections to open")
	addresses := flag.Int("addresses", 20, "loopback source addresses to spread them over (127.0.1.1 on)")
	head := flag.Bool("head", false, "send half a request head on each (a slowloris client) rather than nothing")
	settle := flag.Duration("settle", 3*time.Second, "wait before reading the memory")
	flag.Parse()
	if *pid == 0 || *addresses < 1 || *addresses > 254 {
		fmt.Fprintln(os.Stderr, "idleconns: -pid of the server needed, and 1 to 254 -addresses")
		os.Exit(2)
	}
	before, err := rss(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
	conns := make([]net.Conn, 0, *n)
	for i := range *n {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%*addresses))}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", *addr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: connection %d: %v\n", i, err)
			os.Exit(1)
		}
		if *head {
			if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n")); err != nil {
				fmt.Fprintf(os.Stderr, "idleconns: connection %d: %v\n", i, err)
				os.Exit(1)
			}
		}
		conns = append(conns, c)
	}
	time.Sleep(*settle)
	// Connections the server closed (a bound) are not idle ones held.
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
			}
		}
	}
	after, err := rss(*pid)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
	fmt.Printf("%d connections held open of %d, from %d addresses: RSS %d -> %d KiB, %.1f KiB per connection held\n",
		open, *n, *addresses, before, after, float64(after-before)/float64(max(open, 1)))
}

// rss is the process's resident memory in KiB.
func rss(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
