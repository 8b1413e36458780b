package sqlite

import (
	"context"
	"database/sql"
	"slices"
	"strings"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// vacuumRanges is the most partitions one DELETE of Vacuum names: an OR of
// n terms is an expression n deep (SQLite's limit is 1000), and each term
// binds three parameters (older builds allow 999).
const vacuumRanges = 128

// Vacuum implements dialect.Dialect. It reads each cursor with its
// partition's lowest stored seq, and deletes the delivered rows from there
// up as one DELETE of seq ranges, (partition_id = ? AND seq BETWEEN ? AND
// ?) OR …, shared out in cursor order up to the budget. A range of the
// (partition_id, seq) index per partition costs about a quarter of a
// delete by id list (4 against 13-17 µs a row, 16 partitions x 2,000
// rows), which walked the rows a join picked and then found each again.
// Rows at or below a cursor are never written again, so a range that
// meets fewer rows (a gap) only deletes fewer. The number of ranges is
// padded to a power of two with ranges that match nothing, so that the
// statement cache sees few texts.
func (d *Dialect) Vacuum(ctx context.Context, q dialect.DBTX, p *dialect.VacuumParams) (*dialect.VacuumResult, error) {
	if p.Limit <= 0 {
		return &dialect.VacuumResult{}, nil
	}
	rows, err := q.QueryContext(ctx, d.Own().vacuumFrom)
	if err != nil {
		return nil, err
	}
	var args []any
	budget := int64(p.Limit)
	for rows.Next() && budget > 0 {
		var pid, processed int64
		var low sql.NullInt64
		if err := rows.Scan(&pid, &processed, &low); err != nil {
			rows.Close()
			return nil, err
		}
		if !low.Valid || low.Int64 > processed {
			continue
		}
		hi := min(processed, low.Int64+budget-1)
		args = append(args, pid, low.Int64, hi)
		budget -= hi - low.Int64 + 1
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	deleted := 0
	for len(args) > 0 {
		n := min(len(args)/3, vacuumRanges)
		chunk := slices.Clip(args[:3*n]) // padding must not write into args
		args = args[3*n:]
		width := 1
		for width < n {
			width *= 2
		}
		for range width - n {
			chunk = append(chunk, 0, 1, 0) // seq BETWEEN 1 AND 0: nothing
		}
		var b strings.Builder
		b.WriteString("DELETE FROM " + d.Prefix() + "messages WHERE ")
		for i := range width {
			if i > 0 {
				b.WriteString(" OR ")
			}
			b.WriteString("(partition_id = ? AND seq BETWEEN ? AND ?)")
		}
		k, err := sqlbase.Exec(ctx, q, b.String(), chunk...)
		if err != nil {
			return nil, err
		}
		deleted += k
	}
	return &dialect.VacuumResult{Deleted: deleted}, nil
}
