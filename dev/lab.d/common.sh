# Shared pieces of the lab: paths, ports, logging, the env file the tests read, running as postgres.
# Sourced by dev/lab; not a command of its own.

log() { printf '[lab] %s\n' "$*" >&2; }
die() { printf '[lab] error: %s\n' "$*" >&2; exit 1; }

# Paths and ports of one lab instance. Ports are fixed per instance so that a restarted lab keeps its
# addresses: regions take consecutive ports from the base, in the order given to the first `up`.
lab_init_paths() {
    local name=$1
    case "$name" in
        default) LAB_DIR="$LAB_ROOT/.work/lab"; : "${LAB_PG_BASE_PORT:=55432}"; : "${LAB_BROKER_PORT:=59092}" ;;
        test) LAB_DIR="$LAB_ROOT/.work/lab-test"; : "${LAB_PG_BASE_PORT:=56432}"; : "${LAB_BROKER_PORT:=59192}" ;;
        *)
            [[ "$name" =~ ^[a-z0-9_-]{1,20}$ ]] || die "lab name must match [a-z0-9_-]{1,20}"
            local slot=$(( $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 50 ))
            LAB_DIR="$LAB_ROOT/.work/lab-$name"
            : "${LAB_PG_BASE_PORT:=$((57000 + slot * 10))}"; : "${LAB_BROKER_PORT:=$((58000 + slot * 10))}" ;;
    esac
    LAB_ENV="$LAB_DIR/lab.env"
    PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
}

lab_check_region_list() {
    local r
    for r in ${1//,/ }; do
        [[ "$r" =~ ^[a-z][a-z0-9_]{0,15}$ ]] || die "region id '$r' must match [a-z][a-z0-9_]{0,15}"
    done
}

lab_known_regions() {
    [ -f "$LAB_ENV" ] || return 0
    # shellcheck disable=SC1090
    (. "$LAB_ENV"; printf '%s\n' "${LAB_REGIONS//,/ }")
}

lab_region_port() {
    local want=$1 i=0 r
    # shellcheck disable=SC1090
    for r in $( (. "$LAB_ENV"; printf '%s' "${LAB_REGIONS//,/ }") ); do
        if [ "$r" = "$want" ]; then echo $((LAB_PG_BASE_PORT + i)); return 0; fi
        i=$((i + 1))
    done
    die "region '$want' is not part of lab '$LAB_NAME'"
}

# The env file is the lab's contract with the tests (tests/src/lab.rs reads it) and with users.
lab_write_env() {
    local regions=$1 password
    if [ -f "$LAB_ENV" ]; then
        local had
        had=$(. "$LAB_ENV"; printf '%s' "$LAB_REGIONS")
        [ "$had" = "$regions" ] || die "lab '$LAB_NAME' was set up with regions '$had'; use 'dev/lab --name $LAB_NAME destroy' first, or another --name"
        return 0
    fi
    password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | head -c 20)
    umask 077
    {
        echo "# Written by dev/lab for lab '$LAB_NAME'. Read by the integration tests."
        echo "LAB_NAME=$LAB_NAME"
        echo "LAB_REGIONS=$regions"
        echo "LAB_PG_HOST=127.0.0.1"
        echo "LAB_PG_USER=postgres"
        echo "LAB_PG_PASSWORD=$password"
        echo "LAB_PG_BASE_PORT=$LAB_PG_BASE_PORT"
        local i=0 r
        for r in ${regions//,/ }; do
            echo "LAB_PG_PORT_${r^^}=$((LAB_PG_BASE_PORT + i))"
            i=$((i + 1))
        done
        echo "LAB_TEMPLATE_DB=superset_template"
        echo "LAB_DEMO_DB=superset"
        echo "LAB_BROKER=127.0.0.1:$LAB_BROKER_PORT"
    } > "$LAB_ENV"
    umask 022
}

lab_status() {
    [ -f "$LAB_ENV" ] || { log "lab '$LAB_NAME' has never been brought up"; return 0; }
    local r port state
    echo "lab '$LAB_NAME' (env file: $LAB_ENV)"
    for r in $(lab_known_regions); do
        port=$(lab_region_port "$r")
        if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then state=up; else state=down; fi
        printf '  region %-6s postgresql://postgres@127.0.0.1:%s/superset   %s\n' "$r" "$port" "$state"
    done
    if port_open "$LAB_BROKER_PORT"; then state=up; else state=down; fi
    printf '  broker        127.0.0.1:%s (Kafka protocol, Tansu)         %s\n' "$LAB_BROKER_PORT" "$state"
    echo "  password of user postgres: LAB_PG_PASSWORD in the env file"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Wait for a condition, bounded: wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    die "timed out after ${secs}s waiting for $what"
}

# PostgreSQL refuses to run as root: as root, run its tools as the postgres user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
