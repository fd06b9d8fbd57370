# Shell helpers shared by .ci/test, .ci/demo and benches/load: install what is missing and
# run a private PostgreSQL cluster. Source it; it defines functions only.

# Runs a command as root: directly, or through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: root is needed to run: $*" >&2
        return 1
    fi
}

_apt_updated=
# Installs Debian/Ubuntu packages.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: please install: $* (no apt-get on this machine)" >&2
        return 1
    fi
    if [ -z "$_apt_updated" ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _apt_updated=1
    fi
    echo "installing: $*" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The directory of the newest installed PostgreSQL server binaries, if any.
pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

ensure_postgres() {
    [ -n "$(pg_bindir)" ] || apt_install postgresql
    [ -n "$(pg_bindir)" ] || { echo "error: PostgreSQL server binaries not found after installing" >&2; return 1; }
}

# Chromium for the browser test (tests/browser.rs); OXITRAFFIC_TEST_CHROMIUM names another one.
ensure_chromium() {
    local chromium=${OXITRAFFIC_TEST_CHROMIUM:-/usr/bin/chromium}
    [ -x "$chromium" ] || apt_install chromium
    [ -x "$chromium" ] || { echo "error: no Chromium at $chromium after installing" >&2; return 1; }
}

# Node.js, npm and the locked npm packages of tests/browser (playwright-core, which drives
# Chromium). npm ci runs when node_modules is missing or older than package(-lock).json.
ensure_browser_deps() {
    command -v node >/dev/null 2>&1 || apt_install nodejs npm
    command -v npm >/dev/null 2>&1 || apt_install npm
    # playwright-core's own minimum (its package.json "engines").
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    if [ "$major" -lt 20 ]; then
        echo "error: the browser test needs Node.js 20 or newer, found $(node --version)" >&2
        return 1
    fi
    local dir=tests/browser installed=tests/browser/node_modules/.package-lock.json
    if [ ! -f "$installed" ] || [ "$dir/package-lock.json" -nt "$installed" ] \
        || [ "$dir/package.json" -nt "$installed" ]; then
        echo "installing the npm packages of $dir" >&2
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
}

# What tests/container.rs needs to build and run the image: buildah (chroot isolation and vfs
# storage: no daemon, no registry, no overlay filesystem), iproute2 for the container's network
# namespace, openssl for its test certificates, and the CA bundle the image copies.
ensure_container_tools() {
    local missing=()
    command -v buildah >/dev/null 2>&1 || missing+=(buildah)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    [ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

# libfaketime for the test of visit times across a system clock jump (tests/hostile.rs).
ensure_faketime() {
    command -v faketime >/dev/null 2>&1 || apt_install faketime
}

# HAProxy, the load balancer in front of two instances in tests/instances.rs (Debian installs
# it as /usr/sbin/haproxy, which is not on every user's PATH).
ensure_haproxy() {
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || apt_install haproxy
}

# Runs a PostgreSQL tool as the user that owns the cluster (postgres when we are root).
_pg() {
    local tool=$1
    shift
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$(pg_bindir)/$tool" "$@"
    else
        "$(pg_bindir)/$tool" "$@"
    fi
}

# start_cluster DIR [extra postgres options]: initialises DIR/data once, then starts a server
# that listens only on the Unix socket directory DIR/sock (port 5432 names the socket file).
start_cluster() {
    local dir=$1
    shift
    mkdir -p "$dir/sock"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        mkdir -p "$dir/data"
        [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
        _pg initdb -A trust -U postgres -E UTF8 --no-locale -D "$dir/data" >/dev/null
    fi
    [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$dir"
    if ! _pg pg_ctl status -D "$dir/data" >/dev/null 2>&1; then
        _pg pg_ctl start -w -D "$dir/data" -l "$dir/server.log" \
            -o "-c listen_addresses='' -c unix_socket_directories='$dir/sock' -p 5432 $*" >/dev/null
    fi
}

stop_cluster() {
    _pg pg_ctl stop -w -m fast -D "$1/data" >/dev/null 2>&1 || true
}

# psql against a cluster started by start_cluster: cluster_psql DIR DATABASE [psql args]
cluster_psql() {
    local dir=$1 database=$2
    shift 2
    _pg psql -X -q -h "$dir/sock" -p 5432 -U postgres -d "$database" "$@"
}
