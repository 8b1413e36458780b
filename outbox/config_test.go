package outbox

import (
	"database/sql"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/modkit-go/db/dialect/sqlite"
)

// TestConfigRanges checks every field just below, at and just above both
// ends of its documented range. The table is written out here, not taken
// from config.go, so that a changed bound fails until its doc changes too.
func TestConfigRanges(t *testing.T) {
	ms := int64(time.Millisecond)
	for _, f := range []struct {
		name     string
		min, max int64
	}{
		{"MaxPayloadBytes", 1, 4 << 20},
		{"PollInterval", 10 * ms, int64(time.Hour)},
		{"LeaseDuration", int64(time.Second), int64(24 * time.Hour)},
		{"BatchSize", 1, 10000},
		{"MaxConcurrency", 1, 1024},
		{"Sequencers", 1, 64},
		{"SequencerBatch", 1, 10000},
		{"RetryBase", ms, int64(time.Hour)},
		{"RetryMax", 10 * ms, int64(24 * time.Hour)},
		{"MaxAttempts", 0, 1_000_000},
		{"VacuumInterval", 10 * ms, int64(time.Hour)},
		{"VacuumBatch", 1, 10000},
		{"ShutdownTimeout", 10 * ms, int64(10 * time.Minute)},
		{"HandlerTimeout", ms, int64(24 * time.Hour)},
		{"CoalesceDelay", int64(100 * time.Microsecond), 100 * ms},
	} {
		below := f.min - 1
		if below == 0 {
			below = -1 // zero means the default
		}
		for _, c := range []struct {
			v  int64
			ok bool
		}{{below, false}, {f.min, true}, {f.max, true}, {f.max + 1, false}, {-1 << 40, false}} {
			var cfg Config
			reflect.ValueOf(&cfg).Elem().FieldByName(f.name).SetInt(c.v)
			// Keep the pair RetryBase <= RetryMax satisfied while one of
			// them moves alone.
			if f.name == "RetryBase" && c.v > 0 {
				cfg.RetryMax = 24 * time.Hour
			}
			if f.name == "RetryMax" && c.v > 0 && c.v < int64(time.Second) {
				cfg.RetryBase = time.Millisecond
			}
			_, err := cfg.withDefaults()
			if c.ok && err != nil {
				t.Errorf("%s = %d: %v", f.name, c.v, err)
			}
			if !c.ok && (!errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), f.name)) {
				t.Errorf("%s = %d: got %v, want ErrInvalidConfig naming the field", f.name, c.v, err)
			}
		}
	}
	// Every numeric field has a range: a new field needs an entry in
	// Config.limits (and a row above).
	ranged := map[string]bool{}
	for _, l := range new(Config).limits() {
		ranged[l.name] = true
	}
	for f := range reflect.TypeFor[Config]().Fields() {
		if k := f.Type.Kind(); (k == reflect.Int || k == reflect.Int64) && !ranged[f.Name] {
			t.Errorf("Config.%s has no range in Config.limits", f.Name)
		}
	}
	if _, err := (Config{RetryBase: time.Minute, RetryMax: time.Second}).withDefaults(); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("RetryMax below RetryBase: %v", err)
	}
	got, err := Config{}.withDefaults()
	if err != nil || got.LeaseDuration != 30*time.Second || got.MaxPayloadBytes != DefaultMaxPayloadBytes || got.MaxAttempts != 0 {
		t.Errorf("zero Config: %+v, %v", got, err)
	}
}

// CoalesceDelay reaches the loops, 8ms by default, and NoCoalesce turns it
// off.
func TestCoalesceConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{}, 8 * time.Millisecond},
		{Config{CoalesceDelay: 20 * time.Millisecond}, 20 * time.Millisecond},
		{Config{NoCoalesce: true}, 0},
		{Config{NoCoalesce: true, CoalesceDelay: 20 * time.Millisecond}, 0},
	} {
		o, err := New(new(sql.DB), sqlite.New(), c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if o.coalesce != c.want {
			t.Errorf("%+v: coalesce %v, want %v", c.cfg, o.coalesce, c.want)
		}
	}
}
