# shellcheck shell=bash
# The embedded PostgreSQL: a private cluster in a project folder, run with Debian's
# /usr/lib/postgresql/<ver>/bin tools. Source common.sh first, then this file.
#
# The cluster folder is $INGEST_PGDATA, default $INGEST_ROOT/.pgdata. It holds:
#   data/       the PGDATA directory (initdb)
#   run/        the unix socket directory (0700; trust auth on the socket)
#   port        the TCP port on 127.0.0.1, chosen at first start (5433 upward), reused later
#   password    the superuser "postgres" password (0600; scram-sha-256 over TCP)
#   server.log  the server log
#
# Functions:
#   pg_start                 initialise if needed, start (no-op when running)
#   pg_stop                  fast shutdown (no-op when stopped)
#   pg_status                print one line; return 0 running, 3 stopped, 4 not initialised
#   pg_env                   print "export PGHOST=... PGPORT=... PGUSER=... PGPASSWORD=...
#                            PGDATABASE=..." for eval; the only place the password is printed
#   ensure_database NAME     create database NAME if missing
#   create_database NAME PSQL...  the same through any psql command (bin/lib/job.sh's db_psql)
#   apply_schema [FILE]      run FILE (default $INGEST_ROOT/sql/postgres_setup.sql) on the
#                            project database with ON_ERROR_STOP
#   pg_psql ARGS...          psql from the cluster's version, connected with pg_env's settings
#
# Settings (environment): INGEST_PGDATA (cluster folder), INGEST_DATABASE (default ecommerce),
# INGEST_PGPORT_FROM (first port tried, default 5433).

INGEST_DATABASE=${INGEST_DATABASE:-ecommerce}
_pg_host=127.0.0.1
_pg_superuser=postgres

