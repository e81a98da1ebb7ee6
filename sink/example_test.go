package sink_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/trailguard/trailguard/retention"
	"github.com/trailguard/trailguard/sink"
)

func ExampleNewWriter() {
	w := sink.NewWriter(os.Stdout)
	defer w.Close()
	err := w.Write(context.Background(), [][]byte{
		[]byte(`{"event":{"action":"login"},"user":{"name":"alice"}}`),
		[]byte(`{"event":{"action":"logout"},"user":{"name":"alice"}}`),
	})
	fmt.Println(err)
	// A record with a raw newline could forge a second event: rejected.
	err = w.Write(context.Background(), [][]byte{[]byte("{\"user\":\"x\n{\\\"forged\\\":1}\"}")})
	fmt.Println(err)
	// Output:
	// {"event":{"action":"login"},"user":{"name":"alice"}}
	// {"event":{"action":"logout"},"user":{"name":"alice"}}
	// <nil>
	// sink: record 0 of 1 has a line break at byte 10: sink: invalid record
}

func ExampleOpenFile() {
	dir, err := os.MkdirTemp("", "trail")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	f, err := sink.OpenFile(sink.FileOptions{
		Dir:       dir,
		MaxSize:   64, // tiny, to show rotation
		Retention: retention.PCIDSS,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		rec := fmt.Appendf(nil, `{"event":{"sequence":%d},"http":{"response":{"status_code":401}}}`, i)
		if err := f.Write(ctx, [][]byte{rec}); err != nil {
			log.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}

	// Read the whole trail back, oldest first.
	files, err := sink.Files(dir, "trail")
	if err != nil {
		log.Fatal(err)
	}
	for i, path := range files {
		rc, err := sink.Open(path)
		if err != nil {
			log.Fatal(err)
		}
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			active := path == f.Path()
			fmt.Printf("file %d (active %v): %s\n", i, active, sc.Text())
		}
		rc.Close()
	}
	fmt.Println(filepath.Base(f.Path()))
	// Output:
	// file 0 (active false): {"event":{"sequence":0},"http":{"response":{"status_code":401}}}
	// file 1 (active false): {"event":{"sequence":1},"http":{"response":{"status_code":401}}}
	// file 2 (active true): {"event":{"sequence":2},"http":{"response":{"status_code":401}}}
	// trail.jsonl
}

func ExampleMulti() {
	dir, err := os.MkdirTemp("", "trail")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	f, err := sink.OpenFile(sink.FileOptions{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	// Every batch goes to disk and to stdout; a failure of either is
	// reported, and the other still gets the batch.
	s := sink.Multi(f, sink.NewWriter(os.Stdout))
	fmt.Println(s.Write(context.Background(), [][]byte{[]byte(`{"event":{"action":"delete-user"}}`)}))
	fmt.Println(s.Close())
	// Output:
	// {"event":{"action":"delete-user"}}
	// <nil>
	// <nil>
}
