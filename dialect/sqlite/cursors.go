package sqlite

import (
	"encoding/json"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// cursorEntries encodes the entries of a dialect.Dialect.UpdateCursors call as a
// JSON array of [partition_id, token, processed_seq, attempts, last_error,
// retry µs, renew µs, block 0/1], for updateMany, which reads them with
// json_each. It refuses a partition given twice.
func cursorEntries(ps []*dialect.CursorUpdate) (string, error) {
	if err := sqlbase.DistinctCursors(ps); err != nil {
		return "", err
	}
	vs := make([][]any, len(ps))
	for i, p := range ps {
		block := 0
		if p.Block {
			block = 1
		}
		vs[i] = []any{p.PartitionID, p.Token, p.ProcessedSeq, p.Attempts, p.LastError,
			p.RetryAfter.Microseconds(), p.Renew.Microseconds(), block}
	}
	b, err := json.Marshal(vs)
	return string(b), err
}
