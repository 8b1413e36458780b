-- +goose Up
-- The "block" poison policy: a partition whose head exhausted MaxAttempts
-- stops there until an operator retries or skips it. Claims skip rows with
-- blocked_at set. Nullable, no default: adding it rewrites no rows.
ALTER TABLE outbox_processors ADD COLUMN IF NOT EXISTS blocked_at TIMESTAMPTZ;

-- +goose Down
ALTER TABLE outbox_processors DROP COLUMN IF EXISTS blocked_at;
