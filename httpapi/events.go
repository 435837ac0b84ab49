package httpapi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/ingest"
	"github.com/abacus-billing/abacus/internal/bufpool"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func trimJSONErr(err error) string { return strings.TrimPrefix(err.Error(), "json: ") }

// IngestResponse is the answer to POST /v1/events. Every event of the
// request is either counted in Accepted or listed in Rejected (by index):
// events not listed were accepted.
type IngestResponse struct {
	Accepted int                `json:"accepted"`
	Rejected []ingest.Rejection `json:"rejected"`
}

// postEvents validates the request, appends the valid events to the log
// with group commit and answers 202 once they are durable. When every event
// is invalid the answer is 400 with the same body; when the log cannot take
// the events, 503 and none of them is acknowledged.
func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	key := keyFrom(r)
	format, err := ingest.FormatOf(r.Header.Get("Content-Type"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	lim := s.cfg.Limits
	sc := ingestScratch.Get().(*scratch)
	defer sc.release()
	body, err := readBodyInto(sc.body, w, r, lim.MaxBodyBytes)
	if err != nil {
		s.error(w, r, err)
		return
	}
	sc.body = body
	tenant, err := s.tenant(r, key.TenantID)
	if err != nil {
		s.error(w, r, err)
		return
	}
	p := ingest.Parser{TenantID: key.TenantID, Settings: tenant.Settings, Now: s.cfg.Clock.Now().UTC(), Limits: lim}
	if p.CustomerNow, err = s.customerNow(r.Context(), key.TenantID); err != nil {
		s.error(w, r, err)
		return
	}
	events, rejected, err := p.ParseAppend(sc.events, format, body)
	if err != nil {
		s.error(w, r, err)
		return
	}
	sc.events = events
	m := s.cfg.Metrics
	m.Received.Add(float64(len(events) + len(rejected)))
	for _, rj := range rejected {
		m.Rejected.WithLabelValues(rejectedLabel(rj)).Inc()
	}
	resp := IngestResponse{Rejected: rejected}
	if resp.Rejected == nil {
		resp.Rejected = []ingest.Rejection{}
	}
	if len(events) == 0 {
		s.json(w, http.StatusBadRequest, resp)
		return
	}
	if err := s.cfg.Committer.Commit(r.Context(), events); err != nil {
		s.error(w, r, err)
		return
	}
	m.Accepted.Add(float64(len(events)))
	resp.Accepted = len(events)
	s.json(w, http.StatusAccepted, resp)
}

// scratch is an ingest request's body and parsed events, reused by later
// requests: allocating both anew was a seventh of the bytes the server
// allocated under abacus bench, and every byte allocated brings the next
// garbage collection closer. Nothing keeps them past the handler: the
// committer copies the events into log records before Commit returns.
type scratch struct {
	body   []byte
	events []abacus.Event
}

var ingestScratch = sync.Pool{New: func() any { return new(scratch) }}

// The largest buffers kept (a batch of ~1,000 events); bufpool.Keep also
// drops one far larger than the request it served.
const (
	maxKeptBody   = 512 << 10
	maxKeptEvents = 2048
)

// release drops the events' references into the body and their strings,
// and returns the buffers to the pool.
func (sc *scratch) release() {
	clear(sc.events)
	if !bufpool.Keep(cap(sc.body), len(sc.body), maxKeptBody, 64<<10) {
		sc.body = nil
	}
	if !bufpool.Keep(cap(sc.events), len(sc.events), maxKeptEvents, 256) {
		sc.events = nil
	}
	sc.body, sc.events = sc.body[:0], sc.events[:0]
	ingestScratch.Put(sc)
}

// rejectedLabel is the abacus_events_rejected_total label of a rejection:
// the event field at fault, "body" for the event as a whole, or "other" for
// a name the client made up (an unknown field), so that no client can add
// metric series without end.
func rejectedLabel(rj ingest.Rejection) string {
	if rj.Unknown {
		return "other"
	}
	switch rj.Field {
	case "":
		return "body"
	case "id", "type", "customer", "time", "properties", "specversion", "subject", "data":
		return rj.Field
	}
	return "other"
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// EventResponse is GET /v1/events/{id}.
type EventResponse struct {
	ID         string             `json:"id"`
	Type       string             `json:"type"`
	Customer   string             `json:"customer"`
	Time       time.Time          `json:"time"`
	TimeGiven  bool               `json:"time_given"`
	IngestTime time.Time          `json:"ingest_time"`
	Properties json.RawMessage    `json:"properties"`
	Status     abacus.EventStatus `json:"status"`
	Duplicates int64              `json:"duplicates"`
	Conflicts  []ConflictInfo     `json:"conflicts"`
	Counted    []CountedIn        `json:"counted"`
	Skipped    []abacus.Skipped   `json:"skipped"`
	Log        struct {
		Partition int    `json:"partition"`
		Sequence  uint64 `json:"sequence"`
	} `json:"log"`
}

// CountedIn is a meter the event counted in, with its dimension values.
type CountedIn struct {
	Meter string          `json:"meter"`
	Group json.RawMessage `json:"group"`
}

// ConflictInfo is one later event that reused the id with another payload.
type ConflictInfo struct {
	PayloadHash string    `json:"payload_hash"`
	SeenAt      time.Time `json:"seen_at"`
	Partition   int       `json:"partition"`
	Sequence    uint64    `json:"sequence"`
}

func (s *Server) getEvent(w http.ResponseWriter, r *http.Request) {
	e, err := s.cfg.Store.FindEvent(r.Context(), keyFrom(r).TenantID, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	resp := EventResponse{ID: e.ID, Type: e.Type, Customer: e.Customer, Time: e.Time, TimeGiven: e.TimeGiven, IngestTime: e.IngestTime,
		Properties: e.Properties, Status: e.Status(), Duplicates: e.Duplicates, Counted: []CountedIn{}, Skipped: e.Skipped, Conflicts: []ConflictInfo{}}
	for _, c := range e.Counted {
		resp.Counted = append(resp.Counted, CountedIn{Meter: c.Meter, Group: json.RawMessage(cmpOr(c.Group, "{}"))})
	}
	if resp.Skipped == nil {
		resp.Skipped = []abacus.Skipped{}
	}
	for _, c := range e.Conflicts {
		resp.Conflicts = append(resp.Conflicts, ConflictInfo{PayloadHash: hex.EncodeToString(c.Hash[:]), SeenAt: c.SeenAt, Partition: c.Partition, Sequence: c.Sequence})
	}
	resp.Log.Partition, resp.Log.Sequence = e.Partition, e.Sequence
	s.json(w, http.StatusOK, resp)
}
