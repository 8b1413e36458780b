-- +goose Up
-- SQLite has one writer, so a transaction's inserts commit in the order
-- they were made and nothing else commits in between: a single-row insert
-- may take its partition's next seq itself (the dialect's insert statement
-- does, when this trigger exists and the partition has no unsequenced row),
-- and this trigger moves the partition's counter in the same statement.
-- That spares the sequencer a write transaction per message. Rows inserted
-- without a seq (several rows at once, an older version of this library)
-- are sequenced as before and never fire it.
-- +goose StatementBegin
CREATE TRIGGER IF NOT EXISTS outbox_messages_seq AFTER INSERT ON outbox_messages
WHEN NEW.seq IS NOT NULL
BEGIN
    UPDATE outbox_partitions SET last_seq = NEW.seq WHERE id = NEW.partition_id;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER IF EXISTS outbox_messages_seq;
