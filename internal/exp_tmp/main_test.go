package exp_tmp

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

func TestGrowth(t *testing.T) {
	mode := os.Getenv("EXP_MODE") // "random" | "seq" | "noidx"
	total, _ := strconv.Atoi(os.Getenv("EXP_N"))
	cache := os.Getenv("EXP_CACHE")
	if cache == "" {
		cache = "-65536"
	}
	dir := t.TempDir()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, "x.db")+"?_txlock=immediate&_journal_mode=WAL&_synchronous=FULL&_cache_size="+cache)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	db.Exec(`PRAGMA temp_store=MEMORY`)
	if _, err := db.Exec(`CREATE TABLE events (tenant_id TEXT NOT NULL, id TEXT NOT NULL, customer_id TEXT NOT NULL, time INTEGER NOT NULL, properties TEXT NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (tenant_id, id));
	CREATE INDEX events_customer_time ON events(tenant_id, customer_id, time)`); err != nil {
		t.Fatal(err)
	}
	const batch = 20000
	const chunk = 128
	var sb strings.Builder
	sb.WriteString(`INSERT INTO events VALUES `)
	for i := 0; i < chunk; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`(?,?,?,?,?,?)`)
	}
	sb.WriteString(` ON CONFLICT DO NOTHING`)
	props := strings.Repeat("x", 200)
	hash := make([]byte, 32)
	n := 0
	start := time.Now()
	last := start
	for n < total {
		tx, _ := db.Begin()
		st, _ := tx.Prepare(sb.String())
		args := make([]any, 0, chunk*6)
		for j := 0; j < batch/chunk; j++ {
			args = args[:0]
			for k := 0; k < chunk; k++ {
				var id string
				switch mode {
				case "seq":
					id = fmt.Sprintf("b-%012d", n)
				default:
					id = "b-" + strconv.Itoa(n%32) + "-" + strconv.Itoa(n/32)
				}
				args = append(args, "default", id, "cust-"+strconv.Itoa(n%1000), time.Now().UnixNano(), props, hash)
				n++
			}
			if _, err := st.Exec(args...); err != nil {
				t.Fatal(err)
			}
		}
		st.Close()
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if n%(1000000) < batch {
			now := time.Now()
			fmt.Printf("%s n=%d last1M=%.1fµs/event\n", mode, n, float64(now.Sub(last).Microseconds())/1e6)
			last = now
		}
	}
}
