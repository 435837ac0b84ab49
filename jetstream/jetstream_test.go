package jetstream_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/abacus-billing/abacus"
	"github.com/abacus-billing/abacus/jetstream"
	"github.com/abacus-billing/abacus/logtest"
	"github.com/nats-io/nats-server/v2/server"
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

// TestPartitionCount: a new log gets NewPartitions and records it;
// reopened with no count it takes the recorded one, whatever NewPartitions
// says, and a count other than it is refused, since customers would move
// to other partitions.
func TestPartitionCount(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func(partitions, newPartitions int) (*jetstream.Log, error) {
		return jetstream.Open(ctx, jetstream.Config{Dir: dir, Partitions: partitions, NewPartitions: newPartitions})
	}
	l, err := open(0, 3)
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
	for _, asked := range []int{0, 3} {
		l, err := open(asked, 5)
		if err != nil {
			t.Fatalf("reopen asking %d: %v", asked, err)
		}
		if n := l.Partitions(); n != 3 {
			t.Fatalf("reopen asking %d: %d partitions, want 3", asked, n)
		}
		l.Close()
	}
	if _, err := open(-1, 3); err == nil || !strings.Contains(err.Error(), "partitions must be 1 or more, or 0 for the log's own count") {
		t.Fatalf("open asking -1 partitions: %v", err)
	}
	for _, asked := range []int{2, 8} {
		l, err := open(asked, 5)
		if err == nil {
			l.Close()
			t.Fatalf("reopen asking %d partitions of a log of 3: no error", asked)
		}
		if want := fmt.Sprintf("the log has 3 partitions (streams ABACUS_EVENTS_*) but %d were asked for", asked); !strings.Contains(err.Error(), want) {
			t.Fatalf("reopen asking %d: %v, want %q", asked, err, want)
		}
	}
}

// TestPartitionCountRecorded: a log made before counts were recorded has
// its count read off its streams (and recorded); one whose start was cut
// off after its first stream gets the rest of its streams; a sibling whose
// streams record another count is refused.
func TestPartitionCountRecorded(t *testing.T) {
	ctx := context.Background()
	stream := func(name string, p int, recorded string) njs.StreamConfig {
		c := njs.StreamConfig{Name: fmt.Sprint("ABACUS_", strings.ToUpper(name), "_", p), Subjects: []string{fmt.Sprint("abacus.", name, ".", p)}, Storage: njs.FileStorage}
		if recorded != "" {
			c.Metadata = map[string]string{"abacus_partitions": recorded}
		}
		return c
	}
	for _, tc := range []struct {
		name    string
		streams []njs.StreamConfig
		want    int
		subsErr string
	}{
		{"unrecorded", []njs.StreamConfig{stream("events", 0, ""), stream("events", 1, ""), stream("events", 2, ""), stream("events", 3, ""), stream("events", 4, "")}, 5, ""},
		{"cut off", []njs.StreamConfig{stream("events", 0, "4"), stream("events", 1, "4")}, 4, ""},
		{"sibling of another count", []njs.StreamConfig{stream("events", 0, "2"), stream("events", 1, "2"), stream("subs", 0, "6")}, 2,
			"the log has 6 partitions (streams ABACUS_SUBS_*) but 2 were asked for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			withEmbedded(t, dir, func(js njs.JetStream) {
				for _, c := range tc.streams {
					if _, err := js.CreateStream(ctx, c); err != nil {
						t.Fatal(err)
					}
				}
			})
			l, err := jetstream.Open(ctx, jetstream.Config{Dir: dir, NewPartitions: 3})
			if err != nil {
				t.Fatal(err)
			}
			if n := l.Partitions(); n != tc.want {
				t.Fatalf("%d partitions, want %d", n, tc.want)
			}
			for p := range tc.want {
				if _, err := l.LastSequence(ctx, p); err != nil {
					t.Fatalf("partition %d: %v", p, err)
				}
			}
			_, err = l.Sibling(ctx, "subs")
			if tc.subsErr == "" && err != nil || tc.subsErr != "" && (err == nil || !strings.Contains(err.Error(), tc.subsErr)) {
				t.Fatalf("sibling: %v, want %q", err, tc.subsErr)
			}
			l.Close()
			// The count is recorded now: a log of 5 streams with the
			// first one lost would not take 4.
			withEmbedded(t, dir, func(js njs.JetStream) {
				s, err := js.Stream(ctx, "ABACUS_EVENTS_0")
				if err != nil {
					t.Fatal(err)
				}
				if got := s.CachedInfo().Config.Metadata["abacus_partitions"]; got != fmt.Sprint(tc.want) {
					t.Fatalf("recorded %q partitions, want %d", got, tc.want)
				}
			})
		})
	}
}

// withEmbedded runs fn against an embedded server storing where
// jetstream.Open with Dir: dir would, as an earlier version of Abacus (or
// an interrupted start) might have left it.
func withEmbedded(t *testing.T, dir string, fn func(njs.JetStream)) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{ServerName: "abacus-embedded", JetStream: true, StoreDir: filepath.Join(dir, "jetstream"), DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	fn(js)
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
