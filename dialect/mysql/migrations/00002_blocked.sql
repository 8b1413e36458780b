-- +goose Up
-- The "block" poison policy: a partition whose head exhausted MaxAttempts
-- stops there until an operator retries or skips it. Claims skip rows with
-- blocked_at set. One statement (MySQL 8 has no ADD COLUMN IF NOT EXISTS):
-- it either happens whole or not at all, so a failed Up repeats it.
-- Nullable and last: MariaDB 10.3+ and MySQL 8.0.12+ add it instantly.
ALTER TABLE outbox_processors ADD COLUMN blocked_at DATETIME(6) NULL;

-- +goose Down
ALTER TABLE outbox_processors DROP COLUMN blocked_at;
