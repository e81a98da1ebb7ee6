//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sockio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a connected pair of TCP connections on 127.0.0.1.
func tcpPair(t *testing.T) (near, far *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-acc
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// TestSockIOAsNetConn: Read and Write (the socket calls that do not
// wake the runtime's monitor) give what the connection's own Read and Write
// give, case by case, on real sockets: bytes, io.EOF, a deadline (a
// net.Error whose Timeout is true), a reset, a closed connection, a write
// larger than the socket's buffers to a slow reader (the wait for room), a
// write to a reset peer.
func TestSockIOAsNetConn(t *testing.T) {
	type result struct {
		n       int
		err     string
		timeout bool
		eof     bool
		closed  bool
		reset   bool
		data    string
	}
	errOf := func(err error, c net.Conn, r *result) {
		if err == nil {
			return
		}
		r.err = strings.NewReplacer(c.LocalAddr().String(), "L", c.RemoteAddr().String(), "R").Replace(err.Error())
		var ne net.Error
		r.timeout = errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
		r.eof = err == io.EOF
		r.closed = errors.Is(err, net.ErrClosed)
		r.reset = errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
	}
	reset := func(far *net.TCPConn) {
		far.SetLinger(0)
		far.Close()
		time.Sleep(20 * time.Millisecond) // the RST is there
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	// small buffers make big more than the pair holds: the receiver's
	// window grows with autotuning (tcp_rmem's 32 MiB here), and 4 MiB
	// to nobody reading sometimes all went in at once.
	small := func(near, far *net.TCPConn) {
		near.SetWriteBuffer(64 << 10)
		far.SetReadBuffer(64 << 10)
	}
	cases := []struct {
		name string
		run  func(near, far *net.TCPConn, read func([]byte) (int, error), write func([]byte) (int, error)) result
	}{
		{"read bytes", func(near, far *net.TCPConn, read, _ func([]byte) (int, error)) (r result) {
			far.Write([]byte("hello"))
			b := make([]byte, 64)
			n, err := read(b)
			r.n, r.data = n, string(b[:n])
			errOf(err, near, &r)
			return r
		}},
		{"read waits", func(near, far *net.TCPConn, read, _ func([]byte) (int, error)) (r result) {
			go func() { time.Sleep(30 * time.Millisecond); far.Write([]byte("late")) }()
			b := make([]byte, 64)
			n, err := read(b)
			r.n, r.data = n, string(b[:n])
			errOf(err, near, &r)
			return r
		}},
		{"read end", func(near, far *net.TCPConn, read, _ func([]byte) (int, error)) (r result) {
			far.Close()
			n, err := read(make([]byte, 64))
			r.n = n
			errOf(err, near, &r)
			return r
		}},
		{"read empty buffer", func(near, far *net.TCPConn, read, _ func([]byte) (int, error)) (r result) {
			n, err := read(nil)
			r.n = n
			errOf(err, near, &r)
			return r
		}},
		{"read deadline", func(near, far *net.TCPConn, read, _ func([]byte) (int, error)) (r result) {
			near.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			n, err := read(make([]byte, 64))
			r.n = n
			errOf(err, near, &r)
			return r
		}},
		{"read reset", func(near, far *net.TCPConn, read, _ func([]byte) (int, error)) (r result) {
			reset(far)
			n, err := read(make([]byte, 64))
			r.n = n
			errOf(err, near, &r)
			return r
		}},
		{"read closed", func(near, far *net.TCPConn, read, _ func([]byte) (int, error)) (r result) {
			near.Close()
			n, err := read(make([]byte, 64))
			r.n = n
			errOf(err, near, &r)
			return r
		}},
		{"write to a slow reader", func(near, far *net.TCPConn, _, write func([]byte) (int, error)) (r result) {
			small(near, far)
			got := make(chan []byte)
			go func() {
				var b bytes.Buffer
				buf := make([]byte, 64<<10)
				for b.Len() < len(big) {
					time.Sleep(time.Millisecond)
					n, err := far.Read(buf)
					b.Write(buf[:n])
					if err != nil {
						break
					}
				}
				got <- b.Bytes()
			}()
			n, err := write(big)
			r.n = n
			errOf(err, near, &r)
			if b := <-got; !bytes.Equal(b, big) {
				r.data = "the reader got other bytes"
			}
			return r
		}},
		{"write deadline", func(near, far *net.TCPConn, _, write func([]byte) (int, error)) (r result) {
			small(near, far)
			near.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := write(big) // nobody reads
			errOf(err, near, &r)
			// What was taken before the deadline (none, when a loaded
			// machine ran the write after it) is what the reader gets.
			near.Close()
			far.SetReadDeadline(time.Now().Add(30 * time.Second))
			if b, rerr := io.ReadAll(far); rerr != nil || !bytes.Equal(b, big[:n]) {
				r.data = fmt.Sprintf("the reader got %d bytes (%v), not the %d written", len(b), rerr, n)
			}
			if n < len(big) {
				n = -1 // some or none, not all: the same for both
			}
			r.n = n
			return r
		}},
		{"write reset", func(near, far *net.TCPConn, _, write func([]byte) (int, error)) (r result) {
			reset(far)
			n, err := write([]byte("x"))
			if err == nil { // the first write may still be taken; the next one fails
				n, err = write([]byte("x"))
			}
			r.n = n
			errOf(err, near, &r)
			r.err = strings.Replace(r.err, "connection reset by peer", "broken pipe", 1) // either, for either
			return r
		}},
		{"write closed", func(near, far *net.TCPConn, _, write func([]byte) (int, error)) (r result) {
			near.Close()
			n, err := write([]byte("x"))
			r.n = n
			errOf(err, near, &r)
			return r
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			near, far := tcpPair(t)
			want := tc.run(near, far, near.Read, near.Write)
			near, far = tcpPair(t)
			rc := RawConn(near)
			if rc == nil {
				t.Fatal("no raw connection for a TCP connection")
			}
			got := tc.run(near, far,
				func(p []byte) (int, error) { return Read(near, rc, p) },
				func(p []byte) (int, error) { return Write(near, rc, p) })
			if got != want {
				t.Errorf("sock: %+v\nconn: %+v", got, want)
			}
		})
	}
}
