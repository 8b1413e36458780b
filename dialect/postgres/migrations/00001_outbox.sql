-- +goose Up
-- Queues and their fixed partition counts.
CREATE TABLE IF NOT EXISTS outbox_queues (
    name        TEXT PRIMARY KEY,
    partitions  INTEGER NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per partition; last_seq is the sequencer's counter, written only
-- under this row's lock.
CREATE TABLE IF NOT EXISTS outbox_partitions (
    id             BIGSERIAL PRIMARY KEY,
    queue          TEXT NOT NULL,
    partition_num  INTEGER NOT NULL,
    last_seq       BIGINT NOT NULL DEFAULT 0,
    UNIQUE (queue, partition_num)
) WITH (fillfactor = 70);

-- Messages: seq is NULL until the sequencer assigns it after commit. No
-- foreign key: an FK would take KEY SHARE locks on the partition row from
-- every producer.
CREATE TABLE IF NOT EXISTS outbox_messages (
    id            BIGSERIAL PRIMARY KEY,
    partition_id  BIGINT NOT NULL,
    seq           BIGINT,
    payload       BYTEA NOT NULL,
    payload_type  TEXT NOT NULL,
    headers       TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_messages_unsequenced ON outbox_messages (partition_id, id) WHERE seq IS NULL;
-- Partial: unsequenced rows stay out of it, which saves every enqueue an
-- index write; every query on seq (seq > cursor, seq <= cursor) implies
-- seq IS NOT NULL, so it serves them all.
CREATE UNIQUE INDEX IF NOT EXISTS outbox_messages_partition_seq ON outbox_messages (partition_id, seq) WHERE seq IS NOT NULL;

-- Delivery state per partition: cursor, failures, backoff and lease.
CREATE TABLE IF NOT EXISTS outbox_processors (
    partition_id     BIGINT PRIMARY KEY,
    queue            TEXT NOT NULL,
    processed_seq    BIGINT NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    lease_token      TEXT,
    lease_until      TIMESTAMPTZ,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    version          BIGINT NOT NULL DEFAULT 0
) WITH (fillfactor = 50);

CREATE TABLE IF NOT EXISTS outbox_dead_letters (
    id             BIGSERIAL PRIMARY KEY,
    queue          TEXT NOT NULL,
    partition_num  INTEGER NOT NULL,
    seq            BIGINT NOT NULL,
    payload        BYTEA NOT NULL,
    payload_type   TEXT NOT NULL,
    headers        TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    failed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts       INTEGER NOT NULL,
    last_error     TEXT,
    status         TEXT NOT NULL DEFAULT 'pending',
    deadline       TIMESTAMPTZ,
    completed_at   TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_dead_letters_status_failed ON outbox_dead_letters (status, failed_at);
CREATE INDEX IF NOT EXISTS outbox_dead_letters_status_deadline ON outbox_dead_letters (status, deadline);

-- +goose Down
DROP TABLE outbox_dead_letters, outbox_processors, outbox_messages, outbox_partitions, outbox_queues;
