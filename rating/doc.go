// Package rating prices usage: a compiled price definition and a period's
// usage give the amount and a human-readable breakdown, exactly. It is pure
// (no I/O) and is shared by invoices, previews, wallets and alerts.
//
// Flow: ParseDefinition → Validate (every problem at once) → Compile → Rate.
// Decimals are cockroachdb/apd/v3 values at the API; the hot path runs on an
// exact fixed-point kernel (fixed.go) and does not allocate. Each invoice
// line is rounded once, half up, to the currency's ISO 4217 minor unit; a
// total is the sum of its rounded lines. See docs/pricing.md for the format
// and docs/ARCHITECTURE.md ("Money and rating") for the choices.
package rating
