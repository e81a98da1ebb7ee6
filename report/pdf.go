package report

import (
	"bytes"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/go-pdf/fpdf"
)

// PDF renders the report as an A4 document: summary, chart, every item
// with its facts and tables, and on every page the JSON report's hash.
func PDF(r *Report, sum string) ([]byte, error) {
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCompression(true)
	pdf.SetTitle(r.Title, true)
	pdf.SetCreator(r.Generator, true)
	pdf.SetCreationDate(r.Generated)
	pdf.SetModificationDate(r.Generated)
	pdf.SetMargins(15, 15, 15)
	pdf.SetAutoPageBreak(true, 18)
	pdf.AliasNbPages("{nb}")
	tr := pdf.UnicodeTranslatorFromDescriptor("") // cp1252, the core fonts' encoding
	text := func(s string) string { return tr(clean(s)) }
	pdf.SetFooterFunc(func() {
		pdf.SetY(-13)
		pdf.SetFont("Helvetica", "", 7)
		pdf.SetTextColor(90, 90, 90)
		pdf.CellFormat(0, 4, text(fmt.Sprintf("JSON report SHA-256 %s   ·   page %d of {nb}", sum, pdf.PageNo())), "", 0, "C", false, 0, "")
	})
	pdf.AddPage()
	const width = 180.0
	h1 := func(s string) {
		pdf.SetFont("Helvetica", "B", 15)
		pdf.SetTextColor(0, 0, 0)
		pdf.MultiCell(width, 7, text(s), "", "L", false)
		pdf.Ln(1)
	}
	h2 := func(s string) {
		if pdf.GetY() > 250 {
			pdf.AddPage()
		}
		pdf.Ln(3)
		pdf.SetFont("Helvetica", "B", 12)
		pdf.SetTextColor(0, 0, 0)
		pdf.MultiCell(width, 6, text(s), "B", "L", false)
		pdf.Ln(1)
	}
	para := func(s string, style string, size float64, gray int) {
		pdf.SetFont("Helvetica", style, size)
		pdf.SetTextColor(gray, gray, gray)
		pdf.MultiCell(width, size*0.48, text(s), "", "L", false)
		pdf.Ln(1)
	}
	facts := func(fs []Fact) {
		pdf.SetFont("Helvetica", "", 9)
		tableRows(pdf, text, []float64{70, 110}, nil, factRows(fs))
		pdf.Ln(1)
	}

	h1(r.Title)
	para(fmt.Sprintf("Period %s to %s. Generated %s by %s.", ts(r.From), ts(r.To), ts(r.Generated), r.Generator), "", 9, 60)
	facts([]Fact{
		{"Checkpoint covered", checkpointCovered(r)},
		{"Ledger records", ledgerRecords(r)},
		{"JSON report SHA-256", sum},
		{"Signed with", r.State.Key},
	})
	h2("Summary")
	para(fmt.Sprintf("%d met, %s, %d not assessable from logs, %d not applicable.", r.Summary.Met, plural(uint64(r.Summary.Gaps), "gap", "gaps"), r.Summary.NotAssessable, r.Summary.NotApplicable), "B", 10, 0)
	facts(r.Summary.Totals)
	if len(r.Summary.TopFindings) > 0 {
		para("Top findings", "B", 10, 0)
		for _, f := range r.Summary.TopFindings {
			para("- "+f, "", 9, 0)
		}
	}
	var rows [][]string
	for _, it := range r.Items {
		rows = append(rows, []string{it.ID, it.Title, it.Status})
	}
	pdf.SetFont("Helvetica", "", 9)
	tableRows(pdf, text, []float64{35, 115, 30}, []string{"Requirement", "Title", "Status"}, rows)

	if pdf.GetY() > 190 { // the chart and its heading stay together
		pdf.AddPage()
	}
	h2("Authentication failures over time")
	chartPDF(pdf, text, r)

	for _, it := range r.Items {
		h2(it.ID + "  " + it.Title + "  [" + it.Status + "]")
		para(it.Requirement, "I", 8.5, 90)
		para(it.Evidence, "", 9.5, 0)
		if len(it.Facts) > 0 {
			facts(it.Facts)
		}
		for _, t := range it.Tables {
			para(t.Title, "B", 9, 0)
			if len(t.Rows) == 0 {
				para("None.", "", 8.5, 90)
				continue
			}
			pdf.SetFont("Helvetica", "", 8)
			tableRows(pdf, text, colWidths(pdf, text, t, width), t.Columns, t.Rows)
			if t.More > 0 {
				para(fmt.Sprintf("... and %d more (the JSON form has the figures).", t.More), "", 8, 90)
			}
			pdf.Ln(1)
		}
		for _, n := range it.Notes {
			para(n, "", 8, 90)
		}
	}
	h2("How to check this report")
	para(fmt.Sprintf("The JSON form is the source of this document; its report bytes hash to %s and are signed with the collector's key. "+
		"`trailguard verify-report report.json --key signer.pub --data DIR` checks the signature and computes every figure again from the ledger.", sum), "", 9, 0)

	var b bytes.Buffer
	if err := pdf.Output(&b); err != nil {
		return nil, fmt.Errorf("report: pdf: %w", err)
	}
	return b.Bytes(), nil
}

