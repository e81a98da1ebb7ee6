// Package ship sends encoded events over HTTP to a trailguard collector
// (POST /v1/events, NDJSON) or to an Elasticsearch-compatible engine
// (Elasticsearch, OpenSearch, VictoriaLogs: the _bulk API), without losing
// any when the far end is down or this process crashes.
//
// A [Shipper] is a [sink.Sink] in two halves. Write appends the records to a
// spool of segment files in Options.SpoolDir, each record framed with its
// length and a CRC-32C, and fsyncs before returning: once Write has returned
// nil the records survive a crash of the process or the machine. A background
// sender reads the spool in order, batches records (BatchSize, BatchBytes,
// FlushInterval), POSTs them, and only when the far end has accepted a batch
// persists a cursor (fsynced) and deletes the segments that are fully
// shipped. Memory stays bounded by one batch whatever the backlog.
//
// Delivery is at least once. A crash after the far end stored a batch but
// before the cursor was saved sends that batch again on the next start, and
// so does a request that Close's drain timeout (or Timeout) abandoned before
// its answer came: the far end may still store it, as it may any request
// whose answer was lost. An answer that did come is acted on, and the cursor
// saved, before Close returns. To let the far end drop such duplicates, Bulk requests
// carry an _id per record: the record's event.id when it has one, otherwise a
// hash of the record (VictoriaLogs ignores _id; Elasticsearch answers 409,
// counted as a duplicate). NDJSON events carry their own event.id, on which a
// collector can deduplicate. Without a crash or an abandoned request, nothing
// the far end acknowledged is sent again, but for one case: a batch that Close
// stops part-way through retrying some of its records (per-record failures, a
// rejected batch being split) is sent again whole.
//
// Failures are retried with exponential backoff and jitter, honouring
// Retry-After, without limit: network errors, timeouts, 408, 429 and 5xx, and
// also 401, 403, 404, 405, 407 and 415, which say the shipper is
// misconfigured (token, URL, content type) rather than that a record is bad,
// so dead-lettering every record because of a rotated token would be wrong.
// Other 4xx answers reject records: a rejected batch is split in halves until
// the bad records are alone, and those go to the dead-letter file
// (dead-letter.jsonl in the spool directory) with the error, counted in
// Stats. For Bulk, only the items that failed are retried (per-item 408, 429,
// 5xx) and only the items rejected (other 4xx) are dead-lettered; 409 on a
// create means the document is already there (a duplicate) and counts as
// delivered. For NDJSON, per-line errors in the collector's answer
// ({"errors":[{"line":n,"error":"…"}]}, lines numbered from 1) are
// dead-lettered and the rest is delivered.
//
// The spool is bounded by Options.MaxSpoolBytes. When it is full Write blocks
// until the sender frees room or the caller's context ends, and then returns
// an error: records are never dropped silently, and an audit middleware in
// fail-closed mode can refuse the request.
package ship

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/trailguard/trailguard/sink"
)

// Protocol selects the wire format of a Shipper.
type Protocol int

const (
	// NDJSON posts one event per line, as trailguard's collector accepts at
	// POST /v1/events.
	NDJSON Protocol = iota
	// Bulk posts Elasticsearch _bulk requests: a {"create":{…}} action line
	// before every event. Elasticsearch, OpenSearch and VictoriaLogs
	// (/insert/elasticsearch/_bulk) accept it.
	Bulk
)

