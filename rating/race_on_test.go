//go:build race

package rating

// The race detector slows the property tests ~10x; they still run, smaller.
const raceEnabled = true
