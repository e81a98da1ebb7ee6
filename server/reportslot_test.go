package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// smallBuffers accepts connections with the smallest kernel send buffer,
// so that an answer of a few tens of KiB to a client that does not read
// blocks the handler's write (loopback's autotuned buffers take MiBs).
type smallBuffers struct {
	net.Listener
	sndbuf atomic.Int64 // the last connection's, as the kernel set it
}

func (l *smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		l.sndbuf.Store(int64(sockBuf(tc)))
	}
	return c, err
}

// sockBuf sets c's kernel send buffer as small as it goes and returns
// its size.
func sockBuf(c syscall.Conn) (n int) {
	rc, _ := c.SyscallConn()
	rc.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 1024)
		n, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	})
	return n
}

// TestReportSlotFreeWhileSending: the report slot (one report computed at
// a time) is given back once the report is rendered, before it is sent: a
// client that reads its report slowly, or not at all, holds up no one
// else's report.
func TestReportSlotFreeWhileSending(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sb := &smallBuffers{Listener: ln}
	ts := startServerOn(t, t.TempDir(), sb, nil, nil)
	var body strings.Builder
	for i := range 2000 {
		body.WriteString(ev("authn_login_fail", "failure", fmt.Sprintf("user%d", i), fmt.Sprintf("203.0.%d.%d", i/250, i%250), 0) + "\n")
	}
	if code, b := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body.String())); code != 200 {
		t.Fatalf("ingest: %d %s", code, b)
	}
	// A client with a small receive buffer that reads the answer's first
	// byte (the report is rendered: its head is being sent), then stops.
	// (Set before the connection is made: the window it offers at the
	// start is never taken back.)
	var rcvbuf int
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 1024)
			rcvbuf, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		})
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/reports?standard=pci-dss&format=html&from=1h HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", ts.read)
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReaderSize(c, 16)
	if _, err := br.Peek(1); err != nil {
		t.Fatalf("no answer: %v", err)
	}
	select {
	case reportSlot <- struct{}{}:
		<-reportSlot
	case <-time.After(30 * time.Second):
		t.Fatal("the report slot is still held 30 s into sending a report to a client that does not read it")
	}
	// The report was larger than twice what the two buffers hold: its
	// write was still blocked when the slot was taken.
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	bufs := sb.sndbuf.Load() + int64(rcvbuf)
	if resp.StatusCode != 200 || err != nil || n < 2*bufs {
		t.Fatalf("report: %d, %d bytes, %v; want 200 and more than twice the socket buffers' %d bytes", resp.StatusCode, n, err, bufs)
	}
	t.Logf("%d bytes of HTML; socket buffers %d bytes", n, bufs)
}
