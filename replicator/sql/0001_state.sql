-- Migration 1: the sidecar's own state (DESIGN §7). Everything the replicator keeps in a regional
-- metadata database lives in schema `replicator`; nothing outside it is created except the
-- triggers, the publication and the slot.

CREATE SCHEMA replicator;
COMMENT ON SCHEMA replicator IS
    'Owned by the replicator sidecar; created and upgraded by `replicator setup`. Do not edit by hand.';

-- Which migrations ran, with the md5 of their text so an edited migration is caught.
CREATE TABLE replicator.schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- This database's region: one row, set once. The id is inside every dot this region ever wrote,
-- so changing it would make two regions out of one history.
CREATE TABLE replicator.local_region (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    region    text NOT NULL CHECK (region ~ '^[a-z0-9_-]{1,16}$'),
    set_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION replicator.local_region_is_permanent() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.region IS DISTINCT FROM OLD.region THEN
        RAISE EXCEPTION 'replicator: the local region of this database is %, and it cannot change', OLD.region
            USING HINT = 'A region id is part of every version this region wrote; set up a new database for a new region.';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER local_region_is_permanent BEFORE UPDATE OR DELETE ON replicator.local_region
    FOR EACH ROW EXECUTE FUNCTION replicator.local_region_is_permanent();

-- The id <-> uuid map of every replicated and registry table. An entry outlives its row, so an id
-- left dangling in dashboard JSON still translates to the same uuid everywhere. A uuid names one
-- local id at a time, but an entry is never taken back: when a uuid is registered again under a
-- new id (a deleted entity re-imported or re-added), the old id keeps naming that uuid, so the
-- same stream replayed after a restart translates the same way. uuid -> id takes the newest id.
CREATE TABLE replicator.registry (
    table_name text   NOT NULL,
    local_id   bigint NOT NULL,
    uuid       uuid   NOT NULL,
    PRIMARY KEY (table_name, local_id)
);
CREATE INDEX registry_by_uuid ON replicator.registry (table_name, uuid, local_id);

-- One row per entity ever written: its version vector (region -> counter), the greatest hlc stored
-- for it, whether it exists, and the last local transaction that bumped this region's counter.
CREATE TABLE replicator.entity (
    table_name     text    NOT NULL,
    uuid           uuid    NOT NULL,
    clock          jsonb   NOT NULL DEFAULT '{}',
    max_hlc        bigint  NOT NULL,
    alive          boolean NOT NULL DEFAULT true,
    last_local_xid xid8,
    PRIMARY KEY (table_name, uuid)
);

-- The dot and hlc of the last write of each field of each entity. `$exists` is the field of
-- existence (a delete is a write).
CREATE TABLE replicator.field_version (
    table_name text   NOT NULL,
    uuid       uuid   NOT NULL,
    field      text   NOT NULL,
    region     text   NOT NULL,
    counter    bigint NOT NULL,
    hlc        bigint NOT NULL,
    xid        xid8,
    PRIMARY KEY (table_name, uuid, field),
    FOREIGN KEY (table_name, uuid) REFERENCES replicator.entity ON DELETE CASCADE
);

-- Heartbeats flow the same path as changes when nothing else does (DESIGN §2 step 5).
-- Written by the reader on a timer, through the WAL like any change: idle regions still confirm
-- their slot and report lag. The time is integer microseconds since the Unix epoch, so the stream
-- carries it without depending on a session's TimeZone.
CREATE TABLE replicator.heartbeat (
    region           text PRIMARY KEY,
    seq              bigint NOT NULL,
    beat_unix_micros bigint NOT NULL
);
