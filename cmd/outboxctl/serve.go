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

	"github.com/modkit-go/db/console"
)

// tokenEnv holds the console's access token when --token is not given.
const tokenEnv = "OUTBOX_CONSOLE_TOKEN"

// runServe serves the operator console until interrupted. It binds to
// loopback unless told otherwise, and refuses any other address without an
// access token.
func runServe(ctx context.Context, c *cli, args []string) error {
	fs := c.flags("serve")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on; other than loopback it needs a token")
	token := fs.String("token", "", "access token required on every request ($"+tokenEnv+")")
	readOnly := fs.Bool("read-only", false, "show, but refuse every action")
	prefix := fs.String("path", "", "path prefix to serve under, such as /outbox")
	sample := fs.Duration("sample", 2*time.Second, "how often the charts sample the status")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if *token == "" {
		*token = c.getenv(tokenEnv)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return exitf(exitUsage, "--addr %q: %v", *addr, err)
	}
	if !loopback(host) && *token == "" {
		return exitf(exitUsage, "--addr %s is not a loopback address: pass --token or set %s (every request must then carry it)", *addr, tokenEnv)
	}
	s, err := c.open(ctx, false)
	if err != nil {
		return err
	}
	defer s.Close()
	logger := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	opts := console.Options{Prefix: strings.TrimSuffix(*prefix, "/"), Token: *token, ReadOnly: *readOnly,
		Logger: logger, SampleInterval: *sample}
	con, err := console.New(s.o, opts)
	if err != nil {
		return exitf(exitUsage, "%v", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return exitf(exitFailed, "listen: %v", err)
	}
	if err := con.Start(ctx); err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle(opts.Prefix+"/", con)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	fmt.Fprintf(c.stdout, "outbox console on http://%s%s/\n", ln.Addr(), opts.Prefix)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		_ = con.Stop(context.Background())
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)
	_ = con.Stop(shutdown)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

// loopback reports a host that only this machine reaches.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
