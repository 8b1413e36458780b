package webhook_test

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modkit-go/db/internal/relaytest"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
	"github.com/modkit-go/db/relay/webhook"
)

var secret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("a test secret of 32 bytes length"))

// receiver is a webhook endpoint that verifies each request and records
// it; answer, when set, chooses the status of each request.
type receiver struct {
	t      testing.TB
	mu     sync.Mutex
	got    []relaytest.Stored
	calls  int
	answer func(call int, r *http.Request) (int, http.Header)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := webhook.Verify(secret, r.Header, body, time.Minute); err != nil {
		rc.t.Errorf("verify: %v", err)
	}
	if r.Header.Get("webhook-id") != r.Header.Get(relay.HeaderID) || r.Header.Get("Content-Type") != "text/plain" || r.Header.Get("n") != string(body) {
		rc.t.Errorf("headers %v, body %q", r.Header, body)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.calls++
	code := http.StatusNoContent
	if rc.answer != nil {
		var h http.Header
		code, h = rc.answer(rc.calls, r)
		for k, v := range h {
			w.Header()[k] = v
		}
	}
	if code/100 == 2 {
		p, _ := strconv.Atoi(r.Header.Get(relay.HeaderPartition))
		sq, _ := strconv.ParseInt(r.Header.Get(relay.HeaderSeq), 10, 64)
		rc.got = append(rc.got, relaytest.Stored{Partition: p, Seq: sq, ID: r.Header.Get("webhook-id")})
	}
	w.WriteHeader(code)
}

func run(t *testing.T, e relaytest.Env, rc *receiver, partitions, n int, opts ...webhook.Option) *outbox.Outbox {
	t.Helper()
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	pub, err := webhook.New(srv.URL+"/hook", secret, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ob := relaytest.Outbox(t, e, outbox.Config{}, "orders", partitions)
	relaytest.Produce(t, ob, "orders", partitions, n)
	if err := ob.Handle("orders", relay.Handler(pub)); err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ob.Stop(context.Background()) })
	relaytest.WaitDrained(t, ob, "orders", time.Minute)
	return ob
}

// Transient answers (500, 503, 408, 429 with Retry-After) are retried in
// order; every message arrives, signed.
func TestRelay(t *testing.T) {
	relaytest.ForEachBackend(t, func(t *testing.T, e relaytest.Env) {
		rc := &receiver{t: t, answer: func(call int, _ *http.Request) (int, http.Header) {
			switch call % 10 {
			case 3:
				return http.StatusInternalServerError, nil
			case 5:
				return http.StatusTooManyRequests, http.Header{"Retry-After": {"0"}}
			case 7:
				return http.StatusRequestTimeout, nil
			}
			return http.StatusOK, nil
		}}
		run(t, e, rc, 3, 120)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		t.Log(relaytest.Check(t, rc.got, relaytest.Want(3, 120)))
	})
}

// A 4xx other than 408 and 429 dead-letters that message; the others
// arrive in order.
func TestClientErrorIsPermanent(t *testing.T) {
	rc := &receiver{t: t, answer: func(_ int, r *http.Request) (int, http.Header) {
		if r.Header.Get(relay.HeaderSeq) == "3" {
			return http.StatusUnprocessableEntity, nil
		}
		return http.StatusOK, nil
	}}
	ob := run(t, relaytest.Open(t, "sqlite"), rc, 1, 5)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var seqs []int64
	for _, s := range rc.got {
		seqs = append(seqs, s.Seq)
	}
	if len(seqs) != 4 || seqs[2] != 4 {
		t.Fatalf("delivered seqs %v, want 1 2 4 5", seqs)
	}
	dlsPage, err := ob.DeadLetterPage(context.Background(), outbox.DeadLetterFilter{Queue: "orders"})
	dls := dlsPage.DeadLetters
	if err != nil || len(dls) != 1 || dls[0].Seq != 3 || !strings.Contains(dls[0].Reason, "422") {
		t.Fatalf("dead letters %+v (%v), want seq 3 (422)", dls, err)
	}
}

// A redirect to another host is not followed: the message is
// dead-lettered, and the other host never sees it.
func TestNoCrossHostRedirect(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		t.Error("the other host was called")
	}))
	defer other.Close()
	rc := &receiver{t: t, answer: func(int, *http.Request) (int, http.Header) {
		return http.StatusTemporaryRedirect, http.Header{"Location": {strings.Replace(other.URL, "127.0.0.1", "localhost", 1) + "/hook"}}
	}}
	ob := run(t, relaytest.Open(t, "sqlite"), rc, 1, 1)
	n, err := ob.CountDeadLetters(context.Background(), outbox.DeadLetterFilter{Queue: "orders"})
	if err != nil || n != 1 {
		t.Fatalf("dead letters %d (%v), want 1", n, err)
	}
}

// Retry-After is honoured: the retry comes no sooner than it says.
func TestRetryAfter(t *testing.T) {
	var first time.Time
	rc := &receiver{t: t, answer: func(call int, _ *http.Request) (int, http.Header) {
		if call == 1 {
			first = time.Now()
			return http.StatusServiceUnavailable, http.Header{"Retry-After": {"1"}}
		}
		if d := time.Since(first); d < time.Second {
			t.Errorf("retried after %v, Retry-After said 1s", d)
		}
		return http.StatusOK, nil
	}}
	run(t, relaytest.Open(t, "sqlite"), rc, 1, 1)
}

func TestVerify(t *testing.T) {
	body := []byte(`{"a":1}`)
	ts := time.Now().Unix()
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	h := http.Header{}
	h.Set("webhook-id", "msg_1")
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", "v1,bogus "+webhook.Sign(key, "msg_1", ts, body))
	if err := webhook.Verify(secret, h, body, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := webhook.Verify(secret, h, []byte(`{"a":2}`), time.Minute); err == nil {
		t.Fatal("a changed body verified")
	}
	h.Set("webhook-timestamp", strconv.FormatInt(ts-3600, 10))
	if err := webhook.Verify(secret, h, body, time.Minute); err == nil {
		t.Fatal("an old timestamp verified")
	}
}

// The Standard Webhooks specification's own example verifies.
func TestSpecExample(t *testing.T) {
	key, _ := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	got := webhook.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}
