-- +goose Up
-- Message identity: msg_id is the message's UUIDv7 (16 bytes, drawn at
-- Enqueue), msg_key its optional key. Both travel with the message into the
-- dead letters and back on requeue. Nullable, no default: adding them
-- rewrites no rows; rows enqueued before have neither.
ALTER TABLE outbox_messages ADD COLUMN IF NOT EXISTS msg_id BYTEA, ADD COLUMN IF NOT EXISTS msg_key TEXT;
ALTER TABLE outbox_dead_letters ADD COLUMN IF NOT EXISTS msg_id BYTEA, ADD COLUMN IF NOT EXISTS msg_key TEXT;

-- +goose Down
ALTER TABLE outbox_dead_letters DROP COLUMN IF EXISTS msg_id, DROP COLUMN IF EXISTS msg_key;
ALTER TABLE outbox_messages DROP COLUMN IF EXISTS msg_id, DROP COLUMN IF EXISTS msg_key;
