package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const testMax = 1<<20 + 4096 // http.DefaultMaxHeaderBytes + net/http's slop

// smuggling and other heads Parse must decline (net/http answers them,
// or reads them with a body, or differently).
var declined = map[string]string{
	"cl and te":            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"te":                   "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"te obfuscated":        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
	"te tab":               "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n",
	"te lower":             "GET / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: chunked\r\n\r\n",
	"cl":                   "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
	"cl zero":              "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
	"duplicate cl":         "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n",
	"cl list":              "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0, 5\r\n\r\n",
	"obs-fold":             "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
	"obs-fold tab":         "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tTransfer-Encoding: chunked\r\n\r\n",
	"fold first":           "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
	"bare lf":              "GET / HTTP/1.1\nHost: a\n\n",
	"bare lf in head":      "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
	"bare lf end":          "GET / HTTP/1.1\r\nHost: a\r\n\n",
	"bare cr":              "GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n",
	"bare cr name":         "GET / HTTP/1.1\r\nHost: a\r\nX\r: b\r\n\r\n",
	"space before colon":   "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
	"space in name":        "GET / HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n",
	"no colon":             "GET / HTTP/1.1\r\nHost: a\r\nX-A b\r\n\r\n",
	"empty name":           "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n",
	"bad name byte":        "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n",
	"nul in value":         "GET / HTTP/1.1\r\nHost: a\r\nX: b\x00c\r\n\r\n",
	"del in value":         "GET / HTTP/1.1\r\nHost: a\r\nX: b\x7fc\r\n\r\n",
	"absolute form":        "GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"asterisk":             "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
	"authority":            "GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n",
	"http/1.0":             "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"http/1.0 no host":     "GET / HTTP/1.0\r\n\r\n",
	"http/2 preface":       "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"lower method":         "get / HTTP/1.1\r\nHost: a\r\n\r\n",
	"post":                 "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
	"trace":                "TRACE / HTTP/1.1\r\nHost: a\r\n\r\n",
	"two spaces":           "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
	"space in target":      "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
	"tab in target":        "GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n",
	"trailing space":       "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
	"lower proto":          "GET / http/1.1\r\nHost: a\r\n\r\n",
	"connection close":     "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	"connection names":     "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-A\r\n\r\n",
	"expect":               "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
	"upgrade":              "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"h2c upgrade":          "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
	"pragma":               "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n",
	"trailer":              "GET / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\n\r\n",
	"no host":              "GET / HTTP/1.1\r\n\r\n",
	"two hosts":            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"empty host":           "GET / HTTP/1.1\r\nHost:\r\n\r\n",
	"bad host":             "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
	"host slash":           "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
	"bad escape":           "GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",
	"leading crlf":         "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"tls hello":            "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
	"utf8 target":          "GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
	"smuggled cl.te space": "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\n\r\nGPOST",
}

// accepted heads, each followed by another request (pipelined).
var accepted = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET /get?a=1&b=%20 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n",
	"HEAD /x HTTP/1.1\r\nhost: a\r\nx-lower: v\r\nACCEPT: a\r\n\r\n",
	"OPTIONS /x/y/ HTTP/1.1\r\nHost: [::1]:80\r\nOrigin: http://b\r\n\r\n",
	"GET //double/slash HTTP/1.1\r\nHost: a\r\nX-A:  b \t\r\nX-A:c\r\nX-B:\r\n\r\n",
	"GET /a#frag HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive\r\nX: caf\xc3\xa9 \x80\r\n\r\n",
	"GET /%2F%2e HTTP/1.1\r\nHost: a\r\nCookie: a=b\r\nCookie: c=d\r\nTe: trailers\r\n\r\n",
}

func TestParseDeclines(t *testing.T) {
	for name, in := range declined {
		t.Run(name, func(t *testing.T) {
			for n := 1; n <= len(in); n++ {
				if _, res := Parse([]byte(in[:n]), testMax); res == OK {
					t.Fatalf("Parse took %q", in[:n])
				}
			}
			if _, res := Parse([]byte(in), testMax); res != Decline {
				t.Fatalf("Parse(%q) = %v, want Decline", in, res)
			}
		})
	}
}

