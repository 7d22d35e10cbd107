# shellcheck shell=bash
# `dev/lab demo`: the replicator's main job on the local lab, end to end, in one command.
#
# Three regions (us, eu, ap), each a fresh Superset 6.1 metadata database `superset_demo` with
# `replicator setup` and a sidecar (`replicator run`) beside it. A user in us builds a dashboard
# (dev/lab.d/demo-scenario.sql); it appears in eu and ap with every reference in their own ids.
# Then us and eu are cut off (their sidecars stop) and both edit the dashboard: different fields
# (both survive) and the same field (one conflict, the same winner everywhere). Reconnected, the
# regions converge. It prints the lag per region pair, the conflict, and `replicator verify`.
# It runs on a lab instance of its own (`demo`, its own ports), installed and started as needed;
# everything it started is stopped at the end (that lab too) unless `--stay-up`.

DEMO_DB=superset_demo
DEMO_SLOT=replicator_demo

demo_psql() { # region, then psql arguments
    local region=$1
    shift
    PGPASSWORD=$LAB_PG_PASSWORD "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 \
        -p "$(lab_region_port "$region")" -U postgres -d "$DEMO_DB" "$@"
}

demo_url() { printf 'host=127.0.0.1 port=%s user=postgres dbname=%s' "$(lab_region_port "$1")" "$DEMO_DB"; }

demo_others() { # the regions other than $1, comma-separated
    local r out=
    for r in us eu ap; do [ "$r" = "$1" ] || out=${out:+$out,}$r; done
    printf '%s' "$out"
}

demo_fresh_db() {
    local region=$1
    pg_psql "$region" postgres -qtAc \
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '$DEMO_DB' AND active_pid IS NOT NULL" >/dev/null
    pg_psql "$region" postgres -qtAc \
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '$DEMO_DB'" >/dev/null || true
    pg_psql "$region" postgres -qc "DROP DATABASE IF EXISTS $DEMO_DB WITH (FORCE)"
    pg_psql "$region" postgres -qc "CREATE DATABASE $DEMO_DB TEMPLATE superset_template"
    demo_psql "$region" -c "INSERT INTO ab_user (id, first_name, last_name, username, email)
        VALUES (nextval('ab_user_id_seq'), 'Ada', 'Admin', 'admin', 'admin@example.com'),
               (nextval('ab_user_id_seq'), 'Bob', 'Owner', 'bob', 'bob@example.com')"
    # Each region has objects of its own already, so the replicated ones get other ids here.
    demo_psql "$region" -c "SELECT setval('dashboards_id_seq', $((RANDOM % 50 + 10)));
        SELECT setval('slices_id_seq', $((RANDOM % 50 + 10))); SELECT setval('tables_id_seq', $((RANDOM % 50 + 10)))" >/dev/null
}

demo_start() { # region
    local region=$1 i
    case $region in us) i=0 ;; eu) i=1 ;; *) i=2 ;; esac
    printf '{"dbs": {"examples": {"sqlalchemy_uri": "postgresql://examples-%s/examples"}}}\n' "$region" \
        >"$DEMO_DIR/$region-local-columns.json"
    PGPASSWORD=$LAB_PG_PASSWORD REPLICATOR_DATABASE_URL=$(demo_url "$region") \
        "$DEMO_BIN" run --region "$region" --sources "$(demo_others "$region")" \
        --slot "$DEMO_SLOT" --publication "$DEMO_SLOT" --kafka-brokers "$LAB_BROKER" \
        --topic-prefix "$DEMO_PREFIX" --heartbeat-interval 1s \
        --metrics-listen "127.0.0.1:$((9464 + i))" \
        --local-columns-file "$DEMO_DIR/$region-local-columns.json" \
        >>"$DEMO_DIR/$region.log" 2>&1 </dev/null &
    printf '%s' $! >"$DEMO_DIR/$region.pid"
}

demo_stop() { # region
    local pid
    pid=$(cat "$DEMO_DIR/$1.pid" 2>/dev/null || true)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$DEMO_DIR/$1.pid"
}

demo_wait() { # description, then a shell condition; bounded
    local what=$1 i
    shift
    for i in $(seq 1 240); do
        if eval "$*" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "timed out waiting for $what (logs: $DEMO_DIR)"
}

demo_title() { demo_psql "$1" -tAc "SELECT dashboard_title || ' | css: ' || coalesce(css, '') FROM dashboards WHERE slug = 'sales-overview'"; }

demo_cmd() { # region, then replicator arguments (read-only commands)
    local region=$1
    shift
    PGPASSWORD=$LAB_PG_PASSWORD REPLICATOR_DATABASE_URL=$(demo_url "$region") "$DEMO_BIN" "$@"
}

