package mysql

import (
	"context"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// Vacuum implements dialect.Dialect. MySQL rejects a DELETE that reads its
// own table in a subquery and LIMIT inside IN, so it works per partition:
// find partitions with delivered rows, pick up to the remaining budget of
// their delivered rows with a consistent read, delete those by primary key.
// Deleting by primary key locks exactly the rows deleted (delivered rows
// nobody writes), never a neighbouring index entry, so vacuum neither waits
// for nor blocks producers or the sequencer.
func (d *Dialect) Vacuum(ctx context.Context, q dialect.DBTX, p *dialect.VacuumParams) (*dialect.VacuumResult, error) {
	if p.Limit <= 0 {
		return &dialect.VacuumResult{}, nil
	}
	type cursor struct{ id, processed int64 }
	rows, err := q.QueryContext(ctx, d.qs().vacuumCandidates, p.Limit)
	if err != nil {
		return nil, err
	}
	var parts []cursor
	for rows.Next() {
		var c cursor
		if err := rows.Scan(&c.id, &c.processed); err != nil {
			rows.Close()
			return nil, err
		}
		parts = append(parts, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	deleted := 0
	for _, c := range parts {
		left := p.Limit - deleted
		if left <= 0 {
			break
		}
		ids, err := sqlbase.Int64s(ctx, q, d.qs().vacuumPick, c.id, c.processed, left)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			continue
		}
		args := make([]any, 0, len(ids))
		for _, id := range ids {
			args = append(args, id)
		}
		// Primary key only: with a partition_id/seq condition added, the
		// optimizer may pick the (partition_id, seq) index, and a locking
		// range scan on it locks the entry after the range, which can be
		// an uncommitted producer's row of the next partition.
		res, err := q.ExecContext(ctx, `DELETE FROM `+d.Prefix()+`messages
			WHERE id IN (`+sqlbase.Placeholders(len(ids))+`)`, args...)
		if err != nil {
			return nil, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, err
		}
		deleted += int(n)
	}
	return &dialect.VacuumResult{Deleted: deleted}, nil
}
