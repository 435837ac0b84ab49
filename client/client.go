// Package client is a Go client for the Abacus JSON API (httpapi). It reuses
// the server's own request and response types, so the two cannot drift.
//
// Every API error comes back as a *Error carrying the HTTP status and the
// error code of the response body. Ingest retries on 429, 503 and network
// errors: events carry producer-chosen ids, so a resent batch is absorbed by
// deduplication and retrying is always safe.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/httpapi"
	"github.com/abacus-billing/abacus/usage"
)

// Error is an error answered by the API.
type Error struct {
	Status    int    // HTTP status
	Code      string // abacus error code (abacus.EINVALID, ...)
	Message   string
	RequestID string // set for internal errors: quote it to the operator
}

func (e *Error) Error() string {
	s := fmt.Sprintf("abacus: %d %s: %s", e.Status, e.Code, e.Message)
	if e.RequestID != "" {
		s += " (request " + e.RequestID + ")"
	}
	return s
}

// Event is one usage event to send. Properties is anything that marshals to
// a JSON object: a map[string]any, a struct, or a json.RawMessage (sent
// as is). A nil Time lets the server use its receive time.
type Event struct {
	ID         string     `json:"id"`
	Type       string     `json:"type"`
	Customer   string     `json:"customer"`
	Time       *time.Time `json:"time,omitempty"`
	Properties any        `json:"properties,omitempty"`
}

// IngestResult is the answer to an ingest request: events not listed in
// Rejected (by index in the request) were accepted.
type IngestResult = httpapi.IngestResponse

// EventInfo is what the server knows about one event id.
type EventInfo = httpapi.EventResponse

// UsageResult is the answer to a usage query.
type UsageResult = usage.Result

// APIKey is a created API key; Secret is shown only once.
type APIKey = httpapi.APIKeyResponse

// Client talks to one Abacus server with one API key. It is safe for
// concurrent use.
type Client struct {
	base    string
	key     string
	http    *http.Client
	retries int
	backoff time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: one with a 60 s timeout and
// enough idle connections per host for concurrent batch senders).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithRetries sets how many times Ingest and IngestRaw retry a request
// that failed with 429, 503 or a network error (default 5; 0 disables).
func WithRetries(n int) Option { return func(c *Client) { c.retries = n } }

// WithBackoff sets the first retry delay (default 100 ms); it doubles on
// each retry, with jitter, up to 5 s, and a Retry-After header wins.
func WithBackoff(d time.Duration) Option { return func(c *Client) { c.backoff = d } }

// New returns a client for the server at baseURL (e.g. http://127.0.0.1:8080)
// authenticating with key.
func New(baseURL, key string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), key: key, retries: 5, backoff: 100 * time.Millisecond}
	for _, o := range opts {
		o(c)
	}
	if c.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		// The default of 2 idle connections per host makes concurrent
		// senders open and close a connection per request.
		tr.MaxIdleConnsPerHost = 256
		// A request body that does not fit the write buffer (4 KiB by
		// default; a batch of 100 events is ~25 KiB) is copied to the
		// socket through a buffer allocated per request, in a write of its
		// own. With 64 KiB, headers and body leave in one write.
		tr.WriteBufferSize = 64 << 10
		c.http = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	}
	return c
}

// Ingest sends events as one JSON array. Errors: *Error with 400 when every
// event was invalid (the IngestResult is returned too, listing why), 413
// over a limit, 401/403 for the key; others after the retries run out.
func (c *Client) Ingest(ctx context.Context, events []Event) (*IngestResult, error) {
	body, err := json.Marshal(events)
	if err != nil {
		return nil, fmt.Errorf("encode events: %w", err)
	}
	return c.IngestRaw(ctx, "application/json", body)
}

