package jetstream_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
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

// TestPartitionCount: a new log gets NewPartitions; reopened with no count
// it takes its streams', and a count other than theirs is refused, since
// customers would move to other partitions.
func TestPartitionCount(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func(partitions int) (*jetstream.Log, error) {
		return jetstream.Open(ctx, jetstream.Config{Dir: dir, Partitions: partitions, NewPartitions: 3})
	}
	l, err := open(0)
	if err != nil {
		t.Fatal(err)
	}
	if n := l.Partitions(); n != 3 {
		t.Fatalf("new log: %d partitions, want 3", n)
	}
	subs, err := l.Sibling(ctx, "subs")
	if err != nil {
		t.Fatal(err)
	}
	if n := subs.Partitions(); n != 3 {
		t.Fatalf("sibling: %d partitions, want 3", n)
	}
	l.Close()
	for _, tc := range []struct{ asked, want int }{{0, 3}, {3, 3}} {
		l, err := open(tc.asked)
		if err != nil {
			t.Fatalf("reopen asking %d: %v", tc.asked, err)
		}
		if n := l.Partitions(); n != tc.want {
			t.Fatalf("reopen asking %d: %d partitions, want %d", tc.asked, n, tc.want)
		}
		l.Close()
	}
	for _, asked := range []int{2, 8} {
		l, err := open(asked)
		if err == nil {
			l.Close()
			t.Fatalf("reopen asking %d partitions of a log of 3: no error", asked)
		}
		if want := "the log has 3 partitions but " + fmt.Sprint(asked) + " were asked for"; !strings.Contains(err.Error(), want) {
			t.Fatalf("reopen asking %d: %v, want %q", asked, err, want)
		}
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

// purge deletes the Abacus streams so each test starts empty (all of
// them: a log of another partition count would be refused). Tests of this
// package do not run in parallel with each other.
func purge(t *testing.T, url string) {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := njs.New(nc)
	ctx := context.Background()
	names := js.StreamNames(ctx)
	var ours []string
	for name := range names.Name() {
		if strings.HasPrefix(name, "ABACUS_") {
			ours = append(ours, name)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	for _, name := range ours {
		if err := js.DeleteStream(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}
