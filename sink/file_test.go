package sink

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trailguard/trailguard/internal/stalltest"
	"github.com/trailguard/trailguard/internal/testenv"
	"github.com/trailguard/trailguard/retention"
)

// clock is a settable clock for FileOptions.Now.
type clock struct {
	mu    sync.Mutex
	t     time.Time
	reads int // calls of Now since the last Set
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 25, 17, 22, 36, 123456789, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.reads = 0
	c.mu.Unlock()
}

// readsSinceSet returns how often Now was called since the last Set.
func (c *clock) readsSinceSet() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// errLog collects what a sink reports to OnError.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) add(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

func open(t *testing.T, opts FileOptions) *File {
	t.Helper()
	if opts.OnError == nil {
		opts.OnError = func(err error) { t.Errorf("background error: %v", err) }
	}
	f, err := OpenFile(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func write(t *testing.T, s Sink, records ...string) {
	t.Helper()
	recs := make([][]byte, len(records))
	for i, r := range records {
		recs[i] = []byte(r)
	}
	if err := s.Write(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// readFile returns the lines of one trail file, failing on a missing final
// newline or a line that is not JSON.
func readFile(t *testing.T, path string) []string {
	t.Helper()
	rc, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if len(data) == 0 {
		return nil
	}
	if data[len(data)-1] != '\n' {
		t.Fatalf("%s does not end in a newline: ...%q", path, data[max(0, len(data)-40):])
	}
	lines := strings.Split(string(data[:len(data)-1]), "\n")
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("%s line %d is not JSON: %q", path, i+1, l)
		}
	}
	return lines
}

// readTrail returns the lines of every file of the trail, oldest first.
func readTrail(t *testing.T, dir, name string) (lines []string, files []string) {
	t.Helper()
	files, err := Files(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range files {
		lines = append(lines, readFile(t, p)...)
	}
	return lines, files
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

type testRecord struct {
	W, S, B, I, N int
	Pad           string
}

func TestFileConcurrentRotationBySize(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		noSync   bool
		compress bool
	}{
		{"fsync compressed", false, true},
		{"nosync plain", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			const maxSize = 8 << 10
			f := open(t, FileOptions{Dir: dir, MaxSize: maxSize, Compress: tt.compress, NoSync: tt.noSync,
				CheckInterval: 2 * time.Millisecond})
			const writers, batches = 8, 120
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 1))
					for b := range batches {
						n := 1 + rng.IntN(4)
						recs := make([][]byte, n)
						for i := range recs {
							pad := strings.Repeat("x", 50+rng.IntN(400))
							if w == 0 && b == 60 && i == 0 {
								pad = strings.Repeat("big", maxSize) // one record far over MaxSize
							}
							recs[i], _ = json.Marshal(testRecord{W: w, S: b*10 + i, B: b, I: i, N: n, Pad: pad})
						}
						if err := f.Write(context.Background(), recs); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			files, err := Files(dir, DefaultName)
			if err != nil {
				t.Fatal(err)
			}
			if len(files) < 20 {
				t.Fatalf("only %d files; size rotation did not happen", len(files))
			}
			seen := map[[2]int]bool{}
			lastBatch := map[int]int{}
			gz := 0
			for _, p := range files {
				if strings.HasSuffix(p, ".gz") {
					gz++
				}
				lines := readFile(t, p)
				size, batchesInFile := 0, 0
				for i := 0; i < len(lines); {
					var r testRecord
					if err := json.Unmarshal([]byte(lines[i]), &r); err != nil {
						t.Fatal(err)
					}
					// A batch is contiguous and whole in one file.
					if r.I != 0 || i+r.N > len(lines) {
						t.Fatalf("%s line %d: batch %d of writer %d split or interleaved", p, i+1, r.B, r.W)
					}
					for j := range r.N {
						var rj testRecord
						json.Unmarshal([]byte(lines[i+j]), &rj)
						if rj.W != r.W || rj.B != r.B || rj.I != j {
							t.Fatalf("%s line %d: batch %d of writer %d interleaved with %+v", p, i+j+1, r.B, r.W, rj)
						}
						if seen[[2]int{rj.W, rj.S}] {
							t.Fatalf("record %d/%d twice", rj.W, rj.S)
						}
						seen[[2]int{rj.W, rj.S}] = true
						size += len(lines[i+j]) + 1
					}
					if last, ok := lastBatch[r.W]; ok && r.B <= last {
						t.Fatalf("writer %d: batch %d after batch %d", r.W, r.B, last)
					}
					lastBatch[r.W] = r.B
					i += r.N
					batchesInFile++
				}
				if size > maxSize && batchesInFile != 1 {
					t.Errorf("%s: %d bytes in %d batches, over MaxSize %d", p, size, batchesInFile, maxSize)
				}
			}
			want := 0
			for w := range writers {
				rng := rand.New(rand.NewPCG(uint64(w), 1))
				for range batches {
					n := 1 + rng.IntN(4)
					for range n {
						rng.IntN(400)
					}
					want += n
				}
			}
			if len(seen) != want {
				t.Fatalf("%d records read back, want %d", len(seen), want)
			}
			if tt.compress && gz == 0 {
				t.Error("no rotated file was compressed")
			}
			if !tt.compress && gz != 0 {
				t.Error("compressed without Compress")
			}
			for _, n := range listDir(t, dir) {
				if strings.HasSuffix(n, ".tmp") {
					t.Errorf("leftover %s after Close", n)
				}
			}
		})
	}
}

func TestFileOversizedRecordGetsItsOwnFile(t *testing.T) {
	dir := t.TempDir()
	f := open(t, FileOptions{Dir: dir, MaxSize: 100})
	small := `{"n":"small"}`
	big := `{"n":"` + strings.Repeat("b", 500) + `"}`
	write(t, f, small)
	write(t, f, big)
	write(t, f, small)
	write(t, f, small)
	f.Close()
	lines, files := readTrail(t, dir, DefaultName)
	if len(files) != 3 {
		t.Fatalf("files %v, want 3", files)
	}
	var perFile [][]string
	for _, p := range files {
		perFile = append(perFile, readFile(t, p))
	}
	want := [][]string{{small}, {big}, {small, small}}
	for i := range want {
		if !slices.Equal(perFile[i], want[i]) {
			t.Errorf("file %d: %d lines %.30q, want %.30q", i, len(perFile[i]), perFile[i], want[i])
		}
	}
	if len(lines) != 4 {
		t.Fatalf("%d lines", len(lines))
	}
}

func TestFileRejectsLineBreaks(t *testing.T) {
	for _, tt := range badBatches {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f := open(t, FileOptions{Dir: dir})
			if err := f.Write(context.Background(), tt.records); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("Write = %v, want ErrInvalidRecord", err)
			}
			write(t, f, `{"after":1}`)
			f.Close()
			if lines, _ := readTrail(t, dir, DefaultName); !slices.Equal(lines, []string{`{"after":1}`}) {
				t.Fatalf("trail %q", lines)
			}
		})
	}
}

