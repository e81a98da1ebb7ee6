package doccheck

import (
	"html"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// slug is the anchor GitHub gives a heading whose rendered text is text:
// lowercased, every character that is not a word character, '-' or a
// space dropped, each space turned into '-'. GitHub's renderer removes
// /[^\p{Word}\- ]/u (Ruby), and \p{Word} is Unicode's \w: Alphabetic
// (letters, letter numbers such as Ⅻ, circled letters), marks, decimal
// digits, connector punctuation ('_') and the joiners. So '×', '≤' and '≥'
// (math symbols) and '½', '⅓', '²' (other numbers, not decimal digits) go,
// as do '.', '&', '(', ')' and '`'; runs of '-' are not collapsed and the
// ends are not trimmed.
func slug(text string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || unicode.In(r, unicode.L, unicode.Nl, unicode.Other_Alphabetic,
			unicode.M, unicode.Nd, unicode.Pc, unicode.Join_Control):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// codeSpan is a segment of an inline text: literal code or Markdown.
type codeSpan struct {
	text string // what it renders: a code span's content without its backticks
	raw  string // its Markdown
	code bool
}

// backticks is the length of the run of backticks at s[i:].
func backticks(s string, i int) int {
	n := 0
	for i+n < len(s) && s[i+n] == '`' {
		n++
	}
	return n
}

// splitCode cuts inline Markdown into code spans and the rest. A run of
// backticks opens a span only if a run of the same length closes it; an
// unmatched run is literal text, as CommonMark has it.
func splitCode(s string) []codeSpan {
	var out []codeSpan
	plain := 0
	for i := 0; i < len(s); {
		if s[i] == '\\' && i+1 < len(s) {
			i += 2
			continue
		}
		if s[i] != '`' {
			i++
			continue
		}
		n := backticks(s, i)
		end := -1
		for j := i + n; j < len(s); {
			if s[j] != '`' {
				j++
				continue
			}
			m := backticks(s, j)
			if m == n {
				end = j
				break
			}
			j += m
		}
		if end < 0 {
			i += n
			continue
		}
		out = append(out, codeSpan{s[plain:i], s[plain:i], false})
		body := strings.ReplaceAll(s[i+n:end], "\n", " ")
		if len(body) > 2 && body[0] == ' ' && body[len(body)-1] == ' ' && strings.Trim(body, " ") != "" {
			body = body[1 : len(body)-1]
		}
		out = append(out, codeSpan{body, s[i : end+n], true})
		i = end + n
		plain = i
	}
	return append(out, codeSpan{s[plain:], s[plain:], false})
}

var (
	htmlTag   = regexp.MustCompile(`</?[A-Za-z][^<>]*>`)
	imageRef  = regexp.MustCompile(`!\[[^\]]*\]\([^)]*\)`)
	inlineRef = regexp.MustCompile(`\[([^\]]*)\](?:\([^)]*\)|\[[^\]]*\])`)
	anchorTag = regexp.MustCompile(`(?i)<a\s[^>]*\b(?:id|name)\s*=\s*["']([^"']+)["']`)
)

// headingText is the text GitHub renders for a heading's Markdown: code
// spans keep their content without the backticks, links keep their text,
// images and HTML tags leave nothing, escapes and entities become the
// character, and '_' and '*' that delimit emphasis go (an '_' inside a
// word is literal and stays, and so becomes part of the anchor).
func headingText(md string) string {
	var b strings.Builder
	for _, seg := range splitCode(md) {
		if seg.code {
			b.WriteString(seg.text)
			continue
		}
		s := htmlTag.ReplaceAllString(imageRef.ReplaceAllString(seg.text, ""), "")
		s = inlineRef.ReplaceAllString(s, "$1")
		var plain strings.Builder
		for i := 0; i < len(s); {
			r, w := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == '\\' && i+1 < len(s) && strings.IndexByte("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", s[i+1]) >= 0:
				plain.WriteByte(s[i+1])
				i += 2
				continue
			case r == '_' || r == '*':
				n := 0
				for i+n < len(s) && s[i+n] == byte(r) {
					n++
				}
				before, _ := utf8.DecodeLastRuneInString(s[:i])
				after, _ := utf8.DecodeRuneInString(s[i+n:])
				if r == '_' && isAlnum(before) && isAlnum(after) {
					plain.WriteString(s[i : i+n])
				}
				i += n
				continue
			}
			plain.WriteString(s[i : i+w])
			i += w
		}
		// Entities are text outside code only: `&amp;` is five characters.
		b.WriteString(html.UnescapeString(plain.String()))
	}
	return strings.TrimSpace(b.String())
}

func isAlnum(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }

// mdDoc is what the link check needs of one Markdown file.
type mdDoc struct {
	anchors map[string]bool
	links   []mdLink
}

type mdLink struct {
	line int
	dest string
}

var (
	atxHeading = regexp.MustCompile(`^ {0,3}(#{1,6})(?:[ \t]+(.*?))??(?:[ \t]+#+)?[ \t]*$`)
	setextLine = regexp.MustCompile(`^ {0,3}(=+|-+)[ \t]*$`)
	fenceLine  = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})")
	blockStart = regexp.MustCompile(`^ {0,3}([-+*>|<]|\d+[.)]|#|$)`)
	refDef     = regexp.MustCompile(`(?m)^ {0,3}\[[^\]]+\]:[ \t]*(<[^>]*>|\S+)`)
	htmlLink   = regexp.MustCompile(`(?i)<(?:a|img)\s[^>]*\b(?:href|src)\s*=\s*["']([^"']*)["']`)
	comment    = regexp.MustCompile(`(?s)<!--.*?-->`)
)

