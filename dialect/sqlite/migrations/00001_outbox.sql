-- +goose Up
-- Times are INTEGER microseconds since the Unix epoch, from SQLite's clock
-- (the database's clock decides leases and backoff, as on the servers).
CREATE TABLE IF NOT EXISTS outbox_queues (
    name        TEXT PRIMARY KEY,
    partitions  INTEGER NOT NULL CHECK (partitions BETWEEN 1 AND 1024),
    created_at  INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
);

CREATE TABLE IF NOT EXISTS outbox_partitions (
    id             INTEGER PRIMARY KEY,
    queue          TEXT NOT NULL,
    partition_num  INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL DEFAULT 0,
    UNIQUE (queue, partition_num)
);

-- id is the rowid: a new row's id is above every existing row's, which is
-- all the sequencer's id order needs.
CREATE TABLE IF NOT EXISTS outbox_messages (
    id            INTEGER PRIMARY KEY,
    partition_id  INTEGER NOT NULL,
    seq           INTEGER,
    payload       BLOB NOT NULL,
    payload_type  TEXT NOT NULL,
    headers       TEXT,
    created_at    INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER))
);
CREATE INDEX IF NOT EXISTS outbox_messages_unsequenced ON outbox_messages (partition_id, id) WHERE seq IS NULL;
-- Partial (unsequenced rows cost no index write), as on PostgreSQL.
CREATE UNIQUE INDEX IF NOT EXISTS outbox_messages_partition_seq ON outbox_messages (partition_id, seq) WHERE seq IS NOT NULL;

CREATE TABLE IF NOT EXISTS outbox_processors (
    partition_id     INTEGER PRIMARY KEY,
    queue            TEXT NOT NULL,
    processed_seq    INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    lease_token      TEXT,
    lease_until      INTEGER,
    next_attempt_at  INTEGER NOT NULL DEFAULT 0,
    version          INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS outbox_dead_letters (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    queue          TEXT NOT NULL,
    partition_num  INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    payload        BLOB NOT NULL,
    payload_type   TEXT NOT NULL,
    headers        TEXT,
    created_at     INTEGER NOT NULL,
    failed_at      INTEGER NOT NULL DEFAULT (CAST(unixepoch('subsec') * 1000000 AS INTEGER)),
    attempts       INTEGER NOT NULL,
    last_error     TEXT,
    status         TEXT NOT NULL DEFAULT 'pending',
    deadline       INTEGER,
    completed_at   INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_dead_letters_status_failed ON outbox_dead_letters (status, failed_at);
CREATE INDEX IF NOT EXISTS outbox_dead_letters_status_deadline ON outbox_dead_letters (status, deadline);

-- +goose Down
DROP TABLE outbox_dead_letters;
DROP TABLE outbox_processors;
DROP TABLE outbox_messages;
DROP TABLE outbox_partitions;
DROP TABLE outbox_queues;
