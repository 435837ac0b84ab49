// Package jetstream is the event log of Abacus on NATS JetStream: embedded
// in-process (nats-server as a library, file storage under the data dir) or
// an external server or cluster.
//
// Each partition is its own stream (ABACUS_EVENTS_<p>, subject
// abacus.events.<p>): per-partition sequences are then the stream
// sequences, and appends to different partitions are written and fsynced by
// independent file stores in parallel instead of queueing behind one.
package jetstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Durability says when JetStream considers an append durable.
type Durability string

// Durability modes of the embedded server. An external server or cluster
// has its own sync settings and replication; see docs/OPERATIONS.md.
const (
	// Strict fsyncs every append before it is acknowledged: an acknowledged
	// event survives a power loss.
	Strict Durability = "strict"
	// Relaxed acknowledges once the append is written to the OS and fsyncs
	// every RelaxedSyncInterval: a process crash loses nothing, an OS crash
	// or power loss may lose up to that interval of acknowledged events.
	Relaxed Durability = "relaxed"
)

// RelaxedSyncInterval is the fsync interval in relaxed mode.
const RelaxedSyncInterval = time.Second

// Config configures the log.
type Config struct {
	// URL of an external NATS server or cluster. Empty starts an embedded
	// server storing under Dir.
	URL string
	// Dir is where the embedded server stores streams.
	Dir string
	// Durability of the embedded server (default Strict).
	Durability Durability
	// Partitions is the number of partitions. It is fixed for the life of
	// the data: events are partitioned by hash(tenant, customer) mod
	// Partitions, so a customer's events would change partition, and
	// lose their order, if it changed. 0 takes the log's own count
	// (recorded on its streams), or NewPartitions for a new log; a count
	// other than the log's is refused.
	Partitions int
	// NewPartitions is the count a new log gets when Partitions is 0
	// (default 8).
	NewPartitions int
	// Replicas of each stream on an external cluster (default 1; use 3 on
	// a cluster).
	Replicas int
	// MaxAge is how long the log keeps messages (default 7 days). The store
	// keeps every event; the log only needs to outlive aggregator lag.
	MaxAge time.Duration
}

// MaxMessageBytes is the largest log message the embedded server takes;
// ingest flushes batches well below it.
const MaxMessageBytes = 8 << 20

// Log is a JetStream-backed abacus.EventLog.
type Log struct {
	cfg  Config
	name string         // "events" or the name given to Sibling
	srv  *server.Server // nil for an external server, and for siblings
	nc   *nats.Conn
	js   jetstream.JetStream
	root bool // owns nc and srv
}

var _ abacus.EventLog = (*Log)(nil)

