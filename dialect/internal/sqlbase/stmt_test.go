package sqlbase

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

type stateErr string

func (e stateErr) Error() string    { return "state " + string(e) }
func (e stateErr) SQLState() string { return string(e) }

type numErr uint16

func (e numErr) Error() string  { return fmt.Sprintf("number %d", uint16(e)) }
func (e numErr) Number() uint16 { return uint16(e) }

// TestForeign: only a failure that a database of another kind gives counts
// as a mismatch; causes that say nothing about the kind do not.
func TestForeign(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{stateErr("42883"), true},                            // PostgreSQL: undefined function
		{stateErr("42601"), true},                            // PostgreSQL: syntax error
		{fmt.Errorf("wrapped: %w", stateErr("42000")), true}, // MySQL via a driver exposing SQLSTATE
		{stateErr("57P03"), false},                           // PostgreSQL: the database system is starting up
		{stateErr("08006"), false},                           // connection failure
		{stateErr("53300"), false},                           // too many connections
		{numErr(1305), true},                                 // MySQL: FUNCTION x does not exist
		{numErr(1064), true},                                 // MySQL: parse error
		{numErr(1045), false},                                // MySQL: access denied
		{errors.New("Error 1305 (42000): FUNCTION t.sqlite_version does not exist"), true},
		{errors.New("Error 1040 (08004): Too many connections"), false},
		{errors.New("SQL logic error: no such function: version (1)"), true},
		{errors.New("database is locked (5) (SQLITE_BUSY)"), false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{errors.New("sql: database is closed"), false},
		{errors.New("driver: bad connection"), false},
	} {
		if got := Foreign(c.err); got != c.want {
			t.Errorf("Foreign(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
