-- Migration 3: the applier's state (DESIGN §2 step 4, §5, §7). All of it is written in the same
-- transaction as the rows it describes, so a crash leaves either the whole source transaction
-- applied with its position, or none of it.

-- Where the applier resumes each source region's topic. `resume_offset` is the first record it
-- has not yet made durable here (applied, parked or quarantined): the first record of the oldest
-- source transaction still being assembled, or the record after the last one read. Records before
-- it may be read again after a crash only if they are at or after it; replays merge away.
CREATE TABLE replicator.applied_position (
    source           text        PRIMARY KEY,
    topic            text        NOT NULL,
    resume_offset    bigint      NOT NULL CHECK (resume_offset >= 0),
    last_commit_lsn  pg_lsn,
    last_commit_time timestamptz,
    -- The newest heartbeat of the source applied here: what lag is measured against while idle.
    last_beat        bigint,
    last_beat_time   timestamptz,
    applied_at       timestamptz NOT NULL DEFAULT now()
);

-- Source transactions that reference uuids this region does not have yet (DESIGN §2 step 4), or
-- a new database connection whose local columns this region's configuration does not give. The
-- records are kept as they came (raw envelopes, in order) and applied again when what they wait
-- for arrives. `waiting_for` is a list of {"table": .., "uuid": ..}; a table named
-- `$config:<table>` waits for configuration and is retried when the applier starts.
CREATE TABLE replicator.parked (
    id          bigserial   PRIMARY KEY,
    source      text        NOT NULL,
    commit_lsn  pg_lsn      NOT NULL,
    commit_time timestamptz NOT NULL,
    records     bytea[]     NOT NULL,
    waiting_for jsonb       NOT NULL,
    reason      text        NOT NULL,
    attempts    integer     NOT NULL DEFAULT 1,
    parked_at   timestamptz NOT NULL DEFAULT now(),
    retried_at  timestamptz
);
CREATE INDEX parked_by_source ON replicator.parked (source, id);

-- What could not be decoded or applied, with the reason and the raw bytes (DESIGN §5). Apply goes
-- on past it; an operator reads it with `replicator quarantine list`.
CREATE TABLE replicator.quarantine (
    id             bigserial   PRIMARY KEY,
    source         text        NOT NULL,
    topic          text        NOT NULL,
    first_offset   bigint      NOT NULL,
    last_offset    bigint      NOT NULL,
    commit_lsn     pg_lsn,
    reason         text        NOT NULL,
    detail         text        NOT NULL,
    records        bytea[]     NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now()
);

-- Every concurrent write to one field that met here (DESIGN §3): both values (in this region's
-- terms, as PostgreSQL prints them), both stamps, both clocks, the winner. `resolved_*` is set
-- when an operator settles it with `replicator conflicts resolve`.
CREATE TABLE replicator.conflict (
    id               bigserial   PRIMARY KEY,
    table_name       text        NOT NULL,
    uuid             uuid        NOT NULL,
    field            text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('field', 'delete_update')),
    source           text        NOT NULL,
    local_value      text,
    local_region     text        NOT NULL,
    local_counter    bigint      NOT NULL,
    local_hlc        bigint      NOT NULL,
    local_clock      jsonb       NOT NULL,
    incoming_value   text,
    incoming_region  text        NOT NULL,
    incoming_counter bigint      NOT NULL,
    incoming_hlc     bigint      NOT NULL,
    incoming_clock   jsonb       NOT NULL,
    winner           text        NOT NULL CHECK (winner IN ('local', 'incoming')),
    commit_lsn       pg_lsn      NOT NULL,
    detected_at      timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    resolved_keep    text
);
CREATE INDEX conflict_by_entity ON replicator.conflict (table_name, uuid);
CREATE INDEX conflict_by_time ON replicator.conflict (detected_at);

-- Natural-key collisions settled on apply (DESIGN §3): which entity kept the key, which lost and
-- what it became. Every region that meets the same collision writes the same decision.
CREATE TABLE replicator.key_collision (
    id          bigserial   PRIMARY KEY,
    table_name  text        NOT NULL,
    key         text        NOT NULL,
    winner      uuid        NOT NULL,
    loser       uuid        NOT NULL,
    outcome     text        NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now()
);
