package abacus

import (
	"context"
	"hash/fnv"
)

// EventLog is the durable, partitioned log between ingest and aggregation.
// It is implemented by jetstream (embedded or external NATS JetStream) and
// tested by logtest.
//
// Partitions are independent ordered sequences numbered 0..Partitions()-1;
// sequences start at 1 and grow by one per message within a partition.
type EventLog interface {
	// Partitions is the fixed number of partitions.
	Partitions() int
	// MaxMessageBytes is the largest message Append takes.
	MaxMessageBytes() int
	// Append writes msg to partition p and returns its sequence once it is
	// durable as configured (fsynced, or replicated to a quorum).
	// EUNAVAILABLE when the log cannot take it.
	Append(ctx context.Context, p int, msg []byte) (seq uint64, err error)
	// Read delivers the messages of partition p with sequence > after, in
	// order, to fn, until ctx is done or fn returns an error. Delivery is at
	// least once across restarts: readers persist their own position.
	// fn must not keep msg.Data after it returns.
	Read(ctx context.Context, p int, after uint64, fn func(msg LogMessage) error) error
	// LastSequence returns the sequence of the newest message of p (0 if none).
	LastSequence(ctx context.Context, p int) (uint64, error)
	Close() error
}

// LogMessage is one message read from the log.
type LogMessage struct {
	Partition int
	Sequence  uint64
	Data      []byte
}

// Partition returns the log partition of a (tenant, customer): one
// customer's usage events stay in one partition and so in one aggregator,
// and its subscription events in one partition of the subscription log, in
// order.
func Partition(tenantID, customer string, partitions int) int {
	h := fnv.New32a()
	h.Write([]byte(tenantID))
	h.Write([]byte{0})
	h.Write([]byte(customer))
	return int(h.Sum32() % uint32(partitions))
}
