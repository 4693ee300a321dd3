# shellcheck shell=bash
# What bin/run, bin/pipeline, bin/gen, bin/status, bin/reset and bin/psql share: where the
# tools are, which database to use, bounded logs, stopping background stages.
# Source common.sh and pg-embedded.sh first, then this file.
#
#   INGEST_BIN_DIR         the built tools (default .build/release); set it to use another build
#   ingest_tool NAME       absolute path of a built tool, or die saying how to build it
#   load_env_file [FILE]   export POSTGRES_* and PG* keys from FILE (default .env) unless already set
#   select_database [--start-embedded] [--require-configured]
#                          export PG* for the database to use (see below);
#                          --require-configured: fail when nothing is configured
#   prepare_database       create the database if missing and apply sql/postgres_setup.sql
#   db_psql ARGS...        psql on the selected database (quiet, no psqlrc, stop on error)
#   log_to FILE [--tee] [--show-quarantine DIR]
#                          copy stdin to FILE, rotated at INGEST_LOG_MAX_BYTES (10 MB) keeping
#                          INGEST_LOG_KEEP (3) old files; --tee also copies to stderr;
#                          --show-quarantine: load's line for each file moved to DIR, to stderr
#   stop_stages PID...     SIGTERM each (the graceful first signal)
#   kill_stages PID...     a second signal to each: stages exit at once
#
# Which database, by the precedence the tools use (ConnectionSettings.resolve): PG* variables,
# then POSTGRES_* variables, then .env. When any of them names a server or a login (host, port,
# database, user, password, service), that server is the job's, and one that does not answer
# pg_isready is an error: never a fallback to another server. Only when none is set is the
# embedded cluster (bin/pg, in .pgdata) used, started only with --start-embedded. A setting that
# cannot work (a .env line that is not KEY=VALUE, a port that is not a number) exits 1 naming it.

INGEST_BIN_DIR=${INGEST_BIN_DIR:-$INGEST_ROOT/.build/release}
# One job per contract (docs/contracts.md): INGEST_CONTRACT=contracts/orders.yaml makes the job
# "orders", on data/orders/{incoming,processed,bad_records,quarantine} with its logs in
# logs/orders/; the tools read the same variable. Without it (or with the default contract) the
# job is the e-commerce one, on data/ and logs/ as always.
INGEST_JOB=
_job_data=$INGEST_ROOT/data _job_logs=$INGEST_ROOT/logs
if [[ -n ${INGEST_CONTRACT-} ]]; then
  [[ -f $INGEST_CONTRACT ]] || die "INGEST_CONTRACT=$INGEST_CONTRACT: no such file"
  # Absolute, so every stage finds it whatever its working folder.
  INGEST_CONTRACT=$(cd -- "$(dirname -- "$INGEST_CONTRACT")" && pwd -P)/$(basename -- "$INGEST_CONTRACT")
  export INGEST_CONTRACT
  if [[ $INGEST_CONTRACT != "$INGEST_ROOT/contracts/ecommerce_events.yaml" ]]; then
    INGEST_JOB=$(basename -- "$INGEST_CONTRACT")
    INGEST_JOB=${INGEST_JOB%.*}
    _job_data=$INGEST_ROOT/data/$INGEST_JOB _job_logs=$INGEST_ROOT/logs/$INGEST_JOB
  fi
fi
INGEST_INCOMING=${INGEST_INCOMING:-$_job_data/incoming}
INGEST_PROCESSED=${INGEST_PROCESSED:-$_job_data/processed}
INGEST_BAD_RECORDS=${INGEST_BAD_RECORDS:-$_job_data/bad_records}
INGEST_QUARANTINE=${INGEST_QUARANTINE:-$_job_data/quarantine}
INGEST_LOGS=${INGEST_LOGS:-$_job_logs}
unset _job_data _job_logs