// String returns "ndjson" or "bulk".
func (p Protocol) String() string {
	switch p {
	case NDJSON:
		return "ndjson"
	case Bulk:
		return "bulk"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// Defaults for Options.
const (
	DefaultMaxSpoolBytes = 1 << 30
	DefaultSegmentBytes  = 16 << 20
	DefaultBatchSize     = 1000
	DefaultBatchBytes    = 4 << 20
	DefaultFlushInterval = time.Second
	DefaultTimeout       = 30 * time.Second
	DefaultMinBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultMaxRetryAfter = 5 * time.Minute
	DefaultDrainTimeout  = 5 * time.Second
)

// DeadLetterFile is the name, inside Options.SpoolDir, of the file that
// receives rejected records: one JSON object per line with "time", "url",
// "error", "status" (the HTTP or item status), and "record" (the record
// itself when it is valid JSON) or "record_text" (as a string otherwise).
// Each addition is fsynced before the cursor passes the records. The file is
// only ever appended to: it is not counted in MaxSpoolBytes, and rotating or
// replaying it is the operator's call.
const DeadLetterFile = "dead-letter.jsonl"

// ErrSpoolFull is wrapped by the error Write returns when its context ends
// while it waits for room in a full spool, and when a batch is larger than
// the whole spool may ever be.
var ErrSpoolFull = errors.New("ship: spool full")

// Options configures a Shipper. SpoolDir and URL are required; every other
// zero value means its default.
type Options struct {
	// URL is the endpoint, e.g. http://collector:8080/v1/events for NDJSON
	// or http://es:9200/_bulk, http://vl:9428/insert/elasticsearch/_bulk
	// for Bulk. A VictoriaLogs _bulk URL gets the victoriaLogsFields
	// parameters it does not set (_time_field=@timestamp, _msg_field=message,url.path,
	// _stream_fields=service.name,event.dataset); set them in the URL to
	// choose others.
	URL string
	// Protocol is the wire format, NDJSON by default.
	Protocol Protocol
	// Index names the target of Bulk create actions ("_index"). Leave it
	// empty when the URL names the index (/{index}/_bulk) or the engine
	// ignores it (VictoriaLogs).
	Index string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Headers are added to every request (after Content-Type and
	// Authorization, so they may override them: an Elasticsearch API key
	// is Authorization: ApiKey …).
	Headers http.Header
	// Gzip compresses request bodies (Content-Encoding: gzip), which
	// Elasticsearch, OpenSearch, VictoriaLogs and the collector accept;
	// JSON events shrink 5–10×, for some CPU.
	Gzip bool
	// SpoolDir holds the spool segments, the cursor and the dead-letter
	// file. It is created 0700 if missing; one Shipper at a time may use it
	// (New takes a lock).
	SpoolDir string
	// MaxSpoolBytes bounds the spool segments on disk (default 1 GiB).
	// When the next batch would pass it, Write waits for the sender to free
	// room; see the package documentation.
	MaxSpoolBytes int64
	// SegmentBytes is the size at which the spool starts a new segment file
	// (default 16 MiB, at most MaxSpoolBytes/4). Disk is freed a whole
	// segment at a time.
	SegmentBytes int64
	// BatchSize is the most records per request (default 1000).
	BatchSize int
	// BatchBytes is the most record bytes per request (default 4 MiB); it
	// is also the largest record Write accepts.
	BatchBytes int
	// FlushInterval is how long a record may wait for a batch to fill
	// before it is sent anyway (default 1s).
	FlushInterval time.Duration
	// Timeout bounds one request, response included (default 30s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// retries (defaults 100ms, 30s); each wait is drawn from [d/2, d).
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter caps how long a Retry-After header may make the sender
	// wait (default 5m).
	MaxRetryAfter time.Duration
	// DrainTimeout bounds how long Close keeps shipping before it stops the
	// sender (default 5s; negative: stop at once). What is not shipped stays
	// in the spool for the next start.
	DrainTimeout time.Duration
	// Client sends the requests; default a client with its own transport.
	Client *http.Client
	// OnError, if set, is called from the sender goroutine with every
	// failed attempt, dead-lettered batch, spool damage found and torn
	// tail repaired. It must not block for long: shipping waits for it.
	OnError func(error)
	// Now returns the time stamped on spooled and dead-lettered records and
	// used for Stats.Lag; default time.Now. Tests set it.
	Now func() time.Time
	// Log receives New's warning that the spool directory was open to
	// other users (default slog.Default()).
	Log *slog.Logger
}

// Stats is a snapshot of a Shipper's counters, for metrics. Counters count
// records since New; Pending and SpoolBytes describe the spool, so they
// include what earlier processes left.
type Stats struct {
	Spooled      uint64 // records Write made durable in the spool
	Shipped      uint64 // records the far end accepted
	Duplicates   uint64 // of Shipped: Bulk items the far end already had (409)
	Retried      uint64 // record sends repeated after a retryable failure
	DeadLettered uint64 // records written to the dead-letter file
	CorruptBytes uint64 // spool bytes skipped because they failed their checksum
	Pending      uint64 // records in the spool not yet shipped
	SpoolBytes   int64  // size of the spool segments on disk
	// Lag is the age of the oldest record not yet shipped (0 when none).
	Lag time.Duration
	// LastError is the most recent failure (nil if none) and LastErrorAt
	// when it happened.
	LastError   error
	LastErrorAt time.Time
}

// segment is one spool file. first is the sequence number of its first
// record, which is also its name, so that the sequence number of every
// record, and thus Pending, follows from the names and the cursor.
type segment struct {
	first uint64
	path  string
	size  int64 // bytes durable (the active segment grows)
}

// position is a place in the spool: the segment, the byte offset of the next
// record in it, and that record's sequence number.
type position struct {
	seg uint64
	off int64
	seq uint64
}

// Shipper is a sink.Sink that spools records durably and ships them in the
// background. Its methods are safe for concurrent use.
type Shipper struct {
	core
	lock  *os.File
	done  chan struct{} // closed when the sender has exited
	kickC chan struct{} // wakes the sender: new records, Flush, Close

	// amu serialises appends to the active segment (write + fsync), so the
	// sender is never held up by an fsync.
	amu    sync.Mutex
	af     *os.File // active segment, append-only
	afSize int64
	wbuf   []byte
	broken error // a failed fsync or undo: the spool refuses writes

	// core.mu also guards these.
	segs       []*segment // oldest first; the last is active
	next       uint64     // sequence number of the next record written
	cursor     position   // everything before it is shipped
	spoolBytes int64
	closed     bool
	closing    chan struct{} // closed by Close: wakes Writes waiting for room
	roomC      chan struct{} // closed and replaced when segments are deleted
	progressC  chan struct{} // closed and replaced when the cursor advances
	flushing   int           // Flush calls waiting: send partial batches now
	draining   bool          // Close is draining: send partial batches now
	headTS     int64         // spool time of the oldest unshipped record known to the sender
}

// New opens (or creates) the spool in opts.SpoolDir, repairs a torn tail left
// by a crash, and starts the sender, which resumes from the saved cursor.
func New(opts Options) (*Shipper, error) {
	if opts.SpoolDir == "" {
		return nil, errors.New("ship: Options.SpoolDir is required")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}

	dir := filepath.Clean(opts.SpoolDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ship: spool dir: %w", err)
	}
	if err := secureSpoolDir(dir, opts.Log); err != nil {
		return nil, err
	}
	lock, err := lockFile(filepath.Join(dir, "lock"))
	if err != nil {
		return nil, err
	}
	s := &Shipper{
		core:      core{opts: opts, dir: dir},
		lock:      lock,
		done:      make(chan struct{}),
		kickC:     make(chan struct{}, 1),
		closing:   make(chan struct{}),
		roomC:     make(chan struct{}),
		progressC: make(chan struct{}),
	}
	if err := s.openSpool(); err != nil {
		lock.Close()
		return nil, err
	}
	s.ctx, s.stop = context.WithCancel(context.Background())
	go s.run()
	return s, nil
}

// victoriaLogsFields are the parameters a Bulk URL of VictoriaLogs
// (…/insert/elasticsearch/_bulk) is given when it does not name them:
// without _time_field VictoriaLogs stamps each event with its arrival
// (an event delivered from the spool after an outage lands hours from its
// @timestamp), without _stream_fields every event is in one stream, and
// without _msg_field each gets a placeholder message. They are the
// collector's victorialogs output's defaults (docs/scale-out.md).
//
// _msg_field is a list, of which VictoriaLogs takes the first field
// present and not empty: httpaudit's access events (most of the events
// shipped) and its authentication events carry no message, and their _msg
// was VictoriaLogs' placeholder ("missing _msg field; …"); their url.path
// is the line an operator scans for, as a web server's request line.
// VictoriaLogs moves the field it takes into _msg, so an event without a
// message keeps its path there and not under url.path (docs/scale-out.md).
var victoriaLogsFields = [][2]string{
	{"_time_field", "@timestamp"},
	{"_msg_field", MsgFieldsVictoriaLogs},
	{"_stream_fields", "service.name,event.dataset"},
}

// MsgFieldsVictoriaLogs is the _msg_field that ship gives a VictoriaLogs
// _bulk URL not naming one, and the collector's victorialogs output's
// default msg_field: the event's message, else (an access or
// authentication event, which have none) its url.path.
const MsgFieldsVictoriaLogs = "message,url.path"

// withVictoriaLogsFields adds to a VictoriaLogs _bulk URL those of
// victoriaLogsFields it does not set; any other URL is returned as is.
func withVictoriaLogsFields(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || !strings.HasSuffix(strings.TrimRight(u.Path, "/"), "/insert/elasticsearch/_bulk") {
		return raw
	}
	q := u.Query()
	changed := false
	for _, f := range victoriaLogsFields {
		if !q.Has(f[0]) {
			q.Set(f[0], f[1])
			changed = true
		}
	}
	if !changed {
		return raw
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// withDefaults checks what New and NewSender share and fills in defaults.
func (opts Options) withDefaults() (Options, error) {
	if opts.URL == "" {
		return opts, errors.New("ship: Options.URL is required")
	}
	if !strings.HasPrefix(opts.URL, "http://") && !strings.HasPrefix(opts.URL, "https://") {
		return opts, fmt.Errorf("ship: Options.URL %q: want an http:// or https:// URL", redactURL(opts.URL))
	}
	if _, err := http.NewRequest(http.MethodPost, opts.URL, nil); err != nil {
		return opts, fmt.Errorf("ship: Options.URL: %w", err)
	}
	if opts.Protocol != NDJSON && opts.Protocol != Bulk {
		return opts, fmt.Errorf("ship: unknown %v", opts.Protocol)
	}
	if opts.Protocol == Bulk {
		opts.URL = withVictoriaLogsFields(opts.URL)
	}
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&opts.MaxSpoolBytes, DefaultMaxSpoolBytes)
	def(&opts.SegmentBytes, DefaultSegmentBytes)
	if opts.SegmentBytes > opts.MaxSpoolBytes/4 {
		opts.SegmentBytes = max(opts.MaxSpoolBytes/4, 4096)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = DefaultBatchBytes
	}
	opts.BatchBytes = min(opts.BatchBytes, maxPayload)
	defD(&opts.FlushInterval, DefaultFlushInterval)
	defD(&opts.Timeout, DefaultTimeout)
	defD(&opts.MinBackoff, DefaultMinBackoff)
	defD(&opts.MaxBackoff, DefaultMaxBackoff)
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	defD(&opts.MaxRetryAfter, DefaultMaxRetryAfter)
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = DefaultDrainTimeout
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}

	return opts, nil
}

func segName(first uint64) string { return fmt.Sprintf("%020d.seg", first) }

// openSpool loads the segments and the cursor, drops shipped segments, and
// repairs and opens the last segment for appending.
func (s *Shipper) openSpool() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("ship: spool dir: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") || len(name) != 24 {
			continue
		}
		first, err := strconv.ParseUint(name[:20], 10, 64)
		if err != nil {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("ship: spool: %w", err)
		}
		s.segs = append(s.segs, &segment{first: first, path: filepath.Join(s.dir, name), size: fi.Size()})
	}
	sort.Slice(s.segs, func(i, j int) bool { return s.segs[i].first < s.segs[j].first })

	cur, ok, err := readCursor(filepath.Join(s.dir, "cursor"))
	if err != nil {
		s.report(fmt.Errorf("ship: spool: %w; shipping again from the oldest segment", err))
	}
	// Segments wholly before the cursor's were shipped: a crash came
	// between saving the cursor and deleting them.
	if ok {
		keep := s.segs[:0]
		for _, g := range s.segs {
			if g.first < cur.seg {
				if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("ship: spool: remove shipped segment: %w", err)
				}
				continue
			}
			keep = append(keep, g)
		}
		s.segs = keep
	}
	if len(s.segs) > 0 && (!ok || s.segs[0].first != cur.seg) {
		// No cursor, or its segment is gone: start at the oldest segment.
		cur = position{seg: s.segs[0].first, off: int64(len(segMagic)), seq: s.segs[0].first}
	}

	// The sequence number of the next record follows from the last segment
	// that has a header. A crash in createSegment can leave the newest file
	// header-less; it holds no record, so drop it and count the one before
	// it, which is then the last (and was sealed whole before the crash).
	// Leaving next unset here would make Flush see nothing to wait for and
	// Write number records, and name segments, from zero again.
	var next uint64
	for len(s.segs) > 0 {
		last := s.segs[len(s.segs)-1]
		count, err := s.repairLast(last)
		if err != nil {
			return err
		}
		if count >= 0 {
			next = last.first + uint64(count)
			break
		}
		s.report(fmt.Errorf("ship: spool: removing %s, created but never given its header (no records)", last.path))
		if err := os.Remove(last.path); err != nil {
			return fmt.Errorf("ship: spool: %w", err)
		}
		s.segs = s.segs[:len(s.segs)-1]
		// Its name is the sequence number its first record would have had.
		next = last.first
		if cur.seg == last.first {
			cur = position{}
			ok = false
		}
	}
	if len(s.segs) == 0 {
		first := next
		if ok {
			first = max(first, cur.seq)
		}
		if err := s.createSegment(first); err != nil {
			return err
		}
		s.next = first
		cur = position{seg: first, off: int64(len(segMagic)), seq: first}
	} else {
		s.next = next
		last := s.segs[len(s.segs)-1]
		f, err := os.OpenFile(last.path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("ship: spool: %w", err)
		}
		s.af, s.afSize = f, last.size
	}
	if g := s.segs[0]; cur.seq > s.next || cur.seq < cur.seg || cur.off > g.size || cur.off < int64(len(segMagic)) {
		// A cursor past the data: the disk lost acknowledged writes, or
		// the files were tampered with. Shipping again is the safe side.
		s.report(fmt.Errorf("ship: spool: cursor %+v does not fit the spool; shipping again from the oldest segment", cur))
		cur = position{seg: s.segs[0].first, off: int64(len(segMagic)), seq: s.segs[0].first}
	}
	s.cursor = cur
	for _, g := range s.segs {
		s.spoolBytes += g.size
	}
	return nil
}

