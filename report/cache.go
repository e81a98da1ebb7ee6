package report

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/regfile"
	"github.com/trailguard/trailguard/ledger"
)

// A chunk cache keeps the figures of whole chunks (chunkSize records,
// aligned) so that later reports over the same records merge them instead
// of reading the records again. A chunk's figures depend only on its
// records, the checkpoints covering them and the parameters in its file
// name, so they are kept under the root hash of the tree at the chunk's
// end: a chunk is reused only while the ledger's tree (authenticated
// against its newest signed checkpoint) still has that root there.
//
// The root says which records the figures are of, not that they are
// theirs: anyone who can write the data directory can compute it. So each
// file carries an HMAC-SHA256 over its chunk number, parameters, root and
// figures, keyed by a secret derived from the collector's signing key
// (ledger.DeriveKey, CachePurpose). A file that does not authenticate
// (edited, planted, or from another key) is never used: its records are
// read again from the ledger, the file is moved aside (.rejected) and the
// report says so. Without the key (an auditor with the public key only)
// the cache is neither read nor written.
type chunkCache struct {
	dir    string
	params string
	key    []byte
}

// CachePurpose names the key derived from the collector's signing key
// (ledger.DeriveKey) that authenticates the report cache: Options.CacheKey
// and Warm's key.
const CachePurpose = "report cache v1"

// cacheTagSize is the length of the HMAC-SHA256 ending a cache file.
const cacheTagSize = sha256.Size

// chunk load results.
const (
	chunkMissing  = iota // no file, or one kept for another tree root
	chunkOK              // authenticated figures for this root
	chunkRejected        // a file that does not authenticate
)

// cacheVersion changes whenever what a chunk's figures hold changes.
// 2: records forwarded from another collector are not its own
// (trailguard.ledger.origin); 3: no maps in the file (chunkFile); 4: an
// HMAC ends the file.
const cacheVersion = 4

func newChunkCache(dir string, key []byte, p *computeParams) *chunkCache {
	if dir == "" || len(key) == 0 {
		return nil
	}
	h := sha256.New()
	roles := make([]string, 0, len(p.adminRoles))
	for r := range p.adminRoles {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	fmt.Fprintf(h, "v%d\x00%d\x00%d\x00%s\x00%s\x00%d", cacheVersion, p.tolerance, p.maxDelay, strings.Join(roles, "\x01"),
		strings.Join(p.chd, "\x01"), chunkSize)
	return &chunkCache{dir: dir, params: hex.EncodeToString(h.Sum(nil))[:16], key: key}
}

// tag is the HMAC of chunk k's file body kept for root: the chunk number
// and root are in it so that an authentic file cannot be renamed to
// another chunk's place.
func (c *chunkCache) tag(k uint64, root tlog.Hash, body []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	fmt.Fprintf(m, "trailguard report chunk v%d\x00%s\x00", cacheVersion, c.params)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], k)
	m.Write(n[:])
	m.Write(root[:])
	m.Write(body)
	return m.Sum(nil)
}

func (c *chunkCache) path(k uint64) string {
	return filepath.Join(c.dir, fmt.Sprintf("%012d-%s.chunk", k, c.params))
}

// chunkFile is a chunk's figures on disk. It holds no map: gob sizes a
// map by the count its stream claims before reading an entry, so a cache
// file of a few dozen bytes planted in the data directory could make the
// collector allocate gigabytes (a slice grows only with what is read).
type chunkFile struct {
	Version                int
	Root                   tlog.Hash
	Records, Undec         uint64
	Events, Alerts         uint64
	Actions, Services      counterFile
	Cov                    [7]uint64
	CovAct                 [7]counterFile
	H401, H403, Auditable  uint64
	Applicable, Present    [6]uint64
	MissingBy              [6]counterFile
	Examples               []Incomplete
	ExPerField             [6]int
	AuthFail, LoginOK      uint64
	FailSec, EvMin         []intCount
	Srcs, Users, Readers   counterFile
	Reads, Refused         uint64
	WithTS, Ahead, Delayed uint64
	MaxAhead, MaxDelay     time.Duration
	TimeEx                 []TimeExample
	Rares                  []rareFile
}