func TestParseTakesPlainRequests(t *testing.T) {
	for _, in := range accepted {
		data := []byte(in + "GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
		for n := 0; n < len(in); n++ {
			if _, res := Parse(data[:n], testMax); res != Incomplete {
				t.Fatalf("Parse(%q) = %v before the head ended", data[:n], res)
			}
		}
		h, res := Parse(data, testMax)
		if res != OK {
			t.Fatalf("Parse(%q) = %v, want OK", in, res)
		}
		if h.Len != len(in) {
			t.Fatalf("Parse(%q).Len = %d, want %d (the pipelined request must stay unread)", in, h.Len, len(in))
		}
		compare(t, data, h)
	}
}

func TestParseBoundsTheHead(t *testing.T) {
	in := "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 200) + "\r\n\r\n"
	if _, res := Parse([]byte(in), 100); res != Decline {
		t.Fatalf("a head over the limit: %v, want Decline", res)
	}
	if _, res := Parse([]byte(in[:150]), 100); res != Decline {
		t.Fatalf("an incomplete head over the limit: %v, want Decline", res)
	}
	if _, res := Parse([]byte(in[:90]), 100); res != Incomplete {
		t.Fatalf("an incomplete head under the limit: %v, want Incomplete", res)
	}
}

// FuzzParseMatchesNetHTTP: for any bytes, Parse either declines (or
// waits for more) or yields what http.ReadRequest yields and what
// http.Server hands its handler: method, target, URL, proto, the header
// fields and values in order, Host, no body, keep-alive, and the same
// length of head.
func FuzzParseMatchesNetHTTP(f *testing.F) {
	for _, in := range declined {
		f.Add([]byte(in))
	}
	for _, in := range accepted {
		f.Add([]byte(in))
		f.Add([]byte(in + "GET / HTTP/1.1\r\nHost: b\r\n\r\n"))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, res := Parse(data, testMax)
		if res != OK {
			return
		}
		compare(t, data, h)
	})
}

// compare checks h against what net/http reads from data.
func compare(t *testing.T, data []byte, h Head) {
	t.Helper()
	src := bytes.NewReader(data)
	br := bufio.NewReaderSize(src, 64<<10)
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("Parse took %q, http.ReadRequest refused it: %v", data, err)
	}
	if used := len(data) - src.Len() - br.Buffered(); used != h.Len {
		t.Fatalf("%q: the head is %d bytes for Parse, %d for net/http", data, h.Len, used)
	}
	want := seen{Method: req.Method, RequestURI: req.RequestURI, URL: *req.URL, Proto: req.Proto,
		Major: req.ProtoMajor, Minor: req.ProtoMinor, Header: req.Header, Host: req.Host,
		ContentLength: req.ContentLength, TE: req.TransferEncoding, Close: req.Close, NoBody: req.Body == http.NoBody}
	got := seen{Method: h.Method, RequestURI: h.RequestURI, URL: *h.URL, Proto: "HTTP/1.1", Major: 1, Minor: 1,
		Header: h.Header, Host: h.Host, NoBody: true}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nParse:    %+v\nnet/http: %+v", data, got, want)
	}
	srv, err := serverSees(data[:h.Len], h.Method)
	if err != nil {
		t.Fatalf("%q: http.Server: %v", data, err)
	}
	if !reflect.DeepEqual(got, srv) {
		t.Fatalf("%q:\nParse:       %+v\nhttp.Server: %+v", data, got, srv)
	}
}

type seen struct {
	Method, RequestURI string
	URL                url.URL
	Proto              string
	Major, Minor       int
	Header             http.Header
	Host               string
	ContentLength      int64
	TE                 []string
	Close, NoBody      bool
}

// pipeListener hands http.Server the server ends of net.Pipe pairs.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *pipeListener) Close() error   { return nil }
func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

var (
	serverOnce sync.Once
	serverLn   *pipeListener
	serverSaw  = make(chan seen, 1)
)

// serverSees sends a head to a real http.Server and returns what its
// handler saw.
func serverSees(head []byte, method string) (seen, error) {
	serverOnce.Do(func() {
		serverLn = &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: nil,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				serverSaw <- seen{Method: r.Method, RequestURI: r.RequestURI, URL: *r.URL, Proto: r.Proto,
					Major: r.ProtoMajor, Minor: r.ProtoMinor, Header: r.Header, Host: r.Host,
					ContentLength: r.ContentLength, TE: r.TransferEncoding, Close: r.Close, NoBody: r.Body == http.NoBody}
			})}
		go srv.Serve(serverLn)
	})
	c, s := net.Pipe()
	defer c.Close()
	serverLn.conns <- s
	c.SetDeadline(time.Now().Add(30 * time.Second))
	go c.Write(head)
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return seen{}, err
	}
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return seen{}, errors.New("answered " + resp.Status)
	}
	return <-serverSaw, nil
}