// IngestRaw sends a body already encoded as contentType (application/json,
// application/x-ndjson, application/cloudevents-batch+json, ...), retrying
// like Ingest.
func (c *Client) IngestRaw(ctx context.Context, contentType string, body []byte) (*IngestResult, error) {
	var res IngestResult
	for attempt := 0; ; attempt++ {
		status, wait, err := c.ingestOnce(ctx, contentType, body, &res)
		if err == nil {
			return &res, nil
		}
		if status == http.StatusBadRequest && res.Rejected != nil {
			// Every event was invalid: the body says why, per event.
			return &res, err
		}
		if !retryable(status, err) || attempt >= c.retries || ctx.Err() != nil {
			return nil, err
		}
		if wait == 0 {
			d := c.backoff << min(attempt, 6)
			wait = min(d/2+rand.N(d/2+1), 5*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("ingest: %w (after %v)", ctx.Err(), err)
		}
	}
}

// ingestOnce returns the status (0 for a network error) and the server's
// Retry-After, if any.
func (c *Client) ingestOnce(ctx context.Context, contentType string, body []byte, res *IngestResult) (int, time.Duration, error) {
	*res = IngestResult{}
	resp, err := c.send(ctx, http.MethodPost, "/v1/events", contentType, body)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("POST /v1/events: reading response: %w", err)
	}
	var wait time.Duration
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		wait = time.Duration(s) * time.Second
	}
	if resp.StatusCode == http.StatusAccepted {
		if err := json.Unmarshal(data, res); err != nil {
			return resp.StatusCode, 0, fmt.Errorf("POST /v1/events: decoding response: %w", err)
		}
		return resp.StatusCode, 0, nil
	}
	if resp.StatusCode == http.StatusBadRequest && json.Unmarshal(data, res) == nil && res.Rejected != nil {
		return resp.StatusCode, 0, &Error{Status: resp.StatusCode, Code: abacus.EINVALID,
			Message: fmt.Sprintf("all %d events were rejected", len(res.Rejected))}
	}
	return resp.StatusCode, wait, apiError(resp.StatusCode, data)
}

func retryable(status int, err error) bool {
	if status == 0 {
		// A network error: the request may or may not have reached the
		// server, and resending is safe for events.
		return err != nil
	}
	return status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests ||
		status == http.StatusBadGateway || status == http.StatusGatewayTimeout
}

// CreateCustomer creates c and returns it as stored. Errors: EINVALID,
// ECONFLICT (the id exists).
func (c *Client) CreateCustomer(ctx context.Context, cust abacus.Customer) (*abacus.Customer, error) {
	var out abacus.Customer
	return &out, c.do(ctx, http.MethodPost, "/v1/customers", cust, &out)
}

// GetCustomer returns a customer. Errors: ENOTFOUND.
func (c *Client) GetCustomer(ctx context.Context, id string) (*abacus.Customer, error) {
	var out abacus.Customer
	return &out, c.do(ctx, http.MethodGet, "/v1/customers/"+url.PathEscape(id), nil, &out)
}

// ListCustomers returns up to limit customers (1..1000; 0 = server
// default) with ids after the given one, in id order.
func (c *Client) ListCustomers(ctx context.Context, after string, limit int) ([]*abacus.Customer, error) {
	v := url.Values{}
	if after != "" {
		v.Set("after", after)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Customers []*abacus.Customer `json:"customers"`
	}
	return out.Customers, c.do(ctx, http.MethodGet, withQuery("/v1/customers", v), nil, &out)
}

// CreateMeter creates m. Errors: EINVALID, ECONFLICT (the key exists).
func (c *Client) CreateMeter(ctx context.Context, m abacus.Meter) (*abacus.Meter, error) {
	var out abacus.Meter
	return &out, c.do(ctx, http.MethodPost, "/v1/meters", m, &out)
}

// ListMeters returns every meter of the tenant.
func (c *Client) ListMeters(ctx context.Context) ([]*abacus.Meter, error) {
	var out struct {
		Meters []*abacus.Meter `json:"meters"`
	}
	return out.Meters, c.do(ctx, http.MethodGet, "/v1/meters", nil, &out)
}

