package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/ledger"
)

// TestLedgerTilesEndpoint: the collector serves its ledger as a C2SP
// tlog-tiles log under /v1/ledger/ to read tokens only, and x/mod's tlog
// client code proves a stored event against it.
func TestLedgerTilesEndpoint(t *testing.T) {
	ts := startServer(t, t.TempDir(), nil)
	var body strings.Builder
	for i := range 300 {
		fmt.Fprintln(&body, ev("authn_login_fail", "failure", fmt.Sprintf("u%d", i), "203.0.113.7", 401))
	}
	if code, b := ts.do(t, "POST", "/v1/events", ts.ingest, strings.NewReader(body.String())); code != 200 {
		t.Fatalf("ingest: %d %s", code, b)
	}
	if _, err := ts.ledger.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"", ts.ingest} {
		if code, _ := ts.do(t, "GET", "/v1/ledger/checkpoint", tok, nil); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Fatalf("checkpoint with token %q: %d", tok, code)
		}
	}
	code, signed := ts.do(t, "GET", "/v1/ledger/checkpoint", ts.read, nil)
	if code != 200 {
		t.Fatalf("checkpoint: %d %s", code, signed)
	}
	vkey, err := os.ReadFile(ts.VerifierKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	cp, _, err := ledger.OpenCheckpoint(signed, note.VerifierList(v))
	if err != nil {
		t.Fatal(err)
	}
	rd := tileGetter{t: t, ts: ts}
	hr := tlog.TileHashReader(tlog.Tree{N: int64(cp.Size), Hash: cp.Root}, rd)
	for _, i := range []uint64{0, 255, 256, cp.Size - 1} {
		e, err := ts.ledger.Read(i)
		if err != nil {
			t.Fatal(err)
		}
		p, err := tlog.ProveRecord(int64(cp.Size), int64(i), hr)
		if err != nil {
			t.Fatalf("prove %d through the tiles endpoint: %v", i, err)
		}
		if err := tlog.CheckRecord(p, int64(cp.Size), cp.Root, int64(i), tlog.RecordHash(e.Data)); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
}

type tileGetter struct {
	t  *testing.T
	ts *testServer
}

func (g tileGetter) Height() int { return 8 }

func (g tileGetter) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	var out [][]byte
	for _, tl := range tiles {
		p := "/v1/ledger/tile/" + strings.TrimPrefix(tl.Path(), "tile/8/")
		code, b := g.ts.do(g.t, "GET", p, g.ts.read, nil)
		if code != 200 {
			return nil, fmt.Errorf("GET %s: %d %s", p, code, b)
		}
		out = append(out, b)
	}
	return out, nil
}

func (g tileGetter) SaveTiles([]tlog.Tile, [][]byte) {}
