package ledger

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// InclusionProof returns the RFC 6962 audit path proving that record index
// is in the tree described by cp, in the form tlog.CheckRecord takes:
//
//	tlog.CheckRecord(proof, int64(cp.Size), cp.Root, int64(index), LeafHash(record))
//
// Proofs work for pruned records too (their leaf hashes are kept). The
// hashes are read through tlog.TileHashReader, which authenticates every
// tile against cp.Root, so a damaged tile fails here rather than producing
// a proof that does not check.
func (l *Ledger) InclusionProof(index uint64, cp Checkpoint) (tlog.RecordProof, error) {
	if index >= cp.Size {
		return nil, fmt.Errorf("ledger: inclusion proof: index %d not below tree size %d", index, cp.Size)
	}
	p, err := tlog.ProveRecord(int64(cp.Size), int64(index), l.hashReader(cp))
	if err != nil {
		return nil, fmt.Errorf("ledger: inclusion proof for %d in tree %d: %w", index, cp.Size, err)
	}
	return p, nil
}

// ConsistencyProof returns the RFC 6962 proof that the tree of size
// oldSize is a prefix of the tree described by cp, with the old tree's
// root, in the form tlog.CheckTree takes:
//
//	tlog.CheckTree(proof, int64(cp.Size), cp.Root, int64(oldSize), oldRoot)
func (l *Ledger) ConsistencyProof(oldSize uint64, cp Checkpoint) (proof tlog.TreeProof, oldRoot Hash, err error) {
	if oldSize == 0 || oldSize > cp.Size {
		return nil, Hash{}, fmt.Errorf("ledger: consistency proof: old size %d must be in [1, %d]", oldSize, cp.Size)
	}
	hr := l.hashReader(cp)
	p, err := tlog.ProveTree(int64(cp.Size), int64(oldSize), hr)
	if err != nil {
		return nil, Hash{}, fmt.Errorf("ledger: consistency proof %d..%d: %w", oldSize, cp.Size, err)
	}
	old, err := tlog.TreeHash(int64(oldSize), hr)
	if err != nil {
		return nil, Hash{}, fmt.Errorf("ledger: consistency proof: root of %d: %w", oldSize, err)
	}
	return p, old, nil
}

func (l *Ledger) hashReader(cp Checkpoint) tlog.HashReader {
	return tlog.TileHashReader(tlog.Tree{N: int64(cp.Size), Hash: cp.Root}, tileReader{l.tiles})
}
