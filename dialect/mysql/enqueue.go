package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/modkit-go/db/dialect"
	"github.com/modkit-go/db/dialect/internal/sqlbase"
)

// DeclareQueue implements dialect.Dialect.
func (d *Dialect) DeclareQueue(ctx context.Context, tx *sql.Tx, p *dialect.DeclareQueueParams) (*dialect.DeclareQueueResult, error) {
	// The upsert takes the queue row's lock first, so concurrent declarers
	// of one queue run one after the other and the reads below (consistent
	// reads, or a snapshot begun after the lock at REPEATABLE READ) see
	// what the previous one committed.
	if _, err := tx.ExecContext(ctx, d.Own().insertQueue, p.Queue, p.Partitions); err != nil {
		return nil, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, d.Own().selectQueue, p.Queue).Scan(&n); err != nil {
		return nil, err
	}
	if n != p.Partitions {
		return &dialect.DeclareQueueResult{Partitions: n}, nil
	}
	ids, err := d.partitionIDsOf(ctx, tx, p.Queue)
	if err != nil {
		return nil, err
	}
	if len(ids) != n {
		// Missing rows: a first declaration. A complete queue (the common
		// redeclaration at startup) skips this: IGNORE's duplicate-key check
		// takes a shared lock on each existing partitions row, which would
		// make the sequencer skip it until this transaction ends. IGNORE
		// only skips duplicates here: every value is valid.
		var b strings.Builder
		b.WriteString("INSERT IGNORE INTO ")
		b.WriteString(d.Prefix())
		b.WriteString("partitions (queue, partition_num) VALUES ")
		args := make([]any, 0, 2*n)
		for i := range n {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?)")
			args = append(args, p.Queue, i)
		}
		if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
			return nil, err
		}
		if ids, err = d.partitionIDsOf(ctx, tx, p.Queue); err != nil {
			return nil, err
		}
	}
	if _, err := tx.ExecContext(ctx, d.Own().insertCursors, p.Queue); err != nil {
		return nil, err
	}
	return &dialect.DeclareQueueResult{Partitions: n, PartitionIDs: ids}, nil
}

// partitionIDsOf is LookupQueue where a queue without partitions yet is
// not an error.
func (d *Dialect) partitionIDsOf(ctx context.Context, q dialect.DBTX, queue string) ([]int64, error) {
	lr, err := d.LookupQueue(ctx, q, &dialect.LookupQueueParams{Queue: queue})
	if errors.Is(err, dialect.ErrQueueNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return lr.PartitionIDs, nil
}

// Chunking of multi-row INSERTs: at most maxInsertRows rows (5 placeholders
// each, far below the 65535 of a prepared statement) and about
// maxInsertBytes of payload and headers, so that a statement stays well
// under the default max_allowed_packet (16 MiB on MariaDB, 64 MiB on MySQL
// 8) even when interpolateParams escapes binary data.
const (
	maxInsertRows  = 1000
	maxInsertBytes = 4 << 20
)

// InsertMessages implements dialect.Dialect. Partition rows are found by
// (queue, partition_num) in q's own database.
//
// One row (the common Enqueue) takes one INSERT … SELECT. The application's
// transaction is often REPEATABLE READ, where the SELECT part is a locking
// read (shared locks); FORCE INDEX keeps it an eq_ref lookup on the
// covering UNIQUE (queue, partition_num) index, which locks only that
// secondary-index record, never the clustered partitions row whose
// last_seq the sequencer updates under its own lock: producers neither
// wait for nor hold up the sequencer.
//
// Several rows first read their partition ids with a consistent read,
// fail with ErrQueueNotFound before writing
// when one is missing, then run simple multi-row INSERT … VALUES (an
// INSERT … SELECT of many rows would hold InnoDB's table-level AUTO-INC
// lock for the whole statement under innodb_autoinc_lock_mode=1, MariaDB's
// default, serializing concurrent producers). For a simple INSERT InnoDB
// hands out auto-increment ids in VALUES order, in every
// innodb_autoinc_lock_mode; later chunks of the same call get larger ids.
func (d *Dialect) InsertMessages(ctx context.Context, q dialect.DBTX, p *dialect.InsertMessagesParams) (*dialect.InsertMessagesResult, error) {
	if len(p.Rows) == 1 {
		r := p.Rows[0]
		return sqlbase.InsertAll(ctx, q, p.Rows, func([]dialect.InsertRow) sqlbase.Chunk {
			return sqlbase.Chunk{N: 1, Query: d.Own().insertOne, Args: []any{sqlbase.NonNil(r.Payload), r.PayloadType, sqlbase.NullBytes(r.Headers), sqlbase.NullBlob(r.MessageID), sqlbase.NullString(r.Key), r.Queue, r.Partition}}
		})
	}
	ids, err := d.partitionIDs(ctx, q, p.Rows)
	if err != nil {
		return nil, err
	}
	return sqlbase.InsertAll(ctx, q, p.Rows, func(rows []dialect.InsertRow) sqlbase.Chunk {
		n, size := 0, 0
		for n < len(rows) && n < maxInsertRows {
			sz := len(rows[n].Payload) + len(rows[n].Headers) + len(rows[n].PayloadType) + len(rows[n].MessageID) + len(rows[n].Key)
			if n > 0 && size+sz > maxInsertBytes {
				break
			}
			size += sz
			n++
		}
		var b strings.Builder
		b.Grow(80 + 16*n)
		b.WriteString("INSERT INTO ")
		b.WriteString(d.Prefix())
		b.WriteString("messages (partition_id, payload, payload_type, headers, msg_id, msg_key) VALUES ")
		args := make([]any, 0, 6*n)
		for i, r := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(?, ?, ?, ?, ?, ?)")
			args = append(args, ids[partitionKey{r.Queue, r.Partition}], sqlbase.NonNil(r.Payload), r.PayloadType, sqlbase.NullBytes(r.Headers),
				sqlbase.NullBlob(r.MessageID), sqlbase.NullString(r.Key))
		}
		return sqlbase.Chunk{N: n, Query: b.String(), Args: args}
	})
}

type partitionKey struct {
	queue string
	num   int
}

// partitionIDs reads the partition ids rows name, one consistent read per
// queue, or returns ErrQueueNotFound when one does not exist in q.
func (d *Dialect) partitionIDs(ctx context.Context, q dialect.DBTX, rows []dialect.InsertRow) (map[partitionKey]int64, error) {
	nums := map[string]map[int]bool{}
	for _, r := range rows {
		if nums[r.Queue] == nil {
			nums[r.Queue] = map[int]bool{}
		}
		nums[r.Queue][r.Partition] = true
	}
	ids := make(map[partitionKey]int64)
	for queue, set := range nums {
		args := make([]any, 0, 1+len(set))
		args = append(args, queue)
		for n := range set {
			args = append(args, n)
		}
		rs, err := q.QueryContext(ctx, `SELECT partition_num, id FROM `+d.Prefix()+`partitions
			WHERE queue = ? AND partition_num IN (`+sqlbase.Placeholders(len(set))+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rs.Next() {
			var n int
			var id int64
			if err := rs.Scan(&n, &id); err != nil {
				rs.Close()
				return nil, err
			}
			ids[partitionKey{queue, n}] = id
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return nil, err
		}
	}
	for _, r := range rows {
		if _, ok := ids[partitionKey{r.Queue, r.Partition}]; !ok {
			return nil, fmt.Errorf("%w: %s partition %d", dialect.ErrQueueNotFound, r.Queue, r.Partition)
		}
	}
	return ids, nil
}
