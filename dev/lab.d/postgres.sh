# One PostgreSQL 15 cluster per region: its own port and data directory, wal_level=logical, loopback
# only, password (SCRAM) for TCP and trust only on a private socket directory. Each cluster holds a
# template database loaded from the real Superset 6.1 schema (tests/fixtures), from which every test
# database and the demo's `superset` database are cloned.

FIXTURE="$LAB_ROOT/tests/fixtures/superset-6.1-metadata-schema.sql"

# Where the clusters' data lives. It is the lab folder itself, unless the lab runs as root inside a
# folder the postgres user cannot reach (a home directory): then a postgres-owned folder elsewhere,
# linked from the lab folder.
pg_data_root() {
    local inside="$LAB_DIR/pg"
    if [ "$(id -u)" != 0 ]; then echo "$inside"; return; fi
    if [ -L "$inside" ]; then readlink "$inside"; return; fi
    if runuser -u postgres -- test -x "$LAB_DIR"; then echo "$inside"; return; fi
    local hash
    hash=$(printf '%s' "$LAB_DIR" | sha256sum | head -c 12)
    echo "/var/lib/replicator-lab/$hash"
}

pg_prepare_dirs() {
    local root=$1 region=$2
    mkdir -p "$root/$region/run"
    [ "$root" != "$LAB_DIR/pg" ] && [ ! -e "$LAB_DIR/pg" ] && ln -s "$root" "$LAB_DIR/pg"
    if [ "$(id -u)" = 0 ]; then
        chown postgres: "$root" "$root/$region" "$root/$region/run"
    fi
    chmod 0700 "$root/$region/run"
}

pg_psql() { # pg_psql REGION DB ARGS... (as the cluster owner over its private socket)
    local region=$1 db=$2 root port
    shift 2
    root=$(pg_data_root); port=$(lab_region_port "$region")
    as_pg env PGOPTIONS="-c client_min_messages=warning" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$root/$region/run" -p "$port" -U postgres -d "$db" "$@"
}

pg_up() {
    local region=$1 root port data
    root=$(pg_data_root); port=$(lab_region_port "$region"); data="$root/$region/data"
    pg_prepare_dirs "$root" "$region"
    if ! as_pg test -f "$data/PG_VERSION"; then
        log "initdb for region $region"
        local pw="$root/$region/run/pw"
        (. "$LAB_ENV"; printf '%s\n' "$LAB_PG_PASSWORD") > "$pw"
        [ "$(id -u)" = 0 ] && chown postgres: "$pw"
        as_pg "$PG_BIN/initdb" -D "$data" -U postgres --pwfile="$pw" -E UTF8 --no-locale \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f "$pw"
        echo "include_if_exists = 'lab.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
    fi
    local durable=off
    [ "${LAB_DURABLE:-0}" = 1 ] && durable=on
    as_pg tee "$data/lab.conf" >/dev/null <<CONF
# Written by dev/lab at every 'up'.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$root/$region/run'
wal_level = logical
max_replication_slots = 100
max_wal_senders = 100
max_connections = 300
shared_buffers = 128MB
max_slot_wal_keep_size = 10GB
wal_sender_timeout = 60s
# A development lab: durability off unless LAB_DURABLE=1 (benchmarks set it).
fsync = $durable
full_page_writes = $durable
log_min_messages = warning
CONF
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "starting PostgreSQL for region $region on 127.0.0.1:$port"
        as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$root/$region/postgresql.log" -w -t 60 start >/dev/null \
            || die "PostgreSQL for region $region did not start; see $root/$region/postgresql.log"
    fi
    pg_ensure_template "$region"
    pg_ensure_db "$region" superset
    [ "$LAB_NAME" = test ] && pg_drop_leftover_test_dbs "$region"
    return 0
}

# The template is rebuilt when the fixture changes (its sha256 is the database's comment), and is
# loaded under another name first so that a failed load never leaves a half template behind.
pg_ensure_template() {
    local region=$1 want have
    want=$(sha256sum "$FIXTURE" | cut -c1-64)
    have=$(pg_psql "$region" postgres -tAc \
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = 'superset_template'")
    [ "$have" = "fixture $want" ] && return 0
    log "loading the Superset 6.1 schema into region $region's template"
    pg_psql "$region" postgres -c "DROP DATABASE IF EXISTS superset_template_loading"
    pg_psql "$region" postgres -c "CREATE DATABASE superset_template_loading"
    as_pg cat "$FIXTURE" >/dev/null 2>&1 || die "the postgres user cannot read $FIXTURE"
    pg_psql "$region" superset_template_loading -f "$FIXTURE" >/dev/null
    pg_psql "$region" postgres <<SQL
UPDATE pg_database SET datistemplate = false WHERE datname = 'superset_template';
DROP DATABASE IF EXISTS superset_template;
ALTER DATABASE superset_template_loading RENAME TO superset_template;
ALTER DATABASE superset_template IS_TEMPLATE true;
COMMENT ON DATABASE superset_template IS 'fixture $want';
SQL
}

pg_ensure_db() {
    local region=$1 db=$2
    [ "$(pg_psql "$region" postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" = 1 ] && return 0
    pg_psql "$region" postgres -c "CREATE DATABASE \"$db\" TEMPLATE superset_template"
}

# Test databases (prefix it_) left by a run that was killed: drop them and their slots.
pg_drop_leftover_test_dbs() {
    local region=$1 db
    pg_psql "$region" postgres -tAc \
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database LIKE 'it\_%' AND NOT active" >/dev/null
    for db in $(pg_psql "$region" postgres -tAc "SELECT datname FROM pg_database WHERE datname LIKE 'it\_%'"); do
        pg_psql "$region" postgres -c "DROP DATABASE \"$db\" WITH (FORCE)"
    done
    # Sidecar roles of test databases (cluster-wide).
    for db in $(pg_psql "$region" postgres -tAc "SELECT rolname FROM pg_roles WHERE rolname LIKE 'it\_%\_sidecar'"); do
        pg_psql "$region" postgres -c "DROP ROLE IF EXISTS \"$db\""
    done
    # Appliers' replication origins (cluster-wide) whose database is gone.
    pg_psql "$region" postgres -tAc \
        "SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin
         WHERE roname ~ '^replicator_apply_[0-9]+\$'
           AND substring(roname FROM 18)::oid NOT IN (SELECT oid FROM pg_database)" >/dev/null
}

pg_down() {
    local region=$1 data
    data="$(pg_data_root)/$region/data"
    if as_pg test -f "$data/PG_VERSION" && as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "stopping PostgreSQL for region $region"
        as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    fi
}

pg_destroy_data() {
    local root
    root=$(pg_data_root)
    [ -d "$root" ] && rm -rf "$root"
    return 0
}
