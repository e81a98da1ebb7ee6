package ship

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/trailguard/trailguard/event"
)

// maxDocID is Elasticsearch's limit on _id (512 bytes).
const maxDocID = 512

// appendDocID appends the Bulk _id of record r as a JSON string: the event's
// event.id when it has a usable one, so that a batch sent twice (after a
// crash) is recognised by the engine as the same documents, and otherwise
// the first 128 bits of the record's SHA-256, which is just as stable.
func appendDocID(dst, r []byte) []byte {
	if id, ok := eventID(r); ok {
		return event.AppendString(dst, id)
	}
	sum := sha256.Sum256(r)
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, sum[:16])
	return append(dst, '"')
}

// eventID returns the record's event.id when it can serve as a Bulk _id:
// present, a non-empty string, and within Elasticsearch's length limit.
func eventID(doc []byte) (string, bool) {
	id, ok := event.PeekID(doc)
	if !ok || id == "" || len(id) > maxDocID {
		return "", false
	}
	return id, true
}
