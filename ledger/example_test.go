package ledger_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/ledger"
)

func Example() {
	dir, _ := os.MkdirTemp("", "ledger-example")
	defer os.RemoveAll(dir)
	const origin = "audit.example.com/trailguard"
	skey, vkey, _ := ledger.GenerateKey(origin) // trailguard keygen
	signer, _ := note.NewSigner(skey)

	l, err := ledger.Open(dir, ledger.Options{Origin: origin, Signer: signer})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	// Append returns once the records are durable.
	first, err := l.Append(ctx, []byte(`{"event":{"id":"a1","action":"login"}}`), []byte(`{"event":{"id":"a2","action":"logout"}}`))
	if err != nil {
		log.Fatal(err)
	}
	e, _ := l.Read(first + 1)
	fmt.Printf("record %d: %s\n", e.Index, e.Data)

	// A signed checkpoint and an inclusion proof anyone can check with tlog.
	signed, _ := l.Checkpoint(ctx)
	proof, _ := l.ProveInclusion(first, signed)
	if err := l.Close(); err != nil {
		log.Fatal(err)
	}
	v, _ := note.NewVerifier(vkey)
	cp, _, err := ledger.OpenCheckpoint(signed, note.VerifierList(v))
	if err != nil {
		log.Fatal(err)
	}
	err = tlog.CheckRecord(proof.Proof, int64(cp.Size), cp.Root, int64(first), tlog.RecordHash(proof.Record))
	fmt.Println("tree size", cp.Size, "proof ok:", err == nil)

	// Offline verification needs only the verifier key.
	rep, _ := ledger.Verify(dir, ledger.VerifyOptions{Verifiers: []note.Verifier{v}})
	fmt.Println("verified:", rep.OK())
	// Output:
	// record 1: {"event":{"id":"a2","action":"logout"}}
	// tree size 2 proof ok: true
	// verified: true
}