// parseMarkdown returns the anchors a Markdown file defines (its headings'
// slugs, numbered -1, -2… when they repeat, and the id or name of its <a>
// tags) and the destinations of its links and images, outside fenced
// code, code spans and HTML comments.
func parseMarkdown(text string) mdDoc {
	doc := mdDoc{anchors: map[string]bool{}}
	seen := map[string]int{}
	addHeading := func(md string) {
		id := slug(headingText(md))
		if n := seen[id]; n > 0 {
			doc.anchors[id+"-"+strconv.Itoa(n)] = true
		} else {
			doc.anchors[id] = true
		}
		seen[id]++
	}
	lines := strings.Split(text, "\n")
	var fence string
	var para []string // the open paragraph, for a setext underline
	for i, l := range lines {
		if fence != "" {
			if m := fenceLine.FindStringSubmatch(l); m != nil && m[1][0] == fence[0] && len(m[1]) >= len(fence) &&
				strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(l), m[1][:1])) == "" {
				fence = ""
			}
			lines[i] = "" // code is neither links nor headings
			continue
		}
		if m := fenceLine.FindStringSubmatch(l); m != nil {
			fence, para, lines[i] = m[1], nil, ""
			continue
		}
		if m := atxHeading.FindStringSubmatch(l); m != nil {
			addHeading(m[2])
			para = nil
			continue
		}
		if setextLine.MatchString(l) && len(para) > 0 {
			addHeading(strings.Join(para, "\n"))
			para = nil
			continue
		}
		if strings.TrimSpace(l) == "" || (len(para) == 0 && blockStart.MatchString(l)) {
			para = nil
			continue
		}
		para = append(para, strings.TrimSpace(l))
	}
	prose := comment.ReplaceAllStringFunc(strings.Join(lines, "\n"), func(c string) string {
		return strings.Repeat("\n", strings.Count(c, "\n"))
	})
	// Code spans become spaces of the same length, so offsets still give
	// line numbers; a code span never crosses a blank line.
	var b strings.Builder
	for _, p := range strings.SplitAfter(prose, "\n\n") {
		for _, seg := range splitCode(p) {
			if !seg.code {
				b.WriteString(seg.text)
				continue
			}
			b.WriteString(strings.Map(func(r rune) rune {
				if r == '\n' {
					return r
				}
				return ' '
			}, seg.raw))
		}
	}
	prose = b.String()
	for _, m := range anchorTag.FindAllStringSubmatch(prose, -1) {
		doc.anchors[m[1]] = true
	}
	lineOf := func(off int) int { return strings.Count(prose[:off], "\n") + 1 }
	for _, re := range []*regexp.Regexp{refDef, htmlLink} {
		for _, m := range re.FindAllStringSubmatchIndex(prose, -1) {
			doc.links = append(doc.links, mdLink{lineOf(m[2]), strings.Trim(prose[m[2]:m[3]], "<>")})
		}
	}
	for i := 0; ; {
		j := strings.Index(prose[i:], "](")
		if j < 0 {
			break
		}
		start := i + j + 2
		if dest, ok := linkDest(prose[start:]); ok {
			doc.links = append(doc.links, mdLink{lineOf(start), dest})
		}
		i = start
	}
	return doc
}

