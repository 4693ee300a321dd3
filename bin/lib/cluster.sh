# shellcheck shell=bash
# A throwaway PostgreSQL for one run of a script (bin/test and the benchmarks), never the
# project's .pgdata. Source common.sh first, then this file (it brings pg-embedded.sh).
#
#   throwaway_cluster PREFIX   make INGEST_WORK, a fresh folder ${TMPDIR:-/tmp}/PREFIX.XXXXXX
#                              (0755: the server may run as the postgres user); start a cluster
#                              in INGEST_WORK/pg (INGEST_PGDATA, exported) with the project
#                              database and sql/postgres_setup.sql; export PG* for it. At exit,
#                              however the script ends (its own exit, an error, Ctrl+C: 130,
#                              SIGTERM: 143), the at_cluster_exit commands run, the server stops
#                              and INGEST_WORK is removed, unless INGEST_KEEP_WORK=1 (then its
#                              path is logged).
#   at_cluster_exit CMD...     also run CMD at exit, before the server stops (a broker to end)
#
# The script owns the EXIT, INT and TERM traps from then on through this file: it adds to them
# with at_cluster_exit, never by setting its own.

# shellcheck source=SCRIPTDIR/pg-embedded.sh
source "$INGEST_ROOT/bin/lib/pg-embedded.sh"

INGEST_WORK=
INGEST_KEEP_WORK=${INGEST_KEEP_WORK:-0}
_cluster_exit_commands=()

at_cluster_exit() { _cluster_exit_commands+=("$(printf '%q ' "$@")"); }

_cluster_end() {
  local command
  for command in "${_cluster_exit_commands[@]}"; do eval "$command" || true; done
  pg_stop >/dev/null 2>&1 || true
  [[ -n $INGEST_WORK ]] || return 0
  if ((INGEST_KEEP_WORK)); then
    info "data and logs kept in $INGEST_WORK"
  else
    rm -rf -- "$INGEST_WORK"
  fi
}

throwaway_cluster() {
  INGEST_WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX") || die "cannot create a folder in ${TMPDIR:-/tmp}"
  chmod 755 "$INGEST_WORK"
  INGEST_PGDATA=$INGEST_WORK/pg
  export INGEST_PGDATA
  trap _cluster_end EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  pg_start
  apply_schema "$INGEST_ROOT/sql/postgres_setup.sql"
  eval "$(pg_env)"
  info "database: $PGUSER@$PGHOST:$PGPORT/$PGDATABASE (throwaway cluster in $INGEST_WORK)"
}
