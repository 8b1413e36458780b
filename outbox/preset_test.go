package outbox

import (
	"reflect"
	"testing"
)

// DefaultConfig is exactly what the zero Config stands for, and every
// preset is a valid Config that keeps the fields set on it afterwards.
func TestPresets(t *testing.T) {
	zero, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	zero.Logger, zero.Propagator = nil, nil
	if def := DefaultConfig(); !reflect.DeepEqual(def, zero) {
		t.Errorf("DefaultConfig() = %+v, want the zero Config's defaults %+v", def, zero)
	}
	for name, cfg := range map[string]Config{
		"default": DefaultConfig(), "low latency": LowLatencyConfig(),
		"high throughput": HighThroughputConfig(), "relaxed": RelaxedConfig(),
	} {
		cfg.BatchSize = 7
		got, err := cfg.withDefaults()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got.BatchSize != 7 {
			t.Errorf("%s: BatchSize %d after override, want 7", name, got.BatchSize)
		}
	}
}
