package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docCommands returns every trailguard command line README.md and docs/
// give — in ```sh blocks (continued lines joined) and in code spans — by
// where it is: "trailguard proxy --listen …", "go run ./cmd/trailguard
// verify …", "./trailguard token create …".
func docCommands(t *testing.T) map[string][]string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, filepath.Join("..", "..", "README.md"))
	cmdLine := regexp.MustCompile(`(?:^|[\s;&|(=$])(?:go run \./cmd/trailguard|\./trailguard|trailguard)((?: +[^\s#;|&)` + "`" + `]+)+)`)
	span := regexp.MustCompile("`([^`\n]+)`")
	out := map[string][]string{}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		doc := strings.TrimPrefix(filepath.ToSlash(name), "../../")
		var texts []string
		lines := strings.Split(string(data), "\n")
		for i := 0; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) != "```sh" {
				continue
			}
			var joined strings.Builder
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				l := lines[i]
				if c := strings.Index(l, " #"); c >= 0 {
					l = l[:c]
				}
				if strings.HasSuffix(l, `\`) {
					joined.WriteString(strings.TrimSuffix(l, `\`) + " ")
					continue
				}
				joined.WriteString(l + "\n")
			}
			texts = append(texts, joined.String())
		}
		for _, m := range span.FindAllStringSubmatch(string(data), -1) {
			texts = append(texts, m[1])
		}
		for _, text := range texts {
			for _, m := range cmdLine.FindAllStringSubmatch(text, -1) {
				out[doc] = append(out[doc], strings.TrimSpace(m[1]))
			}
		}
	}
	return out
}

// TestDocCommandFlags checks every command line of README.md and docs/
// against the command's own flags: a flag the documents give that the
// command does not have fails here, before a reader types it. (Only that
// the flag exists; the README's and docs/ledger.md's blocks that run
// whole are run by TestReadme* and TestLedgerAuditorBlock.)
func TestDocCommandFlags(t *testing.T) {
	help := map[string]string{}
	helpOf := func(words []string) string {
		key := strings.Join(words, " ")
		if h, ok := help[key]; ok {
			return h
		}
		out, errOut, _ := call(runners[words[0]], append(words[1:], "--help")...)
		help[key] = out + errOut
		return help[key]
	}
	flagRE := regexp.MustCompile(`(?:^|[\s\[|(])--([a-z][a-z0-9-]*)`)
	checked := 0
	for doc, lines := range docCommands(t) {
		for _, line := range lines {
			words := strings.Fields(line)
			if len(words) == 0 || runners[words[0]] == nil {
				continue // trailguard --version, prose ("trailguard's"), …
			}
			cmd := words[:1]
			if words[0] == "token" && len(words) > 1 && !strings.HasPrefix(words[1], "-") {
				cmd = words[:2] // token create|list|revoke: each has its flags
			}
			h := helpOf(cmd)
			for _, m := range flagRE.FindAllStringSubmatch(line, -1) {
				if m[1] == "help" {
					continue
				}
				checked++
				if !regexp.MustCompile(`(?m)^\s+--` + regexp.QuoteMeta(m[1]) + `\b`).MatchString(h) {
					t.Errorf("%s: %q: trailguard %s has no --%s (its --help lists its flags)", doc, line, strings.Join(cmd, " "), m[1])
				}
			}
		}
	}
	if checked < 50 {
		t.Errorf("only %d documented flags checked; the documents give more", checked)
	}
}

// TestDocBlocksPasteable: a trailguard command in a ```sh block is
// pasted as written, so it gives no synopsis notation: an optional part
// in brackets or an ellipsis is an argument the command refuses.
// docs/proxy.md's "trailguard proxy … --data ./trailguard-gateway
// [--api 127.0.0.1:8600]" answered 'unexpected argument "[--api"', and
// docs/detection.md's "trailguard detect --check [--rules DIR]" too.
// (Synopses belong in --help and in code spans.)
func TestDocBlocksPasteable(t *testing.T) {
	names, err := filepath.Glob(filepath.Join("..", "..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	names = append(names, filepath.Join("..", "..", "README.md"))
	cmdLine := regexp.MustCompile(`(?:^|[\s;&|(=$])(?:go run \./cmd/trailguard|\./trailguard|trailguard) [^#\n]*`)
	notation := regexp.MustCompile(`(?:^|\s)\[|\]\.*(?:\s|$)|\.\.\.|…`)
	blocks := 0
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		in := false
		for i, l := range strings.Split(string(data), "\n") {
			switch strings.TrimSpace(l) {
			case "```sh":
				in = true
				blocks++
				continue
			case "```":
				in = false
				continue
			}
			if !in {
				continue
			}
			if c := strings.Index(l, " #"); c >= 0 {
				l = l[:c]
			}
			for _, m := range cmdLine.FindAllString(l, -1) {
				if notation.MatchString(m) {
					t.Errorf("%s:%d: %q: synopsis notation in a block meant to be pasted", strings.TrimPrefix(filepath.ToSlash(name), "../../"), i+1, strings.TrimSpace(m))
				}
			}
		}
	}
	if blocks < 10 {
		t.Errorf("only %d sh blocks found", blocks)
	}
}
