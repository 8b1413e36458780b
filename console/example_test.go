package console_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/modkit-go/db/console"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/migrations"
	"github.com/modkit-go/db/outbox"
)

// Mount the console under a path prefix of an application's mux; here the
// JSON API answers what the overview page shows.
func ExampleNew() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "console-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	d := sqlite.New()
	if err := migrations.Up(ctx, db, d); err != nil {
		log.Fatal(err)
	}
	ob, err := outbox.New(db, d, outbox.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := ob.DeclareQueue(ctx, "orders", 4); err != nil {
		log.Fatal(err)
	}

	c, err := console.New(ob, console.Options{Prefix: "/ops/outbox", ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := c.Start(ctx); err != nil { // samples the status for the charts
		log.Fatal(err)
	}
	defer c.Stop(ctx)
	mux := http.NewServeMux()
	mux.Handle("/ops/outbox/", c)
	srv := httptest.NewServer(mux) // on 127.0.0.1: no token needed
	defer srv.Close()

	res, err := http.Get(srv.URL + "/ops/outbox/api/status")
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	var queues []console.QueueJSON
	if err := json.NewDecoder(res.Body).Decode(&queues); err != nil {
		log.Fatal(err)
	}
	for _, q := range queues {
		fmt.Printf("%s: %d partitions, backlog %d\n", q.Queue, len(q.Partitions), q.Backlog)
	}
	// Output:
	// orders: 4 partitions, backlog 0
}
