-- +goose Up
-- The "block" poison policy: a partition whose head exhausted MaxAttempts
-- stops there until an operator retries or skips it. Claims skip rows with
-- blocked_at (microseconds since the epoch) set.
ALTER TABLE outbox_processors ADD COLUMN blocked_at INTEGER;

-- +goose Down
ALTER TABLE outbox_processors DROP COLUMN blocked_at;
