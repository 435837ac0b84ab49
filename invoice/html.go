package invoice

import (
	"encoding/json"
	"html/template"
	"io"
	"time"
)

// RenderHTML writes a readable, printable rendering of an invoice view:
// header, lines with their breakdowns, total, status (a void invoice says
// so across the page), credit notes and, for a draft, the forecast. It
// renders the document as stored or computed; nothing is recomputed here.
func RenderHTML(w io.Writer, v *View) error {
	var doc Document
	if err := json.Unmarshal(v.Document, &doc); err != nil {
		return err
	}
	loc, err := time.LoadLocation(doc.TimeZone)
	if err != nil {
		loc = time.UTC
	}
	return page.Execute(w, struct {
		V   *View
		D   *Document
		Loc *time.Location
	}{v, &doc, loc})
}

var page = template.Must(template.New("invoice").Funcs(template.FuncMap{
	"date": func(loc *time.Location, t time.Time) string { return t.In(loc).Format("2 Jan 2006") },
	"datetime": func(loc *time.Location, t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.In(loc).Format("2 Jan 2006 15:04 MST")
	},
	"ptr": func(t time.Time) *time.Time { return &t },
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{if .D.Number}}Invoice {{.D.Number}}{{else}}Draft invoice{{end}}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#222}
h1{font-size:1.6rem;margin:0}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:1rem 0}
.meta dt{color:#666}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{padding:.35rem .5rem;border-bottom:1px solid #ddd;vertical-align:top;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.sub{color:#666;font-size:.9em}
.bd td{border:0;padding:.1rem .5rem;color:#555;font-size:.9em}
.total td{font-weight:bold;border-top:2px solid #222}
.status{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;background:#eee;text-transform:uppercase;font-size:.8rem;margin-left:.5rem}
.void{position:fixed;top:40%;left:0;right:0;text-align:center;font-size:8rem;color:rgba(200,0,0,.15);transform:rotate(-20deg);pointer-events:none}
@media print{.void{position:absolute}}
</style></head><body>
{{if eq .V.Status "void"}}<div class="void">VOID</div>{{end}}
<h1>{{if .D.Number}}Invoice {{.D.Number}}{{else}}Draft invoice{{end}}<span class="status">{{.V.Status}}</span></h1>
<dl class="meta">
<dt>Customer</dt><dd>{{if .D.CustomerName}}{{.D.CustomerName}} ({{.D.Customer}}){{else}}{{.D.Customer}}{{end}}</dd>
<dt>Subscription</dt><dd>{{.D.Subscription}}</dd>
{{if ne .D.PeriodStart .D.IssueAt}}<dt>Billing period</dt><dd>{{date .Loc .D.PeriodStart}} – {{date .Loc .D.IssueAt}} (in arrears)</dd>{{end}}
{{with .D.NextPeriod}}<dt>Billed in advance</dt><dd>{{date $.Loc .Start}} – {{date $.Loc .End}}</dd>{{end}}
<dt>Issued</dt><dd>{{date .Loc .D.IssueAt}}{{if .D.FinalizedAt}}, finalized {{datetime .Loc .D.FinalizedAt}}{{else}}, to be finalized {{datetime .Loc (ptr .D.DueAt)}}{{end}}</dd>
<dt>Time zone</dt><dd>{{.D.TimeZone}}</dd>
{{if .D.TestClock}}<dt>Test clock</dt><dd>{{.D.TestClock}} (not a real invoice)</dd>{{end}}
{{if .V.VoidedAt}}<dt>Voided</dt><dd>{{datetime .Loc .V.VoidedAt}}: {{.V.VoidReason}}</dd>{{end}}
{{if .V.AsOf}}<dt>As of</dt><dd>{{datetime .Loc .V.AsOf}}</dd>{{end}}
</dl>
<table>
<thead><tr><th>Description</th><th>Period</th><th class="n">Quantity</th><th class="n">Amount ({{.D.Currency}})</th></tr></thead>
<tbody>
{{range .D.Lines}}<tr><td>{{.Description}}{{if .Proration}} <span class="sub">({{.Proration}} of the period)</span>{{end}}</td>
<td>{{if .From}}{{date $.Loc .From.UTC}} – {{date $.Loc .To.UTC}}{{else}}{{date $.Loc .Period.Start}} – {{date $.Loc .Period.End}}{{end}}</td>
<td class="n">{{.Quantity}}</td><td class="n">{{.Amount}}</td></tr>
{{range .Breakdown}}<tr class="bd"><td colspan="2">{{.Kind}}{{if .Tier}} {{.Tier}}{{end}}{{if .UpTo}} (up to {{.UpTo}}){{else if .From}} (over {{.From}}){{end}}{{if .UnitPrice}} × {{.UnitPrice}}{{end}}{{if .FlatPrice}} + {{.FlatPrice}} flat{{end}}</td><td class="n">{{.Quantity}}</td><td class="n">{{.Amount}}</td></tr>
{{end}}{{else}}<tr><td colspan="4">Nothing to bill.</td></tr>{{end}}
<tr class="total"><td colspan="3">Total</td><td class="n">{{.D.Total}}</td></tr>
</tbody></table>
{{with .V.CreditNotes}}<h2>Credit notes</h2><table><thead><tr><th>Number</th><th>Reason</th><th class="n">Amount</th></tr></thead><tbody>
{{range .}}<tr><td>{{.Number}}</td><td>{{.Reason}}</td><td class="n">−{{.Total}}</td></tr>{{end}}</tbody></table>{{end}}
{{with .V.Forecast}}<h2>Forecast for the period end: {{.Total}} {{$.D.Currency}}</h2><p class="sub">{{.Method}}</p>{{end}}
</body></html>
`))
