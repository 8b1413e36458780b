package conformance

import (
	"testing"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/sqlite"
	"github.com/modkit-go/db/internal/testdb"
)

// minimal is SQLite's dialect declaring no capability but the single
// writer its database imposes: no prepared statements, no sequencing on
// insert, no one-call sequencer round, and no push wake-ups (it is not a
// dialect.Waker). The whole suite runs against it, so the core's answer to
// each missing capability runs in CI.
type minimal struct{ sqlite.Dialect }

func (*minimal) Capabilities() dialect.Capabilities { return dialect.Capabilities{SingleWriter: true} }

var _ dialect.Dialect = (*minimal)(nil)

func newMinimal(prefix string) dialect.Dialect {
	m := &minimal{}
	sqlite.WithPrefix(prefix)(&m.Dialect)
	return m
}

func minimalBackend() Backend {
	return Backend{Name: "minimal", Dialect: newMinimal(""), WithPrefix: newMinimal, NewDatabase: testdb.SQLite}
}

// TestMinimalDialect runs every conformance case against minimal.
func TestMinimalDialect(t *testing.T) { Run(t, minimalBackend()) }

// TestMinimalDialectContract runs every contract case against minimal.
func TestMinimalDialectContract(t *testing.T) { RunDialect(t, minimalBackend()) }