// counterFile is a counter on disk, its keys and counts in order.
type counterFile struct {
	Keys   []string
	Counts []uint64
	Other  uint64
}

// intCount is an entry of a map[int64]uint64 on disk.
type intCount struct {
	K int64
	N uint64
}

func toCounts(m map[int64]uint64) []intCount {
	out := make([]intCount, 0, len(m))
	for k, n := range m {
		out = append(out, intCount{k, n})
	}
	return out
}

func fromCounts(c []intCount) map[int64]uint64 {
	m := make(map[int64]uint64, len(c))
	for _, e := range c {
		m[e.K] += e.N
	}
	return m
}

type rareFile struct {
	Index                                                   uint64
	Appended                                                time.Time
	Trigger                                                 int64
	What                                                    byte
	T, End                                                  time.Time
	ID, Rule, Title, Level, Client, User, Status, Svc, Host string
	Action                                                  string
	N                                                       int64
}

func cf(c *counter) counterFile {
	c.flush()
	f := counterFile{Other: c.other}
	for k, n := range c.m {
		f.Keys, f.Counts = append(f.Keys, k), append(f.Counts, n)
	}
	return f
}

func fc(c counterFile) counter {
	if len(c.Keys) == 0 || len(c.Keys) != len(c.Counts) {
		return counter{other: c.Other}
	}
	m := make(map[string]uint64, len(c.Keys))
	for i, k := range c.Keys {
		m[k] += c.Counts[i]
	}
	return counter{m: m, other: c.Other}
}

func toFile(a *acc, root tlog.Hash) *chunkFile {
	a.flushMin()
	f := &chunkFile{Version: cacheVersion, Root: root, Records: a.records, Undec: a.undec, Events: a.events, Alerts: a.alerts,
		Actions: cf(&a.actions), Services: cf(&a.services), Cov: a.cov, H401: a.h401, H403: a.h403, Auditable: a.auditable,
		Applicable: a.applicable, Present: a.present, Examples: a.examples, ExPerField: a.exPerField, AuthFail: a.authFail,
		LoginOK: a.loginOK, FailSec: toCounts(a.failSec), EvMin: toCounts(a.evMin), Srcs: cf(&a.srcs), Users: cf(&a.users), Readers: cf(&a.readers),
		Reads: a.reads, Refused: a.refused, WithTS: a.withTS, Ahead: a.ahead, Delayed: a.delayed, MaxAhead: a.maxAhead,
		MaxDelay: a.maxDelay, TimeEx: a.timeEx}
	for i := range a.covAct {
		f.CovAct[i] = cf(&a.covAct[i])
	}
	for i := range a.missingBy {
		f.MissingBy[i] = cf(&a.missingBy[i])
	}
	for _, r := range a.rares {
		f.Rares = append(f.Rares, rareFile{r.index, r.appended, r.trigger, r.what, r.t, r.end, r.id, r.rule, r.title, r.level,
			r.client, r.user, r.status, r.svc, r.host, r.action, r.n})
	}
	return f
}

