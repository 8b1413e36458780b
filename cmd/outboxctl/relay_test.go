package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/modkit-go/db/internal/relaytest"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// outboxctl relay publishes a queue to JetStream with a routing template,
// serves /healthz and /metrics, and stops cleanly on SIGTERM.
func TestRelayCommand(t *testing.T) {
	u := relaytest.URL(t, relaytest.NATSEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		nc, err := nats.Connect(u)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		var r [4]byte
		_, _ = rand.Read(r[:])
		name := "relaycmd_" + hex.EncodeToString(r[:])
		s, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = js.DeleteStream(context.Background(), name) }()

		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 3)
		relaytest.Produce(t, ob, "orders", 3, 200)

		cmd := exec.Command(binary, "relay", "--queue", "orders", "--to", u, "--route", name+".{queue}.{partition}", "--addr", "127.0.0.1:0")
		cmd.Env = append(os.Environ(), "OUTBOX_DIALECT="+e.Name, "OUTBOX_DSN="+e.DSN)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("relay printed no address: %v\n%s", err, errOut.String())
		}
		_, base, _ := strings.Cut(strings.TrimSpace(line), " on ")

		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		for _, path := range []string{"healthz", "metrics"} {
			res, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			if res.StatusCode != http.StatusOK || path == "metrics" && !strings.Contains(string(body), "outbox_") {
				t.Errorf("GET /%s: %s\n%.2000s", path, res.Status, body)
			}
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("relay after SIGTERM: %v\n%s", err, errOut.String())
		}

		info, err := s.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var got []relaytest.Stored
		for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(context.Background(), seq)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := strconv.Atoi(m.Header.Get(relay.HeaderPartition))
			sq, _ := strconv.ParseInt(m.Header.Get(relay.HeaderSeq), 10, 64)
			if m.Subject != name+".orders."+strconv.Itoa(p) {
				t.Errorf("subject %s for partition %d", m.Subject, p)
			}
			got = append(got, relaytest.Stored{Partition: p, Seq: sq, ID: m.Header.Get(jetstream.MsgIDHeader)})
		}
		t.Log(relaytest.Check(t, got, relaytest.Want(3, 200)))
	})
}

func TestRelayCommandUsage(t *testing.T) {
	b := backends()[0].make(t)
	seed(t, b)
	b.ctl(t, "relay", "--to", "nats://127.0.0.1:1").want(t, 2, "no queue")
	b.ctl(t, "relay", "--queue", "orders", "--to", "ftp://x").want(t, 2, "unknown scheme")
	b.ctl(t, "relay", "--queue", "orders", "--to", "nats://127.0.0.1:4222", "--route", "{nope}").want(t, 2, "--route")
}
