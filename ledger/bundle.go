package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/trailguard/trailguard/event"
)

// InclusionBundle is a self-contained inclusion proof: everything a third
// party needs to check, with golang.org/x/mod/sumdb/tlog and the verifier
// key alone, that a record is in the signed log.
//
//	note.Open(Checkpoint, key) → tree size and root
//	tlog.CheckRecord(Proof, TreeSize, RootHash, Index, tlog.RecordHash(Record))
type InclusionBundle struct {
	Checkpoint string `json:"checkpoint"` // signed C2SP checkpoint note
	TreeSize   uint64 `json:"tree_size"`
	RootHash   Hash   `json:"root_hash"`
	Index      uint64 `json:"index"`
	Record     []byte `json:"record,omitempty"` // absent if pruned
	LeafHash   Hash   `json:"leaf_hash"`
	Proof      []Hash `json:"proof"`
}

// ConsistencyBundle proves that the tree of OldSize (root OldRoot) is a
// prefix of the signed tree: tlog.CheckTree(Proof, TreeSize, RootHash,
// OldSize, OldRoot). OldCheckpoint is the signed checkpoint of OldSize, if
// the ledger made one.
type ConsistencyBundle struct {
	Checkpoint    string `json:"checkpoint"`
	TreeSize      uint64 `json:"tree_size"`
	RootHash      Hash   `json:"root_hash"`
	OldSize       uint64 `json:"old_size"`
	OldRoot       Hash   `json:"old_root"`
	OldCheckpoint string `json:"old_checkpoint,omitempty"`
	Proof         []Hash `json:"proof"`
}

// SignedCheckpoint returns the newest signed checkpoint of the given size
// from the checkpoint history, or the newest of all if size is 0.
// Signatures are not checked here (see OpenCheckpoint).
func (l *Ledger) SignedCheckpoint(size uint64) ([]byte, Checkpoint, error) {
	files, err := listCPLogs(l.dir)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	// The nearest signed sizes around a missing one, for the error: the
	// caller gave a size no checkpoint has and must pick one that does.
	below, above, haveBelow, haveAbove := uint64(0), uint64(0), false, false
	for i := len(files) - 1; i >= 0; i-- {
		ents := scanFrameLog(files[i].path, cpFileMax, maxCheckpointSize, validCheckpoint).ents
		for k := len(ents) - 1; k >= 0; k-- {
			c, err := parseUnverified(ents[k].data)
			if err != nil {
				continue
			}
			if size == 0 || c.Size == size {
				return ents[k].data, c, nil
			}
			if c.Size > size {
				above, haveAbove = c.Size, true
			}
			if c.Size < size {
				below, haveBelow = c.Size, true
				i = 0 // sizes only grow: no older file can hold it
				break
			}
		}
	}
	if size == 0 {
		return nil, Checkpoint{}, errors.New("ledger: no checkpoint yet")
	}
	var near []string
	if haveBelow {
		near = append(near, strconv.FormatUint(below, 10))
	}
	if haveAbove {
		near = append(near, strconv.FormatUint(above, 10))
	}
	if len(near) == 0 {
		return nil, Checkpoint{}, fmt.Errorf("ledger: no checkpoint of size %d", size)
	}
	return nil, Checkpoint{}, fmt.Errorf("ledger: no checkpoint of size %d: give the size of a signed checkpoint (the nearest: %s)", size, strings.Join(near, ", "))
}

// ProveInclusion builds an InclusionBundle for record index against the
// signed checkpoint signed (as returned by SignedCheckpoint).
func (l *Ledger) ProveInclusion(index uint64, signed []byte) (*InclusionBundle, error) {
	cp, err := parseUnverified(signed)
	if err != nil {
		return nil, err
	}
	p, err := l.InclusionProof(index, cp)
	if err != nil {
		return nil, err
	}
	b := &InclusionBundle{Checkpoint: string(signed), TreeSize: cp.Size, RootHash: cp.Root, Index: index, Proof: p}
	e, err := l.Read(index)
	switch {
	case err == nil:
		b.Record = e.Data
		b.LeafHash = LeafHash(e.Data)
	case errors.Is(err, ErrPruned):
		h, err := l.tiles.read(0, index/tileWidth, int(index%tileWidth)+1)
		if err != nil {
			return nil, err
		}
		b.LeafHash = Hash(h[len(h)-HashSize:])
	default:
		return nil, err
	}
	return b, nil
}

// ProveConsistency builds a ConsistencyBundle from oldSize to the signed
// checkpoint signed.
func (l *Ledger) ProveConsistency(oldSize uint64, signed []byte) (*ConsistencyBundle, error) {
	cp, err := parseUnverified(signed)
	if err != nil {
		return nil, err
	}
	p, old, err := l.ConsistencyProof(oldSize, cp)
	if err != nil {
		return nil, err
	}
	b := &ConsistencyBundle{Checkpoint: string(signed), TreeSize: cp.Size, RootHash: cp.Root, OldSize: oldSize, OldRoot: old, Proof: p}
	if s, _, err := l.SignedCheckpoint(oldSize); err == nil {
		b.OldCheckpoint = string(s)
	}
	return b, nil
}

// FindEventID returns the index of the first record whose ECS field
// event.id equals id, scanning from the oldest retained record. (The
// collector's index answers this without a scan.)
func (l *Ledger) FindEventID(id string) (uint64, error) {
	needle := []byte(id)
	for e, err := range l.Entries(l.Pruned()) {
		if err != nil {
			return 0, err
		}
		if !bytes.Contains(e.Data, needle) {
			continue
		}
		if got, ok := event.PeekID(e.Data); ok && got == id {
			return e.Index, nil
		}
	}
	return 0, fmt.Errorf("%w: no record with event.id %q", ErrNotFound, id)
}
