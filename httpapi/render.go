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
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxConfigBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return abacus.Errorf(abacus.ETOOLARGE, "request body over the limit of %d bytes", maxConfigBody)
	} else if err != nil {
		return abacus.Errorf(abacus.EINVALID, "reading body: %v", err)
	}
	d := json.NewDecoder(bytesReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return abacus.Errorf(abacus.EINVALID, "body: %s", trimJSONErr(err))
	}
	return nil
}
