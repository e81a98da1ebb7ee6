package testenv

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Port is a loopback TCP port a test keeps from start to end, so that a
// server it runs can go down and come back at the same address: a port
// closed and listened on again may be taken by another process in between.
// While no server listens on it, a connection is accepted and closed at
// once, which a client sees as the far end being unreachable.
type Port struct {
	ln  net.Listener
	mu  sync.Mutex
	cur *portListener
}

// NewPort reserves a port on 127.0.0.1 for the rest of the test.
func NewPort(t testing.TB) *Port {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Port{ln: ln}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		if p.cur != nil {
			p.cur.close()
		}
		p.mu.Unlock()
	})
	return p
}

// Addr is the port's address, host:port.
func (p *Port) Addr() string { return p.ln.Addr().String() }

// Listen returns a listener on the port for one server, which gets the
// connections from now until it closes the listener (as http.Server does
// on shutdown); the port stays reserved after that. One at a time.
func (p *Port) Listen() net.Listener {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		p.cur.close()
	}
	p.cur = &portListener{p: p, conns: make(chan net.Conn), done: make(chan struct{})}
	return p.cur
}

func (p *Port) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		l := p.cur
		p.mu.Unlock()
		if l == nil {
			c.Close()
			continue
		}
		select {
		case l.conns <- c:
		case <-l.done:
			c.Close()
		}
	}
}

// Relay sends the port's connections from now on to the server at to,
// each over a connection of its own, until stop: for a program the test
// runs, which cannot be handed the port, and which listens on a port of
// its own that changes from run to run (StartServer's, so that a port
// another process took meanwhile is no matter). stop closes the
// connections relayed so far and the port refuses again, as Listen's
// listener closed does: call it before the program is killed, so that no
// connection reaches its port, which another process may take once the
// program is gone.
//
// A connection relayed ends, both ways, when either side closes its end
// (no half-close); one that cannot reach to is closed at once.
func (p *Port) Relay(to string) (stop func()) {
	ln := p.Listen()
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	stopped := false
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			c.Close()
			return false
		}
		conns[c] = true
		return true
	}
	untrack := func(c net.Conn) {
		mu.Lock()
		delete(conns, c)
		mu.Unlock()
		c.Close()
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !track(c) {
				continue
			}
			go func() {
				defer untrack(c)
				up, err := net.DialTimeout("tcp", to, 10*time.Second)
				if err != nil {
					return
				}
				if !track(up) {
					return
				}
				defer untrack(up)
				done := make(chan struct{}, 2)
				go func() { io.Copy(up, c); done <- struct{}{} }()
				go func() { io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return func() {
		ln.Close()
		mu.Lock()
		stopped = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
	}
}

// portListener is one server's view of a Port.
type portListener struct {
	p     *Port
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *portListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *portListener) close() { l.once.Do(func() { close(l.done) }) }

// Close stops this server's view; the port stays reserved, refusing.
func (l *portListener) Close() error {
	l.p.mu.Lock()
	if l.p.cur == l {
		l.p.cur = nil
	}
	l.p.mu.Unlock()
	l.close()
	return nil
}

func (l *portListener) Addr() net.Addr { return l.p.ln.Addr() }
