-- +goose Up
-- Message identity: msg_id is the message's UUIDv7 (16 bytes, drawn at
-- Enqueue), msg_key its optional key. Both travel with the message into the
-- dead letters and back on requeue. goose runs a SQLite migration in one
-- transaction, so the four columns come together or not at all.
ALTER TABLE outbox_messages ADD COLUMN msg_id BLOB;
ALTER TABLE outbox_messages ADD COLUMN msg_key TEXT;
ALTER TABLE outbox_dead_letters ADD COLUMN msg_id BLOB;
ALTER TABLE outbox_dead_letters ADD COLUMN msg_key TEXT;

-- +goose Down
ALTER TABLE outbox_dead_letters DROP COLUMN msg_key;
ALTER TABLE outbox_dead_letters DROP COLUMN msg_id;
ALTER TABLE outbox_messages DROP COLUMN msg_key;
ALTER TABLE outbox_messages DROP COLUMN msg_id;
