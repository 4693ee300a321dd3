-- Schema for the CSV → PostgreSQL ingestion pipeline.
--
-- Idempotent: safe to run again on every deploy and before every test (PostgreSQL 15 and 16).
-- Run it connected to the target database as its owner (or a superuser); it does not create the
-- database. Running it again brings privileges back to exactly what is granted here.

BEGIN;

-- Events as loaded. event_id comes from the source, so a replayed file cannot insert twice.
CREATE TABLE IF NOT EXISTS public.ecommerce_events (
    event_id            uuid        PRIMARY KEY,
    user_id             integer     NOT NULL,
    product_id          integer     NOT NULL,
    -- No CHECK on the type: the accepted types are validate's (--event-types), one source of
    -- truth; a constraint here would dead-letter rows validate accepted (docs/validation.md).
    event_type          text        NOT NULL,
    price               numeric(10,2),
    event_timestamp     timestamptz NOT NULL,
    ingestion_timestamp timestamptz NOT NULL DEFAULT now()
);

-- Tables made by earlier versions of this file had the CHECK: drop it (see above).
ALTER TABLE public.ecommerce_events DROP CONSTRAINT IF EXISTS ecommerce_events_event_type_check;

-- Dashboards ask for the latest events first.
CREATE INDEX IF NOT EXISTS ecommerce_events_event_timestamp_idx
    ON public.ecommerce_events (event_timestamp DESC);

-- One row per committed source file or stdin batch, written in the same transaction as its rows:
-- a file whose checkpoint exists has been loaded exactly once.
CREATE TABLE IF NOT EXISTS public.ingest_checkpoints (
    id            bigserial   PRIMARY KEY,
    source_file   text,                 -- NULL for batches without provenance (plain stdin)
    file_bytes    bigint      CHECK (file_bytes >= 0),
    file_sha256   text,
    rows_loaded   integer     NOT NULL DEFAULT 0 CHECK (rows_loaded >= 0),
    rows_rejected integer     NOT NULL DEFAULT 0 CHECK (rows_rejected >= 0),
    first_seen    timestamptz,          -- when the file arrived, if known
    committed_at  timestamptz NOT NULL DEFAULT now(),
    -- A file is identified by name, size and content hash: without all three, uniqueness means nothing.
    CONSTRAINT ingest_checkpoints_file_identity
        CHECK (source_file IS NULL OR (file_bytes IS NOT NULL AND file_sha256 IS NOT NULL))
);

-- Which pipeline (load --name, default host:pid) committed the file, when several share a folder.
ALTER TABLE public.ingest_checkpoints ADD COLUMN IF NOT EXISTS pipeline text;

-- Which table the rows went to (schema.name, as the catalog spells it): one checkpoint table
-- serves every contract of a deployment, and load only looks at its own table's rows. Rows made
-- before contracts existed were all the e-commerce events'.
ALTER TABLE public.ingest_checkpoints
    ADD COLUMN IF NOT EXISTS target_table text NOT NULL DEFAULT 'public.ecommerce_events';

-- The same file (name, size, hash) is checkpointed once per table. Partial, so stdin batches
-- never collide. load looks the files up in its transaction and skips those already here, then
-- INSERTs plainly (no ON CONFLICT): a concurrent second commit of one file fails on this index
-- (23505) and rolls back, instead of loading the file twice. Earlier versions of this file made
-- the index without target_table: it is made again with it.
DO $$
BEGIN
    IF EXISTS (
        SELECT FROM pg_catalog.pg_indexes
        WHERE schemaname = 'public' AND indexname = 'ingest_checkpoints_file_key' AND indexdef NOT LIKE '%target_table%'
    ) THEN
        DROP INDEX public.ingest_checkpoints_file_key;
    END IF;
END
$$;
CREATE UNIQUE INDEX IF NOT EXISTS ingest_checkpoints_file_key
    ON public.ingest_checkpoints (target_table, source_file, file_bytes, file_sha256)
    WHERE source_file IS NOT NULL;