// linkDest reads an inline link's destination from just after "](": a
// <bracketed> one, or one without spaces whose parentheses balance,
// optionally followed by a title. ok is false if this is no link.
func linkDest(s string) (dest string, ok bool) {
	s = strings.TrimLeft(s, " \t\n")
	if strings.HasPrefix(s, "<") {
		end := strings.IndexAny(s, ">\n")
		if end < 0 || s[end] != '>' {
			return "", false
		}
		return s[1:end], true
	}
	depth := 0
	for i, r := range s {
		switch {
		case r == '\\':
		case r == '(':
			depth++
		case r == ')' && depth > 0:
			depth--
		case r == ')' || unicode.IsSpace(r):
			return s[:i], true
		}
	}
	return "", false
}

// markdownFiles returns every *.md of the repository, relative to root
// with '/' separators, leaving out what the project does not write:
// vendored and third-party code, test data, node_modules, dot-directories.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	skip := map[string]bool{"vendor": true, "third_party": true, "testdata": true, "node_modules": true}
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (skip[d.Name()] || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

var (
	scheme     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	lineAnchor = regexp.MustCompile(`^L\d+(?:C\d+)?(?:-L\d+(?:C\d+)?)?$`)
)

// TestMarkdownLinks checks every relative link and image of every
// Markdown file of the repository, as GitHub resolves it: the file or
// directory it names exists (relative to the linking file; a leading '/'
// is the repository's root) and does not leave the repository, and a
// #fragment names a heading or <a id> of the target Markdown file (or a
// line, #L12, of another file). Links with a scheme (https:, mailto:) are
// not followed. Sections move between README.md and docs/; a link left
// pointing at the old place fails here, not in a reader's browser.
func TestMarkdownLinks(t *testing.T) {
	files := markdownFiles(t)
	parsed := map[string]mdDoc{}
	parse := func(name string) mdDoc {
		d, ok := parsed[name]
		if !ok {
			d = parseMarkdown(read(t, name))
			parsed[name] = d
		}
		return d
	}
	checked := 0
	for _, name := range files {
		for _, l := range parse(name).links {
			if l.dest == "" || scheme.MatchString(l.dest) || strings.HasPrefix(l.dest, "//") {
				continue
			}
			checked++
			where := name + ":" + strconv.Itoa(l.line) + ": " + l.dest
			p, frag, _ := strings.Cut(l.dest, "#")
			p, err := url.PathUnescape(p)
			if err == nil {
				frag, err = url.PathUnescape(frag)
			}
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			target := name
			if p != "" {
				if strings.HasPrefix(p, "/") {
					target = path.Clean(strings.TrimPrefix(p, "/"))
				} else {
					target = path.Join(path.Dir(name), p)
				}
				if target == ".." || strings.HasPrefix(target, "../") {
					t.Errorf("%s: leaves the repository", where)
					continue
				}
				info, err := os.Stat(filepath.Join(root, filepath.FromSlash(target)))
				if err != nil {
					t.Errorf("%s: no such file or directory %s", where, target)
					continue
				}
				if info.IsDir() && frag != "" {
					t.Errorf("%s: a #fragment on a directory", where)
					continue
				}
			}
			if frag == "" {
				continue
			}
			if !strings.HasSuffix(target, ".md") {
				if !lineAnchor.MatchString(frag) {
					t.Errorf("%s: #%s is not a line (#L12) of %s", where, frag, target)
				}
				continue
			}
			if !parse(target).anchors[frag] {
				t.Errorf("%s: %s has no heading or <a id> with the anchor #%s", where, target, frag)
			}
		}
	}
	// The documents link to each other and to their sections dozens of
	// times; far fewer found means the parser lost them.
	if len(files) < 10 || checked < 50 {
		t.Errorf("checked %d relative links in %d Markdown files; the documents have more", checked, len(files))
	}
	t.Logf("checked %d relative links in %d Markdown files", checked, len(files))
}

// TestSlug checks slug against anchors GitHub gives headings like these.
func TestSlug(t *testing.T) {
	tests := []struct{ heading, want string }{
		{"Performance", "performance"},
		{"Middleware vs peers (issue 15 item 5)", "middleware-vs-peers-issue-15-item-5"},
		{"Ledger: append (15.1), verify (15.2), storage (15.4)", "ledger-append-151-verify-152-storage-154"},
		{"Ingest vs VictoriaLogs (15.3) and index lag (15.6)", "ingest-vs-victorialogs-153-and-index-lag-156"},
		{"The gateway: `trailguard proxy`", "the-gateway-trailguard-proxy"},
		{"Our extension: `rate_of_rise`", "our-extension-rate_of_rise"},
		{"Deploy assets (`deploy/`)", "deploy-assets-deploy"},
		{"OpenTelemetry logs in: `POST /v1/logs`", "opentelemetry-logs-in-post-v1logs"},
		{"Search & filter", "search--filter"},
		{"Search &amp; filter", "search--filter"},
		{"The `&amp;` entity", "the-amp-entity"},
		{"`go test -race` (all packages)", "go-test--race-all-packages"},
		{"1.5× VictoriaLogs", "15-victorialogs"},
		{"p99 ≤ 1 s", "p99--1-s"},
		{"lag ≥ 2 s", "lag--2-s"},
		{"⅓ of the CPU", "-of-the-cpu"},
		{"½ the bytes, x² faster", "-the-bytes-x-faster"},
		{"Chapter Ⅻ", "chapter-ⅻ"},
		{"v1.2.3 — what's new?", "v123--whats-new"},
		{"Ünïcödé Straße 東京", "ünïcödé-straße-東京"},
		{"*Why* it is __fast__", "why-it-is-fast"},
		{"snake_case outside code", "snake_case-outside-code"},
		{"A [link](docs/ui.md) in a heading", "a-link-in-a-heading"},
		{`Escaped \_underscore\_ and \*star\*`, "escaped-_underscore_-and-star"},
		{`<a id="x"></a>Tagged`, "tagged"},
		{"Twentieth session: the level-2 merge (issue 15 item 6: sustained lag p99 ≤ 1 s met)",
			"twentieth-session-the-level-2-merge-issue-15-item-6-sustained-lag-p99--1-s-met"},
	}
	for _, tt := range tests {
		if got := slug(headingText(tt.heading)); got != tt.want {
			t.Errorf("slug(%q) = %q, want %q", tt.heading, got, tt.want)
		}
	}
}

// TestParseMarkdown checks the anchors and links found in a document:
// repeated headings numbered, explicit anchors, setext headings, and
// nothing from fenced code, code spans or comments.
func TestParseMarkdown(t *testing.T) {
	doc := parseMarkdown(strings.Join([]string{
		"# Benchmarks",
		"Text with a [link](a.md#x) and `[not](code.md)`, an ![image](img/p.png).",
		"## Benchmarks",
		"### Benchmarks",
		"<a id=\"kept-here\"></a>",
		"",
		"Setext heading",
		"==============",
		"```sh",
		"# not a heading",
		"[not a link](fenced.md)",
		"```",
		"<!-- [commented](gone.md) -->",
		"A [link that",
		"wraps](b.md \"title\") and <c d.md> and [ref].",
		"",
		"[ref]: ref.md#y",
	}, "\n"))
	wantAnchors := []string{"benchmarks", "benchmarks-1", "benchmarks-2", "kept-here", "setext-heading"}
	var got []string
	for a := range doc.anchors {
		got = append(got, a)
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(wantAnchors, " ") {
		t.Errorf("anchors %v, want %v", got, wantAnchors)
	}
	var links []string
	for _, l := range doc.links {
		links = append(links, strconv.Itoa(l.line)+":"+l.dest)
	}
	sort.Strings(links)
	want := []string{"15:b.md", "17:ref.md#y", "2:a.md#x", "2:img/p.png"}
	if strings.Join(links, " ") != strings.Join(want, " ") {
		t.Errorf("links %v, want %v", links, want)
	}
}
