package ledger

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// writeTree replaces the hash level files with the tree of recs, as an
// attacker who rewrote records would recompute it: every leaf and node
// consistent with the records, none with the signed roots.
func writeTree(t *testing.T, dir string, recs []frameRec) Hash {
	t.Helper()
	var ref hashStore
	for i, r := range recs {
		hs, err := tlog.StoredHashes(int64(i), r.data, ref)
		if err != nil {
			t.Fatal(err)
		}
		ref = append(ref, hs...)
	}
	n := int64(len(recs))
	os.RemoveAll(filepath.Join(dir, hashDir))
	if err := os.MkdirAll(filepath.Join(dir, hashDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for L := 0; n>>(8*L) > 0; L++ {
		var b []byte
		for k := int64(0); k < n>>(8*L); k++ {
			b = append(b, ref[tlog.StoredHashIndex(8*L, k)][:]...)
		}
		if err := os.WriteFile(filepath.Join(dir, hashDir, fmt.Sprint(L)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := tlog.TreeHash(n, ref)
	if err != nil {
		t.Fatal(err)
	}
	return Hash(root)
}

// appendCheckpoints adds signed checkpoints to the end of the history and,
// if asFile, makes the last one the checkpoint file.
func appendCheckpoints(t *testing.T, dir string, asFile bool, signed ...[]byte) {
	t.Helper()
	rewriteCheckpointLog(t, dir, func(ns [][]byte) [][]byte { return append(ns, signed...) })
	if asFile {
		if err := os.WriteFile(filepath.Join(dir, "checkpoint"), signed[len(signed)-1], 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAttackSignedRoots: what verify accepts was signed by the collector's
// key for this ledger, and is one history. Records rewritten with every
// derived file recomputed (frames, headers, .idx, hash tiles) fail at the
// signed roots; checkpoints signed by another key that bears the same
// name, or by the right key for another origin, are not believed; and two
// checkpoints of one size with different roots (a key holder's split
// view) are found when verify is given both, in the history or as a
// witness.
func TestAttackSignedRoots(t *testing.T) {
	k := newKey(t, testOrigin)
	mallory := newKey(t, testOrigin) // the same name, another key
	const n = 1000
	base := buildLedger(t, k, n, nil)
	last := func(t *testing.T, dir string) Checkpoint {
		b, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseUnverified(b)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	sign := func(t *testing.T, c Checkpoint, s note.Signer) []byte {
		b, err := SignCheckpoint(c, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// rewrite500 changes record 500 and recomputes everything derived.
	rewrite500 := func(t *testing.T, dir string) Hash {
		recs := readAll(t, dir)
		recs[500].data = []byte(strings.Replace(string(recs[500].data), "login", "logon", 1))
		rewrite(t, dir, recs, 0)
		return writeTree(t, dir, recs)
	}
	cases := []struct {
		name    string
		tamper  func(t *testing.T, dir string) (wdir string)
		kind    string // the finding that must be there
		index   uint64 // its first record, where it names one
		witness bool
	}{
		{"record rewritten, frames, headers and hash tiles recomputed", func(t *testing.T, dir string) string {
			rewrite500(t, dir)
			return ""
		}, KindRecordsAltered, 500, false},
		{"record rewritten, tree recomputed, re-signed by a key of the same name", func(t *testing.T, dir string) string {
			c := last(t, dir)
			c.Root, c.Time, c.Extra = rewrite500(t, dir), c.Time.Add(time.Second), nil
			appendCheckpoints(t, dir, true, sign(t, c, mallory.signer))
			return ""
		}, KindCheckpointUnknownKey, 0, false},
		{"history replaced by checkpoints of a key of the same name", func(t *testing.T, dir string) string {
			root := rewrite500(t, dir)
			rewriteCheckpointLog(t, dir, func(ns [][]byte) [][]byte {
				for i, s := range ns {
					c, _ := parseUnverified(s)
					if c.Size == n {
						c.Root = root
					}
					ns[i] = sign(t, c, mallory.signer)
				}
				os.WriteFile(filepath.Join(dir, "checkpoint"), ns[len(ns)-1], 0o644)
				return ns
			})
			return ""
		}, KindCheckpointUnknownKey, 0, false},
		{"checkpoint of another origin, signed by the key", func(t *testing.T, dir string) string {
			c := last(t, dir)
			c.Origin, c.Time = "other.example/ledger", c.Time.Add(time.Second)
			appendCheckpoints(t, dir, false, sign(t, c, k.signer))
			return ""
		}, KindCheckpointForged, 0, false},
		{"checkpoint file of another origin, signed by the key", func(t *testing.T, dir string) string {
			c := last(t, dir)
			c.Origin, c.Time = "other.example/ledger", c.Time.Add(time.Second)
			os.WriteFile(filepath.Join(dir, "checkpoint"), sign(t, c, k.signer), 0o644)
			return ""
		}, KindCheckpointForged, 0, false},
		{"fork in the history: same size, another root, signed by the key", func(t *testing.T, dir string) string {
			c := last(t, dir)
			c.Root[0] ^= 1
			c.Time, c.Extra = c.Time.Add(time.Second), nil
			appendCheckpoints(t, dir, true, sign(t, c, k.signer))
			return ""
		}, KindCheckpointInconsistent, 0, false},
		{"split view: the ledger rewritten and re-signed, the other view's checkpoint given as a witness", func(t *testing.T, dir string) string {
			wdir := t.TempDir()
			os.WriteFile(filepath.Join(wdir, "seen.checkpoint"), mustRead(t, filepath.Join(dir, "checkpoint")), 0o644)
			root := rewrite500(t, dir)
			rewriteCheckpointLog(t, dir, func(ns [][]byte) [][]byte {
				var out [][]byte
				for _, s := range ns {
					c, _ := parseUnverified(s)
					if c.Size > 500 {
						continue
					}
					out = append(out, s)
				}
				c := last(t, dir)
				c.Root = root
				c.Extra = []string{"adopt 500 1000 forged"}
				out = append(out, sign(t, c, k.signer))
				os.WriteFile(filepath.Join(dir, "checkpoint"), out[len(out)-1], 0o644)
				return out
			})
			return wdir
		}, KindHistoryRewritten, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, base)
			wdir := tc.tamper(t, dir)
			rep := verifyDir(t, dir, k, wdir)
			if rep.OK() {
				t.Fatalf("verify accepted it:\n%s", rep)
			}
			for _, f := range rep.Findings {
				// A forged checkpoint is named as such, without blaming
				// the records it does not match.
				if tc.kind == KindCheckpointInconsistent && f.Kind == KindRecordsAltered {
					t.Fatalf("the records are blamed for a checkpoint:\n%s", rep)
				}
			}
			for _, f := range rep.Findings {
				if f.Kind == tc.kind && (tc.index == 0 || f.Index <= tc.index && tc.index < f.Index+max(f.Count, 1)) {
					t.Logf("%s", rep)
					return
				}
			}
			t.Fatalf("no %s finding (at record %d):\n%s", tc.kind, tc.index, rep)
		})
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