func factRows(fs []Fact) [][]string {
	rows := make([][]string, len(fs))
	for i, f := range fs {
		rows[i] = []string{f.Label, f.Value}
	}
	return rows
}

// colWidths shares the width among columns by the length of their
// content, within bounds. A column is never made narrower than its
// widest word (or its widest short cell, such as "100 %"), so that
// shrinking a table to the page breaks long cells between words rather
// than "medium" into "medi" and "um"; the room beyond those minimums
// goes to the columns whose content wants more.
func colWidths(pdf *fpdf.Fpdf, text func(string) string, t Table, width float64) []float64 {
	n := len(t.Columns)
	need := make([]float64, n)
	least := make([]float64, n)
	// A cell's text has 2 mm less than its column (tableRows), and
	// SplitText takes the cell margins (1 mm each side) off that again.
	const pad = 4.5
	fit := func(i int, s string, scale float64) {
		w := pdf.GetStringWidth(s)*scale + pad
		need[i] = max(need[i], min(w, width*0.6))
		if len([]rune(s)) <= 12 {
			least[i] = max(least[i], min(w, width*0.6))
			return
		}
		for _, word := range strings.Fields(s) {
			least[i] = max(least[i], min(pdf.GetStringWidth(word)*scale+pad, width*0.6))
		}
	}
	for i, c := range t.Columns {
		fit(i, text(c), 1.15) // headers are bold
	}
	for _, row := range t.Rows {
		for i := 0; i < n && i < len(row); i++ {
			fit(i, text(row[i]), 1)
		}
	}
	total, floor := 0.0, 0.0
	for i := range need {
		total += need[i]
		floor += least[i]
	}
	out := make([]float64, n)
	switch {
	case total <= width || floor >= width:
		// Everything fits (widen in proportion), or not even the words
		// do (shrink in proportion: the words must break somewhere).
		base := need
		sum := total
		if total > width {
			base, sum = least, floor
		}
		for i := range base {
			out[i] = base[i] * width / sum
		}
	default:
		// Each column gets its words, and the rest of the width in
		// proportion to what it wants beyond them.
		for i := range need {
			out[i] = least[i] + (need[i]-least[i])*(width-floor)/(total-floor)
		}
	}
	return out
}

// tableRows draws rows with wrapped cells, starting a new page (and
// repeating the header) when a row does not fit.
func tableRows(pdf *fpdf.Fpdf, text func(string) string, widths []float64, header []string, rows [][]string) {
	fontSize, unit := pdf.GetFontSize() // points, and the same in mm
	lineH := unit * 1.25
	_, pageH := pdf.GetPageSize()
	draw := func(cells []string, bold bool) {
		style := ""
		if bold {
			style = "B"
		}
		pdf.SetFont("Helvetica", style, fontSize)
		pdf.SetTextColor(0, 0, 0)
		lines := make([][]string, len(widths))
		height := 1
		for i := range widths {
			s := ""
			if i < len(cells) {
				s = text(cells[i])
			}
			lines[i] = pdf.SplitText(s, widths[i]-2)
			if len(lines[i]) == 0 {
				lines[i] = []string{""}
			}
			if len(lines[i]) > 12 {
				lines[i] = append(lines[i][:11], "...")
			}
			height = max(height, len(lines[i]))
		}
		h := float64(height)*lineH + 1.5
		if pdf.GetY()+h > pageH-20 {
			pdf.AddPage()
			if header != nil && !bold {
				pdf.SetFont("Helvetica", "B", fontSize)
				drawRow(pdf, widths, header, lineH, true)
				pdf.SetFont("Helvetica", "", fontSize)
			}
		}
		drawRowLines(pdf, widths, lines, lineH, h, bold)
	}
	if header != nil {
		draw(header, true)
	}
	for _, r := range rows {
		draw(r, false)
	}
	pdf.SetFont("Helvetica", "", fontSize)
}

