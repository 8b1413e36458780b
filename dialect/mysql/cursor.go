package mysql

import (
	"context"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// UpdateCursor implements dialect.Dialect.
func (d *Dialect) UpdateCursor(ctx context.Context, q dialect.DBTX, p *dialect.UpdateCursorParams) (*dialect.UpdateCursorResult, error) {
	renew := p.Renew.Microseconds()
	// version = version + 1 makes a matched row always a changed row.
	n, err := sqlbase.Exec(ctx, q, d.qs().update, p.ProcessedSeq, p.Attempts, sqlbase.NullString(p.LastError),
		p.RetryAfter.Microseconds(), renew, renew, renew,
		p.PartitionID, p.Token, p.Token)
	if err != nil {
		return nil, err
	}
	return &dialect.UpdateCursorResult{Updated: n == 1}, nil
}
