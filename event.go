package abacus

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"
)

// Event is one usage event as Abacus keeps it.
//
// ID is chosen by the producer: within a tenant the first event with an ID
// counts and later ones are duplicates (same payload) or conflicts (other
// payload); the first always wins.
type Event struct {
	TenantID   string
	ID         string
	Type       string
	Customer   string
	Time       time.Time // event time: when the usage happened
	TimeGiven  bool      // false when Time defaulted to the receive time
	IngestTime time.Time // when Abacus accepted it
	Properties []byte    // a JSON object, compacted; "{}" when absent
}

// Limits of a single event. Request-level limits live in ingest.
const (
	MaxEventTypeLength = 256
	MaxEventBytes      = 64 << 10 // encoded size of one event
)

// PayloadHash identifies an event's payload for duplicate/conflict
// decisions: type, customer, time (only when the producer gave it, so that a
// retry of a time-less event is a duplicate, not a conflict) and properties.
func (e *Event) PayloadHash() [16]byte {
	h := sha256.New()
	var buf [8]byte
	write := func(s string) {
		binary.BigEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	write(e.Type)
	write(e.Customer)
	if e.TimeGiven {
		binary.BigEndian.PutUint64(buf[:], uint64(e.Time.UnixNano()))
		h.Write(buf[:])
	} else {
		h.Write([]byte{0})
	}
	h.Write(e.Properties)
	var sum [32]byte
	h.Sum(sum[:0])
	var out [16]byte
	copy(out[:], sum[:16])
	return out
}

// Log record encoding.
//
// One log message carries a batch of events (group commit). Each event is a
// record of length-prefixed fields; integers are uvarints. The encoding is
// ours rather than JSON because the aggregator decodes every event once more
// and the fields are fixed (docs/ARCHITECTURE.md, "Log envelope").
//
//	record  = version(1 byte = 1) fields...
//	fields  = tenant id type customer (uvarint len + bytes each)
//	          time_unix_nano (varint) time_given (1 byte) ingest_unix_nano (varint)
//	          properties (uvarint len + bytes)
//	message = uvarint(count) record*
const recordVersion = 1

// AppendRecord appends e's record to dst.
func AppendRecord(dst []byte, e *Event) []byte {
	dst = append(dst, recordVersion)
	dst = appendString(dst, e.TenantID)
	dst = appendString(dst, e.ID)
	dst = appendString(dst, e.Type)
	dst = appendString(dst, e.Customer)
	dst = binary.AppendVarint(dst, e.Time.UnixNano())
	if e.TimeGiven {
		dst = append(dst, 1)
	} else {
		dst = append(dst, 0)
	}
	dst = binary.AppendVarint(dst, e.IngestTime.UnixNano())
	// Not appendString(dst, string(e.Properties)): that conversion copied
	// the properties to the heap first, 5% of the bytes the server
	// allocated under abacus bench.
	dst = binary.AppendUvarint(dst, uint64(len(e.Properties)))
	return append(dst, e.Properties...)
}

// RecordSize is an upper bound of len(AppendRecord(nil, e)).
func RecordSize(e *Event) int {
	return 1 + 4*binary.MaxVarintLen32 + len(e.TenantID) + len(e.ID) + len(e.Type) + len(e.Customer) +
		2*binary.MaxVarintLen64 + 1 + binary.MaxVarintLen32 + len(e.Properties)
}

// AppendMessage starts a log message of n records; append the records after it.
func AppendMessage(dst []byte, n int) []byte {
	return binary.AppendUvarint(dst, uint64(n))
}

var errCorrupt = errors.New("corrupt log record")

// DecodeMessage decodes a log message into events. The events' strings and
// properties are copies and stay valid after msg is reused. Properties of
// one message share one buffer (each capped, so an append reallocates):
// a copy per event was 100k allocations per large batch.
func DecodeMessage(msg []byte, out []Event) ([]Event, error) {
	n, k := binary.Uvarint(msg)
	if k <= 0 || n > uint64(len(msg)) {
		return out, errCorrupt
	}
	b := msg[k:]
	// One allocation for all strings of the message, one for all properties.
	arena := string(b)
	own := bytes.Clone(b)
	off := 0
	str := func() (string, bool) {
		l, k := binary.Uvarint(b[off:])
		if k <= 0 || l > uint64(len(b)-off-k) {
			return "", false
		}
		s := arena[off+k : off+k+int(l)]
		off += k + int(l)
		return s, true
	}
	varint := func() (int64, bool) {
		v, k := binary.Varint(b[off:])
		if k <= 0 {
			return 0, false
		}
		off += k
		return v, true
	}
	for i := uint64(0); i < n; i++ {
		if off >= len(b) || b[off] != recordVersion {
			return out, errCorrupt
		}
		off++
		var e Event
		var ok1, ok2, ok3, ok4, ok5, ok6 bool
		e.TenantID, ok1 = str()
		e.ID, ok2 = str()
		e.Type, ok3 = str()
		e.Customer, ok4 = str()
		t, ok5 := varint()
		if !(ok1 && ok2 && ok3 && ok4 && ok5) || off >= len(b) {
			return out, errCorrupt
		}
		e.Time = time.Unix(0, t).UTC()
		e.TimeGiven = b[off] == 1
		off++
		it, ok6 := varint()
		props, ok7 := str()
		if !ok6 || !ok7 {
			return out, errCorrupt
		}
		e.IngestTime = time.Unix(0, it).UTC()
		end := off
		e.Properties = own[end-len(props) : end : end]
		out = append(out, e)
	}
	return out, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