# job_folders: every job's incoming folder under data/ (the default one first), for bin/status.
job_folders() {
  local dir
  printf '%s\n' "$INGEST_ROOT/data/incoming"
  for dir in "$INGEST_ROOT"/data/*/incoming; do
    [[ -d $dir ]] && printf '%s\n' "$dir"
  done
  return 0
}

ingest_tool() {
  local path=$INGEST_BIN_DIR/$1
  [[ -x $path ]] || die "$path not found: build the tools with bin/setup (or set INGEST_BIN_DIR)"
  printf '%s\n' "$path"
}

# .env is read as data (env_file_entries: load's rules), never sourced, never executed. The
# environment wins over the file; within the file a later line wins.
# shellcheck disable=SC2120  # FILE is optional; the scripts read the project's .env
load_env_file() {
  local file=${1:-$INGEST_ROOT/.env} entry key problem
  [[ -f $file ]] || return 0
  problem=$(env_file_check "$file")
  [[ -z $problem ]] || die "$problem"
  local -A from_file=()
  while IFS= read -r entry; do
    key=${entry%%=*}
    [[ $key == POSTGRES_* || $key == PG* ]] || continue
    from_file[$key]=${entry#*=}
  done < <(env_file_entries "$file")
  for key in "${!from_file[@]}"; do
    [[ -n ${!key+set} ]] || export "$key=${from_file[$key]}"
  done
}

# PG* from POSTGRES_* where unset, as load does.
_export_pg_from_postgres_keys() {
  local pair
  for pair in PGHOST:POSTGRES_HOST PGPORT:POSTGRES_PORT PGDATABASE:POSTGRES_DB \
    PGUSER:POSTGRES_USER PGPASSWORD:POSTGRES_PASSWORD; do
    local pg=${pair%%:*} pos=${pair#*:}
    if [[ -z ${!pg:-} && -n ${!pos:-} ]]; then export "$pg=${!pos}"; fi
  done
  export PGDATABASE=${PGDATABASE:-$INGEST_DATABASE}
}

_describe_db() { printf '%s@%s:%s/%s' "${PGUSER:-${USER:-$(id -un)}}" "${PGHOST:-local socket}" "${PGPORT:-5432}" "$PGDATABASE"; }

# The keys that name a server or a login (ConnectionSettings.configuringVariables).
_db_configuring_keys=(PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGPASSWORD PGSERVICE
  POSTGRES_HOST POSTGRES_PORT POSTGRES_DB POSTGRES_USER POSTGRES_PASSWORD)

# A port as libpq takes it (a list: 5432,5433), else exit 1 naming the key; as the tools say it.
_check_port() {
  local key=$1 value=$2 part
  local -a parts
  IFS=, read -r -a parts <<<"$value,"
  for part in "${parts[@]}"; do
    [[ -z $part && ${#parts[@]} -gt 1 ]] && continue
    [[ $part =~ ^[0-9]{1,5}$ ]] && ((10#$part >= 1 && 10#$part <= 65535)) && continue
    die "$key: not a port number (1-65535): \"$value\""
  done
}

select_database() {
  local start=0 require=0 arg key configured=()
  for arg in "$@"; do
    case $arg in
      --start-embedded) start=1 ;;
      --require-configured) require=1 ;;
    esac
  done
  # Which keys are set before .env adds its own: the file's are named as from .env.
  local -A from_environment=()
  for key in "${_db_configuring_keys[@]}"; do [[ -z ${!key+set} ]] || from_environment[$key]=1; done
  load_env_file
  # POSTGRES_PORT counts only where PGPORT does not win over it.
  for key in PGPORT POSTGRES_PORT; do
    [[ -n ${!key:-} ]] || continue
    if [[ -n ${from_environment[$key]:-} ]]; then _check_port "$key" "${!key}"; else _check_port "$key (in .env)" "${!key}"; fi
    break
  done
  for key in "${_db_configuring_keys[@]}"; do [[ -z ${!key+set} ]] || configured+=("$key"); done
  if ((${#configured[@]} > 0)); then
    _export_pg_from_postgres_keys
    # pg_isready only asks whether the server accepts connections: no password needed.
    if pg_isready -q -d postgres -t 5 >/dev/null 2>&1; then
      info "database: $(_describe_db) (from ${configured[*]})"
      return 0
    fi
    die "the configured PostgreSQL $(_describe_db) does not answer (pg_isready; set by ${configured[*]}): start it or fix those settings; for the embedded server instead, unset them and comment out the POSTGRES_* lines of .env"
  fi
  ((require == 0)) || die "no database configured: set POSTGRES_HOST (and the rest) in .env"
  if ((start)); then
    pg_start
  elif ! _pg_running; then
    die "no database: the embedded PostgreSQL is not running and none is configured
  start it with bin/pg start (or bin/run), or set POSTGRES_HOST etc. in .env"
  fi
  eval "$(pg_env)"
  info "database: $(_describe_db) (embedded, cluster $(pg_cluster_dir))"
}

db_psql() { psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 "$@"; }

# Creating the database needs CREATEDB and the schema needs ownership; a least-privilege login
# cannot do either, which is fine when someone already did.
prepare_database() {
  create_database "$PGDATABASE" db_psql --dbname=postgres >/dev/null 2>&1 ||
    warn "could not create database $PGDATABASE (it may exist already)"
  if db_psql -f "$INGEST_ROOT/sql/postgres_setup.sql" >/dev/null 2>"$INGEST_LOGS/.schema.err"; then
    info "schema applied (sql/postgres_setup.sql)"
  elif db_psql -c 'SELECT FROM ecommerce_events, ingest_checkpoints, ecommerce_bad_records LIMIT 0' \
    >/dev/null 2>&1; then
    warn "could not apply sql/postgres_setup.sql ($(head -n 1 "$INGEST_LOGS/.schema.err")); the tables exist, going on"
  else
    cat "$INGEST_LOGS/.schema.err" >&2
    die "could not apply sql/postgres_setup.sql to $(_describe_db)"
  fi
  rm -f "$INGEST_LOGS/.schema.err"
}

_rotate() {
  local file=$1 keep=$2 i
  for ((i = keep - 1; i >= 1; i--)); do
    [[ -f $file.$i ]] && mv -f -- "$file.$i" "$file.$((i + 1))"
  done
  mv -f -- "$file" "$file.1"
}

log_to() {
  local file=$1 tee='' show='' max=${INGEST_LOG_MAX_BYTES:-10485760} keep=${INGEST_LOG_KEEP:-3} size line
  shift
  while (($# > 0)); do
    case $1 in
      --tee) tee=1 && shift ;;
      --show-quarantine) show=$2 && shift 2 ;;
      *) shift ;;
    esac
  done
  # The writer outlives the stages it logs for: it stops at end of input, not on a signal, nor
  # when the stderr it copies to (--tee) is gone: then it goes on writing the file alone.
  trap '' INT TERM HUP PIPE
  local LC_ALL=C  # ${#line} in bytes
  mkdir -p -- "$(dirname -- "$file")"
  size=$(stat -c %s -- "$file" 2>/dev/null || echo 0)
  while IFS= read -r line || [[ -n $line ]]; do
    printf '%s\n' "$line" >>"$file"
    [[ -z $tee ]] || printf '%s\n' "$line" >&2 2>/dev/null || tee=
    # A file refused as a whole is worth a line where the job is watched, not only in the log.
    if [[ -n $show && -z $tee && $line == *" - load - WARNING - "*" moved to $show/"* ]]; then
      # shellcheck disable=SC2154  # common.sh sets it
      printf '%s: warning: %s\n' "$_ingest_prog" "${line#* - WARNING - }" >&2 2>/dev/null || show=
    fi
    size=$((size + ${#line} + 1))
    if ((size >= max)); then
      _rotate "$file" "$keep"
      size=0
    fi
  done
}

stop_stages() { kill -TERM "$@" 2>/dev/null || true; }

# validate and load ignore the first signal (they drain); one that has had none needs two. Two
# sent close together can arrive as one (a process not scheduled in between sees one pending
# SIGTERM): so the signal is sent again, every 0.25 s, to each stage still running, for up to
# 10 s. Any signal after the first one a stage saw ends it, which is what was asked.
kill_stages() {
  local pid tries
  kill -TERM "$@" 2>/dev/null || true
  for ((tries = 0; tries < 40; tries++)); do
    sleep 0.25
    local running=()
    for pid in "$@"; do _stage_running "$pid" && running+=("$pid"); done
    ((${#running[@]} > 0)) || return 0
    kill -TERM "${running[@]}" 2>/dev/null || true
  done
}

# True while PID runs (not gone, not a zombie waiting for its parent to reap it).
_stage_running() {
  local stat
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# Files waiting in the incoming folder (what watch would send).
pending_files() {
  find "$INGEST_INCOMING" -maxdepth 1 -type f -name '*.csv' ! -name '.*' 2>/dev/null | wc -l
}

# --- metrics (issue 14): load's /metrics endpoint, found by bin/status and bin/run ---------------

INGEST_METRICS_URL_FILE=${INGEST_METRICS_URL_FILE:-$INGEST_LOGS/.metrics-url}

# metrics_setup: sets metrics=(--metrics-listen ADDR) from INGEST_METRICS_LISTEN (default
# 127.0.0.1:9187, "off" for none) and records the URL for bin/status. A port already taken
# (another job, another user) turns metrics off for this run rather than failing the job.
metrics_setup() {
  local listen=${INGEST_METRICS_LISTEN:-127.0.0.1:9187} host port probe
  metrics=()
  rm -f -- "$INGEST_METRICS_URL_FILE"
  [[ $listen != off ]] || return 0
  host=${listen%:*} port=${listen##*:}
  probe=$host
  [[ -n $probe && $probe != 0.0.0.0 ]] || probe=127.0.0.1
  if [[ $port != 0 ]] && (exec 9<>"/dev/tcp/$probe/$port") 2>/dev/null; then
    warn "port $port is taken: metrics off for this run (set INGEST_METRICS_LISTEN=127.0.0.1:PORT)"
    return 0
  fi
  # shellcheck disable=SC2034  # the caller's array (bin/pipeline)
  metrics=(--metrics-listen "$listen")
  # The default port may be taken by another job between this probe and load's bind: then load
  # runs without metrics instead of failing. An address the user set stays strict.
  [[ -n ${INGEST_METRICS_LISTEN-} ]] || export INGEST_METRICS_BEST_EFFORT=1
  [[ $port == 0 ]] || printf 'http://%s:%s/metrics\n' "$probe" "$port" >"$INGEST_METRICS_URL_FILE"
}

metrics_cleanup() { rm -f -- "$INGEST_METRICS_URL_FILE"; }

# metrics_url: the running job's metrics URL, or nothing.
metrics_url() { [[ -s $INGEST_METRICS_URL_FILE ]] && head -n 1 -- "$INGEST_METRICS_URL_FILE"; }

# metrics_sample NAME: one unlabelled sample of the running job's metrics (empty if none).
metrics_sample() {
  local url
  url=$(metrics_url) || return 0
  # awk reads to the end: leaving early would fail curl (exit 23) and, under pipefail, the caller.
  { curl -s --max-time 2 "$url" 2>/dev/null || true; } | awk -v n="$1" '$1 == n { v = $2 } END { if (v != "") print v }'
}
