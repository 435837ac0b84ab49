package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/abacus-billing/abacus/client"
)

// TestInvoicesCLI drives `abacus invoices` against a real server: a test
// clock customer on a monthly plan, advanced through a boundary with the
// CLI, then listed, shown, rendered, credited and voided.
func TestInvoicesCLI(t *testing.T) {
	a, getenv := startTestServer(t)
	ctx := context.Background()
	c := client.New(a.URL, a.AdminKey)
	post := func(path, body string) {
		t.Helper()
		req, _ := http.NewRequest("POST", a.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+a.AdminKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
	}
	cli := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if err := run(ctx, append([]string{"invoices"}, args...), getenv, nil, &stdout, &stderr); err != nil {
			t.Fatalf("abacus invoices %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String()
	}
	post("/v1/plans", `{"key":"basic","currency":"EUR","interval":"month","charges":[{"key":"base","type":"recurring","amount":"12.50"}]}`)
	out := cli("clock-create", "--id", "tc", "--now", "2027-01-01T00:00:00Z")
	assertLine(t, out, `test clock tc at 2027-01-01T00:00:00Z`)
	post("/v1/customers", `{"id":"cli-c","test_clock":"tc"}`)
	post("/v1/subscriptions", `{"id":"cli-s","customer":"cli-c","plan":"basic"}`)
	out = cli("clock-advance", "tc", "--to", "2027-02-01T03:00:00Z")
	assertLine(t, out, `test clock tc at 2027-02-01T03:00:00Z; 2 invoices finalized`)
	assertLine(t, out, `  TEST-tc-000002 in_\w+ 12.50 EUR`)
	out = cli("list", "--customer", "cli-c", "--status", "finalized")
	assertLine(t, out, `in_\w+\s+TEST-tc-000001\s+finalized\s+cli-c\s+cli-s\s+2027-01-01T00:00:00Z\s+12.50 EUR`)
	invs, err := c.ListInvoices(ctx, client.InvoiceFilter{Customer: "cli-c", Status: "finalized"})
	if err != nil || len(invs) != 2 {
		t.Fatalf("list: %v %d", err, len(invs))
	}
	id := invs[0].ID
	if invs[0].Number != "TEST-tc-000001" {
		id = invs[1].ID
	}
	out = cli("show", id)
	assertLine(t, out, `Invoice TEST-tc-000001 \(finalized\) `+id+` — customer cli-c, subscription cli-s, issued 2027-01-01T00:00:00Z`)
	assertLine(t, out, `\s+Total EUR\s+12.50`)
	page := filepath.Join(t.TempDir(), "inv.html")
	cli("html", id, "-o", page)
	b, _ := os.ReadFile(page)
	if !strings.Contains(string(b), "TEST-tc-000001") || !strings.Contains(string(b), "12.50") {
		t.Errorf("html page lacks the number or the total:\n%.500s", b)
	}
	out = cli("credit", id, "--reason", "goodwill", "--amount", "2.50")
	assertLine(t, out, `credit note CN-000001 \(cn_\w+\): 2.50 EUR on `+id)
	out = cli("void", id, "--reason", "test run")
	assertLine(t, out, id+` TEST-tc-000001 is void: test run`)
	var stdout, stderr bytes.Buffer
	err = run(ctx, []string{"invoices", "void", id, "--reason", "again"}, getenv, nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "void") {
		t.Errorf("voiding twice: %v", err)
	}
}