pg_cluster_dir() {
  local dir=${INGEST_PGDATA:-$INGEST_ROOT/.pgdata}
  [[ $dir == /* ]] || dir=$PWD/$dir
  printf '%s\n' "$dir"
}

# The bin folder of the cluster's PostgreSQL version, or of the newest installed one.
_pg_bindir() {
  local dir ver
  dir=$(pg_cluster_dir)
  if [[ -f $dir/data/PG_VERSION ]]; then
    ver=$(<"$dir/data/PG_VERSION")
  else
    local initdb versions=()
    for initdb in /usr/lib/postgresql/*/bin/initdb; do
      initdb=${initdb#/usr/lib/postgresql/}
      versions+=("${initdb%%/*}")
    done
    ver=$(printf '%s\n' "${versions[@]}" | sort -V | tail -n 1)
  fi
  [[ -n $ver && -x /usr/lib/postgresql/$ver/bin/pg_ctl ]] ||
    die "no PostgreSQL server found in /usr/lib/postgresql/*/bin (install the postgresql package)"
  printf '/usr/lib/postgresql/%s/bin\n' "$ver"
}

# Run a server tool as the cluster owner: "postgres" when we are root (initdb and pg_ctl
# refuse root), else the current user. From / so the owner may lack access to $PWD.
_pg_as_owner() {
  if ((EUID == 0)); then
    (cd / && runuser -u "$_pg_superuser" -- "$@")
  else
    "$@"
  fi
}

_pg_chown() {
  ((EUID == 0)) || return 0
  chown -R "$_pg_superuser:" "$@"
}

_pg_port_in_use() {
  timeout 2 bash -c ": >/dev/tcp/$_pg_host/$1" 2>/dev/null
}

# The first port from $1 upward that nothing listens on.
_pg_free_port() {
  local port=$1
  while _pg_port_in_use "$port"; do
    ((port++ < 65535)) || die "no free TCP port found on $_pg_host"
  done
  printf '%s\n' "$port"
}

_pg_init() {
  local dir bindir
  dir=$(pg_cluster_dir)
  bindir=$(_pg_bindir)
  if ((EUID == 0)); then
    getent passwd "$_pg_superuser" >/dev/null ||
      die "system user '$_pg_superuser' is missing (it comes with the postgresql package)"
  fi
  info "initialising a PostgreSQL cluster in $dir"
  mkdir -p "$dir/run"
  chmod 0700 "$dir" "$dir/run"
  (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/password")
  _pg_free_port "${INGEST_PGPORT_FROM:-5433}" >"$dir/port"
  : >>"$dir/server.log"
  _pg_chown "$dir"
  _pg_as_owner test -w "$dir" ||
    die "user '$_pg_superuser' cannot write $dir: make its parent folders traversable (chmod o+x)"
  _pg_as_owner "$bindir/initdb" --pgdata="$dir/data" --username="$_pg_superuser" \
    --pwfile="$dir/password" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --no-locale >>"$dir/server.log" 2>&1 ||
    die "initdb failed; see $dir/server.log"
  printf "\ninclude_if_exists = 'ingest.conf'\n" >>"$dir/data/postgresql.conf"
}

# Quote a value for postgresql.conf.
_pg_conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# Settings rewritten at every start, so a moved project folder still works.
_pg_write_conf() {
  local dir=$1 port=$2 sockdir=$1/run
  # A unix socket path is limited to 107 bytes; without a socket we still have TCP.
  if ((${#sockdir} + 20 > 107)); then
    warn "cluster path too long for a unix socket; listening on TCP only"
    sockdir=
  fi
  {
    echo "# Written by bin/lib/pg-embedded.sh at every start: change ../port instead."
    echo "listen_addresses = '$_pg_host'"
    echo "port = $port"
    echo "unix_socket_directories = $(_pg_conf_quote "$sockdir")"
    echo "unix_socket_permissions = 0700"
  } >"$dir/data/ingest.conf"
  _pg_chown "$dir/data/ingest.conf"
}

_pg_running() {
  local dir bindir
  dir=$(pg_cluster_dir)
  [[ -f $dir/data/PG_VERSION ]] || return 1
  bindir=$(_pg_bindir)
  _pg_as_owner "$bindir/pg_ctl" status --pgdata="$dir/data" >/dev/null 2>&1
}

# The server outlives its caller: it must not keep the caller's pipes and sockets open, or
# whoever reads them (a test harness, a pipeline) never sees end of file. Call in a subshell.
_pg_close_inherited_fds() {
  local fd n
  for fd in "/proc/$BASHPID/fd/"*; do
    n=${fd##*/}
    if [[ $n =~ ^[0-9]+$ ]] && ((n > 2)); then eval "exec $n>&-" 2>/dev/null || true; fi
  done
  return 0
}

pg_start() {
  local dir bindir port fresh=0 log_size attempt
  dir=$(pg_cluster_dir)
  if _pg_running; then
    info "PostgreSQL already running on $_pg_host:$(<"$dir/port")"
    return 0
  fi
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    _pg_init
    fresh=1
  fi
  bindir=$(_pg_bindir)
  for attempt in 1 2 3 4 5; do
    port=$(<"$dir/port")
    _pg_write_conf "$dir" "$port"
    log_size=$(stat -c %s "$dir/server.log" 2>/dev/null || echo 0)
    if (_pg_close_inherited_fds && _pg_as_owner "$bindir/pg_ctl" start --pgdata="$dir/data" \
      --log="$dir/server.log" --wait --timeout=60 >>"$dir/server.log" 2>&1); then
      info "PostgreSQL $(<"$dir/data/PG_VERSION") started on $_pg_host:$port (cluster $dir)"
      return 0
    fi
    # A port chosen just now may have been taken meanwhile (another cluster starting): retry.
    if ((fresh)) && tail -c "+$((log_size + 1))" "$dir/server.log" | grep -q 'could not bind'; then
      warn "port $port was taken meanwhile (attempt $attempt); trying the next free one"
      _pg_free_port "$((port + 1))" >"$dir/port"
      _pg_chown "$dir/port"
      continue
    fi
    break
  done
  tail -n 20 "$dir/server.log" >&2 || true
  die "PostgreSQL did not start; see $dir/server.log"
}

pg_stop() {
  local dir bindir
  dir=$(pg_cluster_dir)
  if ! _pg_running; then
    info "PostgreSQL not running (cluster $dir)"
    return 0
  fi
  bindir=$(_pg_bindir)
  _pg_as_owner "$bindir/pg_ctl" stop --pgdata="$dir/data" --mode=fast --wait >/dev/null ||
    die "pg_ctl stop failed; see $dir/server.log"
  info "PostgreSQL stopped (cluster $dir)"
}

pg_status() {
  local dir
  dir=$(pg_cluster_dir)
  if [[ ! -f $dir/data/PG_VERSION ]]; then
    echo "not initialised (cluster $dir)"
    return 4
  elif _pg_running; then
    echo "running on $_pg_host:$(<"$dir/port") (cluster $dir)"
  else
    echo "stopped (cluster $dir)"
    return 3
  fi
}

pg_env() {
  local dir
  dir=$(pg_cluster_dir)
  [[ -f $dir/port && -f $dir/password ]] ||
    die "no cluster in $dir (run bin/pg start)"
  printf 'export PGHOST=%q PGPORT=%q PGUSER=%q PGPASSWORD=%q PGDATABASE=%q\n' \
    "$_pg_host" "$(<"$dir/port")" "$_pg_superuser" "$(<"$dir/password")" "$INGEST_DATABASE"
}

pg_psql() {
  local env bindir
  env=$(pg_env)
  bindir=$(_pg_bindir)
  (eval "$env" && "$bindir/psql" "$@")
}

# create_database NAME PSQL...: CREATE DATABASE NAME unless it exists, through the psql command
# PSQL... (connected to a maintenance database); the name is a psql variable, quoted by format().
create_database() {
  local name=$1
  shift
  "$@" -v name="$name" <<<"SELECT format('CREATE DATABASE %I', :'name')
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec"
}

ensure_database() {
  local name=${1:?ensure_database needs a database name}
  create_database "$name" pg_psql --quiet --no-psqlrc -v ON_ERROR_STOP=1 --dbname=postgres >/dev/null ||
    die "could not create database $name"
}

apply_schema() {
  local file=${1:-$INGEST_ROOT/sql/postgres_setup.sql}
  [[ -f $file ]] || die "schema file not found: $file"
  ensure_database "$INGEST_DATABASE"
  info "applying $file to database $INGEST_DATABASE"
  pg_psql --quiet --no-psqlrc -v ON_ERROR_STOP=1 --dbname="$INGEST_DATABASE" --file="$file" >&2 ||
    die "applying $file failed"
}