func drawRow(pdf *fpdf.Fpdf, widths []float64, cells []string, lineH float64, fill bool) {
	lines := make([][]string, len(widths))
	for i := range widths {
		if i < len(cells) {
			lines[i] = pdf.SplitText(cells[i], widths[i]-2)
		}
	}
	drawRowLines(pdf, widths, lines, lineH, lineH+1.5, fill)
}

func drawRowLines(pdf *fpdf.Fpdf, widths []float64, lines [][]string, lineH, h float64, fill bool) {
	x0, y0 := pdf.GetX(), pdf.GetY()
	x := x0
	pdf.SetDrawColor(200, 205, 210)
	if fill {
		pdf.SetFillColor(238, 241, 244)
	}
	for i, w := range widths {
		style := "D"
		if fill {
			style = "FD"
		}
		pdf.Rect(x, y0, w, h, style)
		for k, ln := range lines[i] {
			pdf.SetXY(x+1, y0+0.75+float64(k)*lineH)
			pdf.CellFormat(w-2, lineH, ln, "", 0, "L", false, 0, "")
		}
		x += w
	}
	pdf.SetXY(x0, y0+h)
}

// chartPDF draws the failed logins per interval as bars.
func chartPDF(pdf *fpdf.Fpdf, text func(string) string, r *Report) {
	af := r.Figures.AuthFailures
	if pdf.GetY() > 200 {
		pdf.AddPage()
	}
	x0, y0 := 25.0, pdf.GetY()+2
	w, h := 165.0, 50.0
	var peak uint64 = 1
	for _, v := range af.Buckets {
		peak = max(peak, v)
	}
	pdf.SetDrawColor(140, 149, 159)
	pdf.Line(x0, y0+h, x0+w, y0+h)
	pdf.Line(x0, y0, x0, y0+h)
	pdf.SetFont("Helvetica", "", 7)
	pdf.SetTextColor(90, 90, 90)
	pdf.SetXY(10, y0-1)
	pdf.CellFormat(14, 3, num(peak), "", 0, "R", false, 0, "")
	pdf.SetXY(10, y0+h-2)
	pdf.CellFormat(14, 3, "0", "", 0, "R", false, 0, "")
	if n := len(af.Buckets); n > 0 {
		bw := w / float64(n)
		pdf.SetFillColor(207, 34, 46)
		for i, v := range af.Buckets {
			if v == 0 {
				continue
			}
			bh := float64(v) / float64(peak) * h
			pdf.Rect(x0+float64(i)*bw+0.2, y0+h-bh, max(bw-0.4, 0.2), bh, "F")
		}
	}
	pdf.SetXY(x0, y0+h+1)
	end := af.Start.Add(time.Duration(len(af.Buckets)) * time.Duration(af.Interval))
	pdf.CellFormat(w/2, 3, text(ts(af.Start)), "", 0, "L", false, 0, "")
	pdf.CellFormat(w/2, 3, text(ts(end)), "", 1, "R", false, 0, "")
	pdf.SetXY(15, y0+h+5)
	pdf.SetFont("Helvetica", "", 8.5)
	pdf.SetTextColor(0, 0, 0)
	pdf.MultiCell(180, 4, text(fmt.Sprintf("Failed logins (authn_login_fail): %s in all, one bar per %s; top sources: %s.",
		num(af.Total), time.Duration(af.Interval), joinCounts(af.TopSources, 5))), "", "L", false)
}

// clean replaces what cannot be shown: control characters, and
// characters outside the core fonts' code page become "?".
func clean(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch {
		case c == '\n' || c == '\t':
			b.WriteByte(' ')
		case unicode.IsControl(c) || c == unicode.ReplacementChar:
			b.WriteByte('?')
		case c == '–' || c == '—':
			b.WriteByte('-')
		case c == '…':
			b.WriteString("...")
		case c == '→':
			b.WriteString("->")
		case c == '·':
			b.WriteRune(c)
		case c > 0xff && !strings.ContainsRune("€‚ƒ„†‡ˆ‰Š‹ŒŽ‘’“”•˜™š›œžŸ", c):
			b.WriteByte('?')
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

// noCheckpoint is what a report says of a period no checkpoint covers: it
// ended before the ledger's first checkpoint, so no record is in it.
const noCheckpoint = "none: no checkpoint was signed before the period's end (the trail began after it), so the report covers no record"

func checkpointCovered(r *Report) string {
	if r.Checkpoint.Origin == "" {
		return noCheckpoint
	}
	return fmt.Sprintf("%s, tree size %s, root hash %s, signed %s", r.Checkpoint.Origin, num(r.Checkpoint.TreeSize), r.Checkpoint.RootHash, ts(r.Checkpoint.Time))
}
