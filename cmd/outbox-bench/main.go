// Command outbox-bench measures the outbox on PostgreSQL, MariaDB/MySQL or
// SQLite against the raw database: enqueue versus INSERT+COMMIT, draining a
// backlog versus a SKIP LOCKED delete-drain, end-to-end latency at a fixed
// rate, producers and workers at once (concurrent), and (opt-in) a soak. Every run creates its own schema, database or
// file and drops it at the end. It verifies the order and completeness of
// what was delivered and exits 1 if that fails (2 on a setup or database
// error; 3 with --strict when a target is missed).
//
//	go run ./cmd/outbox-bench --dialect postgres
//	go run ./cmd/outbox-bench --dialect mysql --messages 100000 --json
//	go run ./cmd/outbox-bench --dialect sqlite --scenarios drain
//	go run ./cmd/outbox-bench --dialect postgres --soak-duration 5m
//	go run ./cmd/outbox-bench --dialect postgres --driver pgx --scenarios cross
//	go run ./cmd/outbox-bench --dialect postgres --scenarios concurrent --messages 20000
//	go run ./cmd/outbox-bench --dialect mysql --scenarios concurrent --messages 20000 --processes 2
//	go run ./cmd/outbox-bench --dialect postgres --scenarios relay --to nats --messages 100000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modkit-go/db/cmd/outbox-bench/internal/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == bench.CrossWorkerArg {
		// The worker process of the cross scenario, started by this command.
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
		defer cancel()
		if err := bench.RunCrossWorker(ctx, os.Args[2:], os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "outbox-bench worker: %v\n", err)
			os.Exit(2)
		}
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 2 && args[0] == bench.WorkerFlag {
		// A worker process of --processes: not for direct use.
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
		defer cancel()
		if err := bench.ServeWorker(ctx, args[1], os.Stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "outbox-bench worker: %v\n", err)
			return 2
		}
		return 0
	}
	fs := flag.NewFlagSet("outbox-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bench.Options
	fs.StringVar(&o.Dialect, "dialect", "", "postgres, mysql or sqlite (required)")
	fs.StringVar(&o.Driver, "driver", "pq", "PostgreSQL driver: pq (lib/pq) or pgx (pgx's stdlib)")
	fs.StringVar(&o.DSN, "dsn", "", "server DSN (default: the local server), or for sqlite the directory of the temporary file")
	fs.IntVar(&o.Messages, "messages", 50000, "messages per enqueue mode, and the drain backlog")
	fs.IntVar(&o.Partitions, "partitions", 16, "partitions of the benchmark queue")
	fs.IntVar(&o.Producers, "producers", 4, "concurrent producers (outbox and baseline)")
	fs.IntVar(&o.Consumers, "consumers", 4, "outbox MaxConcurrency and baseline drain workers")
	fs.IntVar(&o.Sequencers, "sequencers", 0, "outbox Config.Sequencers (0: the preset's)")
	fs.DurationVar(&o.CoalesceDelay, "coalesce-delay", 0, "outbox Config.CoalesceDelay (0: the preset's; negative: Config.NoCoalesce)")
	fs.StringVar(&o.Preset, "preset", "default", "outbox Config preset: "+strings.Join(slices.Sorted(maps.Keys(bench.Presets)), ", ")+" (the flags above override it)")
	fs.BoolVar(&o.DefaultPool, "default-pool", false, "cross scenario: leave the worker process's pool at database/sql's defaults (2 idle connections)")
	fs.IntVar(&o.Processes, "processes", 1, "concurrent scenario: 1 runs producers and workers in this process; N > 1 runs the workers in N-1 child processes (postgres, mysql)")
	fs.IntVar(&o.Batch, "batch", 100, "messages per transaction in the batch enqueue mode")
	fs.IntVar(&o.PayloadBytes, "payload-bytes", 256, "payload size in bytes (at least 16)")
	fs.IntVar(&o.Rate, "rate", 500, "e2e and soak producer rate, msg/s")
	fs.DurationVar(&o.E2EDuration, "e2e-duration", 10*time.Second, "e2e run length per mode")
	fs.IntVar(&o.E2EQueues, "e2e-queues", 1, "e2e: queues of --partitions partitions each, all handled, messages spread over every partition")
	fs.DurationVar(&o.E2EIdle, "e2e-idle", 0, "e2e: run the outbox idle this long before producing (a trickle after a quiet spell)")
	fs.StringVar(&o.To, "to", "", "relay scenario: nats, amqp, redis (local servers) or a nats://, amqp://, redis:// URL")
	fs.IntVar(&o.RelayRate, "relay-rate", 200, "relay scenario: producer rate for the commit-to-broker latency, msg/s")
	soakDur := fs.Duration("soak-duration", 0, "run the soak scenario for this long (opt-in)")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Minute, "bound on each wait for deliveries")
	scen := fs.String("scenarios", strings.Join(bench.DefaultScenarios, ","), "comma-separated: "+strings.Join(bench.ScenarioNames(), ", "))
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	strict := fs.Bool("strict", false, "exit 3 when a target is missed")
	quiet := fs.Bool("quiet", false, "no progress lines on stderr")
	cpuProfile := fs.String("cpuprofile", "", "write this process's CPU profile to the file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "outbox-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if o.Driver != "pq" && o.Driver != "pgx" {
		fmt.Fprintf(stderr, "outbox-bench: --driver must be pq or pgx (got %q)\n", o.Driver)
		return 2
	}
	switch o.Dialect {
	case "postgres", "mysql", "sqlite":
	default:
		fmt.Fprintf(stderr, "outbox-bench: --dialect must be postgres, mysql or sqlite (got %q)\n", o.Dialect)
		return 2
	}
	if _, ok := bench.PresetConfig(o.Preset); !ok {
		fmt.Fprintf(stderr, "outbox-bench: unknown --preset %q\n", o.Preset)
		return 2
	}
	if o.Processes < 1 {
		fmt.Fprintln(stderr, "outbox-bench: --processes must be >= 1")
		return 2
	}
	if o.Messages < 1 || o.Partitions < 1 || o.Partitions > 1024 || o.Producers < 1 || o.Consumers < 1 ||
		o.Batch < 1 || o.Rate < 1 || o.E2EQueues < 1 || o.E2EIdle < 0 || o.Sequencers < 0 || o.PayloadBytes < 16 || o.PayloadBytes > 1<<20 {
		fmt.Fprintln(stderr, "outbox-bench: --messages, --producers, --consumers, --batch, --rate and --e2e-queues must be >= 1, --e2e-idle >= 0, "+
			"--partitions in 1..1024, --payload-bytes in 16..1048576")
		return 2
	}
	var scenarios []string
	for _, s := range strings.Split(*scen, ",") {
		if s = strings.TrimSpace(s); s != "" {
			scenarios = append(scenarios, s)
		}
	}
	if contains(scenarios, bench.ScenarioRelay) && o.To == "" {
		fmt.Fprintln(stderr, "outbox-bench: the relay scenario needs --to (nats, amqp, redis or a URL)")
		return 2
	}
	if *soakDur > 0 {
		o.SoakDuration = *soakDur
		if !contains(scenarios, bench.ScenarioSoak) {
			scenarios = append(scenarios, bench.ScenarioSoak)
		}
	}
	if !*quiet {
		o.Logf = func(format string, a ...any) {
			fmt.Fprintf(stderr, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
		}
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "outbox-bench: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "outbox-bench: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	rep, err := bench.Run(ctx, o, scenarios)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		out := struct {
			bench.Report
			Error              string   `json:"error,omitempty"`
			VerificationFailed []string `json:"verification_failed,omitempty"`
			UnmetTargets       []string `json:"unmet_targets,omitempty"`
		}{Report: rep, VerificationFailed: rep.VerificationErrors(), UnmetTargets: rep.UnmetTargets()}
		if err != nil {
			out.Error = err.Error()
		}
		if e := enc.Encode(out); e != nil {
			fmt.Fprintf(stderr, "outbox-bench: %v\n", e)
			return 2
		}
	} else {
		printTable(stdout, rep)
	}
	if bad := rep.VerificationErrors(); len(bad) > 0 {
		fmt.Fprintln(stderr, "outbox-bench: VERIFICATION FAILED (order or completeness of deliveries):")
		for _, b := range bad {
			fmt.Fprintln(stderr, "  "+b)
		}
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "outbox-bench: %v\n", err)
		return 2
	}
	if unmet := rep.UnmetTargets(); len(unmet) > 0 {
		fmt.Fprintf(stderr, "outbox-bench: targets missed: %s\n", strings.Join(unmet, "; "))
		if *strict {
			return 3
		}
	}
	return 0
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func printTable(w io.Writer, rep bench.Report) {
	o := rep.Options
	fmt.Fprintf(w, "outbox-bench  dialect=%s  messages=%d  partitions=%d  producers=%d  consumers=%d  batch=%d  payload=%dB  rate=%d/s  preset=%s\n\n",
		rep.Dialect, o.Messages, o.Partitions, o.Producers, o.Consumers, o.Batch, o.PayloadBytes, o.Rate, o.Preset)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tmode\tmsgs\tseconds\tmsg/s\tbaseline msg/s\tratio\tlatency p50/p95/p99/max ms\ttarget\tmet?\tverified\t")
	for _, r := range rep.Results {
		base, rat, lat := "-", "-", "-"
		if r.BaselineRate > 0 {
			base = fmt.Sprintf("%.0f", r.BaselineRate)
			rat = fmt.Sprintf("%.2fx", r.Ratio)
		}
		if r.Latency != nil {
			lat = fmt.Sprintf("%.1f/%.1f/%.1f/%.1f", r.Latency.P50, r.Latency.P95, r.Latency.P99, r.Latency.Max)
		}
		met := "-"
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*r.Met]
		}
		ver := "ok"
		if !r.Verified {
			ver = "FAILED"
		}
		target := r.Target
		if target == "" {
			target = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Scenario, r.Mode, r.Messages, r.Seconds, r.Rate, base, rat, lat, target, met, ver)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rep.Results {
		if r.Baseline != "" {
			fmt.Fprintf(w, "  %s/%s baseline: %s (%.2fs)\n", r.Scenario, r.Mode, r.Baseline, r.BaselineSeconds)
		}
		if d := r.Details; d != nil {
			if v, ok := d["delivered_seconds"]; ok {
				fmt.Fprintf(w, "  %s/%s: all delivered at %.2fs, vacuumed by %.2fs\n", r.Scenario, r.Mode, v, r.Seconds)
			}
			if v, ok := d["producer_msg_per_s"]; ok {
				fmt.Fprintf(w, "  %s/%s: producers committed %.0f msg/s (%.2fs); delivered %.0f msg/s from the first commit to the last handler call\n",
					r.Scenario, r.Mode, v, d["producing_seconds"], r.Rate)
			}
			if v, ok := d["queue_msg_per_s"]; ok {
				fmt.Fprintf(w, "  %s/%s: reference queue (the baseline's producers, SKIP LOCKED claim + DELETE consumers, no order or seq) delivered %.0f msg/s; the outbox %.2fx of it\n",
					r.Scenario, r.Mode, v, d["queue_ratio"])
			}
			if v, ok := d["queue_error"]; ok {
				fmt.Fprintf(w, "  %s/%s: reference queue failed: %v\n", r.Scenario, r.Mode, v)
			}
			if v, ok := d["pipeline_write_tx_per_msg"]; ok {
				fmt.Fprintf(w, "  %s/%s: pipeline write transactions per message (sequencer, claims, acks, vacuum): %.3f\n", r.Scenario, r.Mode, v)
			}
			if v, ok := d["rows_max"]; ok {
				fmt.Fprintf(w, "  %s/%s: message rows max %v end %v; table bytes max %v end %v; heap warm %v end %v (limit %v)\n",
					r.Scenario, r.Mode, v, d["rows_end"], d["table_bytes_max"], d["table_bytes_end"],
					d["heap_warm_bytes"], d["heap_end_bytes"], d["heap_limit_bytes"])
			}
		}
		if r.Latency != nil && r.Latency.Negative > 0 {
			fmt.Fprintf(w, "  %s/%s: %d handler starts preceded the return of InTx (counted as 0 ms)\n", r.Scenario, r.Mode, r.Latency.Negative)
		}
		if !r.Verified {
			fmt.Fprintf(w, "  %s/%s: VERIFICATION FAILED: %s\n", r.Scenario, r.Mode, r.VerifyError)
		}
	}
}