// Open starts the embedded server (or connects to cfg.URL) and makes sure
// every partition's stream exists.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if cfg.Partitions < 0 || cfg.NewPartitions < 0 {
		return nil, fmt.Errorf("partitions must be 1 or more, or 0 for the log's own count (new log: 0 for the default), got %d (new log: %d)", cfg.Partitions, cfg.NewPartitions)
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 7 * 24 * time.Hour
	}
	if cfg.Durability == "" {
		cfg.Durability = Strict
	}
	l := &Log{cfg: cfg, name: "events", root: true}
	var err error
	if cfg.URL == "" {
		opts := &server.Options{
			ServerName:         "abacus-embedded",
			JetStream:          true,
			StoreDir:           filepath.Join(cfg.Dir, "jetstream"),
			DontListen:         true,
			NoSigs:             true,
			NoLog:              true,
			MaxPayload:         MaxMessageBytes,
			JetStreamMaxMemory: 64 << 20,
		}
		switch cfg.Durability {
		case Strict:
			opts.SyncAlways = true
		case Relaxed:
			opts.SyncInterval = RelaxedSyncInterval
		default:
			return nil, fmt.Errorf("durability must be strict or relaxed, got %q", cfg.Durability)
		}
		if l.srv, err = server.NewServer(opts); err != nil {
			return nil, fmt.Errorf("start embedded NATS: %w", err)
		}
		go l.srv.Start()
		if !l.srv.ReadyForConnections(30 * time.Second) {
			l.srv.Shutdown()
			return nil, errors.New("start embedded NATS: not ready after 30s")
		}
		l.nc, err = nats.Connect("", nats.InProcessServer(l.srv), nats.Name("abacus"))
	} else {
		l.nc, err = nats.Connect(cfg.URL, nats.Name("abacus"), nats.MaxReconnects(-1))
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	if l.js, err = jetstream.New(l.nc); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.settlePartitions(ctx, cmp.Or(cfg.NewPartitions, 8)); err != nil {
		l.Close()
		return nil, err
	}
	if err := l.createStreams(ctx); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Sibling returns another partitioned log on the same server and
// connection, with the same partitions and settings, whose streams are
// ABACUS_<NAME>_<p> on subjects abacus.<name>.<p>. Subscription events
// travel on the sibling "subs", apart from usage events, so that their
// consumer is not queued behind usage traffic. Closing a sibling closes
// nothing shared.
func (l *Log) Sibling(ctx context.Context, name string) (*Log, error) {
	s := &Log{cfg: l.cfg, name: name, nc: l.nc, js: l.js}
	// The sibling's streams must have the same count: settle with it
	// required.
	if err := s.settlePartitions(ctx, l.cfg.Partitions); err != nil {
		return nil, err
	}
	if err := s.createStreams(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// partitionsKey is the stream metadata key holding the log's partition
// count, on every stream of the log.
const partitionsKey = "abacus_partitions"

// streamConfig is the configuration of partition p's stream.
func (l *Log) streamConfig(p int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       l.streamName(p),
		Subjects:   []string{l.subject(p)},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     l.cfg.MaxAge,
		Replicas:   l.cfg.Replicas,
		Discard:    jetstream.DiscardOld,
		MaxMsgSize: MaxMessageBytes,
		Metadata:   map[string]string{partitionsKey: strconv.Itoa(l.cfg.Partitions)},
	}
}

// createStreams creates the partitions' streams that do not exist yet (a
// start cut off while creating them leaves some missing), and records the
// count on those made before it was recorded.
func (l *Log) createStreams(ctx context.Context) error {
	for p := 0; p < l.cfg.Partitions; p++ {
		if _, err := l.js.CreateOrUpdateStream(ctx, l.streamConfig(p)); err != nil {
			return fmt.Errorf("create stream %s: %w", l.streamName(p), err)
		}
	}
	return nil
}

// settlePartitions fixes the log's partition count. The count is recorded
// in the metadata of the log's streams, the first time by creating the
// first stream (<prefix>0), so every later start reads it there; of two
// processes creating a new log at once, one creates that stream and the
// other reads its count. A log made before counts were recorded has its
// count read off its streams: <prefix>0, <prefix>1, … up to the first
// missing. With no stream yet the log gets the configured count, or
// newCount. A configured count other than the log's is refused.
func (l *Log) settlePartitions(ctx context.Context, newCount int) error {
	want := l.cfg.Partitions
	for attempt := 0; ; attempt++ {
		n, err := l.recordedPartitions(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			if want != 0 && want != n {
				return fmt.Errorf("the log has %d partitions (streams %s*) but %d were asked for: the partition count is fixed for the life of the data (leave it unset to use the log's)", n, l.streamPrefix(), want)
			}
			l.cfg.Partitions = n
			return nil
		}
		l.cfg.Partitions = cmp.Or(want, newCount)
		_, err = l.js.CreateStream(ctx, l.streamConfig(0))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) && attempt == 0 {
			continue // created meanwhile, perhaps with another count: read it
		}
		if err != nil {
			return fmt.Errorf("create stream %s: %w", l.streamName(0), err)
		}
		return nil
	}
}

// recordedPartitions returns the partition count recorded on the log's
// first stream, or for a log made before counts were recorded the number of
// its streams in a row from 0; 0 if the log has no stream.
func (l *Log) recordedPartitions(ctx context.Context) (int, error) {
	first, err := l.js.Stream(ctx, l.streamName(0))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", l.streamName(0), err)
	}
	if v, ok := first.CachedInfo().Config.Metadata[partitionsKey]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("stream %s records %q partitions", l.streamName(0), v)
		}
		return n, nil
	}
	for n := 1; ; n++ {
		_, err := l.js.Stream(ctx, l.streamName(n))
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("read stream %s: %w", l.streamName(n), err)
		}
	}
}

