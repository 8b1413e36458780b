// Package webhook publishes outbox messages as HTTP POSTs following the
// Standard Webhooks conventions (standardwebhooks.com).
//
// Each message is one POST of its payload to the endpoint, with:
//
//	webhook-id         the message id, stable across redeliveries (receivers deduplicate by it)
//	webhook-timestamp  seconds since the Unix epoch at sending
//	webhook-signature  "v1," + base64(HMAC-SHA256(key, id + "." + timestamp + "." + body))
//	Content-Type       the payload type when it is a media type, else application/octet-stream
//
// plus the message's headers (the trace context included) and the relay's
// (Outbox-Queue, Outbox-Partition, Outbox-Seq…) as HTTP headers. The key
// is the secret's bytes, or for a secret of the form "whsec_<base64>" the
// decoded base64; Verify checks a request the same way.
//
// A 2xx response delivers the message. 408, 429, 5xx and network errors
// are retried: the relay retries the message, in order, with its backoff;
// a Retry-After of at most WithMaxRetryAfter is waited for in place first.
// Any other status (4xx, an unfollowed redirect) is permanent and
// dead-letters the message. Redirects are followed only to the same
// scheme and host. Messages of a partition are posted one at a time, each
// once the previous was answered.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// Publisher posts messages to an HTTP endpoint. It is safe for concurrent
// use.
type Publisher struct {
	endpoint      string
	key           []byte
	client        *http.Client
	maxRetryAfter time.Duration
	now           func() time.Time
}

var _ relay.Publisher = (*Publisher)(nil)

// Option configures a Publisher.
type Option func(*Publisher)

// WithTimeout bounds each request, response body included (default 10s).
func WithTimeout(d time.Duration) Option { return func(p *Publisher) { p.client.Timeout = d } }

// WithMaxRetryAfter is the longest Retry-After waited for inside a
// publish (default 10s); a longer one is left to the relay's backoff.
func WithMaxRetryAfter(d time.Duration) Option { return func(p *Publisher) { p.maxRetryAfter = d } }

// WithTransport sets the HTTP transport (default: a clone of
// http.DefaultTransport).
func WithTransport(rt http.RoundTripper) Option {
	return func(p *Publisher) { p.client.Transport = rt }
}

// New returns a Publisher that posts to endpoint, signing with secret
// ("whsec_<base64>" or raw; empty: no signature header). A message whose
// route chose an absolute http(s) URL is posted there instead.
func New(endpoint, secret string, opts ...Option) (*Publisher, error) {
	key, err := signingKey(secret)
	if err != nil {
		return nil, err
	}
	p := &Publisher{endpoint: endpoint, key: key, maxRetryAfter: 10 * time.Second, now: time.Now}
	p.client = &http.Client{
		Timeout:       10 * time.Second,
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
		CheckRedirect: sameHost,
	}
	for _, o := range opts {
		o(p)
	}
	return p, nil
}

func signingKey(secret string) ([]byte, error) {
	if s, ok := strings.CutPrefix(secret, "whsec_"); ok {
		k, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("webhook: secret: %w", err)
		}
		return k, nil
	}
	return []byte(secret), nil
}

func sameHost(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return http.ErrUseLastResponse
	}
	if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
		return http.ErrUseLastResponse
	}
	return nil
}

// Sign returns the webhook-signature value for id, timestamp and body.
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%d.", id, timestamp)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// ErrSignature is returned by Verify for a request that fails the check.
var ErrSignature = errors.New("webhook: invalid signature")

// Verify checks a received webhook: h holds its headers, body its payload,
// secret is the sender's, and tolerance bounds the timestamp's distance
// from now (replays). It returns nil or an error wrapping ErrSignature.
func Verify(secret string, h http.Header, body []byte, tolerance time.Duration) error {
	key, err := signingKey(secret)
	if err != nil {
		return err
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	t, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || err != nil {
		return fmt.Errorf("%w: missing webhook-id or webhook-timestamp", ErrSignature)
	}
	if d := time.Since(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp outside the tolerance", ErrSignature)
	}
	want := Sign(key, id, t, body)
	for _, s := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("%w: no matching signature", ErrSignature)
}

// Publish posts msgs in order, each once the previous was answered, and
// returns how many were delivered (see relay.Publisher).
func (p *Publisher) Publish(ctx context.Context, msgs []relay.Message) (int, error) {
	for i, m := range msgs {
		if err := p.post(ctx, m); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}

func (p *Publisher) post(ctx context.Context, m relay.Message) error {
	u := p.endpoint
	if strings.HasPrefix(m.Destination, "http://") || strings.HasPrefix(m.Destination, "https://") {
		u = m.Destination
	}
	waited := time.Duration(0)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(m.Payload))
		if err != nil {
			return outbox.Permanent(fmt.Errorf("webhook: %w", err))
		}
		for k, v := range m.Headers {
			if validName(k) && validValue(v) {
				req.Header.Set(k, v)
			}
		}
		ct := "application/octet-stream"
		if _, _, err := mime.ParseMediaType(m.Delivery.PayloadType); err == nil && strings.Contains(m.Delivery.PayloadType, "/") {
			ct = m.Delivery.PayloadType
		}
		ts := p.now().Unix()
		req.Header.Set("Content-Type", ct)
		req.Header.Set("webhook-id", m.ID)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
		if len(p.key) > 0 {
			req.Header.Set("webhook-signature", Sign(p.key, m.ID, ts, m.Payload))
		}
		resp, err := p.client.Do(req)
		if err != nil {
			return fmt.Errorf("webhook: %w", err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
		code := resp.StatusCode
		switch {
		case code >= 200 && code < 300:
			return nil
		case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
			err := fmt.Errorf("webhook: %s: %s", u, resp.Status)
			d, ok := retryAfter(resp.Header.Get("Retry-After"), p.now())
			if !ok || waited+d > p.maxRetryAfter {
				return err
			}
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
			waited += d
		default:
			return outbox.Permanent(fmt.Errorf("webhook: %s: %s", u, resp.Status))
		}
	}
}

// retryAfter parses a Retry-After value: seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// validName reports whether k is an HTTP header field name (an RFC 9110
// token); other headers are not sent.
func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