cmd_demo() {
    local stay_up=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --stay-up) stay_up=1; shift ;;
            *) die "demo: unknown option $1" ;;
        esac
    done
    # The demo's own lab instance (its own ports and data): it never disturbs a lab in use, and
    # stopping it at the end stops only what the demo started.
    if [ "$LAB_NAME" = default ]; then
        LAB_NAME=demo
        unset LAB_PG_BASE_PORT LAB_BROKER_PORT
        lab_init_paths demo
    fi
    log "bringing up lab '$LAB_NAME' (three PostgreSQL 15 clusters and a broker)"
    cmd_up --regions us,eu,ap >/dev/null
    # shellcheck disable=SC1090
    . "$LAB_ENV"
    DEMO_DIR="$LAB_DIR/demo"
    mkdir -p "$DEMO_DIR"
    rm -f "$DEMO_DIR"/*.log
    DEMO_PREFIX="demo.$(date +%s)."
    log "building the replicator"
    (cd "$LAB_ROOT" && cargo build --quiet -p replicator --bin replicator) || die "cargo build failed"
    DEMO_BIN="$LAB_ROOT/target/debug/replicator"
    trap 'for r in us eu ap; do demo_stop $r; done' EXIT
    local r
    for r in us eu ap; do
        demo_fresh_db "$r"
        PGPASSWORD=$LAB_PG_PASSWORD "$DEMO_BIN" setup --region "$r" --slot "$DEMO_SLOT" \
            --publication "$DEMO_SLOT" --database-url "$(demo_url "$r")" >"$DEMO_DIR/$r-setup.log" 2>&1 \
            || die "setup of $r failed: $DEMO_DIR/$r-setup.log"
        demo_start "$r"
    done
    log "three regions, each with its own Superset database and a sidecar (logs: $DEMO_DIR)"

    log "1. a user in us builds a dashboard: 3 charts on 2 datasets, 2 native filters, cross-filters, 2 owners"
    demo_psql us -f "$LAB_ROOT/dev/lab.d/demo-scenario.sql"
    for r in eu ap; do
        demo_wait "the dashboard in $r" \
            "[ \"\$(demo_psql $r -tAc \"SELECT count(*) FROM dashboard_slices ds JOIN dashboards d ON d.id = ds.dashboard_id WHERE d.slug = 'sales-overview'\")\" = 3 ]"
    done
    printf '\n   the dashboard in each region, in its own ids (chart ids in the layout -> chart names):\n'
    for r in us eu ap; do
        printf '   %s: ' "$r"
        demo_psql "$r" -tAc "SELECT 'dashboard ' || d.id || ': ' || string_agg(s.id || ' ' || s.slice_name, ', ' ORDER BY s.slice_name)
            FROM dashboards d CROSS JOIN LATERAL jsonb_each(d.position_json::jsonb) AS n (k, v)
            JOIN slices s ON s.id = (n.v -> 'meta' ->> 'chartId')::int
            WHERE d.slug = 'sales-overview' GROUP BY d.id"
    done

    log "2. us and eu are cut off from each other (their sidecars stop) and both edit the dashboard"
    demo_stop us
    demo_stop eu
    demo_psql us -c "UPDATE dashboards SET dashboard_title = 'Sales overview (edited in us)' WHERE slug = 'sales-overview'"
    demo_psql eu -c "UPDATE dashboards SET dashboard_title = 'Sales overview (edited in eu)', css = '.header { color: navy; }' WHERE slug = 'sales-overview'"
    printf '   us: %s\n   eu: %s\n' "$(demo_title us)" "$(demo_title eu)"

    log "3. reconnected: every region converges"
    demo_start us
    demo_start eu
    demo_wait "the conflict to be logged in ap" \
        "[ \"\$(demo_psql ap -tAc 'SELECT count(*) FROM replicator.conflict')\" -ge 1 ]"
    demo_wait "every region to show one title" \
        "[ \"\$(demo_title us)\" = \"\$(demo_title eu)\" ] && [ \"\$(demo_title eu)\" = \"\$(demo_title ap)\" ]"
    for r in us eu ap; do printf '   %s: %s\n' "$r" "$(demo_title "$r")"; done

    printf '\n'
    log "4. lag per region pair (source -> here), from heartbeats"
    for r in us eu ap; do
        printf '   into %s:\n' "$r"
        demo_cmd "$r" lag --sources "$(demo_others "$r")" | sed 's/^/     /'
    done
    log "5. the conflict, as region ap logged it (the same winner in every region)"
    demo_cmd ap conflicts list | sed 's/^/   /'
    local id
    id=$(demo_psql ap -tAc "SELECT min(id) FROM replicator.conflict")
    demo_cmd ap conflicts show "$id" | sed 's/^/   /'
    log "6. replicator verify: the canonical state of every region, compared"
    demo_cmd us verify --peer "eu=$(demo_url eu)" --peer "ap=$(demo_url ap)" | sed 's/^/   /'

    if [ "$stay_up" = 1 ]; then
        trap - EXIT
        log "staying up: sidecars (pids in $DEMO_DIR/*.pid, metrics on 127.0.0.1:9464-9466) and lab '$LAB_NAME'; stop with: dev/lab --name $LAB_NAME down"
    else
        for r in us eu ap; do demo_stop "$r"; done
        trap - EXIT
        cmd_down >/dev/null
        log "done: sidecars stopped and the lab is down (run with --stay-up to keep them)"
    fi
}
