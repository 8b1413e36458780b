package redisstream_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modkit-go/db/internal/relaytest"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
	"github.com/modkit-go/db/relay/redisstream"
)

func client(t testing.TB, u string, mod func(*redis.Options)) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(opt)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// streams is a test's prefix of stream names: one stream per partition.
type streams struct {
	t          testing.TB
	rdb        *redis.Client
	prefix     string
	partitions int
}

func newStreams(t testing.TB, rdb *redis.Client, partitions int) *streams {
	var r [4]byte
	_, _ = rand.Read(r[:])
	s := &streams{t: t, rdb: rdb, prefix: "relaytest:" + hex.EncodeToString(r[:]), partitions: partitions}
	t.Cleanup(func() {
		for p := 0; p < partitions; p++ {
			rdb.Del(context.Background(), s.key(p))
		}
	})
	return s
}

func (s *streams) key(p int) string { return s.prefix + ".orders." + strconv.Itoa(p) }

func (s *streams) count() int {
	n := 0
	for p := 0; p < s.partitions; p++ {
		l, _ := s.rdb.XLen(context.Background(), s.key(p)).Result()
		n += int(l)
	}
	return n
}

func (s *streams) readBack() []relaytest.Stored {
	s.t.Helper()
	var got []relaytest.Stored
	for p := 0; p < s.partitions; p++ {
		entries, err := s.rdb.XRange(context.Background(), s.key(p), "-", "+").Result()
		if err != nil {
			s.t.Fatal(err)
		}
		for _, e := range entries {
			f := func(k string) string { v, _ := e.Values[k].(string); return v }
			sq, _ := strconv.ParseInt(f(relay.HeaderSeq), 10, 64)
			if f(relay.HeaderPartition) != strconv.Itoa(p) || f("payload") != f("n") || f(relay.HeaderID) == "" {
				s.t.Errorf("stream %s entry %v", s.key(p), e.Values)
			}
			got = append(got, relaytest.Stored{Partition: p, Seq: sq, ID: f(relay.HeaderID)})
		}
	}
	return got
}

func start(t testing.TB, ob *outbox.Outbox, pub relay.Publisher, prefix string) {
	t.Helper()
	if err := ob.Handle("orders", relay.Handler(pub, relay.WithTemplate(prefix+".{queue}.{partition}"))); err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Stop(context.Background()) })
}

func TestRelay(t *testing.T) {
	u := relaytest.URL(t, relaytest.RedisEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		rdb := client(t, u, nil)
		s := newStreams(t, rdb, 4)
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, 300)
		start(t, ob, redisstream.New(rdb, redisstream.WithMaxLen(1000)), s.prefix)
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		c := relaytest.Check(t, s.readBack(), relaytest.Want(4, 300))
		if c.Duplicates != 0 {
			t.Errorf("%v: duplicates without a fault", c)
		}
		t.Log(c)
	})
}

// The client's connection is cut three times mid-stream by a proxy:
// without dedup, copies are counted; with it, there are none.
func TestConnectionCut(t *testing.T) {
	u := relaytest.URL(t, relaytest.RedisEnv)
	opt, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	for _, dedup := range []bool{false, true} {
		t.Run("dedup="+strconv.FormatBool(dedup), func(t *testing.T) {
			relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
				const n = 1200
				proxy := relaytest.NewProxy(t, opt.Addr)
				rdb := client(t, u, func(o *redis.Options) { o.Addr = proxy.Addr() })
				s := newStreams(t, client(t, u, nil), 4)
				ob := relaytest.Outbox(t, e, outbox.Config{BatchSize: 20}, "orders", 4)
				relaytest.Produce(t, ob, "orders", 4, n)
				var opts []redisstream.Option
				if dedup {
					opts = append(opts, redisstream.WithDedup(time.Minute))
				}
				start(t, ob, redisstream.New(rdb, opts...), s.prefix)
				cuts := proxy.CutAt(s.count, n/4, n/2, 3*n/4)
				relaytest.WaitDrained(t, ob, "orders", time.Minute)
				c := relaytest.Check(t, s.readBack(), relaytest.Want(4, n))
				if dedup && c.Duplicates != 0 {
					t.Errorf("%v: duplicates with dedup", c)
				}
				t.Logf("connections cut: %d; %v", cuts, c)
			})
		})
	}
}

// A key that is not a stream refuses XADD: the partition is retried in
// order until the key is removed, and nothing is lost.
func TestWrongTypeIsRetried(t *testing.T) {
	u := relaytest.URL(t, relaytest.RedisEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		rdb := client(t, u, nil)
		s := newStreams(t, rdb, 2)
		if err := rdb.Set(context.Background(), s.key(1), "not a stream", 0).Err(); err != nil {
			t.Fatal(err)
		}
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 2)
		relaytest.Produce(t, ob, "orders", 2, 100)
		start(t, ob, redisstream.New(rdb), s.prefix)
		deadline := time.Now().Add(time.Minute)
		for {
			st, err := ob.PartitionStatus(context.Background(), "orders", 1)
			if err == nil && st.Attempts > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("partition 1 not retrying: %+v, %v", st, err)
			}
			time.Sleep(5 * time.Millisecond) // polling an observable condition
		}
		if err := rdb.Del(context.Background(), s.key(1)).Err(); err != nil {
			t.Fatal(err)
		}
		relaytest.WaitDrained(t, ob, "orders", time.Minute)
		t.Log(relaytest.Check(t, s.readBack(), relaytest.Want(2, 100)))
	})
}

// The relay process is SIGKILLed twice mid-stream and restarted: every
// message is stored, in order per partition, copies counted.
func TestKilledRelay(t *testing.T) {
	relaytest.RunChild(func() outbox.Handler {
		opt, err := redis.ParseURL(os.Getenv(relaytest.RedisEnv))
		if err != nil {
			panic(err)
		}
		return relay.Handler(redisstream.New(redis.NewClient(opt)), relay.WithTemplate(os.Getenv("RELAYTEST_PREFIX")+".{queue}.{partition}"))
	})
	u := relaytest.URL(t, relaytest.RedisEnv)
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		const n = 3000
		rdb := client(t, u, nil)
		s := newStreams(t, rdb, 4)
		ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", 4)
		relaytest.Produce(t, ob, "orders", 4, n)
		killed := relaytest.Children(t, e, ob, "orders", []string{"RELAYTEST_PREFIX=" + s.prefix}, s.count, []int{n / 4, n / 2})
		t.Logf("relay processes killed: %d", killed)
		t.Log(relaytest.Check(t, s.readBack(), relaytest.Want(4, n)))
	})
}
