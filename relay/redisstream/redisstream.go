// Package redisstream publishes outbox messages to Redis Streams.
//
// A batch goes to Redis as one script (EVALSHA) that XADDs its messages in
// order, each to the stream its route chose, and stops at the first that
// fails: Redis runs a script alone, so the stored messages are exactly the
// prefix the script reports, in one round trip per batch. Each entry has
// the field "payload" (the body) and one field per header, the relay's
// included (Outbox-Id, Outbox-Seq…); a header named "payload" is dropped.
//
// With WithDedup, the script also remembers each message id for a window
// and skips (and counts as stored) a message it already added, so a batch
// published again after a lost reply adds nothing twice. Without it a
// message whose reply was lost is added again; consumers drop copies by
// Outbox-Id, or by Outbox-Seq per (Outbox-Queue, Outbox-Partition).
//
// In Redis Cluster a script's keys must share a hash slot: route each
// partition to one stream, and use a hash tag ("{orders}.3") if a batch
// could name several.
package redisstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// script XADDs the batch. ARGV: maxlen ("0": none), dedup window in
// milliseconds ("0": none), the dedup key prefix, then per message its id
// and field count followed by the fields; KEYS: the streams, one per
// message. It returns {stored, error text}.
var script = redis.NewScript(`
local maxlen, window, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local a = 4
for i = 1, #KEYS do
  local id, nf = ARGV[a], tonumber(ARGV[a + 1])
  local first, last = a + 2, a + 1 + nf * 2
  a = last + 1
  if window == 0 or redis.call('EXISTS', prefix .. id) == 0 then
    local r
    if maxlen == '0' then
      r = redis.pcall('XADD', KEYS[i], '*', unpack(ARGV, first, last))
    else
      r = redis.pcall('XADD', KEYS[i], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, first, last))
    end
    if type(r) == 'table' and r.err then
      return {i - 1, r.err}
    end
    if window > 0 then
      redis.call('SET', prefix .. id, '1', 'PX', window)
    end
  end
end
return {#KEYS, ''}
`)

// Publisher publishes to Redis Streams. It is safe for concurrent use.
type Publisher struct {
	rdb         redis.Scripter
	maxLen      int64
	dedup       time.Duration
	dedupPrefix string
}

var _ relay.Publisher = (*Publisher)(nil)

// Option configures a Publisher.
type Option func(*Publisher)

// WithMaxLen caps each stream at about n entries (XADD MAXLEN ~ n): Redis
// trims whole nodes, so a stream may hold somewhat more. 0 (the default)
// never trims.
func WithMaxLen(n int64) Option { return func(p *Publisher) { p.maxLen = n } }

// WithDedup makes the script skip a message id it added within window
// (see the package doc). Each id costs a key with that expiry, under
// prefix "outbox-relay:dedup:" by default.
func WithDedup(window time.Duration) Option { return func(p *Publisher) { p.dedup = window } }

// New returns a Publisher over rdb (a *redis.Client, say).
func New(rdb redis.Scripter, opts ...Option) *Publisher {
	p := &Publisher{rdb: rdb, dedupPrefix: "outbox-relay:dedup:"}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Publish adds msgs in order in one script and returns how many were
// stored (see relay.Publisher).
func (p *Publisher) Publish(ctx context.Context, msgs []relay.Message) (int, error) {
	keys := make([]string, len(msgs))
	args := []any{strconv.FormatInt(p.maxLen, 10), strconv.FormatInt(p.dedup.Milliseconds(), 10), p.dedupPrefix}
	for i, m := range msgs {
		keys[i] = m.Destination
		fields := []any{"payload", m.Payload}
		for k, v := range m.Headers {
			if k != "payload" {
				fields = append(fields, k, v)
			}
		}
		args = append(args, m.ID, len(fields)/2)
		args = append(args, fields...)
	}
	res, err := script.Run(ctx, p.rdb, keys, args...).Slice()
	if err != nil {
		// The reply is lost, not the script: it may have stored any
		// prefix. Report none; the batch is published again.
		if strings.Contains(err.Error(), "CROSSSLOT") {
			return 0, outbox.Permanent(fmt.Errorf("redisstream: %w", err))
		}
		return 0, fmt.Errorf("redisstream: %w", err)
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("redisstream: unexpected script reply %v", res)
	}
	n, _ := res[0].(int64)
	msg, _ := res[1].(string)
	if int(n) >= len(msgs) {
		return len(msgs), nil
	}
	// A refusal (a key that is not a stream, memory full) holds the
	// partition, in order, until it clears.
	return int(n), fmt.Errorf("redisstream: XADD %s: %s", keys[n], msg)
}
