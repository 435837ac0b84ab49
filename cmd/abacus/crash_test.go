package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/abacus-billing/abacus/postgres"
)

// TestCrashRecovery runs a real `abacus serve` process under ingest load,
// kills it with SIGKILL at random moments, and restarts it. The producer
// records every event it got a 202 for and, as real producers do, resends
// whatever was not acknowledged. At the end every event must be counted
// exactly once: acknowledged ones not lost, resent ones not counted twice.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a server process")
	}
	bin := buildBinary(t)
	for _, store := range []string{"sqlite", "postgres"} {
		t.Run(store, func(t *testing.T) {
			db := ""
			if store == "postgres" {
				db = postgres.TestSchemaURL(t)
			}
			testCrashRecovery(t, bin, db)
		})
	}
}

// buildBinary builds abacus into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "abacus")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

const crashKey = "abk_crash_test_key"

type server struct {
	cmd *exec.Cmd
	url string
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startServer(t *testing.T, bin, dir, db string) *server {
	t.Helper()
	addr := freePort(t)
	args := []string{"serve", "--data", dir, "--http", addr, "--admin-key", crashKey}
	if db != "" {
		args = append(args, "--db", db)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if os.Getenv("ABACUS_TEST_LOG") == "" {
		cmd.Stdout, cmd.Stderr = nil, nil
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, url: "http://" + addr}
	t.Cleanup(func() { s.kill() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(s.url + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("server did not become ready")
	return nil
}

func (s *server) kill() {
	if s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
		s.cmd.Wait()
	}
}

func post(url, path string, body any) (int, error) {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+crashKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func testCrashRecovery(t *testing.T, bin, db string) {
	dir := t.TempDir()
	const (
		total     = 200000
		customers = 50
		batch     = 100
		kills     = 6
	)
	type event struct {
		ID         string         `json:"id"`
		Type       string         `json:"type"`
		Customer   string         `json:"customer"`
		Time       string         `json:"time"`
		Properties map[string]any `json:"properties"`
	}
	now := time.Now().UTC()
	events := make([]event, total)
	for i := range events {
		events[i] = event{ID: fmt.Sprint("e-", i), Type: "api", Customer: fmt.Sprint("c-", i%customers),
			Time: now.Add(-time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano), Properties: map[string]any{"n": 2}}
	}
	acked := make([]bool, total)
	var mu sync.Mutex

	// send resends every unacknowledged event in batches from 4 producers
	// until all are acknowledged or the server dies.
	send := func(url string, stop <-chan struct{}) {
		var wg sync.WaitGroup
		work := make(chan []int)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for idx := range work {
					body := make([]event, len(idx))
					for j, i := range idx {
						body[j] = events[i]
					}
					st, err := post(url, "/v1/events", body)
					if err == nil && st == 202 {
						mu.Lock()
						for _, i := range idx {
							acked[i] = true
						}
						mu.Unlock()
					}
				}
			}()
		}
	feed:
		for start := 0; start < total; start += batch {
			var idx []int
			mu.Lock()
			for i := start; i < min(start+batch, total); i++ {
				if !acked[i] {
					idx = append(idx, i)
				}
			}
			mu.Unlock()
			if len(idx) == 0 {
				continue
			}
			select {
			case work <- idx:
			case <-stop:
				break feed
			}
		}
		close(work)
		wg.Wait()
	}

	rng := rand.New(rand.NewPCG(1, 2))
	s := startServer(t, bin, dir, db)
	if st, err := post(s.url, "/v1/meters", map[string]any{"key": "n", "event_type": "api", "aggregation": "sum", "value": "$.n"}); err != nil || st != 201 {
		t.Fatalf("create meter: %d %v", st, err)
	}
	for k := 0; k < kills; k++ {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { send(s.url, stop); close(done) }()
		time.Sleep(time.Duration(50+rng.IntN(500)) * time.Millisecond)
		s.kill()
		close(stop)
		<-done
		s = startServer(t, bin, dir, db)
	}
	mu.Lock()
	before := 0
	for _, a := range acked {
		if a {
			before++
		}
	}
	mu.Unlock()
	t.Logf("%d of %d events acknowledged across %d kills", before, total, kills)
	if before == 0 || before == total {
		t.Fatalf("the kills did not land mid-load (acknowledged %d of %d): the test proves nothing", before, total)
	}
	send(s.url, make(chan struct{}))
	for i, a := range acked {
		if !a {
			t.Fatalf("event %d still unacknowledged by a live server", i)
		}
	}

	// Every event counted once: sum of n (2 per event) per customer.
	want := fmt.Sprint(2 * total / customers)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	from := now.Add(-time.Hour).Truncate(time.Minute).Format(time.RFC3339)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/v1/usage?meter=n&group_by=customer&from="+from, nil)
		req.Header.Set("Authorization", "Bearer "+crashKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("usage: %v", err)
		}
		var res struct {
			Rows []struct {
				Customer string `json:"customer"`
				Value    string `json:"value"`
				Count    int    `json:"count"`
			} `json:"rows"`
		}
		json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		sum, exact := 0, len(res.Rows) == customers
		for _, r := range res.Rows {
			sum += r.Count
			if r.Value != want {
				exact = false
			}
		}
		if sum > total {
			t.Fatalf("%d events counted, more than the %d distinct events sent: a repeat was counted", sum, total)
		}
		if exact && sum == total {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("after recovery %d of %d events counted (rows %d)", sum, total, len(res.Rows))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
