//go:build race

package billing

// The race detector slows the property test ~10x; it still runs, smaller.
const raceEnabled = true
