// Package bufpool decides which buffers go back to a sync.Pool: ingest's
// request scratch (httpapi) and the committer's pieces (ingest) share the
// rule.
package bufpool

// Keep reports whether a buffer of capacity c, of which a request used n
// (bytes or items), goes back to its pool: no more than max, and not far
// larger than its use. Buffers only grow, so one grown for a large request
// and then serving small ones would otherwise leave every pooled buffer
// large. Up to small is always kept, and n 0 (a request that failed before
// using it) says nothing about the sizes requests need.
func Keep(c, n, max, small int) bool { return c <= max && (n == 0 || c <= small || c <= 4*n) }
