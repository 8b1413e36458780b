-- +goose Up
-- A whole sequencer round in one call, so in one round trip and, run on its
-- own, one transaction: find the partitions with unsequenced rows, lock
-- them, number up to per_partition of each one's committed unsequenced rows
-- in id order, and move their counters. Before this function a round cost
-- seven round trips (the pending read, BEGIN, SET LOCAL, lock, pick,
-- number, COMMIT), which under load was most of the pipeline's.
--
-- The statements are those the dialect ran one by one, in the same order:
--   * the lock is FOR NO KEY UPDATE SKIP LOCKED: a partition another
--     sequencer holds is reported unlocked and left alone, never waited on;
--   * the pick is a later statement than the lock, and a VOLATILE
--     function's statements each take a new snapshot under READ COMMITTED,
--     so the pick sees every row the previous holder of a lock numbered;
--   * rows of uncommitted producers are invisible to the pick and never
--     waited on;
--   * the numbering changes only rows still unsequenced and must change
--     every row picked, else the whole call fails and changes nothing.
-- plan_cache_mode: each statement keeps the generic plan it is prepared
-- with, as the dialect asked for its own statements; custom plans cost
-- more to make than to run.
--
-- Partitions are found from partition id from_id up, at most max_partitions
-- of them. The result is one row of arrays, in partition id order: pending,
-- the partitions found; held, those locked, with held_seq their counters
-- before the call; owners, the partition of each row numbered. Arrays, not
-- a row per partition, because a set-returning RETURN QUERY would cost one
-- more statement per call.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION outbox_sequence_pending(from_id bigint, max_partitions integer, max_rows integer,
    OUT pending bigint[], OUT held bigint[], OUT held_seq bigint[], OUT owners bigint[])
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    ids      bigint[];
    seqs     bigint[];
    per      integer;
    numbered bigint;
    moved    bigint;
BEGIN
    owners := '{}';
    -- The pending partitions, by a loose index scan over the partial index
    -- (partition_id, id) WHERE seq IS NULL (one probe per partition), and
    -- the lock of those no other sequencer holds.
    WITH RECURSIVE t AS (
        (SELECT m.partition_id AS pid FROM outbox_messages m WHERE m.seq IS NULL AND m.partition_id >= from_id
         ORDER BY m.partition_id LIMIT 1)
        UNION ALL
        SELECT (SELECT m.partition_id FROM outbox_messages m
            WHERE m.seq IS NULL AND m.partition_id > t.pid ORDER BY m.partition_id LIMIT 1)
        FROM t WHERE t.pid IS NOT NULL
    ), f AS (
        SELECT t.pid FROM t WHERE t.pid IS NOT NULL LIMIT max_partitions
    ), l AS (
        SELECT p.id, p.last_seq FROM outbox_partitions p WHERE p.id IN (SELECT f.pid FROM f)
        FOR NO KEY UPDATE SKIP LOCKED
    )
    SELECT coalesce((SELECT array_agg(f.pid ORDER BY f.pid) FROM f), '{}'),
           coalesce((SELECT array_agg(l.id ORDER BY l.id) FROM l), '{}'),
           coalesce((SELECT array_agg(l.last_seq ORDER BY l.id) FROM l), '{}')
    INTO pending, held, held_seq;
    IF cardinality(held) = 0 THEN
        RETURN;
    END IF;
    per := greatest(max_rows / cardinality(pending), 1);
    -- A later statement than the lock: its snapshot sees what the previous
    -- holders numbered. "partition_id BETWEEN l.id AND l.id" rather than
    -- "=": the range takes the partial index, index-only (see the
    -- dialect's pick).
    SELECT coalesce(array_agg(x.id ORDER BY x.pid, x.id), '{}'),
           coalesce(array_agg(x.last + x.rn ORDER BY x.pid, x.id), '{}'),
           coalesce(array_agg(x.pid ORDER BY x.pid, x.id), '{}')
    INTO ids, seqs, owners
    FROM (SELECT l.id AS pid, l.last, m.id, row_number() OVER (PARTITION BY l.id ORDER BY m.id) AS rn
          FROM unnest(held, held_seq) AS l (id, last) CROSS JOIN LATERAL (
              SELECT mm.id FROM outbox_messages mm
              WHERE mm.partition_id BETWEEN l.id AND l.id AND mm.seq IS NULL
              ORDER BY mm.partition_id, mm.id LIMIT per) m) x;
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    WITH u AS (
        UPDATE outbox_messages m SET seq = v.seq FROM unnest(ids, seqs) AS v (id, seq)
        WHERE m.id = v.id AND m.seq IS NULL RETURNING 1
    ), c AS (
        UPDATE outbox_partitions p SET last_seq = c.last
        FROM (SELECT v.pid, max(v.seq) AS last FROM unnest(owners, seqs) AS v (pid, seq) GROUP BY v.pid) c
        WHERE p.id = c.pid RETURNING 1
    )
    SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM c) INTO numbered, moved;
    IF numbered <> cardinality(ids) THEN
        -- Only a lock holder numbers rows, so this cannot happen; if it
        -- did, nothing of the call may commit.
        RAISE EXCEPTION 'outbox: sequencing numbered % rows of %', numbered, cardinality(ids);
    END IF;
END
$fn$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION IF EXISTS outbox_sequence_pending(bigint, integer, integer);
