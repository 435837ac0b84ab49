package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/abacus-billing/abacus"
)

// status maps error codes to HTTP statuses: the only place that does.
func status(code string) int {
	switch code {
	case abacus.EINVALID:
		return http.StatusBadRequest
	case abacus.ENOTFOUND:
		return http.StatusNotFound
	case abacus.ECONFLICT:
		return http.StatusConflict
	case abacus.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case abacus.EFORBIDDEN:
		return http.StatusForbidden
	case abacus.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case abacus.ERATELIMIT:
		return http.StatusTooManyRequests
	case abacus.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// ErrorBody is the JSON of every error response.
type ErrorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id,omitempty"`
	} `json:"error"`
}

// error renders err. Internal errors are logged in full with a request id
// and shown to the client only as "internal error" with that id.
func (s *Server) error(w http.ResponseWriter, r *http.Request, err error) {
	var body ErrorBody
	body.Error.Code = abacus.ErrorCode(err)
	body.Error.Message = abacus.ErrorMessage(err)
	if body.Error.Code == abacus.EINTERNAL {
		var id [8]byte
		rand.Read(id[:])
		body.Error.RequestID = hex.EncodeToString(id[:])
		s.cfg.Logger.Error("internal error", "request_id", body.Error.RequestID, "method", r.Method, "path", r.URL.Path, "err", err)
	}
	s.json(w, status(body.Error.Code), body)
}

func (s *Server) json(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

// maxConfigBody bounds configuration requests (customers, meters, keys).
const maxConfigBody = 1 << 20

// decode reads a JSON body into v, rejecting unknown fields so that typos
// are errors rather than silently ignored settings.
func decode(r *http.Request, v any) error {
	body, err := readBody(nil, r, maxConfigBody)
	if err != nil {
		return err
	}
	d := json.NewDecoder(bytesReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return abacus.Errorf(abacus.EINVALID, "body: %s", trimJSONErr(err))
	}
	return nil
}

// maxPresize bounds the buffer readBody allocates before the body arrives.
const maxPresize = 256 << 10

// readBody reads a request body of at most limit bytes, answering a longer
// one with ETOOLARGE. The buffer is sized from Content-Length when the
// client sent one (within the limit): io.ReadAll starts at 512 bytes and
// grows, which for a 25 KB batch of events allocated twice the body and was
// the server's largest allocation site under `abacus bench`. What a client
// declares is trusted up to maxPresize (a batch of 1,000 events is ~250 KB);
// past it the buffer grows as bytes arrive. w may be nil (see
// http.MaxBytesReader).
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	return readBodyInto(nil, w, r, limit)
}

// readBodyInto is readBody reading into buf[:0] when it has room for the
// declared length.
func readBodyInto(buf []byte, w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	size := int64(512)
	if r.ContentLength > 0 {
		size = min(r.ContentLength, limit, maxPresize) + 1 // + 1: room to read the EOF
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	if int64(cap(buf)) < size {
		buf = make([]byte, 0, size)
	}
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		var mbe *http.MaxBytesError
		switch {
		case err == io.EOF:
			return buf, nil
		case errors.As(err, &mbe):
			return nil, abacus.Errorf(abacus.ETOOLARGE, "request body over the limit of %d bytes", limit)
		case err != nil:
			return nil, abacus.Errorf(abacus.EINVALID, "reading body: %v", err)
		}
	}
}
