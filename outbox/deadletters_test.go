package outbox

import (
	"errors"
	"slices"
	"testing"
	"time"
)

func TestCursorRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 29, 20, 0, 0, 123456000, time.UTC)
	got, id, ok := decodePageToken(encodePageToken(at, 42))
	if !ok || !got.Equal(at) || id != 42 {
		t.Fatalf("decodePageToken(encodePageToken) = %v, %d, %v", got, id, ok)
	}
	for _, bad := range []string{"", "x", "!!!", encodePageToken(at, 0), encodePageToken(at, -1), "ZDEuMS4y" /* d1.1.2 */ + "="} {
		if _, _, ok := decodePageToken(bad); ok {
			t.Errorf("decodePageToken(%q) accepted", bad)
		}
	}
}

func TestClaimToken(t *testing.T) {
	at := time.UnixMicro(1_800_000_000_123_456).UTC()
	c := DeadLetterHold{Deadline: at}
	c.Token = encodeToken(at)
	got, err := decodeToken(c.Token)
	if err != nil || !got.Equal(at) {
		t.Fatalf("decodeToken = %v, %v", got, err)
	}
	for _, bad := range []string{"", "forged", encodePageToken(at, 1)} {
		if _, err := decodeToken(bad); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("decodeToken(%q) = %v, want ErrInvalidFilter", bad, err)
		}
	}
}

func TestIDs(t *testing.T) {
	got, err := ids([]int64{3, 1, 3, 2, 1})
	if err != nil || !slices.Equal(got, []int64{3, 1, 2}) {
		t.Fatalf("ids = %v, %v; want [3 1 2]", got, err)
	}
	for _, bad := range [][]int64{nil, {}, {0}, {1, -1}, make([]int64, MaxDeadLetterLimit+1)} {
		if _, err := ids(bad); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("ids(%d ids) = %v, want ErrInvalidFilter", len(bad), err)
		}
	}
}

func TestDeadLetterConflictErrorIs(t *testing.T) {
	for _, c := range []struct {
		err                DeadLetterConflictError
		notFound, conflict bool
	}{
		{DeadLetterConflictError{Missing: []int64{1}}, true, false},
		{DeadLetterConflictError{Refused: []int64{1}}, false, true},
		{DeadLetterConflictError{Missing: []int64{1}, Refused: []int64{2}}, true, true},
	} {
		var err error = &c.err
		if errors.Is(err, ErrDeadLetterNotFound) != c.notFound || errors.Is(err, ErrStatusConflict) != c.conflict {
			t.Errorf("%v: Is(NotFound) %v, Is(Conflict) %v", err, errors.Is(err, ErrDeadLetterNotFound), errors.Is(err, ErrStatusConflict))
		}
	}
}