func TestFileRotationByAge(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	t0 := clk.Now()
	f := open(t, FileOptions{Dir: dir, MaxAge: time.Hour, Now: clk.Now, CheckInterval: time.Hour})

	clk.Advance(5 * time.Hour) // an empty file does not age: no empty rotated file
	write(t, f, `{"r":1}`)
	clk.Advance(30 * time.Minute)
	write(t, f, `{"r":2}`)
	clk.Advance(31 * time.Minute)
	write(t, f, `{"r":3}`)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(dir, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	wantRotated := filepath.Join(dir, "trail-"+t0.Add(5*time.Hour+61*time.Minute).Format("20060102T150405.000000000Z")+".jsonl")
	if !slices.Equal(files, []string{wantRotated, f.Path()}) {
		t.Fatalf("files %v, want [%s %s]", files, wantRotated, f.Path())
	}
	if got := readFile(t, files[0]); !slices.Equal(got, []string{`{"r":1}`, `{"r":2}`}) {
		t.Fatalf("rotated file holds %q", got)
	}
	if got := readFile(t, files[1]); !slices.Equal(got, []string{`{"r":3}`}) {
		t.Fatalf("active file holds %q", got)
	}

	// Reopened, the active file's age counts from the last rotation, not
	// from the reopen.
	f = open(t, FileOptions{Dir: dir, MaxAge: time.Hour, Now: clk.Now, CheckInterval: time.Hour})
	clk.Advance(time.Hour)
	write(t, f, `{"r":4}`)
	f.Close()
	if files, _ := Files(dir, DefaultName); len(files) != 3 {
		t.Fatalf("after reopen: %v, want a rotation by age", files)
	}
}

func TestFileRotationByAgeWhileIdle(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	f := open(t, FileOptions{Dir: dir, MaxAge: time.Hour, Now: clk.Now, CheckInterval: time.Millisecond})
	write(t, f, `{"idle":1}`)
	clk.Advance(2 * time.Hour)
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, err := Files(dir, DefaultName)
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 2 {
			if got := readFile(t, files[0]); !slices.Equal(got, []string{`{"idle":1}`}) {
				t.Fatalf("rotated file holds %q", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle file not rotated: %v", files)
		}
		time.Sleep(time.Millisecond)
	}
	if st, err := os.Stat(f.Path()); err != nil || st.Size() != 0 {
		t.Fatalf("new active file: %v %v", st, err)
	}
}

func TestFileRetention(t *testing.T) {
	ages := []int{10, 29, 31, 91, 364, 366, 2189, 2191} // days
	custom30, err := retention.Lookup("custom:30")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		profile   retention.Profile
		legalHold bool
		kept      []int // ages that survive
		plain     []int // of those, ages still uncompressed
	}{
		{retention.PCIDSS, false, []int{10, 29, 31, 91, 364}, []int{10, 29, 31}},
		{retention.SOC2, false, []int{10, 29, 31, 91, 364}, nil},
		// 2,191 days are at most six calendar years (one or two 29
		// Februaries in between): HIPAA keeps them.
		{retention.HIPAA, false, []int{10, 29, 31, 91, 364, 366, 2189, 2191}, nil},
		{custom30, false, []int{10, 29}, nil},
		{retention.Profile{Name: "forever"}, false, ages, nil},
		{retention.PCIDSS, true, ages, ages},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v hold=%v", tt.profile, tt.legalHold), func(t *testing.T) {
			dir := t.TempDir()
			clk := newClock()
			now := clk.Now()
			// Build the history with a sink that keeps everything.
			f := open(t, FileOptions{Dir: dir, Now: clk.Now, MaxAge: 100000 * retention.Day})
			for _, age := range slices.Backward(ages) {
				clk.Set(now.Add(-time.Duration(age) * retention.Day))
				write(t, f, fmt.Sprintf(`{"age":%d}`, age))
				if err := f.Rotate(); err != nil {
					t.Fatal(err)
				}
			}
			f.Close()
			// Modification times say nothing: a copy or an attacker sets
			// them. Make every file look ancient; only names count.
			ancient := now.Add(-100000 * retention.Day)
			for _, n := range listDir(t, dir) {
				os.Chtimes(filepath.Join(dir, n), ancient, ancient)
			}

			clk.Set(now)
			opts := FileOptions{Dir: dir, Now: clk.Now, Retention: tt.profile, LegalHold: tt.legalHold,
				Compress: true, MaxAge: 100000 * retention.Day, CheckInterval: time.Hour}
			f = open(t, opts)
			// Deletion has happened by the time OpenFile returns.
			if got := trailAges(t, dir); !slices.Equal(got, tt.kept) {
				t.Fatalf("after open: ages %v, want %v", got, tt.kept)
			}
			if err := f.Maintain(context.Background()); err != nil {
				t.Fatal(err)
			}
			var plain []int
			files, _ := Files(dir, DefaultName)
			for _, p := range files {
				if strings.HasSuffix(p, ".jsonl") && p != f.Path() {
					plain = append(plain, ageOf(t, p))
				}
			}
			slices.Sort(plain)
			if !slices.Equal(plain, tt.plain) {
				t.Errorf("uncompressed ages %v, want %v (Hot %v)", plain, tt.plain, tt.profile.Hot)
			}
			if got := trailAges(t, dir); !slices.Equal(got, tt.kept) {
				t.Fatalf("after compression: ages %v, want %v", got, tt.kept)
			}
			f.Close()

			// Retention also runs periodically, while the sink is up.
			clk.Set(now)
			opts.CheckInterval = time.Millisecond
			f = open(t, opts)
			clk.Set(now.Add(3000 * retention.Day))
			wantEmpty := !tt.legalHold && tt.profile.Retain > 0
			if !wantEmpty {
				// Each background pass reads the clock when it checks the
				// active file's age and, unless on hold, once more in
				// retention: four reads after the Set include a whole pass
				// that started at the new time.
				deadline := time.Now().Add(10 * time.Second)
				for clk.readsSinceSet() < 4 {
					if time.Now().After(deadline) {
						t.Fatalf("no periodic pass in 10 s (%d clock reads)", clk.readsSinceSet())
					}
					time.Sleep(time.Millisecond)
				}
				if got := trailAges(t, dir); len(got) != len(tt.kept) {
					t.Fatalf("periodic retention deleted under hold or forever: ages %v", got)
				}
				return
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				// Only list: opening would race with the deletion.
				files, err := Files(dir, DefaultName)
				if err != nil {
					t.Fatal(err)
				}
				if len(files) == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("periodic retention: %v left", files)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

func ageOf(t *testing.T, path string) int {
	t.Helper()
	lines := readFile(t, path)
	if len(lines) != 1 {
		t.Fatalf("%s: %q", path, lines)
	}
	var r struct{ Age int }
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	return r.Age
}

// trailAges returns the ages recorded in the rotated files, youngest first.
func trailAges(t *testing.T, dir string) []int {
	t.Helper()
	files, err := Files(dir, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, p := range files {
		if filepath.Base(p) != DefaultName+".jsonl" {
			out = append(out, ageOf(t, p))
		}
	}
	slices.Sort(out)
	return out
}

func gzipBytes(t *testing.T, data string) []byte {
	t.Helper()
	var b strings.Builder
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(data))
	zw.Close()
	return []byte(b.String())
}

func TestFileCompressionLeftovers(t *testing.T) {
	dir := t.TempDir()
	content := func(i int) string { return fmt.Sprintf("{\"seg\":%d}\n{\"seg\":%d,\"n\":2}\n", i, i) }
	base := func(i int) string {
		return filepath.Join(dir, "trail-"+time.Date(2026, 1, i, 0, 0, 0, 0, time.UTC).Format(stampLayout)+".jsonl")
	}
	mk := func(path string, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// 1: compression interrupted while writing the .tmp.
	mk(base(1), []byte(content(1)))
	mk(base(1)+".gz.tmp", gzipBytes(t, content(1))[:10])
	// 2: interrupted after the rename, before the plain file was removed.
	mk(base(2), []byte(content(2)))
	mk(base(2)+".gz", gzipBytes(t, content(2)))
	// 3: a .gz beside its plain file that does not match it.
	mk(base(3), []byte(content(3)))
	mk(base(3)+".gz", gzipBytes(t, "{\"forged\":1}\n"))
	// 4: a truncated .gz beside its plain file.
	mk(base(4), []byte(content(4)))
	mk(base(4)+".gz", gzipBytes(t, content(4))[:20])
	// 5: a .tmp with no plain file: not ours to judge.
	mk(base(5)+".gz.tmp", []byte("mystery"))
	// 6: an ordinary plain file.
	mk(base(6), []byte(content(6)))

	var log errLog
	f := open(t, FileOptions{Dir: dir, Compress: true, OnError: log.add, CheckInterval: time.Hour})
	if err := f.Maintain(context.Background()); err == nil || !strings.Contains(err.Error(), "no plain file") {
		t.Fatalf("Maintain = %v, want the orphaned .tmp reported", err)
	}
	f.Close()
	want := []string{}
	for _, i := range []int{1, 2, 3, 4, 6} {
		want = append(want, filepath.Base(base(i))+".gz")
	}
	want = append(want, filepath.Base(base(5))+".gz.tmp", "trail.jsonl", "trail.lock")
	slices.Sort(want)
	if got := listDir(t, dir); !slices.Equal(got, want) {
		t.Fatalf("dir %v\nwant %v", got, want)
	}
	for _, i := range []int{1, 2, 3, 4, 6} {
		got := readFile(t, base(i)) // Open follows a rotated file into its .gz
		if strings.Join(got, "\n")+"\n" != content(i) {
			t.Errorf("segment %d reads %q", i, got)
		}
	}
	if errs := log.all(); len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), "does not match") {
		t.Errorf("OnError got %v, want the mismatching .gz reported", errs)
	}
}

func TestFileCloseAbandonsCompression(t *testing.T) {
	dir := t.TempDir()
	rotated := filepath.Join(dir, "trail-"+time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(stampLayout)+".jsonl")
	// 8 MiB of random hex: slow enough to compress (tens of ms at least) that
	// Close surely comes while it runs.
	const lines = 8 << 10
	rng := rand.NewChaCha8([32]byte{1})
	var buf bytes.Buffer
	raw := make([]byte, 500)
	for range lines {
		rng.Read(raw)
		fmt.Fprintf(&buf, "{\"bulk\":\"%x\"}\n", raw)
	}
	if err := os.WriteFile(rotated, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	f := open(t, FileOptions{Dir: dir, Compress: true})
	// Compression has started once its temporary file exists.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(rotated + ".gz.tmp"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("compression did not start: %v", listDir(t, dir))
		}
		time.Sleep(time.Millisecond)
	}
	// Close waits at most one chunk of the compression: 5 s allows a
	// stalled process too (a loaded CI machine stops it for seconds).
	var closeErr error
	took, stalled, ok := stalltest.Run(func() { closeErr = f.Close() }, stalltest.Start(t), 5*time.Second)
	if !ok {
		t.Fatalf("Close not done after %v (stalls %v)", took, stalled)
	}
	if closeErr != nil {
		t.Fatal(closeErr)
	}
	if took > 5*time.Second+stalled {
		t.Errorf("Close took %v (stalls %v)", took, stalled)
	}
	// Abandoned, not finished: the plain file is whole and alone.
	if got := listDir(t, dir); !slices.Equal(got, []string{filepath.Base(rotated), "trail.jsonl", "trail.lock"}) {
		t.Errorf("files after Close: %v", got)
	}
	if got, err := os.ReadFile(rotated); err != nil || !bytes.Equal(got, buf.Bytes()) {
		t.Fatalf("rotated file changed by the abandoned compression (%d of %d bytes, %v)", len(got), buf.Len(), err)
	}
}

func TestFileReopenTornTail(t *testing.T) {
	tests := []struct {
		name, content, keep, fragment string
	}{
		{"torn after whole lines", "{\"a\":1}\n{\"a\":2}\n{\"b\":", "{\"a\":1}\n{\"a\":2}\n", `{"b":`},
		{"only a fragment", `{"b":"no newline at all`, "", `{"b":"no newline at all`},
		{"long fragment", "{\"a\":1}\n" + strings.Repeat("y", 200<<10), "{\"a\":1}\n", strings.Repeat("y", 200<<10)},
		{"clean", "{\"a\":1}\n", "{\"a\":1}\n", ""},
		{"empty", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			active := filepath.Join(dir, "trail.jsonl")
			if err := os.WriteFile(active, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			var log errLog
			f := open(t, FileOptions{Dir: dir, OnError: log.add})
			write(t, f, `{"after":"reopen"}`)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(active)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.keep+"{\"after\":\"reopen\"}\n" {
				t.Fatalf("active file %.60q", got)
			}
			readFile(t, active) // every line JSON
			torn, _ := filepath.Glob(filepath.Join(dir, "trail-*.torn"))
			errs := log.all()
			if tt.fragment == "" {
				if len(torn) != 0 || len(errs) != 0 {
					t.Fatalf("clean file: torn %v, errors %v", torn, errs)
				}
				return
			}
			if len(torn) != 1 {
				t.Fatalf("torn files %v", torn)
			}
			if frag, _ := os.ReadFile(torn[0]); string(frag) != tt.fragment {
				t.Fatalf("fragment %.40q, want %.40q", frag, tt.fragment)
			}
			if len(errs) != 1 || !errors.Is(errs[0], ErrTornTail) {
				t.Fatalf("OnError got %v, want ErrTornTail", errs)
			}
			if files, _ := Files(dir, DefaultName); len(files) != 1 {
				t.Fatalf("Files lists the fragment: %v", files)
			}
		})
	}
}

func TestFileWriteAfterClose(t *testing.T) {
	dir := t.TempDir()
	f := open(t, FileOptions{Dir: dir})
	write(t, f, `{"a":1}`)
	for range 3 {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := f.Write(ctx, [][]byte{[]byte(`{"a":2}`)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v", err)
	}
	if err := f.Rotate(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Rotate after Close = %v", err)
	}
	if err := f.Maintain(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Maintain after Close = %v", err)
	}
}

// Close racing writers: every acknowledged record is on disk, every other
// writer was told ErrClosed.
func TestFileCloseWhileWriting(t *testing.T) {
	dir := t.TempDir()
	f := open(t, FileOptions{Dir: dir, MaxSize: 4 << 10, NoSync: true})
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 100000 {
				rec := fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)
				err := f.Write(context.Background(), [][]byte{[]byte(rec)})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[rec] = true
				mu.Unlock()
			}
		})
	}
	// Close once the writers are well under way.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged in 10 s", n)
		}
		time.Sleep(time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	lines, _ := readTrail(t, dir, DefaultName)
	got := map[string]bool{}
	for _, l := range lines {
		got[l] = true
	}
	for rec := range acked {
		if !got[rec] {
			t.Fatalf("acknowledged %s missing", rec)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no write succeeded")
	}
}

func TestFileLocked(t *testing.T) {
	dir := t.TempDir()
	f := open(t, FileOptions{Dir: dir})
	if _, err := OpenFile(FileOptions{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second OpenFile = %v, want ErrLocked", err)
	}
	g := open(t, FileOptions{Dir: dir, Name: "other"})
	g.Close()
	f.Close()
	open(t, FileOptions{Dir: dir}).Close()
}

func TestFileOptionsValidation(t *testing.T) {
	dir := t.TempDir()
	for _, opts := range []FileOptions{
		{},
		{Dir: dir, Name: "../escape"},
		{Dir: dir, Name: ".."},
		{Dir: dir, MaxSize: -1},
		{Dir: dir, MaxAge: -time.Second},
		{Dir: dir, Retention: retention.Profile{Retain: -1}},
	} {
		if f, err := OpenFile(opts); err == nil {
			f.Close()
			t.Errorf("OpenFile(%+v) succeeded", opts)
		}
	}
}

func TestFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "trail")
	f := open(t, FileOptions{Dir: dir, MaxSize: 10})
	write(t, f, `{"a":1}`, `{"a":2}`)
	write(t, f, `{"a":3}`)
	f.Close()
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v %v", st.Mode(), err)
	}
	for _, n := range listDir(t, dir) {
		if st, _ := os.Stat(filepath.Join(dir, n)); st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", n, st.Mode())
		}
	}
}

func TestFilesIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	stampA := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Format(stampLayout)
	stampB := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC).Format(stampLayout)
	for _, n := range []string{
		"trail-" + stampB + ".jsonl.gz",
		"trail-" + stampA + ".jsonl",
		"trail.jsonl",
		"trail-notes.jsonl",
		"trail-" + stampA + ".jsonl.bak",
		"trail-" + stampA + ".torn",
		"trail-20261301T000000.000000000Z.jsonl", // month 13
		"audit-" + stampA + ".jsonl",
		"trailx-" + stampA + ".jsonl",
	} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o600)
	}
	got, err := Files(dir, "trail")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(dir, "trail-"+stampA+".jsonl"),
		filepath.Join(dir, "trail-"+stampB+".jsonl.gz"),
		filepath.Join(dir, "trail.jsonl"),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Files = %v\nwant %v", got, want)
	}
}

func FuzzParseName(f *testing.F) {
	f.Add("trail-20261125T172236.123456789Z.jsonl")
	f.Add("trail-20261125T172236.123456789Z.jsonl.gz.tmp")
	f.Add("trail-20260229T000000.000000000Z.torn")
	f.Fuzz(func(t *testing.T, base string) {
		ts, k, ok := parseName(base, "trail")
		if !ok {
			return
		}
		ext := map[kind]string{kindPlain: extActive, kindGzip: extGzip, kindGzipTmp: extGzipTmp, kindTorn: extTorn, kindTornTmp: extTornTmp}[k]
		if back := "trail-" + stamp(ts) + ext; back != base {
			t.Fatalf("parseName(%q) = %v %v, which names %q", base, ts, k, back)
		}
	})
}

