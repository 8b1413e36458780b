package sqlbase

import (
	"database/sql"
	"fmt"

	"github.com/modkit-go/db/dialect"
)

// DistinctCursors refuses a UpdateCursors call that names a
// partition twice.
func DistinctCursors(ps []*dialect.CursorUpdate) error {
	seen := make(map[int64]bool, len(ps))
	for _, p := range ps {
		if seen[p.PartitionID] {
			return fmt.Errorf("UpdateCursors: partition %d given twice", p.PartitionID)
		}
		seen[p.PartitionID] = true
	}
	return nil
}

// MatchedCursors reads the partition ids an UpdateCursors statement
// returned (the rows it matched) from rows (and the error of the query
// that made them) and reports, in the order of ps, which entries matched.
func MatchedCursors(rows *sql.Rows, err error, ps []*dialect.CursorUpdate) ([]bool, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	at := make(map[int64]int, len(ps))
	for i, p := range ps {
		at[p.PartitionID] = i
	}
	out := make([]bool, len(ps))
	for rows.Next() {
		var pid int64
		if err := rows.Scan(&pid); err != nil {
			return nil, err
		}
		if i, ok := at[pid]; ok {
			out[i] = true
		}
	}
	return out, rows.Err()
}
