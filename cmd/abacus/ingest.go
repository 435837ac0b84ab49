package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/abacus-billing/abacus/client"
)

// ingestItem is one event of the input file, kept with its position so
// that a rejection can point back to it.
type ingestItem struct {
	index int    // 0-based position of the event in the input
	line  int    // 1-based line in the input (0: unknown, JSON arrays)
	raw   []byte // the event's JSON on one line
}

// ingestReject is one line of the rejects file.
type ingestReject struct {
	Index  int    `json:"index"`
	Line   int    `json:"line,omitempty"`
	ID     string `json:"id,omitempty"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
	Raw    string `json:"raw"`
}

// Batches are sent as NDJSON whatever the input format: one line per event
// keeps the server's per-event indexes aligned with ours, and one invalid
// event rejects only itself.
const ndjsonType = "application/x-ndjson"

// maxBatchBytes keeps a batch well under the server's default 8 MiB body
// limit even when events are large.
const maxBatchBytes = 4 << 20

// runIngest: abacus ingest [flags] FILE|-
func runIngest(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("abacus ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: abacus ingest [flags] FILE|-\n\nSends events from NDJSON, a JSON array or CSV (header id,type,customer,time; other columns become properties).")
		fs.PrintDefaults()
	}
	url, key := serverFlags(fs, getenv)
	format := fs.String("format", "auto", "input format: auto, ndjson, json or csv")
	batch := fs.Int("batch", 1000, "events per request")
	concurrency := fs.Int("concurrency", 4, "concurrent requests")
	rejectsPath := fs.String("rejects", "", "write rejected events as NDJSON here (default rejects.ndjson, only if any)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("ingest takes one FILE (or - for stdin), got %d arguments", fs.NArg())
	}
	if *batch < 1 || *concurrency < 1 {
		return fmt.Errorf("--batch and --concurrency must be at least 1")
	}
	k, err := resolveKey(*key, getenv)
	if err != nil {
		return err
	}
	name := fs.Arg(0)
	in := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	br := bufio.NewReaderSize(in, 1<<20)
	fmtName, err := detectFormat(*format, name, br)
	if err != nil {
		return err
	}

	c := client.New(*url, k)
	s := &ingestState{start: time.Now()}
	stopProgress := s.progress(stderr)
	batches := make(chan []ingestItem, *concurrency)
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Go(func() {
			for b := range batches {
				s.send(ctx, c, b)
			}
		})
	}
	readErr := readEvents(ctx, fmtName, br, *batch, batches, s.addLocal)
	close(batches)
	wg.Wait()
	stopProgress()

	path := cmp.Or(*rejectsPath, "rejects.ndjson")
	if len(s.rejects) > 0 || *rejectsPath != "" {
		if err := writeRejects(path, s.rejects); err != nil {
			return err
		}
	}
	s.summary(stdout, path)
	var errs []error
	if readErr != nil {
		errs = append(errs, fmt.Errorf("reading %s: %w", name, readErr))
	}
	if s.failedBatches > 0 {
		errs = append(errs, fmt.Errorf("%d requests (%d events) failed after retries; first error: %v", s.failedBatches, s.failedEvents, s.firstErr))
	}
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("interrupted: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// serverFlags declares --url and --key with their environment defaults.
func serverFlags(fs *flag.FlagSet, getenv func(string) string) (url, key *string) {
	url = fs.String("url", cmp.Or(getenv("ABACUS_URL"), "http://127.0.0.1:8080"), "server URL (env ABACUS_URL)")
	key = fs.String("key", getenv("ABACUS_KEY"), "API key (env ABACUS_KEY; default: the admin-key file of ABACUS_DATA or ./abacus-data)")
	return url, key
}

// resolveKey falls back to the admin key a local server wrote on first
// start, so that "abacus serve" then "abacus ingest" works with no setup.
func resolveKey(key string, getenv func(string) string) (string, error) {
	if key != "" {
		return key, nil
	}
	path := filepath.Join(cmp.Or(getenv("ABACUS_DATA"), "./abacus-data"), "admin-key")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no API key: set ABACUS_KEY or --key (and %s is unreadable: %v)", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// detectFormat resolves "auto" from the file extension, else from the
// first non-space byte.
func detectFormat(format, name string, br *bufio.Reader) (string, error) {
	switch format {
	case "ndjson", "json", "csv":
		return format, nil
	case "auto":
	default:
		return "", fmt.Errorf("--format must be auto, ndjson, json or csv; got %q", format)
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".ndjson", ".jsonl":
		return "ndjson", nil
	case ".csv":
		return "csv", nil
	}
	for i := 1; ; i++ {
		b, err := br.Peek(i)
		if len(b) < i {
			if err == nil || err == io.EOF {
				return "ndjson", nil // empty input: nothing to send either way
			}
			return "", err
		}
		switch c := b[i-1]; c {
		case ' ', '\t', '\r', '\n':
			continue
		case '[':
			return "json", nil
		case '{':
			return "ndjson", nil
		default:
			return "csv", nil
		}
	}
}

// readEvents splits the input into batches of at most size events (and
// maxBatchBytes). Events that cannot even be turned into JSON (a broken
// CSV row) go to local instead.
func readEvents(ctx context.Context, format string, r *bufio.Reader, size int, out chan<- []ingestItem, local func(ingestReject)) error {
	var b []ingestItem
	var bytes int
	emit := func(it ingestItem) bool {
		if len(b) > 0 && (len(b) >= size || bytes+len(it.raw) > maxBatchBytes) {
			select {
			case out <- b:
			case <-ctx.Done():
				return false
			}
			b, bytes = nil, 0
		}
		b = append(b, it)
		bytes += len(it.raw) + 1
		return true
	}
	var err error
	switch format {
	case "ndjson":
		err = readNDJSON(r, emit)
	case "json":
		err = readJSONArray(r, emit)
	case "csv":
		err = readCSV(r, emit, local)
	}
	if len(b) > 0 && ctx.Err() == nil {
		out <- b
	}
	return err
}

func readNDJSON(r *bufio.Reader, emit func(ingestItem) bool) error {
	index := 0
	for line := 1; ; line++ {
		l, err := r.ReadBytes('\n')
		if t := bytes.TrimSpace(l); len(t) > 0 {
			if !emit(ingestItem{index: index, line: line, raw: t}) {
				return nil
			}
			index++
		}
		if err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func readJSONArray(r io.Reader, emit func(ingestItem) bool) error {
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('[') {
		return fmt.Errorf("a JSON input must be an array of events (use --format ndjson for one event per line)")
	}
	for i := 0; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("event %d: %w (events before it were sent)", i, err)
		}
		var buf bytes.Buffer
		json.Compact(&buf, raw) // cannot fail: the decoder validated raw
		if !emit(ingestItem{index: i, raw: buf.Bytes()}) {
			return nil
		}
	}
	return nil
}

// jsonNumber matches JSON number literals: CSV values that look like one
// are sent as numbers, with their exact text (never through float64, which
// would round large or precise quantities).
var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)

var csvFields = []string{"id", "type", "customer", "time"}

func readCSV(r io.Reader, emit func(ingestItem) bool, local func(ingestReject)) error {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("CSV header: %w", err)
	}
	for i := range header {
		header[i] = strings.TrimSpace(strings.TrimPrefix(header[i], "\ufeff"))
	}
	for _, f := range csvFields[:3] {
		if !slices.Contains(header, f) {
			return fmt.Errorf("CSV header %q lacks the column %q (columns id, type, customer and optional time; others become properties)", strings.Join(header, ","), f)
		}
	}
	for index := 0; ; index++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		line, _ := cr.FieldPos(0)
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			local(ingestReject{Index: index, Line: pe.Line, Field: "csv", Reason: pe.Err.Error(), Raw: strings.Join(rec, ",")})
			continue
		} else if err != nil {
			return err
		}
		if !emit(ingestItem{index: index, line: line, raw: csvEvent(header, rec)}) {
			return nil
		}
	}
}

// csvEvent encodes one CSV row as an event. Empty cells are left out: CSV
// cannot tell an empty string from a missing value.
func csvEvent(header, rec []string) []byte {
	str := func(b []byte, s string) []byte {
		q, _ := json.Marshal(s)
		return append(b, q...)
	}
	b := []byte{'{'}
	for i, f := range csvFields {
		if j := slices.Index(header, f); j >= 0 && rec[j] != "" {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = str(b, csvFields[i])
			b = append(b, ':')
			b = str(b, rec[j])
		}
	}
	props := false
	for j, h := range header {
		if slices.Contains(csvFields, h) || rec[j] == "" {
			continue
		}
		if !props {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = append(b, `"properties":{`...)
			props = true
		} else {
			b = append(b, ',')
		}
		b = str(b, h)
		b = append(b, ':')
		if jsonNumber.MatchString(rec[j]) {
			b = append(b, rec[j]...) // a json.Number: the literal as written
		} else {
			b = str(b, rec[j])
		}
	}
	if props {
		b = append(b, '}')
	}
	return append(b, '}')
}

// ingestState is the running tally, shared by the senders.
type ingestState struct {
	start                    time.Time
	sent, accepted, rejected atomic.Int64

	mu            sync.Mutex
	rejects       []ingestReject
	failedBatches int
	failedEvents  int
	firstErr      error
}

func (s *ingestState) addLocal(r ingestReject) {
	s.rejected.Add(1)
	s.mu.Lock()
	s.rejects = append(s.rejects, r)
	s.mu.Unlock()
}

// send sends one batch; the server's rejection indexes are positions in
// the batch, mapped back to positions in the input.
func (s *ingestState) send(ctx context.Context, c *client.Client, b []ingestItem) {
	var body []byte
	for _, it := range b {
		body = append(body, it.raw...)
		body = append(body, '\n')
	}
	res, err := c.IngestRaw(ctx, ndjsonType, body)
	s.sent.Add(int64(len(b)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if res == nil {
		s.failedBatches++
		s.failedEvents += len(b)
		if s.firstErr == nil {
			s.firstErr = err
		}
		for _, it := range b {
			s.rejects = append(s.rejects, ingestReject{Index: it.index, Line: it.line, Field: "request",
				Reason: fmt.Sprintf("not sent: %v", err), Raw: string(it.raw)})
		}
		return
	}
	s.accepted.Add(int64(res.Accepted))
	s.rejected.Add(int64(len(res.Rejected)))
	for _, rj := range res.Rejected {
		if rj.Index < 0 || rj.Index >= len(b) {
			continue // cannot happen with a correct server; never panic on it
		}
		it := b[rj.Index]
		s.rejects = append(s.rejects, ingestReject{Index: it.index, Line: it.line, ID: rj.ID, Field: rj.Field, Reason: rj.Reason, Raw: string(it.raw)})
	}
}

// progress redraws one line on a terminal, or prints a line every 5 s
// when stderr is a file or pipe (where \r would make a mess).
func (s *ingestState) progress(w io.Writer) (stop func()) {
	tty := isTerminal(w)
	every := 5 * time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	line := func() string {
		el := time.Since(s.start).Seconds()
		return fmt.Sprintf("%d events sent (%.0f/s), %d accepted, %d rejected", s.sent.Load(), float64(s.sent.Load())/el, s.accepted.Load(), s.rejected.Load())
	}
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if tty {
					fmt.Fprintf(w, "\r\033[K%s", line())
				} else {
					fmt.Fprintln(w, line())
				}
			case <-done:
				if tty {
					fmt.Fprintf(w, "\r\033[K")
				}
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func (s *ingestState) summary(w io.Writer, rejectsPath string) {
	el := time.Since(s.start)
	fmt.Fprintf(w, "sent      %d events in %.1fs (%.0f/s)\n", s.sent.Load(), el.Seconds(), float64(s.sent.Load())/el.Seconds())
	fmt.Fprintf(w, "accepted  %d\n", s.accepted.Load())
	fmt.Fprintf(w, "rejected  %d", s.rejected.Load())
	if len(s.rejects) > 0 {
		fmt.Fprintf(w, " (events and reasons in %s)", rejectsPath)
	}
	fmt.Fprintln(w)
	if s.failedBatches > 0 {
		fmt.Fprintf(w, "failed    %d events in %d requests that failed after retries (listed in %s; resending them is safe)\n", s.failedEvents, s.failedBatches, rejectsPath)
	}
	fmt.Fprintln(w, "Accepted events are durable. Duplicates are decided asynchronously by the aggregator: an event\n"+
		"whose id was already received is accepted here but counted once; check any event with\nGET /v1/events/{id} (status, duplicates, conflicts).")
}

// writeRejects writes rejects in input order.
func writeRejects(path string, rejects []ingestReject) error {
	slices.SortFunc(rejects, func(a, b ingestReject) int { return a.Index - b.Index })
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("rejects file: %w", err)
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, r := range rejects {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return fmt.Errorf("rejects file: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("rejects file: %w", err)
	}
	return f.Close()
}