// GetEvent returns what the server knows about event id: its status
// (counted, duplicates, conflicts) once the aggregator has seen it.
// Errors: ENOTFOUND (not aggregated yet, or never received).
func (c *Client) GetEvent(ctx context.Context, id string) (*EventInfo, error) {
	var out EventInfo
	return &out, c.do(ctx, http.MethodGet, "/v1/events/"+url.PathEscape(id), nil, &out)
}

// UsageQuery is a usage query; see GET /v1/usage. Zero From/To take the
// server defaults (To: now rounded up to the minute).
type UsageQuery struct {
	Meter    string
	Customer string
	From, To time.Time
	Window   string // minute, hour, day, month or none
	TimeZone string
	GroupBy  []string
	Filter   map[string][]string // dimension → any of these values
}

// Values encodes q as the query string of GET /v1/usage.
func (q UsageQuery) Values() url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("meter", q.Meter)
	set("customer", q.Customer)
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339))
	}
	set("window", q.Window)
	set("tz", q.TimeZone)
	if len(q.GroupBy) > 0 {
		v.Set("group_by", strings.Join(q.GroupBy, ","))
	}
	for dim, vals := range q.Filter {
		v["filter["+dim+"]"] = vals
	}
	return v
}

// Usage runs a usage query. Errors: EINVALID (naming the parameter),
// ENOTFOUND (meter).
func (c *Client) Usage(ctx context.Context, q UsageQuery) (*UsageResult, error) {
	var out UsageResult
	return &out, c.do(ctx, http.MethodGet, withQuery("/v1/usage", q.Values()), nil, &out)
}

// CreateAPIKey creates a key with the given scopes; the secret is in the
// result, shown only this once. Errors: EINVALID, EFORBIDDEN.
func (c *Client) CreateAPIKey(ctx context.Context, name string, scopes ...abacus.Scope) (*APIKey, error) {
	var out APIKey
	return &out, c.do(ctx, http.MethodPost, "/v1/api-keys", httpapi.APIKeyRequest{Name: name, Scopes: scopes}, &out)
}

// Ready returns nil when the server's log and store answer, else an *Error
// with status 503 naming the failing checks.
func (c *Client) Ready(ctx context.Context) error {
	resp, err := c.send(ctx, http.MethodGet, "/readyz", "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return &Error{Status: resp.StatusCode, Code: abacus.EUNAVAILABLE, Message: strings.TrimSpace(string(data))}
}

func withQuery(path string, v url.Values) string {
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// do sends in as JSON (unless nil) and decodes a 2xx answer into out.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
	}
	resp, err := c.send(ctx, method, path, "application/json", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading response: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return apiError(resp.StatusCode, data)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decoding response: %w", method, path, err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path, contentType string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if body != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return resp, nil
}

// apiError turns an error response into *Error; a body that is not an
// ErrorBody (a proxy's HTML page) still yields the status.
func apiError(status int, data []byte) error {
	var b httpapi.ErrorBody
	if err := json.Unmarshal(data, &b); err != nil || b.Error.Code == "" {
		msg := strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200] + "…"
		}
		return &Error{Status: status, Code: codeOf(status), Message: cmpOr(msg, http.StatusText(status))}
	}
	return &Error{Status: status, Code: b.Error.Code, Message: b.Error.Message, RequestID: b.Error.RequestID}
}

// codeOf guesses a code for responses that did not come from Abacus.
func codeOf(status int) string {
	switch status {
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return abacus.EUNAVAILABLE
	case http.StatusTooManyRequests:
		return abacus.ERATELIMIT
	case http.StatusNotFound:
		return abacus.ENOTFOUND
	}
	return abacus.EINTERNAL
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// IsCode reports whether err is an *Error with the given code.
func IsCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
