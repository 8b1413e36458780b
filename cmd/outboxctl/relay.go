package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/modkit-go/db/internal/relaytarget"
	"github.com/modkit-go/db/outbox"
	"github.com/modkit-go/db/relay"
)

// webhookSecretEnv holds the webhook signing secret when --secret is not
// given.
const webhookSecretEnv = "OUTBOX_WEBHOOK_SECRET"

// runRelay publishes queues to a broker until interrupted (SIGINT or
// SIGTERM), then stops gracefully: in-flight publishes finish and are
// acknowledged, and the leases are released.
func runRelay(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("relay")
	var queues stringList
	fs.Var(&queues, "queue", "queue to relay (repeat, or comma-separated)")
	to := fs.String("to", "", "target: nats://, amqp://, amqps://, redis://, rediss://, kafka://host:port[,host:port], http:// or https://")
	route := fs.String("route", "{queue}", "routing template: {queue}, {partition}, {key}, {payload_type}, {header:NAME}")
	exchange := fs.String("exchange", "", "RabbitMQ exchange (default: the default exchange)")
	secret := fs.String("secret", "", "webhook signing secret, whsec_<base64> or raw ($"+webhookSecretEnv+")")
	concurrency := fs.Int("concurrency", 16, "partitions published at once (outbox MaxConcurrency)")
	batch := fs.Int("batch", 100, "most messages per publish call (outbox BatchSize)")
	maxAttempts := fs.Int("max-attempts", 0, "dead-letter a message after this many failed publishes (0: retry forever)")
	addr := fs.String("addr", "", "serve /healthz and Prometheus /metrics on this address (default: none)")
	stopTimeout := fs.Duration("stop-timeout", 30*time.Second, "how long a stop waits for in-flight publishes")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if len(queues) == 0 {
		return exitf(exitUsage, "no queue: pass --queue")
	}
	if *secret == "" {
		*secret = c.getenv(webhookSecretEnv)
	}
	rt, err := relay.Template(*route)
	if err != nil {
		return exitf(exitUsage, "--route: %v", err)
	}
	pub, closePub, err := relaytarget.Open(*to, relaytarget.Options{Exchange: *exchange, Secret: *secret})
	if errors.Is(err, relaytarget.ErrUsage) {
		return exitf(exitUsage, "--to: %v", err)
	}
	if err != nil {
		return exitf(exitConnect, "%v", err)
	}
	defer closePub()

	s, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := outbox.Config{Logger: logger, MaxConcurrency: *concurrency, BatchSize: *batch, MaxAttempts: *maxAttempts}
	var srv *http.Server
	if *addr != "" {
		reg := promclient.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg))
		if err != nil {
			return err
		}
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
		defer func() { _ = mp.Shutdown(context.Background()) }()
		cfg.MeterProvider = mp
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
			pctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
			defer cancel()
			if err := s.db.PingContext(pctx); err != nil {
				http.Error(w, "database: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return exitf(exitFailed, "listen: %v", err)
		}
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		// First line of stdout, as serve prints it: scripts (and tests)
		// learn the address of --addr 127.0.0.1:0 from it.
		fmt.Fprintf(c.stdout, "relay: /healthz and /metrics on http://%s/\n", ln.Addr())
	}
	ob, err := outbox.New(s.db, s.d, cfg)
	if err != nil {
		return exitf(exitUsage, "%v", err)
	}
	h := relay.Handler(pub, relay.WithRoute(rt))
	for _, q := range queues {
		if err := ob.Handle(q, h); err != nil {
			return exitf(exitUsage, "queue %s: %v", q, err)
		}
		if _, err := ob.QueueStatus(ctx, q); err != nil {
			return exitf(exitNotFound, "queue %s: %v", q, err)
		}
	}
	if err := ob.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	logger.Info("relaying", "queues", strings.Join(queues, ","), "to", relaytarget.Redact(*to), "route", *route)
	<-ctx.Done()
	logger.Info("stopping")
	sctx, cancel := context.WithTimeout(context.Background(), *stopTimeout)
	defer cancel()
	return ob.Stop(sctx)
}

// stringList is a repeatable, comma-separated flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	if len(*l) == 0 {
		return errors.New("empty queue name")
	}
	return nil
}
