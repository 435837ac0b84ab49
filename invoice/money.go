package invoice

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/abacus-billing/abacus/rating"
	"github.com/cockroachdb/apd/v3"
)

// Decimal arithmetic for invoices. Amounts are exact until a line is
// rounded, once, half up, to the currency's minor unit (the one rounding
// rule of docs/ARCHITECTURE.md, "Money and rating").
var dctx = func() *apd.Context {
	c := apd.BaseContext.WithPrecision(60)
	c.Rounding = apd.RoundHalfUp
	return c
}()

func add(dst, x *apd.Decimal) { _, _ = dctx.Add(dst, dst, x) }

func sub(dst, x, y *apd.Decimal) { _, _ = dctx.Sub(dst, x, y) }

func mul(dst, x, y *apd.Decimal) { _, _ = dctx.Mul(dst, x, y) }

func quo(dst, x, y *apd.Decimal) { _, _ = dctx.Quo(dst, x, y) }

// roundMoney rounds d half up to cur's minor unit.
func roundMoney(d *apd.Decimal, cur rating.Currency) apd.Decimal {
	return roundScale(d, cur.Exponent)
}

func roundScale(d *apd.Decimal, digits int) apd.Decimal {
	var out apd.Decimal
	_, _ = dctx.Quantize(&out, d, int32(-digits))
	if out.IsZero() {
		out.Negative = false
	}
	return out
}

// decText renders a quantity without trailing fractional zeros.
func decText(d *apd.Decimal) string {
	var r apd.Decimal
	r.Reduce(d)
	if r.Exponent > 0 {
		_, _ = dctx.Quantize(&r, &r, 0)
	}
	if r.IsZero() {
		return "0"
	}
	return r.Text('f')
}

func randomID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
