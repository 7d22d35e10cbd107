-- Migration 2: the functions the capture triggers share (DESIGN §2 step 1, §4). The per-table
-- trigger functions are generated from the table policy by `replicator setup` and call these.

-- A deterministic, name-based uuid: RFC 4122 version 3 (md5) in the replicator's namespace
-- 25abc60d-747b-4503-814d-75563e735f8e. The same name gives the same uuid in every region, and
-- `replicator::policy::name_uuid` computes the same value in Rust.
CREATE FUNCTION replicator.name_uuid(name text) RETURNS uuid
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT encode(set_byte(set_byte(digest, 6, (get_byte(digest, 6) & 15) | 48),
                           8, (get_byte(digest, 8) & 63) | 128), 'hex')::uuid
    FROM (SELECT decode(md5('\x25abc60d747b4503814d75563e735f8e'::bytea || convert_to(name, 'UTF8')), 'hex')
          AS digest) AS hashed
$$;

-- The wall-clock part of a new hlc: (milliseconds since the epoch) << 16, logical part zero.
CREATE FUNCTION replicator.wall_hlc() RETURNS bigint
LANGUAGE sql VOLATILE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16
$$;

-- The uuid registered for a local id, or NULL.
CREATE FUNCTION replicator.registered(table_name text, local_id bigint) RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.uuid FROM replicator.registry AS r
    WHERE r.table_name = $1 AND r.local_id = $2
$$;

-- Registers `local_id` as `uuid`. An older entry holding the same uuid (a deleted row whose entity
-- came back under a new id) is kept: ids are never reused, so it can only be a dead id, and it must
-- keep translating the same way (see the registry table).
CREATE FUNCTION replicator.register(p_table text, p_local_id bigint, p_uuid uuid) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_local_id IS NULL OR p_uuid IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO replicator.registry AS r (table_name, local_id, uuid)
    VALUES (p_table, p_local_id, p_uuid)
    ON CONFLICT (table_name, local_id) DO UPDATE SET uuid = EXCLUDED.uuid
    WHERE r.uuid IS DISTINCT FROM EXCLUDED.uuid;
END
$$;

-- Versions one local write of one entity: bumps this region's counter in the entity's clock once
-- per transaction (a second write in the same transaction reuses the dot), takes a new hlc greater
-- than every hlc stored for the entity, and stamps each field in `p_fields` with the dot and hlc.
-- `p_exists` is true for an insert, false for a delete (both also stamp `$exists`), NULL for an
-- update.
CREATE FUNCTION replicator.stamp(p_table text, p_uuid uuid, p_fields text[], p_exists boolean)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_region  text;
    v_xid     xid8   := pg_current_xact_id();
    v_wall    bigint := replicator.wall_hlc();
    v_counter bigint;
    v_hlc     bigint;
BEGIN
    SELECT l.region INTO v_region FROM replicator.local_region AS l;
    IF v_region IS NULL THEN
        RAISE EXCEPTION 'replicator: this database has no local region'
            USING HINT = 'Run `replicator setup --region <id>` against it.';
    END IF;
    INSERT INTO replicator.entity AS e (table_name, uuid, clock, max_hlc, alive, last_local_xid)
    VALUES (p_table, p_uuid, jsonb_build_object(v_region, 1), v_wall, coalesce(p_exists, true), v_xid)
    ON CONFLICT (table_name, uuid) DO UPDATE SET
        clock = CASE
            WHEN e.last_local_xid = v_xid THEN e.clock
            ELSE e.clock || jsonb_build_object(v_region, coalesce((e.clock ->> v_region)::bigint, 0) + 1)
        END,
        max_hlc = greatest(e.max_hlc + 1, v_wall),
        alive = coalesce(p_exists, e.alive),
        last_local_xid = v_xid
    RETURNING (e.clock ->> v_region)::bigint, e.max_hlc INTO v_counter, v_hlc;

    INSERT INTO replicator.field_version AS f (table_name, uuid, field, region, counter, hlc, xid)
    SELECT DISTINCT p_table, p_uuid, name, v_region, v_counter, v_hlc, v_xid
    FROM unnest(CASE WHEN p_exists IS NULL THEN p_fields ELSE p_fields || '$exists'::text END) AS name
    ON CONFLICT (table_name, uuid, field) DO UPDATE SET
        region = EXCLUDED.region, counter = EXCLUDED.counter, hlc = EXCLUDED.hlc, xid = EXCLUDED.xid;
END
$$;

-- BEFORE INSERT OR UPDATE on tables identified by their `uuid` column: Superset writes the uuid in
-- Python, so a row written by anything else would have none. A uuid is never erased either: an
-- UPDATE that sets it NULL keeps the old one.
CREATE FUNCTION replicator.fill_uuid() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.uuid IS NULL THEN
        NEW.uuid := coalesce(OLD.uuid, gen_random_uuid());
    END IF;
    RETURN NEW;
END
$$;
