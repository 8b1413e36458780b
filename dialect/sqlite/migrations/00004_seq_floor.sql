-- +goose Up
-- A single-row insert takes its seq from the partition's counter without
-- writing the partitions row: the counter is the greater of last_seq and
-- the partition's highest seq among its messages (the dialect's lastSeq).
-- The insert trigger of 00003 wrote that row on every enqueue, a third
-- page in each producer's commit beside the message and its index entry.
-- In its place this trigger keeps last_seq at or above every seq that is
-- deleted, so the counter never goes back when delivered rows go (an
-- UPDATE that matches nothing writes nothing: a vacuum dirties the
-- partitions page once per transaction at most).
--
-- Every process that uses the database must run a version of the library
-- that knows this migration before it is applied: an older one reads
-- last_seq alone, which lags behind rows inserted with their seq.
DROP TRIGGER IF EXISTS outbox_messages_seq;
-- +goose StatementBegin
CREATE TRIGGER IF NOT EXISTS outbox_messages_seq_floor AFTER DELETE ON outbox_messages
WHEN OLD.seq IS NOT NULL
BEGIN
    UPDATE outbox_partitions SET last_seq = OLD.seq WHERE id = OLD.partition_id AND last_seq < OLD.seq;
END;
-- +goose StatementEnd

-- +goose Down
DROP TRIGGER IF EXISTS outbox_messages_seq_floor;
UPDATE outbox_partitions SET last_seq = max(last_seq,
    ifnull((SELECT max(m.seq) FROM outbox_messages m WHERE m.partition_id = outbox_partitions.id AND m.seq IS NOT NULL), 0));
-- +goose StatementBegin
CREATE TRIGGER IF NOT EXISTS outbox_messages_seq AFTER INSERT ON outbox_messages
WHEN NEW.seq IS NOT NULL
BEGIN
    UPDATE outbox_partitions SET last_seq = NEW.seq WHERE id = NEW.partition_id;
END;
-- +goose StatementEnd