// repairLast scans the last segment, the only one a crash can leave torn,
// truncates an unacknowledged partial write at its end, and returns how many
// records it holds (-1 for a header-less file left by a crash at creation).
func (s *Shipper) repairLast(g *segment) (int, error) {
	f, err := os.OpenFile(g.path, os.O_RDWR, 0o600)
	if err != nil {
		return 0, fmt.Errorf("ship: spool: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, len(segMagic))
	if n, _ := f.ReadAt(hdr, 0); n < len(hdr) || string(hdr) != segMagic {
		if g.size <= int64(len(segMagic)) && (n == 0 || segMagic[:n] == string(hdr[:n])) {
			return -1, nil
		}
		return 0, fmt.Errorf("ship: spool: %s is not a spool segment (bad header); move it away", g.path)
	}
	r := newFrameReader(f, int64(len(segMagic)), g.size, nil)
	count := 0
	for {
		_, _, err := r.next()
		if err == nil {
			count++
			continue
		}
		if err == io.EOF {
			return count, nil
		}
		if err != errShort && err != errCorrupt {
			return 0, fmt.Errorf("ship: spool: read %s: %w", g.path, err)
		}
		at := r.offset()
		if err == errCorrupt {
			next, found, rerr := resync(f, at, g.size)
			if rerr != nil {
				return 0, fmt.Errorf("ship: spool: read %s: %w", g.path, rerr)
			}
			if found {
				// Damage in the middle: acknowledged records follow, so
				// keep them; the sender skips the damaged bytes.
				s.report(fmt.Errorf("ship: spool: %s: %d damaged bytes at offset %d will be skipped", g.path, next-at, at))
				r.seek(next)
				continue
			}
		}
		// A write that was never acknowledged: cut it off.
		s.report(fmt.Errorf("ship: spool: %s: removing %d bytes of a torn write at offset %d (never acknowledged)", g.path, g.size-at, at))
		if err := f.Truncate(at); err != nil {
			return 0, fmt.Errorf("ship: spool: truncate torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, fmt.Errorf("ship: spool: truncate torn tail: %w", err)
		}
		g.size = at
		return count, nil
	}
}

// createSegment creates an empty segment whose first record will be first,
// makes it durable and makes it the active segment. Caller holds amu, or is
// New. A file of that name is never truncated: it can only be there if the
// numbering went wrong, and it may hold acknowledged records.
func (s *Shipper) createSegment(first uint64) error {
	path := filepath.Join(s.dir, segName(first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("ship: spool: new segment %s: %w (refusing to overwrite it)", path, err)
	}
	if err != nil {
		return fmt.Errorf("ship: spool: new segment: %w", err)
	}
	if _, err := f.Write([]byte(segMagic)); err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("ship: spool: new segment: %w", err)
	}
	if s.af != nil {
		s.af.Close()
	}
	s.af, s.afSize = f, int64(len(segMagic))
	s.mu.Lock()
	s.segs = append(s.segs, &segment{first: first, path: path, size: int64(len(segMagic))})
	s.spoolBytes += int64(len(segMagic))
	s.mu.Unlock()
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Write validates records, waits for room in the spool if it is full,
// appends them to the active segment and fsyncs it. It returns nil only when
// every record is durable; an error means none of them was spooled. Records
// must be non-empty and hold no line break (sink.ErrInvalidRecord) and be at
// most Options.BatchBytes long.
func (s *Shipper) Write(ctx context.Context, records [][]byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ship: write: %w", err)
	}
	for i, r := range records {
		if len(r) == 0 {
			return fmt.Errorf("ship: record %d of %d is empty: %w", i, len(records), sink.ErrInvalidRecord)
		}
		if j := bytes.IndexByte(r, '\n'); j >= 0 {
			return fmt.Errorf("ship: record %d of %d has a line break at byte %d: %w", i, len(records), j, sink.ErrInvalidRecord)
		}
		if j := bytes.IndexByte(r, '\r'); j >= 0 {
			return fmt.Errorf("ship: record %d of %d has a line break at byte %d: %w", i, len(records), j, sink.ErrInvalidRecord)
		}
		if len(r) > s.opts.BatchBytes {
			return fmt.Errorf("ship: record %d of %d is %d bytes, more than BatchBytes (%d): %w", i, len(records), len(r), s.opts.BatchBytes, sink.ErrInvalidRecord)
		}
	}
	if s.isClosed() {
		return sink.ErrClosed
	}
	s.amu.Lock()
	defer s.amu.Unlock()
	if s.isClosed() {
		return sink.ErrClosed
	}
	if s.broken != nil {
		return fmt.Errorf("ship: spool unusable after an earlier failure: %w", s.broken)
	}
	if len(records) == 0 {
		return nil
	}
	ts := s.opts.Now().UnixNano()
	buf := s.wbuf[:0]
	for _, r := range records {
		buf = appendFrame(buf, ts, r)
	}
	if cap(buf) <= 4<<20 {
		s.wbuf = buf
	} else {
		s.wbuf = nil
	}
	need := int64(len(buf))
	if need+int64(len(segMagic)) > s.opts.MaxSpoolBytes {
		return fmt.Errorf("ship: write: batch of %d bytes can never fit MaxSpoolBytes (%d): %w", need, s.opts.MaxSpoolBytes, ErrSpoolFull)
	}
	if err := s.waitRoom(ctx, need); err != nil {
		return err
	}

	prev := s.afSize
	if n, err := s.af.Write(buf); err != nil {
		// Undo the partial append so the next batch does not follow garbage.
		if terr := s.af.Truncate(prev); terr != nil {
			s.broken = fmt.Errorf("undo of a failed append: %w", terr)
		}
		return fmt.Errorf("ship: write %d records (%d of %d bytes written): %w", len(records), n, len(buf), err)
	}
	if err := s.af.Sync(); err != nil {
		// After a failed fsync the kernel may have dropped the pages; what
		// is on disk is unknown, so stop rather than build on it.
		s.broken = fmt.Errorf("fsync: %w", err)
		return fmt.Errorf("ship: write %d records: fsync: %w", len(records), err)
	}
	s.afSize += need
	s.mu.Lock()
	s.segs[len(s.segs)-1].size = s.afSize
	s.next += uint64(len(records))
	s.spoolBytes += need
	s.st.Spooled += uint64(len(records))
	s.mu.Unlock()
	s.kick()
	if s.afSize >= s.opts.SegmentBytes {
		if err := s.rotate(); err != nil {
			// The records are durable; the next Write tries again.
			s.report(err)
		}
	}
	return nil
}

// waitRoom blocks until need more bytes fit in the spool. Caller holds amu.
func (s *Shipper) waitRoom(ctx context.Context, need int64) error {
	for {
		s.mu.Lock()
		room := s.opts.MaxSpoolBytes - s.spoolBytes
		used, max := s.spoolBytes, s.opts.MaxSpoolBytes
		roomC := s.roomC
		s.mu.Unlock()
		if need <= room {
			return nil
		}
		// Space comes back a segment at a time: seal the active one so the
		// sender can delete it once shipped, or a small spool would wait
		// forever for a segment that never fills.
		if s.afSize > int64(len(segMagic)) {
			if err := s.rotate(); err != nil {
				return err
			}
			continue
		}
		s.kick()
		select {
		case <-roomC:
		case <-ctx.Done():
			return fmt.Errorf("ship: write: %w (%d of %d bytes used, %d more needed): %w", ErrSpoolFull, used, max, need, ctx.Err())
		case <-s.closing:
			return sink.ErrClosed
		}
	}
}

// rotate seals the active segment and starts a new one. Caller holds amu.
func (s *Shipper) rotate() error {
	s.mu.Lock()
	next := s.next
	s.mu.Unlock()
	if err := s.createSegment(next); err != nil {
		return err
	}
	s.kick()
	return nil
}

func (s *Shipper) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// kick wakes the sender without blocking.
func (s *Shipper) kick() {
	select {
	case s.kickC <- struct{}{}:
	default:
	}
}

// Flush waits until every record spooled before the call has been shipped
// (or dead-lettered), sending partial batches at once. It returns ctx's
// error if that takes too long, for example while the far end is down.
func (s *Shipper) Flush(ctx context.Context) error {
	s.mu.Lock()
	target := s.next
	s.flushing++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.flushing--
		s.mu.Unlock()
	}()
	s.kick()
	for {
		s.mu.Lock()
		shipped := s.cursor.seq
		progress := s.progressC
		s.mu.Unlock()
		if shipped >= target {
			return nil
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return fmt.Errorf("ship: flush: %d records not shipped yet: %w", target-shipped, ctx.Err())
		case <-s.done:
			return fmt.Errorf("ship: flush: %w", sink.ErrClosed)
		}
	}
}

// Close refuses further Writes, keeps shipping for at most
// Options.DrainTimeout, then stops the sender and releases the spool. Records
// not shipped stay in the spool and are sent by the next Shipper opened on
// it. A request in flight when the sender stopped is abandoned; if the far
// end stores it all the same, its records arrive twice. A batch whose
// answer came before the stop is recorded as shipped.
func (s *Shipper) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.draining = true
	close(s.closing)
	s.mu.Unlock()
	// Wait for a Write in progress: after this none can start.
	s.amu.Lock()
	defer s.amu.Unlock()

	if s.opts.DrainTimeout > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
		s.drain(ctx)
		cancel()
	}
	s.stop()
	<-s.done
	var errs []error
	if err := s.af.Close(); err != nil {
		errs = append(errs, fmt.Errorf("ship: close: %w", err))
	}
	if err := s.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("ship: close: %w", err))
	}
	return errors.Join(errs...)
}

