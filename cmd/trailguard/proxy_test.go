package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestProxyCommandUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := runProxy([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "--upstream URL") {
		t.Fatalf("--help: %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := runProxy([]string{"--data", t.TempDir()}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "missing --upstream") {
		t.Fatalf("no upstream: %d\n%s", code, errb.String())
	}
	errb.Reset()
	if code := runProxy([]string{"--upstream", "ftp://x", "--data", t.TempDir()}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "want http://host:port") {
		t.Fatalf("bad upstream: %d\n%s", code, errb.String())
	}
}