// FuzzTornTail: whatever a crash leaves in the active file, reopening
// keeps every whole line, moves the rest aside intact, and the next record
// starts a line of its own.
func FuzzTornTail(f *testing.F) {
	f.Add([]byte("{\"a\":1}\n{\"b\""))
	f.Add([]byte("\n\n"))
	f.Add([]byte("no newline"))
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		active := filepath.Join(dir, "trail.jsonl")
		if err := os.WriteFile(active, content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenFile(FileOptions{Dir: dir, OnError: func(error) {}})
		if err != nil {
			t.Fatal(err)
		}
		write(t, s, `{"next":1}`)
		s.Close()
		got, _ := os.ReadFile(active)
		var frag []byte
		if torn, _ := filepath.Glob(filepath.Join(dir, "*.torn")); len(torn) == 1 {
			frag, _ = os.ReadFile(torn[0])
		} else if len(torn) > 1 {
			t.Fatalf("torn files %v", torn)
		}
		kept, ok := strings.CutSuffix(string(got), "{\"next\":1}\n")
		if !ok || (kept != "" && !strings.HasSuffix(kept, "\n")) || kept+string(frag) != string(content) {
			t.Fatalf("content %q became active %q + fragment %q", content, got, frag)
		}
	})
}

// TestFileCrashKill9 kills a real writer process with SIGKILL at random
// moments of its work (mid-write, mid-rotation, mid-compression) and checks
// that reopening the trail loses no acknowledged record and leaves no broken
// line.
func TestFileCrashKill9(t *testing.T) {
	if dir := os.Getenv("SINK_CRASH_DIR"); dir != "" {
		crashWriter(dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}
	t.Parallel()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(testenv.Seed(t), 3))
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileCrashKill9$")
		cmd.Env = append(os.Environ(), "SINK_CRASH_DIR="+dir)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := testenv.StartChild(t, cmd); err != nil {
			t.Fatal(err)
		}
		// Kill once a random number of records were acknowledged, a
		// random fraction of a record's time later; the acks already in
		// the pipe count too.
		target := 1 + rng.IntN(1500)
		delay := time.Duration(rng.IntN(3000)) * time.Microsecond
		acked := map[string]bool{}
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			acked[sc.Text()] = true
			if len(acked) == target {
				time.AfterFunc(delay, func() { cmd.Process.Kill() })
			}
		}
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: writer ended by itself after %d records, before the kill (target %d)", round, len(acked), target)
		}
		t.Logf("round %d: killed %v after ack %d, %d acknowledged", round, delay, target, len(acked))

		var log errLog
		f := open(t, FileOptions{Dir: dir, OnError: log.add, Compress: true})
		if err := f.Maintain(context.Background()); err != nil {
			t.Fatal(err)
		}
		f.Close()
		lines, files := readTrail(t, dir, DefaultName)
		got := map[string]bool{}
		for _, l := range lines {
			if got[l] {
				t.Fatalf("round %d: %s twice", round, l)
			}
			got[l] = true
		}
		for rec := range acked {
			if !got[rec] {
				t.Fatalf("round %d: acknowledged %s lost (%d files)", round, rec, len(files))
			}
		}
		for _, n := range listDir(t, dir) {
			if strings.HasSuffix(n, ".tmp") {
				t.Errorf("round %d: leftover %s", round, n)
			}
		}
	}
}

// crashWriter is the child of TestFileCrashKill9: it writes until killed,
// printing each record once Write has acknowledged it. The loop is bounded
// so that an orphaned child stops by itself.
func crashWriter(dir string) {
	f, err := OpenFile(FileOptions{Dir: dir, MaxSize: 16 << 10, Compress: true, CheckInterval: time.Millisecond,
		OnError: func(error) {}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pid := os.Getpid()
	out := bufio.NewWriter(os.Stdout)
	for i := range 200000 {
		rec := fmt.Sprintf(`{"pid":%d,"i":%d,"pad":"%s"}`, pid, i, strings.Repeat("p", i%300))
		if err := f.Write(context.Background(), [][]byte{[]byte(rec)}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		out.WriteString(rec + "\n")
		out.Flush()
	}
	os.Exit(0)
}
