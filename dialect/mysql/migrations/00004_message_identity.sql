-- +goose Up
-- Message identity: msg_id is the message's UUIDv7 (16 bytes, drawn at
-- Enqueue), msg_key its optional key (at most 512 bytes of UTF-8). One
-- statement (MySQL 8 has no ADD COLUMN IF NOT EXISTS): it happens whole or
-- not at all, so a failed Up repeats it. Nullable and last: MariaDB 10.3+
-- and MySQL 8.0.12+ add them instantly. The dead letters follow in 00005.
ALTER TABLE outbox_messages ADD COLUMN msg_id BINARY(16) NULL,
    ADD COLUMN msg_key VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

-- +goose Down
ALTER TABLE outbox_messages DROP COLUMN msg_id, DROP COLUMN msg_key;
