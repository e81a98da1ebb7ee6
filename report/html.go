package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"strings"
	"time"
)

// css is the report's only style; the Content-Security-Policy allows it by
// its hash, and nothing else (no script, no remote resource).
const css = `body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1f24;margin:2em auto;max-width:70em;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccd;padding-bottom:.2em}
h3{font-size:1em;margin:1.2em 0 .3em}table{border-collapse:collapse;margin:.4em 0 1em;width:100%}
th,td{border:1px solid #d0d7de;padding:.25em .5em;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f3f5f7}td.n{text-align:right;font-variant-numeric:tabular-nums}dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dt{color:#57606a}dd{margin:0}.st{display:inline-block;padding:0 .5em;border-radius:.6em;font-weight:600;font-size:.9em}
.st-met{background:#dafbe1;color:#116329}.st-gap{background:#ffebe9;color:#a40e26}.st-na{background:#eaeef2;color:#57606a}
.req{color:#57606a;font-style:italic}.hash{font-family:ui-monospace,monospace;overflow-wrap:anywhere}.note{color:#57606a;font-size:.9em}
svg{max-width:100%;height:auto}.bar{fill:#cf222e}.axis{stroke:#8c959f}.lbl{font-size:10px;fill:#57606a}`

// HTMLContentSecurityPolicy is sent with (and written into) the HTML form:
// only its own style, by hash; no script at all.
var HTMLContentSecurityPolicy = func() string {
	h := sha256.Sum256([]byte(css))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(h[:]) +
		"'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"ts":            ts,
	"status":        statusClass,
	"num":           num,
	"chart":         chartSVG,
	"isnum":         isNumeric,
	"anchor":        anchor,
	"noCheckpoint":  func() string { return noCheckpoint },
	"ledgerRecords": ledgerRecords,
}).Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{{.CSP}}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.R.Title}}</title><style>{{.CSS}}</style></head>
<body>
<h1>{{.R.Title}}</h1>
<p>Period {{ts .R.From}} to {{ts .R.To}} · generated {{ts .R.Generated}} by {{.R.Generator}}</p>
<dl>
<dt>Checkpoint covered</dt><dd>{{if .R.Checkpoint.Origin}}{{.R.Checkpoint.Origin}}, tree size {{num .R.Checkpoint.TreeSize}}, root hash <span class="hash">{{.R.Checkpoint.RootHash}}</span>, signed {{ts .R.Checkpoint.Time}}{{else}}{{noCheckpoint}}{{end}}</dd>
<dt>Ledger records</dt><dd>{{ledgerRecords .R}}</dd>
<dt>JSON report SHA-256</dt><dd class="hash">{{.Sum}}</dd>
<dt>Signed with</dt><dd class="hash">{{.R.State.Key}}</dd>
</dl>
<h2>Summary</h2>
<p><span class="st st-met">{{.R.Summary.Met}} met</span> <span class="st st-gap">{{.R.Summary.Gaps}} gap{{if ne .R.Summary.Gaps 1}}s{{end}}</span> <span class="st st-na">{{.R.Summary.NotAssessable}} not assessable</span> <span class="st st-na">{{.R.Summary.NotApplicable}} not applicable</span></p>
<table><tbody>{{range .R.Summary.Totals}}<tr><th scope="row">{{.Label}}</th><td class="n">{{.Value}}</td></tr>{{end}}</tbody></table>
{{if .R.Summary.TopFindings}}<h3>Top findings</h3><ul>{{range .R.Summary.TopFindings}}<li>{{.}}</li>{{end}}</ul>{{end}}
<table><thead><tr><th>Requirement</th><th>Status</th><th>Evidence</th></tr></thead><tbody>
{{range .R.Items}}<tr><td><a href="#{{anchor .ID}}">{{.ID}}</a> {{.Title}}</td><td><span class="st st-{{status .Status}}">{{.Status}}</span></td><td>{{.Evidence}}</td></tr>{{end}}
</tbody></table>
<h2>Authentication failures over time</h2>
{{chart .R}}
{{range .R.Items}}
<h2 id="{{anchor .ID}}">{{.ID}} {{.Title}} <span class="st st-{{status .Status}}">{{.Status}}</span></h2>
<p class="req">{{.Requirement}}</p>
<p>{{.Evidence}}</p>
{{if .Facts}}<table><tbody>{{range .Facts}}<tr><th scope="row">{{.Label}}</th><td>{{.Value}}</td></tr>{{end}}</tbody></table>{{end}}
{{range .Tables}}<h3>{{.Title}}</h3>
{{if .Rows}}<table><thead><tr>{{range .Columns}}<th>{{.}}</th>{{end}}</tr></thead><tbody>
{{range .Rows}}<tr>{{range .}}<td{{if isnum .}} class="n"{{end}}>{{.}}</td>{{end}}</tr>{{end}}
</tbody></table>{{if .More}}<p class="note">… and {{.More}} more (the JSON form has the figures).</p>{{end}}{{else}}<p class="note">None.</p>{{end}}
{{end}}
{{range .Notes}}<p class="note">{{.}}</p>{{end}}
{{end}}
<h2>How to check this report</h2>
<p>The JSON form is the source of this page; its report bytes hash to <span class="hash">{{.Sum}}</span> and are signed with the collector's key.
<code>trailguard verify-report report.json --key signer.pub --data DIR</code> checks the signature and computes every figure again from the ledger.</p>
</body></html>
`))

func statusClass(s string) string {
	switch s {
	case StatusMet:
		return "met"
	case StatusGap:
		return "gap"
	}
	return "na"
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && c != ',' && c != '.' && c != '%' {
			return false
		}
	}
	return true
}

// HTML renders the report as one self-contained page: escaped, with a
// Content-Security-Policy that allows no script, and the JSON report's
// hash.
func HTML(r *Report, sum string) ([]byte, error) {
	var b bytes.Buffer
	err := htmlTmpl.Execute(&b, map[string]any{"R": r, "Sum": sum, "CSP": HTMLContentSecurityPolicy, "CSS": template.CSS(css)})
	if err != nil {
		return nil, fmt.Errorf("report: html: %w", err)
	}
	return b.Bytes(), nil
}

// chartSVG draws the failed logins per interval as bars.
func chartSVG(r *Report) template.HTML {
	af := r.Figures.AuthFailures
	if len(af.Buckets) == 0 {
		return template.HTML(`<p class="note">No period.</p>`)
	}
	const w, h, left, bottom = 720.0, 200.0, 40.0, 24.0
	var peak uint64 = 1
	for _, v := range af.Buckets {
		peak = max(peak, v)
	}
	bw := (w - left) / float64(len(af.Buckets))
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" role="img" aria-label="Failed logins per %s: %s in all">`,
		w, h, time.Duration(af.Interval), num(af.Total))
	fmt.Fprintf(&b, `<line class="axis" x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f"/>`, left, h-bottom, w, h-bottom)
	fmt.Fprintf(&b, `<text class="lbl" x="0" y="12">%s</text><text class="lbl" x="0" y="%.0f">0</text>`, num(peak), h-bottom)
	for i, v := range af.Buckets {
		if v == 0 {
			continue
		}
		bh := float64(v) / float64(peak) * (h - bottom - 16)
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %s</title></rect>`,
			left+float64(i)*bw+0.5, h-bottom-bh, max(bw-1, 0.5), bh,
			template.HTMLEscapeString(ts(af.Start.Add(time.Duration(i)*time.Duration(af.Interval)))), num(v))
	}
	fmt.Fprintf(&b, `<text class="lbl" x="%.0f" y="%.0f">%s</text>`, left, h-6, template.HTMLEscapeString(ts(af.Start)))
	fmt.Fprintf(&b, `<text class="lbl" x="%.0f" y="%.0f" text-anchor="end">%s (one bar per %s)</text>`, w, h-6,
		template.HTMLEscapeString(ts(af.Start.Add(time.Duration(len(af.Buckets))*time.Duration(af.Interval)))), time.Duration(af.Interval))
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every value in it is a number or escaped above
}

// anchor makes an element id of a requirement number.
func anchor(id string) string {
	b := []byte("r-")
	for _, c := range []byte(id) {
		if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			b = append(b, c)
		} else {
			b = append(b, '-')
		}
	}
	return string(b)
}
