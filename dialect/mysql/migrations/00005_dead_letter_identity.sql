-- +goose Up
-- The message id and key of 00004, carried into the dead letters (and back
-- on requeue).
ALTER TABLE outbox_dead_letters ADD COLUMN msg_id BINARY(16) NULL,
    ADD COLUMN msg_key VARCHAR(512) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

-- +goose Down
ALTER TABLE outbox_dead_letters DROP COLUMN msg_id, DROP COLUMN msg_key;