-- A file over load's reject threshold commits none of its rows but keeps its identity here as
-- 'quarantined' (its file moves to data/quarantine): the same bytes are not loaded by accident,
-- while a fixed file (another SHA-256) loads. Added after the table, hence ALTER.
ALTER TABLE public.ingest_checkpoints
    ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'committed'
        CONSTRAINT ingest_checkpoints_status CHECK (status IN ('committed', 'quarantined'));

CREATE INDEX IF NOT EXISTS ingest_checkpoints_committed_at_idx
    ON public.ingest_checkpoints (committed_at);

-- Rows that failed validation or the database's own checks, with every reason.
CREATE TABLE IF NOT EXISTS public.ecommerce_bad_records (
    id            bigserial   PRIMARY KEY,
    source_file   text,
    line_number   integer,
    -- The row as received, as its JSON object text. text, not jsonb: jsonb would reorder keys
    -- and drop duplicates, and the point is to keep what arrived.
    raw           text        NOT NULL,
    -- [{"field": "price", "reason": "must be > 0", "value": "-12.50"}, …]
    reasons       jsonb       NOT NULL CHECK (jsonb_typeof(reasons) = 'array'),
    checkpoint_id bigint      REFERENCES public.ingest_checkpoints (id),
    rejected_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS ecommerce_bad_records_source_file_idx
    ON public.ecommerce_bad_records (source_file);

-- Kafka: each partition's next offset to load (the external offset store, docs/kafka.md).
-- load moves it in the same transaction as the partition's rows and dead letters, and only from
-- the value its lines continue from (UPDATE … WHERE next_offset = $from): a stale pipeline's
-- batch is fenced. consume starts every assigned partition here.
CREATE TABLE IF NOT EXISTS public.ingest_kafka_offsets (
    topic       text        NOT NULL,
    partition   integer     NOT NULL CHECK (partition >= 0),
    next_offset bigint      NOT NULL CHECK (next_offset >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);

-- The loader's privileges, and nothing more. NOLOGIN: it is a group role. Deployments either
-- grant it to a login role (CREATE ROLE loader LOGIN PASSWORD '…' IN ROLE ingest_loader) or
-- make it log in itself (ALTER ROLE ingest_loader LOGIN PASSWORD '…').
-- Roles are cluster-wide and set-ups may run concurrently (one database per test), so a
-- concurrent creation is tolerated rather than checked twice.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ingest_loader') THEN
        CREATE ROLE ingest_loader NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- Start from nothing so a re-run also removes anything granted by hand since.
REVOKE ALL ON public.ecommerce_events, public.ingest_checkpoints, public.ecommerce_bad_records
    FROM ingest_loader;
REVOKE ALL ON SEQUENCE public.ingest_checkpoints_id_seq, public.ecommerce_bad_records_id_seq
    FROM ingest_loader;
REVOKE ALL ON public.ingest_kafka_offsets FROM ingest_loader;
REVOKE ALL ON SCHEMA public FROM ingest_loader;

GRANT USAGE ON SCHEMA public TO ingest_loader;
GRANT SELECT, INSERT ON public.ecommerce_events, public.ingest_checkpoints, public.ecommerce_bad_records
    TO ingest_loader;
-- Offsets only move forward through load's conditional UPDATE; never deleted by the loader.
GRANT SELECT, INSERT, UPDATE (next_offset, updated_at) ON public.ingest_kafka_offsets TO ingest_loader;
-- bigserial defaults call nextval(), which needs USAGE.
GRANT USAGE ON SEQUENCE public.ingest_checkpoints_id_seq, public.ecommerce_bad_records_id_seq
    TO ingest_loader;

-- PostgreSQL 15 and later no longer let PUBLIC create in schema public; clusters upgraded from
-- older versions may still, which would let the loader create tables. Harmless where already so.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

COMMIT;
