package index_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/index"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/query"
)

func Example() {
	dir, _ := os.MkdirTemp("", "trailguard-example")
	defer os.RemoveAll(dir)
	skey, _, _ := ledger.GenerateKey("example.com/trailguard")
	signer, _ := note.NewSigner(skey)
	l, err := ledger.Open(filepath.Join(dir, "ledger"), ledger.Options{Origin: "example.com/trailguard", Signer: signer})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	l.Append(context.Background(),
		[]byte(`{"@timestamp":"2026-11-25T17:40:49Z","event":{"action":"authn_login_fail","outcome":"failure"},"http":{"request":{"id":"r1"},"response":{"status_code":401}},"source":{"ip":"203.0.113.66"},"user":{"name":"alice"}}`),
		[]byte(`{"@timestamp":"2026-11-25T17:40:50Z","event":{"action":"authn_login_success","outcome":"success"},"http":{"request":{"id":"r2"},"response":{"status_code":200}},"source":{"ip":"10.0.0.7"},"user":{"name":"alice"}}`))

	// Queries find events through the index and read them from the ledger.
	ix, err := index.Open(filepath.Join(dir, "index.db"), index.Options{Ledger: l})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ix.Close()
	// Run follows the ledger until ctx ends; a collector runs it for its lifetime.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ix.Run(ctx, l) }()
	ix.WaitIndexed(ctx, l.Size()) // read your writes
	cancel()
	<-done

	q, _ := query.Parse(`user.name:alice and not source.ip:10.0.0.0/8`)
	res, err := ix.Search(context.Background(), index.Request{Query: q})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range res.Hits {
		fmt.Println(h.Index, h.Time.Format(time.RFC3339), string(h.Raw[:40]))
	}
	top, _ := ix.Top(context.Background(), index.TopRequest{Field: "event.outcome"})
	fmt.Println(top.Values)
	// Output:
	// 0 2026-11-25T17:40:49Z {"@timestamp":"2026-11-25T17:40:49Z","ev
	// [{failure 1} {success 1}]
}
