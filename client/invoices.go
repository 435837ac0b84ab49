package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/invoice"
)

// InvoiceFilter selects invoices for ListInvoices.
type InvoiceFilter struct {
	Customer, Subscription, Status, TestClock, After string
	Limit                                            int
}

// ListInvoices lists invoices (records, without documents).
func (c *Client) ListInvoices(ctx context.Context, f InvoiceFilter) ([]*abacus.Invoice, error) {
	v := url.Values{}
	for k, s := range map[string]string{"customer": f.Customer, "subscription": f.Subscription, "status": f.Status, "test_clock": f.TestClock, "after": f.After} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if f.Limit > 0 {
		v.Set("limit", fmt.Sprint(f.Limit))
	}
	var out struct {
		Invoices []*abacus.Invoice `json:"invoices"`
	}
	err := c.do(ctx, "GET", withQuery("/v1/invoices", v), nil, &out)
	return out.Invoices, err
}

func asOfQuery(asOf *time.Time) url.Values {
	v := url.Values{}
	if asOf != nil {
		v.Set("as_of", asOf.UTC().Format(time.RFC3339Nano))
	}
	return v
}

// GetInvoice returns an invoice with its document; with asOf, as Abacus
// knew it then.
func (c *Client) GetInvoice(ctx context.Context, id string, asOf *time.Time) (*invoice.View, error) {
	var out invoice.View
	err := c.do(ctx, "GET", withQuery("/v1/invoices/"+url.PathEscape(id), asOfQuery(asOf)), nil, &out)
	return &out, err
}

// InvoiceHTML returns the HTML rendering of an invoice.
func (c *Client) InvoiceHTML(ctx context.Context, id string, asOf *time.Time) ([]byte, error) {
	resp, err := c.send(ctx, "GET", withQuery("/v1/invoices/"+url.PathEscape(id)+"/html", asOfQuery(asOf)), "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp.StatusCode, data)
	}
	return data, nil
}

// PreviewInvoices returns the customer's next invoices as they would be
// finalized now.
func (c *Client) PreviewInvoices(ctx context.Context, customer string) ([]*invoice.View, error) {
	var out struct {
		Invoices []*invoice.View `json:"invoices"`
	}
	err := c.do(ctx, "POST", "/v1/invoices/preview", map[string]string{"customer": customer}, &out)
	return out.Invoices, err
}

// VoidInvoice voids a finalized invoice.
func (c *Client) VoidInvoice(ctx context.Context, id, reason string) (*abacus.Invoice, error) {
	var out abacus.Invoice
	err := c.do(ctx, "POST", "/v1/invoices/"+url.PathEscape(id)+"/void", map[string]string{"reason": reason}, &out)
	return &out, err
}

// CreateCreditNote credits amounts of a finalized invoice.
func (c *Client) CreateCreditNote(ctx context.Context, invoiceID string, in invoice.CreditNoteInput) (*abacus.CreditNote, error) {
	var out abacus.CreditNote
	err := c.do(ctx, "POST", "/v1/invoices/"+url.PathEscape(invoiceID)+"/credit-notes", in, &out)
	return &out, err
}

// RunInvoices runs the invoice scheduler over the tenant now.
func (c *Client) RunInvoices(ctx context.Context) ([]*abacus.Invoice, error) {
	var out struct {
		Finalized []*abacus.Invoice `json:"finalized"`
	}
	err := c.do(ctx, "POST", "/v1/invoices/run", struct{}{}, &out)
	return out.Finalized, err
}

// CreateTestClock creates a test clock at now.
func (c *Client) CreateTestClock(ctx context.Context, id, name string, now time.Time) (*abacus.TestClock, error) {
	var out abacus.TestClock
	err := c.do(ctx, "POST", "/v1/test-clocks", map[string]any{"id": id, "name": name, "now": now.UTC()}, &out)
	return &out, err
}

// AdvanceTestClock moves a test clock to t and returns the invoices that
// finalized on the way.
func (c *Client) AdvanceTestClock(ctx context.Context, id string, t time.Time) (*abacus.TestClock, []*abacus.Invoice, error) {
	var out struct {
		TestClock *abacus.TestClock `json:"test_clock"`
		Finalized []*abacus.Invoice `json:"finalized"`
	}
	err := c.do(ctx, "POST", "/v1/test-clocks/"+url.PathEscape(id)+"/advance", map[string]any{"to": t.UTC()}, &out)
	return out.TestClock, out.Finalized, err
}
