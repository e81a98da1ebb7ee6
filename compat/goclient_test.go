package compat

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/go-elasticsearch/v8"
	"github.com/elastic/go-elasticsearch/v8/esutil"
)

// TestGoClientBulkIndexer ships 10,000 events with go-elasticsearch's
// BulkIndexer, authenticated with an Elasticsearch-style API key, and
// checks that the client accepted the server (its product check), that no
// item failed, and that the query API holds every event.
func TestGoClientBulkIndexer(t *testing.T) {
	const n = 10000
	c := startCollector(t)
	ingest := c.token(t, "ingest", "go-client")
	read := c.token(t, "read", "go-reader")
	es, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: []string{c.url},
		APIKey:    base64.StdEncoding.EncodeToString([]byte("go-client:" + ingest)),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Info and the cluster probes go through the client's product check.
	info, err := es.Info()
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	info.Body.Close()
	if info.IsError() || !strings.HasPrefix(info.Header.Get("X-Elastic-Product"), "Elasticsearch") {
		t.Fatalf("Info: %s", info)
	}
	health, err := es.Cluster.Health()
	if err != nil || health.IsError() {
		t.Fatalf("cluster health: %v %v", err, health)
	}
	health.Body.Close()

	const svc = "compat-go"
	var failed atomic.Int64
	var firstErr atomic.Value
	bi, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client:        es,
		Index:         "logs-compat-go",
		NumWorkers:    2,
		FlushBytes:    256 << 10,
		FlushInterval: 200 * time.Millisecond,
		OnError: func(_ context.Context, err error) {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := range n {
		err := bi.Add(ctx, esutil.BulkIndexerItem{
			Action: "create",
			Body:   bytes.NewReader(ecsEvent(svc, i)),
			OnFailure: func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
				failed.Add(1)
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					firstErr.CompareAndSwap(nil, res.Error.Type+": "+res.Error.Reason)
				}
			},
		})
		if err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	if err := bi.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := bi.Stats()
	t.Logf("BulkIndexer stats: %+v", st)
	if failed.Load() != 0 || st.NumFailed != 0 {
		t.Fatalf("%d failures (stats %+v), first: %v", failed.Load(), st, firstErr.Load())
	}
	if st.NumAdded != n || st.NumFlushed != n || st.NumCreated != n {
		t.Fatalf("stats %+v, want %d added, flushed and created", st, n)
	}
	if got := c.count(t, read, svc, n); got != n {
		t.Fatalf("the query API holds %d of the %d events", got, n)
	}
}
