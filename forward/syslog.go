package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/ship"
)

var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// syslogSender writes RFC 5424 messages with octet-counted framing
// (RFC 6587 3.4.1, RFC 5425) over TCP or TLS.
type syslogSender struct {
	cfg    Config
	addr   string
	tls    *tls.Config // nil for tcp://
	report func(error)
	ctx    context.Context
	stop   context.CancelFunc
	conn   net.Conn
	buf    []byte
	fails  int
	mu     sync.Mutex
	st     ship.Stats
}

func newSyslogSender(c Config, tc *tls.Config, report func(error)) *syslogSender {
	u, _ := url.Parse(c.URL)
	s := &syslogSender{cfg: c, addr: u.Host, report: report}
	if u.Scheme == "tls" {
		s.tls = tc
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	return s
}

// Deliver writes records until the connection takes the whole batch; on
// any error it reconnects (backoff with jitter) and writes the batch again.
func (s *syslogSender) Deliver(recs [][]byte) error {
	s.buf = s.buf[:0]
	for _, r := range recs {
		s.buf = appendSyslogFrame(s.buf, s.cfg, r)
	}
	for {
		if err := s.ctx.Err(); err != nil {
			return fmt.Errorf("forward: syslog: %w", err)
		}
		err := s.write()
		if err == nil {
			s.fails = 0
			s.mu.Lock()
			s.st.Shipped += uint64(len(recs))
			s.mu.Unlock()
			return nil
		}
		if s.conn != nil {
			s.conn.Close()
			s.conn = nil
		}
		s.fails++
		s.mu.Lock()
		s.st.Retried += uint64(len(recs))
		s.st.LastError, s.st.LastErrorAt = err, time.Now()
		s.mu.Unlock()
		s.report(fmt.Errorf("forward: syslog %s: %w", s.addr, err))
		w := 100 * time.Millisecond
		for i := 1; i < s.fails && w < s.cfg.MaxBackoff; i++ {
			w *= 2
		}
		w = min(w, s.cfg.MaxBackoff)
		w = w/2 + rand.N(w/2+1)
		t := time.NewTimer(w)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
	}
}

func (s *syslogSender) write() error {
	if s.conn == nil {
		d := &net.Dialer{Timeout: s.cfg.Timeout, KeepAlive: 30 * time.Second}
		var c net.Conn
		var err error
		if s.tls != nil {
			c, err = (&tls.Dialer{NetDialer: d, Config: s.tls}).DialContext(s.ctx, "tcp", s.addr)
		} else {
			c, err = d.DialContext(s.ctx, "tcp", s.addr)
		}
		if err != nil {
			return err
		}
		s.conn = c
	}
	s.conn.SetWriteDeadline(time.Now().Add(s.cfg.Timeout))
	if _, err := s.conn.Write(s.buf); err != nil {
		return err
	}
	// Syslog has no acknowledgement. A receiver that has closed the
	// connection shows it as EOF or a reset here: then the batch may not
	// have arrived, and goes again on a new connection.
	s.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	var one [1]byte
	if _, err := s.conn.Read(one[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("connection closed by the receiver: %w", err)
	}
	return nil
}

func (s *syslogSender) Close() {
	s.stop()
}

func (s *syslogSender) Stats() ship.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// appendSyslogFrame appends "LEN SP MSG" where MSG is an RFC 5424 message
// whose free-form part is the JSON record:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - {json}
//
// PRI is facility*8+severity, with the severity from the event (alert: 1,
// error level: 3, failure or warning: 4, debug: 7, else 6); TIMESTAMP is
// @timestamp with at most six fractional digits; HOSTNAME is host.name (or
// the collector's); MSGID is event.action.
func appendSyslogFrame(dst []byte, c Config, rec []byte) []byte {
	ev, err := event.Decode(rec)
	if err != nil {
		ev = &event.Event{}
	}
	sev := 6
	switch {
	case ev.Kind == event.KindAlert:
		sev = 1
	case ev.LogLevel == "error" || ev.LogLevel == "critical" || ev.LogLevel == "fatal":
		sev = 3
	case ev.Outcome == event.OutcomeFailure || ev.LogLevel == "warn" || ev.LogLevel == "warning":
		sev = 4
	case ev.LogLevel == "debug":
		sev = 7
	}
	ts := "-"
	if !ev.Timestamp.IsZero() {
		ts = ev.Timestamp.UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	host := headerToken(ev.HostName, 255)
	if host == "-" {
		host = headerToken(c.Hostname, 255)
	}
	var b strings.Builder
	b.Grow(len(rec) + 128)
	b.WriteString("<" + strconv.Itoa(facilities[c.facility()]*8+sev) + ">1 " + ts + " " + host + " " +
		headerToken(c.AppName, 48) + " - " + headerToken(ev.Action, 32) + " - ")
	b.Write(rec)
	msg := b.String()
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}

// headerToken makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most n bytes, or "-" when nothing is left.
func headerToken(s string, n int) string {
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}