func fromFile(f *chunkFile, p *computeParams) *acc {
	a := &acc{p: p, records: f.Records, undec: f.Undec, events: f.Events, alerts: f.Alerts, actions: fc(f.Actions),
		services: fc(f.Services), cov: f.Cov, h401: f.H401, h403: f.H403, auditable: f.Auditable, applicable: f.Applicable,
		present: f.Present, examples: f.Examples, exPerField: f.ExPerField, authFail: f.AuthFail, loginOK: f.LoginOK,
		failSec: fromCounts(f.FailSec), evMin: fromCounts(f.EvMin), srcs: fc(f.Srcs), users: fc(f.Users), readers: fc(f.Readers), reads: f.Reads,
		refused: f.Refused, withTS: f.WithTS, ahead: f.Ahead, delayed: f.Delayed, maxAhead: f.MaxAhead, maxDelay: f.MaxDelay,
		timeEx: f.TimeEx}
	for i := range f.CovAct {
		a.covAct[i] = fc(f.CovAct[i])
	}
	for i := range f.MissingBy {
		a.missingBy[i] = fc(f.MissingBy[i])
	}
	if a.failSec == nil {
		a.failSec = map[int64]uint64{}
	}
	if a.evMin == nil {
		a.evMin = map[int64]uint64{}
	}
	for _, r := range f.Rares {
		a.rares = append(a.rares, rare{index: r.Index, appended: r.Appended, trigger: r.Trigger, what: r.What, t: r.T, end: r.End,
			id: r.ID, rule: r.Rule, title: r.Title, level: r.Level, client: r.Client, user: r.User, status: r.Status, svc: r.Svc,
			host: r.Host, action: r.Action, n: r.N})
	}
	return a
}

// load returns chunk k's figures if an authentic file keeps them for the
// tree root at its end, and what it found (chunkOK, chunkMissing or
// chunkRejected). The file is the root it was kept for, the gob of its
// figures and the tag; nothing is decoded before the tag is checked.
func (c *chunkCache) load(k uint64, root tlog.Hash, p *computeParams) (*acc, int) {
	data, err := regfile.Read(c.path(k), maxChunkFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, chunkMissing
	}
	if err != nil || len(data) < len(root)+cacheTagSize {
		return nil, chunkRejected
	}
	kept := tlog.Hash(data[:len(root)])
	body, tag := data[len(root):len(data)-cacheTagSize], data[len(data)-cacheTagSize:]
	if !hmac.Equal(tag, c.tag(k, kept, body)) {
		return nil, chunkRejected
	}
	if kept != root {
		// Authentic, for another tree (another ledger in the same data
		// directory): not an alteration, but of no use.
		return nil, chunkMissing
	}
	if a := decodeChunk(body, root, p); a != nil {
		return a, chunkOK
	}
	return nil, chunkRejected
}

// reject moves chunk k's file aside (the evidence of whoever wrote it) so
// that its records' figures are kept again in its place.
func (c *chunkCache) reject(k uint64) {
	os.Rename(c.path(k), c.path(k)+".rejected")
}

// decodeChunk returns the figures a cache file's body holds if they are
// a chunk's, kept for the tree root at its end.
func decodeChunk(data []byte, root tlog.Hash, p *computeParams) *acc {
	var f chunkFile
	if gob.NewDecoder(bytes.NewReader(data)).Decode(&f) != nil || f.Version != cacheVersion || f.Root != root || f.Records != chunkSize {
		return nil
	}
	return fromFile(&f, p)
}

// maxChunkFile bounds a cache file: a chunk's lists and counters are
// bounded (maxList, maxKeys), its file far smaller. A cache file is read
// as a regular file of at most this size only (regfile): one planted in
// the cache directory must not hang a report or take its memory.
const maxChunkFile = 64 << 20

// store keeps chunk k's figures; failures only cost a later scan.
func (c *chunkCache) store(k uint64, root tlog.Hash, a *acc) {
	var b bytes.Buffer
	b.Write(root[:])
	if gob.NewEncoder(&b).Encode(toFile(a, root)) != nil {
		return
	}
	b.Write(c.tag(k, root, b.Bytes()[len(root):]))
	if os.MkdirAll(c.dir, 0o700) != nil {
		return
	}
	tmp := c.path(k) + ".tmp"
	if os.WriteFile(tmp, b.Bytes(), 0o600) != nil {
		os.Remove(tmp)
		return
	}
	os.Rename(tmp, c.path(k))
}

// ErrCacheRejected is returned (wrapped) by Warm when files of the cache
// directory did not authenticate: altered or planted on disk.
var ErrCacheRejected = errors.New("report cache files failed their authentication (altered or planted on disk)")

