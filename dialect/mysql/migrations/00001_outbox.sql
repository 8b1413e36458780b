-- +goose Up
-- Schema for MySQL 8.0.16+ and MariaDB 10.6+ (InnoDB; SKIP LOCKED needs
-- MySQL 8.0.1+ / MariaDB 10.6+).
--
-- Timestamps are DATETIME(6) written with NOW(6) by the database, never
-- TIMESTAMP (which ends in 2038 and converts through the session time zone).
-- NOW(6) is only ever compared with values NOW(6) wrote, so the server and
-- session time zones do not matter.
--
-- Queue names ([A-Za-z0-9._-]{1,1024}) and payload types (printable ASCII,
-- 1-1024 bytes) are ASCII with a binary collation: case-sensitive like
-- PostgreSQL's text, and 1 byte per character, so VARCHAR(1024) fits
-- InnoDB's 3072-byte index key limit inside composite keys (utf8mb4 would
-- need 4096 bytes).
--
-- IF NOT EXISTS everywhere: MySQL and MariaDB commit each DDL statement on
-- its own, so an Up that fails half-way leaves some tables behind; the next
-- Up creates the rest. migrations.Up first checks (under its lock) that any
-- existing table with one of these names has these columns.

-- Queues and their fixed partition counts.
CREATE TABLE IF NOT EXISTS outbox_queues (
    name        VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    partitions  INT NOT NULL,
    created_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (name),
    CONSTRAINT outbox_queues_partitions CHECK (partitions BETWEEN 1 AND 1024)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per partition; last_seq is the sequencer's counter, written only
-- under this row's lock (SELECT ... FOR UPDATE SKIP LOCKED). Nothing else
-- locks these rows, so a claim never makes the sequencer skip a partition.
CREATE TABLE IF NOT EXISTS outbox_partitions (
    id             BIGINT NOT NULL AUTO_INCREMENT,
    queue          VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    partition_num  INT NOT NULL,
    last_seq       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    UNIQUE KEY outbox_partitions_queue_num (queue, partition_num)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Messages: seq is NULL until the sequencer assigns it after commit. No
-- foreign key: an FK would take shared locks on the partition row from
-- every producer and make the sequencer skip it.
--
-- There is no partial index: outbox_messages_unsequenced (seq, partition_id)
-- groups every unsequenced row (InnoDB indexes NULLs, and they sort first)
-- by partition and, through the implicit primary-key suffix, by id. It
-- drives both the pending-partition scan and the sequencer's pick.
--
-- (partition_id, seq) is deliberately NOT UNIQUE: on MySQL/MariaDB a unique
-- secondary index makes every seq assignment run a duplicate check that
-- locks the index record following the new key, which is often the first
-- unsequenced row of the next partition, i.e. an uncommitted producer
-- insert; the sequencer would then wait for the application's transaction.
-- Uniqueness of (partition_id, seq) is guaranteed by the sequencer, which
-- assigns seqs only under the partition row's lock, from last_seq upwards.
CREATE TABLE IF NOT EXISTS outbox_messages (
    id            BIGINT NOT NULL AUTO_INCREMENT,
    partition_id  BIGINT NOT NULL,
    seq           BIGINT NULL,
    payload       LONGBLOB NOT NULL,
    payload_type  VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    headers       MEDIUMTEXT NULL,
    created_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (id),
    KEY outbox_messages_partition_seq (partition_id, seq),
    KEY outbox_messages_unsequenced (seq, partition_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Delivery state per partition: cursor, failures, backoff and lease.
-- version is bumped by every guarded UPDATE so that a matched row always
-- counts as changed (MySQL's rowsAffected counts changed rows only).
CREATE TABLE IF NOT EXISTS outbox_processors (
    partition_id     BIGINT NOT NULL,
    queue            VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    processed_seq    BIGINT NOT NULL DEFAULT 0,
    attempts         INT NOT NULL DEFAULT 0,
    last_error       MEDIUMTEXT NULL,
    lease_token      VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NULL,
    lease_until      DATETIME(6) NULL,
    next_attempt_at  DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    version          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (partition_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS outbox_dead_letters (
    id             BIGINT NOT NULL AUTO_INCREMENT,
    queue          VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    partition_num  INT NOT NULL,
    seq            BIGINT NOT NULL,
    payload        LONGBLOB NOT NULL,
    payload_type   VARCHAR(1024) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    headers        MEDIUMTEXT NULL,
    created_at     DATETIME(6) NOT NULL,
    failed_at      DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    attempts       INT NOT NULL,
    last_error     MEDIUMTEXT NULL,
    status         VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT 'pending',
    deadline       DATETIME(6) NULL,
    completed_at   DATETIME(6) NULL,
    PRIMARY KEY (id),
    KEY outbox_dead_letters_status_failed (status, failed_at),
    KEY outbox_dead_letters_status_deadline (status, deadline)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- +goose Down
DROP TABLE outbox_dead_letters, outbox_processors, outbox_messages, outbox_partitions, outbox_queues;