// drain waits for the sender to ship everything or ctx to end.
func (s *Shipper) drain(ctx context.Context) {
	s.kick()
	for {
		s.mu.Lock()
		caught := s.cursor.seq >= s.next
		progress := s.progressC
		s.mu.Unlock()
		if caught {
			return
		}
		select {
		case <-progress:
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// Stats returns a snapshot of the counters.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Pending = s.next - s.cursor.seq
	st.SpoolBytes = s.spoolBytes
	if st.Pending > 0 && s.headTS != 0 {
		st.Lag = max(0, s.opts.Now().Sub(time.Unix(0, s.headTS)))
	}
	return st
}

// report records err as the last error and passes it to OnError.
func (s *core) report(err error) {
	s.mu.Lock()
	s.st.LastError = err
	s.st.LastErrorAt = s.opts.Now()
	s.mu.Unlock()
	if s.opts.OnError != nil {
		s.opts.OnError(err)
	}
}

var _ sink.Sink = (*Shipper)(nil)

// secureSpoolDir makes sure no one but this process's user can get at the
// spool: its records are sent to the far end as this shipper's (under its
// token, and a collector signs them into its ledger), so anyone who could
// add a segment or a frame there (CRC-32C is no secret) injected events
// the trail then vouched for, and anyone who could read it read every
// request's user, address and path. MkdirAll keeps the mode of a
// directory made beforehand (0755 from mkdir, 0777 on a shared volume):
// such a directory is set to 0700 with a warning; one whose mode cannot be
// changed (not ours) is refused.
func secureSpoolDir(dir string, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("ship: spool dir: %w", err)
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("ship: spool dir %s has mode %#o: other users could read the spooled events or add their own, which would be sent as this shipper's, "+
			"and setting it to 0700 failed (%w); run chmod 0700 %s", dir, perm, err, dir)
	}
	if log == nil {
		log = slog.Default()
	}
	log.Warn("spool directory was open to other users; set to 0700", "dir", dir, "was", fmt.Sprintf("%#o", perm))
	return nil
}
