package sqlbase

import (
	"fmt"
	"strings"
	"time"
)

// TakeoverAttempts is the attempts column after a claim, in SQL, for the
// processors table aliased as alias ("" for none): taking over a lease that
// was never released (its owner crashed or overran) counts as one failed
// attempt; a released lease (lease_token NULL) adds nothing. Every claim
// statement sets attempts to this, evaluated on the row's old values.
func TakeoverAttempts(alias string) string {
	if alias != "" {
		alias += "."
	}
	return alias + "attempts + CASE WHEN " + alias + "lease_token IS NULL THEN 0 ELSE 1 END"
}

// AttemptsAfterTakeover is TakeoverAttempts for a dialect that computes
// the claimed row's attempts in Go (no UPDATE … RETURNING): attempts as
// read under the row lock, and whether a lease_token was set.
func AttemptsAfterTakeover(attempts int, leased bool) int {
	if leased {
		return attempts + 1
	}
	return attempts
}

// maxPrealloc bounds what a read preallocates for Limit rows: a large
// Limit on a short partition must not allocate for rows that are not there.
const maxPrealloc = 1024

// Capacity is the slice capacity to preallocate for limit rows. Every
// method with a Limit treats limit <= 0 as "nothing to do" and returns an
// empty result without a query; that check is the caller's.
func Capacity(limit int) int { return min(max(limit, 0), maxPrealloc) }

// Time scans a timestamp column into a time.Time, whatever form the
// driver returns it in: a time.Time (PostgreSQL; MySQL with parseTime=true),
// text "2006-01-02 15:04:05.999999" read as UTC (MySQL without parseTime),
// or an integer of microseconds since the epoch (the SQLite schema's
// timestamps). NULL and MySQL's zero date leave the zero time.
type Time time.Time

const textTimeLayout = "2006-01-02 15:04:05.999999999"

// Scan implements sql.Scanner.
func (t *Time) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*t = Time{}
		return nil
	case time.Time:
		*t = Time(x)
		return nil
	case int64:
		*t = Time(time.UnixMicro(x).UTC())
		return nil
	case []byte:
		return t.parse(string(x))
	case string:
		return t.parse(x)
	default:
		return fmt.Errorf("sqlbase: cannot scan %T into a time", v)
	}
}

func (t *Time) parse(s string) error {
	if s == "" || strings.HasPrefix(s, "0000-00-00") {
		*t = Time{}
		return nil
	}
	layout := textTimeLayout
	if len(s) == len("2006-01-02") {
		layout = "2006-01-02"
	}
	v, err := time.ParseInLocation(layout, s, time.UTC)
	if err != nil {
		return fmt.Errorf("sqlbase: parse time %q: %w", s, err)
	}
	*t = Time(v)
	return nil
}
