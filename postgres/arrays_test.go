package postgres

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestArrays: parameters built by the binary array encoders read back on
// the server as the arrays they were built from, empty ones included.
func TestArrays(t *testing.T) {
	s := OpenTestStore(t)
	ctx := context.Background()
	var got []string
	err := s.tx(ctx, func(tx pgx.Tx) error {
		a := &applyTx{tx: tx}
		return a.exec(ctx, `SELECT $1::text[]::text, $2::bytea[]::text, $3::int8[]::text, $4::int4[]::text, $5::bool[]::text,
			$6::int8::text, $7::text[]::text, cardinality($7::text[])`,
			[][]byte{
				textArray([]string{"a", "b c", "", "é\"x"}),
				byteaArray([][]byte{{0, 1, 255}, {}}),
				int8Array([]int64{math.MinInt64, -1, 0, math.MaxInt64}),
				int4Array([]int32{math.MinInt32, 7}),
				boolArray([]bool{true, false}),
				int8Param(-42),
				textArray(nil),
			}, func(cols [][]byte) error {
				for _, c := range cols {
					got = append(got, string(c))
				}
				return nil
			})
	})
	must(t, err)
	want := []string{`{a,"b c","","é\"x"}`, `{"\\x0001ff","\\x"}`, `{-9223372036854775808,-1,0,9223372036854775807}`,
		`{-2147483648,7}`, `{t,f}`, `-42`, `{}`, `0`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("read back:\n%q\nwant:\n%q", got, want)
	}
}