// Warm summarises into the cache directory dir every whole chunk of l's
// records that its newest checkpoint covers, with the default parameters
// (those reports use unless told otherwise), oldest first, skipping the
// chunks in done and those already kept; it adds the chunks it finds kept
// to done. key authenticates the files (ledger.DeriveKey with
// CachePurpose); a file that does not is moved aside and its chunk
// summarised again, and Warm's error (ErrCacheRejected) names the chunks
// once it has done the rest. after, if set, is called after each chunk it reads with the
// time it took (the collector sleeps as long, to use at most half a core).
// A collector runs it in the background, so that a report over a month
// reads only the records of the last partial chunk.
func Warm(ctx context.Context, l *ledger.Ledger, dir string, key []byte, done map[uint64]bool, after func(took time.Duration)) (int, error) {
	if len(key) == 0 {
		return 0, errors.New("report: warm: no key to authenticate the cache")
	}
	_, newest := l.LatestCheckpoint()
	lo := (l.Pruned() + chunkSize - 1) / chunkSize
	hi := newest.Size / chunkSize
	if lo >= hi {
		return 0, nil
	}
	var pending []uint64
	for k := lo; k < hi; k++ {
		if !done[k] {
			pending = append(pending, k)
		}
	}
	if len(pending) == 0 {
		return 0, nil
	}
	// The checkpoints covering the pending records: from around the first
	// one's append time on (not the whole history).
	since := time.Time{}
	if e, err := l.Read(pending[0] * chunkSize); err == nil {
		since = e.Time.Add(-time.Minute)
	}
	h, err := readHistory(l, since, since, time.Minute)
	if err != nil {
		return 0, err
	}
	d := DefaultParams()
	p := &computeParams{tolerance: time.Duration(d.ClockTolerance), maxDelay: time.Duration(d.MaxDelay),
		adminRoles: set(d.AdminRoles...), cpSizes: h.sizes, cpTimes: h.times}
	cache := newChunkCache(dir, key, p)
	n := 0
	var rejected []string
	var f fields
	for _, k := range pending {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		start := time.Now()
		_, root, err := l.ConsistencyProof((k+1)*chunkSize, newest)
		if err != nil {
			return n, fmt.Errorf("report: warm chunk %d: %w", k, err)
		}
		switch _, st := cache.load(k, root, p); st {
		case chunkOK:
			done[k] = true
			continue
		case chunkRejected:
			cache.reject(k)
			rejected = append(rejected, strconv.FormatUint(k, 10))
		}
		a := newAcc(p)
		// A chunk the collector appended lately comes from the copies the
		// ledger kept of the bytes it hashed (FollowAppended; the chunk is
		// whole: the loop ends at its last record instead of waiting);
		// older ones are read back and checked against their leaves.
		for e, err := range l.FollowAppended(ctx, k*chunkSize) {
			if err != nil {
				return n, fmt.Errorf("report: warm chunk %d: %w", k, err)
			}
			var sp *event.Spans
			if sps, ok := e.Aux.([]event.Spans); ok && e.AuxPos < len(sps) {
				sp = &sps[e.AuxPos]
			}
			a.add(e.Index, e.Time, e.Data, sp, &f)
			if e.Index+1 >= (k+1)*chunkSize {
				break // the chunk's last record: do not wait for the next
			}
			if e.Index%1024 == 0 && ctx.Err() != nil {
				return n, ctx.Err()
			}
		}
		if a.records == chunkSize {
			cache.store(k, root, a)
			done[k] = true
			n++
		}
		if after != nil {
			after(time.Since(start))
		}
	}
	if len(rejected) > 0 {
		return n, fmt.Errorf("report: chunks %s in %s: %w; summarised again from the ledger, the files kept as .rejected",
			strings.Join(rejected, ", "), dir, ErrCacheRejected)
	}
	return n, nil
}
