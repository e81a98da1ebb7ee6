package server

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// ld is a length-delimited protobuf field.
func ld(num protowire.Number, payload []byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, payload)
}

// TestOTLPValuesBounded: an OTLP request whose resource, scope or log
// record holds more attributes and values than any exporter sends, or
// whose records make the mapping read their resource's thousands of
// attributes again and again, is refused (413) before it is decoded or
// mapped; an ordinary batch is stored. Before, one log record of 8.3
// million empty attributes (16 MB) took 400 MB to decode, and a 487 KB
// request (a resource of 20,000 attributes, 99,000 empty log records)
// kept two cores busy for minutes, in protobuf and in JSON alike.
func TestOTLPValuesBounded(t *testing.T) {
	t.Parallel()
	ts := startServer(t, t.TempDir(), nil)
	const many = 8_300_000
	attrs := func(n int) []byte { // n KeyValues "k<i>" = "v"
		var b []byte
		for i := range n {
			b = append(b, ld(1, append(ld(1, fmt.Appendf(nil, "k%d", i)), ld(2, ld(1, []byte("v")))...))...)
		}
		return b
	}
	var resJSON strings.Builder
	for i := range 20000 {
		if i > 0 {
			resJSON.WriteByte(',')
		}
		fmt.Fprintf(&resJSON, `{"key":"k%d","value":{"stringValue":"v"}}`, i)
	}
	ordinary := ld(1, append(ld(1, attrs(50)), ld(2, bytes.Repeat(ld(2, append(ld(6, attrs(20)), ld(5, ld(1, []byte("hello")))...)), 1000))...))
	for _, tc := range []struct {
		name, ctype string
		body        []byte
		want        int
	}{
		{"a log record of 8.3 million empty attributes", "application/x-protobuf",
			ld(1, ld(2, ld(2, bytes.Repeat([]byte{6<<3 | 2, 0}, many)))), 413},
		{"an attribute holding 8.3 million values", "application/x-protobuf",
			ld(1, ld(2, ld(2, ld(6, append(ld(1, []byte("k")), ld(2, ld(5, bytes.Repeat([]byte{1<<3 | 2, 0}, many)))...))))), 413},
		{"a resource of 8.3 million attributes", "application/x-protobuf",
			ld(1, append(ld(1, bytes.Repeat([]byte{1<<3 | 2, 0}, many)), ld(2, ld(2, nil))...)), 413},
		{"a resource of 20,000 attributes for 99,000 log records", "application/x-protobuf",
			ld(1, append(ld(1, attrs(20000)), ld(2, bytes.Repeat(ld(2, nil), 99000))...)), 413},
		{"the same in JSON", "application/json",
			[]byte(`{"resourceLogs":[{"resource":{"attributes":[` + resJSON.String() + `]},"scopeLogs":[{"logRecords":[` +
				strings.TrimSuffix(strings.Repeat("{},", 99000), ",") + `]}]}]}`), 413},
		{"a log record of 60,000 attributes in JSON (120,000 attributes and values)", "application/json",
			[]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[` + resJSON.String() + "," + resJSON.String() + "," + resJSON.String() + `]}]}]}]}`), 413},
		{"an ordinary batch", "application/x-protobuf", ordinary, 200},
	} {
		req, err := http.NewRequest("POST", ts.url+"/v1/logs", bytes.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+ts.ingest)
		req.Header.Set("Content-Type", tc.ctype)
		start := time.Now()
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Errorf("%s (%d bytes): %v after %v", tc.name, len(tc.body), err, time.Since(start))
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s (%d bytes): %d after %v, want %d", tc.name, len(tc.body), resp.StatusCode, time.Since(start), tc.want)
		}
	}
}