func (l *Log) streamPrefix() string    { return "ABACUS_" + strings.ToUpper(l.name) + "_" }
func (l *Log) streamName(p int) string { return l.streamPrefix() + strconv.Itoa(p) }
func (l *Log) subject(p int) string    { return "abacus." + l.name + "." + strconv.Itoa(p) }

// Partitions returns the number of partitions.
func (l *Log) Partitions() int { return l.cfg.Partitions }

// MaxMessageBytes is the server's max_payload (8 MiB embedded; external
// servers default to 1 MiB).
func (l *Log) MaxMessageBytes() int { return int(l.nc.MaxPayload()) }

// Append publishes msg to partition p and waits for JetStream's ack, which
// the embedded server in strict mode sends only after fsync.
func (l *Log) Append(ctx context.Context, p int, msg []byte) (uint64, error) {
	ack, err := l.js.Publish(ctx, l.subject(p), msg)
	if err != nil {
		return 0, &abacus.Error{Code: abacus.EUNAVAILABLE, Message: "event log unavailable: " + err.Error()}
	}
	return ack.Sequence, nil
}

// ReadBatchBytes bounds one pull of a partition reader, and so the memory a
// reader holds ahead of its consumer (raised to the server's max payload
// when that is larger).
const ReadBatchBytes = 4 << 20

// ReadBatchMessages bounds the messages of one pull.
const ReadBatchMessages = 256

// Read delivers partition p from after+1 through an ephemeral pull consumer
// without acks: no acknowledgement traffic and no durable server-side
// state, because the reader keeps its position in the store, in the same
// transaction as what it derived from the messages.
//
// It pulls in discrete fetches (at most ReadBatchMessages and
// ReadBatchBytes, waiting at most a second for the first message) rather
// than through a long-lived message iterator: under heavy appends of large
// messages that iterator was seen to block forever without an error, which
// would silently stop aggregation. A fetch always ends, by delivering or by
// expiring. One consumer serves every fetch of the read: the client's
// ordered consumer replaces its server-side consumer on every fetch (an API
// round trip each) and sized its receive channel for a million messages
// (16 MB allocated per fetch). Without acks a message the client dropped
// would be gone, so the consumer sequence of each delivery is checked: a
// gap ends the read with an error and the caller resumes from its position.
func (l *Log) Read(ctx context.Context, p int, after uint64, fn func(abacus.LogMessage) error) error {
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: time.Minute,
	}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	cons, err := l.js.CreateConsumer(ctx, l.streamName(p), cfg)
	if err != nil {
		return fmt.Errorf("read partition %d: %w", p, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		l.js.DeleteConsumer(dctx, l.streamName(p), cons.CachedInfo().Name)
		cancel()
	}()
	// A pull must be able to carry the largest message there can be.
	pull := max(ReadBatchBytes, l.MaxMessageBytes()+64<<10)
	var delivered uint64 // consumer sequence of the last delivery
	for ctx.Err() == nil {
		batch, err := cons.Fetch(ReadBatchMessages, jetstream.FetchMaxBytes(pull), jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return fmt.Errorf("read partition %d: %w", p, err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read partition %d: %w", p, err)
			}
			if md.Sequence.Consumer != delivered+1 {
				return fmt.Errorf("read partition %d: delivery gap (consumer sequence %d after %d)", p, md.Sequence.Consumer, delivered)
			}
			delivered = md.Sequence.Consumer
			if err := fn(abacus.LogMessage{Partition: p, Sequence: md.Sequence.Stream, Data: m.Data()}); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("read partition %d: %w", p, err)
		}
	}
	return ctx.Err()
}

// LastSequence returns the last sequence of partition p.
func (l *Log) LastSequence(ctx context.Context, p int) (uint64, error) {
	s, err := l.js.Stream(ctx, l.streamName(p))
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// Ready reports whether JetStream answers.
func (l *Log) Ready(ctx context.Context) error {
	_, err := l.js.AccountInfo(ctx)
	return err
}

// Close drains the connection and shuts the embedded server down (which
// flushes its file store).
func (l *Log) Close() error {
	if !l.root {
		return nil
	}
	if l.nc != nil {
		l.nc.Close()
	}
	if l.srv != nil {
		l.srv.Shutdown()
		l.srv.WaitForShutdown()
	}
	return nil
}
