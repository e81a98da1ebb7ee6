package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/trailguard/trailguard/event"
	"github.com/trailguard/trailguard/internal/testenv"
)

// hostileDataset adds, to the known dataset, a failed login whose user
// name is markup and a terminal escape: the HTML must show it as text.
func hostileReport(t *testing.T) (*Report, string) {
	d := buildDataset(t, t.TempDir())
	defer d.w.l.Close()
	rep := computeDataset(t, d, PCIDSS)
	rep.Figures.AuthFailures.TopUsers = append(rep.Figures.AuthFailures.TopUsers, Count{`<script>alert(1)</script>"'&` + "\x1b[31m", 1})
	rep.Items[3].Tables[0].Rows = append(rep.Items[3].Tables[0].Rows, []string{`<img src=x onerror=alert(1)>`, "1"})
	_, sum, err := Sign(rep, d.w.signer)
	if err != nil {
		t.Fatal(err)
	}
	return rep, sum
}

// TestHTML: self-contained, escaped, and allowed by its own CSP: the only
// style is the one whose hash the policy names, and there is no script.
func TestHTML(t *testing.T) {
	t.Parallel()
	rep, sum := hostileReport(t)
	page, err := HTML(rep, sum)
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, bad := range []string{"<script", "<img", "<iframe", "javascript:", `src="`, `href="http`, " style="} {
		if strings.Contains(strings.ToLower(s), bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	if !strings.Contains(s, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Error("hostile table cell not shown escaped")
	}
	m := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(s, -1)
	if len(m) != 1 {
		t.Fatalf("%d style elements", len(m))
	}
	h := sha256.Sum256([]byte(m[0][1]))
	if !strings.Contains(HTMLContentSecurityPolicy, "'sha256-"+base64.StdEncoding.EncodeToString(h[:])+"'") {
		t.Error("the style element's hash is not the one the CSP allows")
	}
	if !strings.Contains(s, `http-equiv="Content-Security-Policy"`) {
		t.Error("no CSP in the page itself (opened from disk)")
	}
	for _, want := range []string{sum, "10.2.1.4", "10.2.2", "10.7.2", "<svg", "Failed logins per 1m0s: 55 in all", "tree size 234"} {
		if !strings.Contains(s, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestPDF checks the PDF with Debian's poppler-utils: pdftotext finds the
// requirement numbers, the figures and the JSON's hash; pdftoppm renders
// every page without error.
func TestPDF(t *testing.T) {
	t.Parallel()
	pdftotext := testenv.Tool(t, "pdftotext", "apt-get install poppler-utils")
	pdftoppm := testenv.Tool(t, "pdftoppm", "apt-get install poppler-utils")
	rep, sum := hostileReport(t)
	doc, err := PDF(rep, sum)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "report.pdf")
	if err := os.WriteFile(path, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pdftotext, "-layout", path, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v\n%s", err, out)
	}
	text := string(out)
	flat := strings.Join(strings.Fields(text), " ")
	for _, want := range []string{"10.2.1.1", "10.2.1.4", "10.2.1.7", "10.2.2", "10.3", "10.4.1", "10.5.1", "10.6", "10.7.2",
		"58 events recorded", "203.0.113.66", "6m40s", "tree size 234", "8 met, 5 gaps", sum[:32]} {
		if !strings.Contains(flat, want) {
			t.Errorf("pdftotext output lacks %q", want)
		}
	}
	// Columns are never narrower than their words: shrunk in proportion,
	// "applicable" came out as "applicab" over "le" and "medium" as
	// "medi" over "um".
	for _, word := range []string{"applicable", "present", "authn_login_fail", "203.0.113.66"} {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(word) + `\b`).MatchString(text) {
			t.Errorf("pdftotext output lacks %q on one line: a column too narrow for its words", word)
		}
	}
	pdfinfo := testenv.Tool(t, "pdfinfo", "apt-get install poppler-utils")
	info, err := exec.Command(pdfinfo, path).CombinedOutput()
	pages := 0
	if err == nil {
		if m := regexp.MustCompile(`Pages:\s+(\d+)`).FindSubmatch(info); m != nil {
			for _, c := range m[1] {
				pages = pages*10 + int(c-'0')
			}
		}
	}
	if pages < 2 {
		t.Fatalf("pdfinfo: %d pages (%v)\n%s", pages, err, info)
	}
	if strings.Count(flat, "JSON report SHA-256 "+sum) < pages {
		t.Errorf("the hash is not on each of the %d pages", pages)
	}
	cmd := exec.Command(pdftoppm, "-r", "30", "-png", path, filepath.Join(dir, "page"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("pdftoppm: %v\n%s", err, stderr.String())
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "page*.png"))
	if len(pngs) != pages {
		t.Fatalf("pdftoppm rendered %d of %d pages", len(pngs), pages)
	}
	for _, p := range pngs {
		if fi, err := os.Stat(p); err != nil || fi.Size() < 500 {
			t.Errorf("page %s did not render: %v", p, err)
		}
	}
}

// TestClean: what the PDF's fonts cannot show never breaks the document.
func TestClean(t *testing.T) {
	if got := clean("a\x1b[31m\u202e–…→ü€中"); got != "a?[31m?-...->ü€?" {
		t.Errorf("clean = %q", got)
	}
	_ = event.TimeFormat
	_ = time.Second
}
