package postgres

import (
	"context"
	"encoding/binary"

	"github.com/jackc/pgx/v5/pgtype"
)

// The aggregator's bulk statements take each column as one array parameter
// (applyTx). They are built here, in PostgreSQL's binary array format, each
// in one allocation of its exact size, and sent as they are.
//
// Through pgx's own encoding a parameter is appended to a buffer that
// starts at 256 bytes and doubles, for every statement (pgx drops buffers
// above that between statements): in a PostgreSQL `abacus bench` peak
// profile, encoding the insert's 13 arrays (megabytes per transaction) was
// 12% of the process's CPU, mostly growing and copying that buffer, with
// the garbage it left for the GC besides.

var be = binary.BigEndian

// array is a one-dimensional array of the element type oid, without NULLs:
// a header (dimensions, flags, element type, length, lower bound 1), then
// each element's length and bytes. width is an element's length in bytes,
// put appends its bytes.
func array[T any](oid uint32, vs []T, width func(T) int, put func([]byte, T) []byte) []byte {
	if len(vs) == 0 {
		b := make([]byte, 0, 12)
		return be.AppendUint32(be.AppendUint32(be.AppendUint32(b, 0), 0), oid)
	}
	size := 20
	for _, v := range vs {
		size += 4 + width(v)
	}
	b := make([]byte, 0, size)
	b = be.AppendUint32(b, 1)
	b = be.AppendUint32(b, 0)
	b = be.AppendUint32(b, oid)
	b = be.AppendUint32(b, uint32(len(vs)))
	b = be.AppendUint32(b, 1)
	for _, v := range vs {
		b = be.AppendUint32(b, uint32(width(v)))
		b = put(b, v)
	}
	return b
}

func textArray(vs []string) []byte {
	return array(pgtype.TextOID, vs, func(s string) int { return len(s) }, func(b []byte, s string) []byte { return append(b, s...) })
}

func byteaArray(vs [][]byte) []byte {
	return array(pgtype.ByteaOID, vs, func(v []byte) int { return len(v) }, func(b, v []byte) []byte { return append(b, v...) })
}

func int8Array(vs []int64) []byte {
	return array(pgtype.Int8OID, vs, func(int64) int { return 8 }, func(b []byte, v int64) []byte { return be.AppendUint64(b, uint64(v)) })
}

func int4Array(vs []int32) []byte {
	return array(pgtype.Int4OID, vs, func(int32) int { return 4 }, func(b []byte, v int32) []byte { return be.AppendUint32(b, uint32(v)) })
}

func boolArray(vs []bool) []byte {
	return array(pgtype.BoolOID, vs, func(bool) int { return 1 }, func(b []byte, v bool) []byte {
		if v {
			return append(b, 1)
		}
		return append(b, 0)
	})
}

func int8Param(v int64) []byte { return be.AppendUint64(make([]byte, 0, 8), uint64(v)) }

var binaryParams = []int16{pgtype.BinaryFormatCode}

// exec runs sql with params in binary format (the statement's casts give
// their types) and calls row, if not nil, with each returned row's columns
// in text format. The columns are only valid during the call.
//
// It sends an unnamed statement, parsed and planned anew each time, which
// is small beside the thousands of rows it carries (against a named,
// prepared one, two pairs of bench peaks were within noise), and leaves
// nothing that outlives the call. A named one would be cached on the connection
// beside pgx's own cache, and pgx would not invalidate it if the server
// lost it (a pooler's DISCARD ALL) or the schema changed under it; every
// later apply on that connection would fail. It also works through a
// pooler in transaction mode. pgx's query tracer does not see these
// statements.
func (t *applyTx) exec(ctx context.Context, sql string, params [][]byte, row func(cols [][]byte) error) error {
	rr := t.tx.Conn().PgConn().ExecParams(ctx, sql, params, nil, binaryParams, nil)
	for rr.NextRow() {
		if row == nil {
			continue
		}
		if err := row(rr.Values()); err != nil {
			rr.Close()
			return err
		}
	}
	_, err := rr.Close()
	return err
}
