package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/trailguard/trailguard/index"
	"github.com/trailguard/trailguard/ledger"
	"github.com/trailguard/trailguard/query"
)

func TestReindexCommand(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "ledger")
	skey, _, err := ledger.GenerateKey("audit.example.com/trailguard")
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	l, err := ledger.Open(dir, ledger.Options{Origin: "audit.example.com/trailguard", Signer: signer})
	if err != nil {
		t.Fatal(err)
	}
	var recs [][]byte
	for i := range 500 {
		recs = append(recs, fmt.Appendf(nil, `{"@timestamp":"2026-01-01T00:00:%02d.000000000Z","event":{"id":"e%d","action":"authn_login_fail"},"user":{"name":"u%d"}}`, i%60, i, i%5))
	}
	if _, err := l.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	l.Close()

	var out, errOut strings.Builder
	file := filepath.Join(tmp, "index.db")
	if code := runReindex([]string{"--ledger", dir, "--index", file}, &out, &errOut); code != 0 {
		t.Fatalf("reindex exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "indexed 500 records (ledger indices 0..499)") {
		t.Fatalf("output %q", out.String())
	}
	ro, err := ledger.OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ix, err := index.Open(file, index.Options{Ledger: ro})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := query.Parse("user.name:u3")
	res, err := ix.Search(context.Background(), index.Request{Query: q, Limit: 1000})
	if err != nil || len(res.Hits) != 100 || ix.Indexed() != 500 {
		t.Fatalf("after reindex: %d hits, indexed %d, %v", len(res.Hits), ix.Indexed(), err)
	}
	// Not while a collector (here: an open Index) holds the file.
	errOut.Reset()
	if code := runReindex([]string{"--ledger", dir, "--index", file}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "running collector") {
		t.Errorf("reindex of an open index: exit %d: %s", code, errOut.String())
	}
	ix.Close()

	// The collector's data directory names both: DIR/ledger into DIR/index.db.
	out.Reset()
	if code := runReindex([]string{"--data", tmp}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "indexed 500 records") {
		t.Fatalf("reindex --data: exit %d: %s %s", code, out.String(), errOut.String())
	}
	// Without one, it says which directory it looked for and how to name it.
	t.Setenv("TRAILGUARD_DATA", filepath.Join(tmp, "absent"))
	for _, args := range [][]string{{}, {"--ledger", dir}, {"--index", file}} {
		errOut.Reset()
		if code := runReindex(args, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "--data") || !strings.Contains(errOut.String(), "absent") {
			t.Errorf("reindex %v: exit %d, want 1 naming --data: %s", args, code, errOut.String())
		}
	}
	if code := runReindex([]string{"extra"}, &out, &errOut); code != 2 {
		t.Errorf("reindex with an argument: exit %d, want 2", code)
	}
	if code := runReindex([]string{"--ledger", filepath.Join(tmp, "nope"), "--index", file}, &out, &errOut); code != 1 {
		t.Errorf("reindex of a missing ledger: exit %d, want 1", code)
	}
}
