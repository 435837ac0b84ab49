package jetstream_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/jetstream"
	"github.com/abacus-billing/abacus/logtest"
	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"
)

func TestEmbedded(t *testing.T) {
	for _, d := range []jetstream.Durability{jetstream.Strict, jetstream.Relaxed} {
		t.Run(string(d), func(t *testing.T) {
			logtest.Exercise(t, func(t *testing.T) abacus.EventLog {
				l, err := jetstream.Open(context.Background(), jetstream.Config{Dir: t.TempDir(), Durability: d, Partitions: 4})
				if err != nil {
					t.Fatal(err)
				}
				return l
			})
		})
	}
}

// TestSibling: a sibling log passes the same suite, and its messages are
// apart from the parent's.
func TestSibling(t *testing.T) {
	logtest.Exercise(t, func(t *testing.T) abacus.EventLog {
		parent, err := jetstream.Open(context.Background(), jetstream.Config{Dir: t.TempDir(), Partitions: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { parent.Close() })
		if _, err := parent.Append(context.Background(), 0, []byte("usage")); err != nil {
			t.Fatal(err)
		}
		l, err := parent.Sibling(context.Background(), "subs")
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// TestEmbeddedSurvivesRestart: what was acknowledged is there after the
// embedded server restarts on the same directory.
func TestEmbeddedSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, err := jetstream.Open(ctx, jetstream.Config{Dir: dir, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := l.Append(ctx, 1, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l, err = jetstream.Open(ctx, jetstream.Config{Dir: dir, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	last, err := l.LastSequence(ctx, 1)
	if err != nil || last != 5 {
		t.Fatalf("after restart last = %d, %v", last, err)
	}
}

// TestExternal runs the suite against the NATS server on 127.0.0.1:4222
// (ABACUS_TEST_NATS), each test on streams of its own prefix-free
// partitions: the suite purges them first.
func TestExternal(t *testing.T) {
	url := os.Getenv("ABACUS_TEST_NATS")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	if c, err := net.DialTimeout("tcp", url[len("nats://"):], time.Second); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("external NATS at %s unreachable under CI: %v", url, err)
		}
		t.Skipf("external NATS at %s unreachable: %v", url, err)
	} else {
		c.Close()
	}
	logtest.Exercise(t, func(t *testing.T) abacus.EventLog {
		purge(t, url)
		l, err := jetstream.Open(context.Background(), jetstream.Config{URL: url, Partitions: 4, MaxAge: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { purge(t, url) })
		return l
	})
}

// purge deletes the Abacus streams so each test starts empty. Tests of
// this package do not run in parallel with each other.
func purge(t *testing.T, url string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	for p := 0; p < 4; p++ {
		_ = js.DeleteStream(context.Background(), fmt.Sprint("ABACUS_EVENTS_", p))
	}
}
