package sqlbase

import (
	"testing"
	"time"
)

// TestTimeScan: every form a driver hands a timestamp in scans to the same
// instant; NULL and MySQL's zero date are the zero time; junk is an error.
func TestTimeScan(t *testing.T) {
	want := time.Date(2026, 11, 29, 20, 1, 2, 345678000, time.UTC)
	for _, v := range []any{want, want.UnixMicro(), "2026-11-29 20:01:02.345678", []byte("2026-11-29 20:01:02.345678")} {
		var got Time
		if err := got.Scan(v); err != nil || !time.Time(got).Equal(want) {
			t.Errorf("Scan(%T %v) = %v, %v; want %v", v, v, time.Time(got), err, want)
		}
	}
	for _, v := range []any{nil, "", "0000-00-00 00:00:00"} {
		got := Time(want)
		if err := got.Scan(v); err != nil || !time.Time(got).IsZero() {
			t.Errorf("Scan(%#v) = %v, %v; want the zero time", v, time.Time(got), err)
		}
	}
	for _, v := range []any{"yesterday", 1.5} {
		var got Time
		if err := got.Scan(v); err == nil {
			t.Errorf("Scan(%#v) succeeded", v)
		}
	}
}

// TestTakeoverPolicy: the SQL fragment and its Go twin agree: one attempt
// more for a lease that was never released, none for a released one.
func TestTakeoverPolicy(t *testing.T) {
	if got, want := TakeoverAttempts("pr"), "pr.attempts + CASE WHEN pr.lease_token IS NULL THEN 0 ELSE 1 END"; got != want {
		t.Errorf("TakeoverAttempts(pr) = %q, want %q", got, want)
	}
	if got, want := TakeoverAttempts(""), "attempts + CASE WHEN lease_token IS NULL THEN 0 ELSE 1 END"; got != want {
		t.Errorf("TakeoverAttempts() = %q, want %q", got, want)
	}
	if AttemptsAfterTakeover(2, true) != 3 || AttemptsAfterTakeover(2, false) != 2 {
		t.Error("AttemptsAfterTakeover does not add exactly one for an unreleased lease")
	}
}

func TestCapacity(t *testing.T) {
	for limit, want := range map[int]int{-1: 0, 0: 0, 5: 5, maxPrealloc: maxPrealloc, 1 << 30: maxPrealloc} {
		if got := Capacity(limit); got != want {
			t.Errorf("Capacity(%d) = %d, want %d", limit, got, want)
		}
	}
}
