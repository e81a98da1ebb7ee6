package sink

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
)

// badFramed are framed batches (see LineWriter) no sink may write, not
// even in part: every bad batch of records framed, and the ways framing
// itself can be wrong.
func badFramed() []struct {
	name  string
	lines []byte
	n     int
} {
	var out []struct {
		name  string
		lines []byte
		n     int
	}
	for _, b := range badBatches {
		var lines []byte
		for _, r := range b.records {
			lines = append(append(lines, r...), '\n')
		}
		out = append(out, struct {
			name  string
			lines []byte
			n     int
		}{b.name, lines, len(b.records)})
	}
	more := []struct {
		name  string
		lines []byte
		n     int
	}{
		{"no final newline", []byte("{\"a\":1}\n{\"b\":2}"), 2},
		{"more lines than said", []byte("{\"a\":1}\n{\"b\":2}\n"), 1},
		{"fewer lines than said", []byte("{\"a\":1}\n"), 2},
		{"leading empty line", []byte("\n{\"a\":1}\n"), 2},
		{"empty line inside", []byte("{\"a\":1}\n\n{\"b\":2}\n"), 3},
		{"only a newline", []byte("\n"), 1},
		{"nothing, said one", nil, 1},
		{"carriage return before newline", []byte("{\"a\":1}\r\n"), 1},
	}
	return append(out, more...)
}

var goodFramed = []byte("{\"a\":1}\n{\"b\":\"two\"}\n{\"c\":[3]}\n")

// TestWriteLines: both sinks write a well-framed batch exactly as Write
// writes its records, and reject every badly framed one whole, going on
// to write the next batch.
func TestWriteLines(t *testing.T) {
	ctx := context.Background()
	recs := bytes.Split(bytes.TrimSuffix(goodFramed, newline), newline)
	sinks := map[string]func(t *testing.T) (LineWriter, func() []string){
		"Writer": func(t *testing.T) (LineWriter, func() []string) {
			var buf bytes.Buffer
			w := NewWriter(&buf)
			return w, func() []string { return splitLines(buf.String()) }
		},
		"File": func(t *testing.T) (LineWriter, func() []string) {
			dir := t.TempDir()
			f := open(t, FileOptions{Dir: dir})
			return f, func() []string {
				f.Close()
				lines, _ := readTrail(t, dir, DefaultName)
				return lines
			}
		},
	}
	for name, mk := range sinks {
		t.Run(name, func(t *testing.T) {
			s, written := mk(t)
			var want []string
			for _, bad := range badFramed() {
				if err := s.WriteLines(ctx, bad.lines, bad.n); !errors.Is(err, ErrInvalidRecord) {
					t.Errorf("%s: WriteLines = %v, want ErrInvalidRecord", bad.name, err)
				}
			}
			if err := s.WriteLines(ctx, nil, 0); err != nil {
				t.Fatalf("empty batch: %v", err)
			}
			if err := s.WriteLines(ctx, goodFramed, len(recs)); err != nil {
				t.Fatal(err)
			}
			if err := s.(Sink).Write(ctx, recs); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				for _, r := range recs {
					want = append(want, string(r))
				}
			}
			if got := written(); !slices.Equal(got, want) {
				t.Fatalf("written %q, want %q", got, want)
			}
		})
	}
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return bytes2strings(bytes.Split(bytes.TrimSuffix([]byte(s), newline), newline))
}

func bytes2strings(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

// FuzzCheckLines holds checkLines to frame: a framed batch passes exactly
// when it is n records, each followed by a newline, that frame accepts.
func FuzzCheckLines(f *testing.F) {
	f.Add(goodFramed, 3)
	for _, bad := range badFramed() {
		f.Add(bad.lines, bad.n)
	}
	f.Fuzz(func(t *testing.T, lines []byte, n int) {
		err := checkLines(lines, n)
		if linesOK(lines, n) != linesOKBefore(lines, n) {
			t.Fatalf("linesOK(%q, %d) = %v, the three-scan check %v", lines, n, linesOK(lines, n), linesOKBefore(lines, n))
		}
		if err != nil && !errors.Is(err, ErrInvalidRecord) {
			t.Fatalf("checkLines error does not wrap ErrInvalidRecord: %v", err)
		}
		ok := len(lines) > 0 && lines[len(lines)-1] == '\n'
		if ok {
			recs := bytes.Split(lines[:len(lines)-1], newline)
			_, ferr := frame(nil, recs)
			ok = len(recs) == n && ferr == nil
		}
		if ok != (err == nil) {
			t.Fatalf("checkLines(%q, %d) = %v; frame of its lines says ok=%v", lines, n, err, ok)
		}
	})
}

// linesOKBefore is checkLines' test before it walked the batch once
// (2026-11-30): three vectorised scans of the whole batch.
func linesOKBefore(lines []byte, n int) bool {
	return n > 0 && len(lines) > 0 && lines[0] != '\n' && lines[len(lines)-1] == '\n' &&
		bytes.IndexByte(lines, '\r') < 0 && bytes.Count(lines, newline) == n && bytes.Index(lines, []byte("\n\n")) < 0
}

// BenchmarkCheckLines is the check of a batch of 256 access events of
// ~700 bytes, as httpaudit's writer hands them over, against the check
// before.
func BenchmarkCheckLines(b *testing.B) {
	rec := append(bytes.Repeat([]byte(`{"k":"0123456789abcdef"},`), 28), '\n')
	batch := bytes.Repeat(rec, 256)
	b.Run("now", func(b *testing.B) {
		b.SetBytes(int64(len(batch)))
		for b.Loop() {
			if !linesOK(batch, 256) {
				b.Fatal("rejected")
			}
		}
	})
	b.Run("before", func(b *testing.B) {
		b.SetBytes(int64(len(batch)))
		for b.Loop() {
			if !linesOKBefore(batch, 256) {
				b.Fatal("rejected")
			}
		}
	})
}
