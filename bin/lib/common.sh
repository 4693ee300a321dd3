# shellcheck shell=bash
# Shared helpers for the scripts in bin/. Source it; do not run it.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# Provides:
#   INGEST_ROOT            absolute path of the repository (found from this file, not from $PWD)
#   INGEST_APT_PACKAGES    Debian packages the project needs
#   info MSG...            progress line on stderr, prefixed with the script name
#   warn MSG...            same, marked as a warning
#   die MSG...             error line on stderr, then exit 1
#   need_apt_packages PKG...   install missing Debian packages (root) or say how to (non-root)
#   duration_ms DURATION       250ms, 1.5s, 5m, 1h, 20 (seconds) -> milliseconds; the tools' syntax
#   env_file_entries FILE      KEY=VALUE lines of a .env file, parsed as the tools parse it
#   env_file_check FILE        the first line of it the tools would refuse, or nothing
#   usage_error MSG...         error line on stderr, then exit 64
#   say LINE                   a line on stderr and in INGEST_SCRIPT_LOG; a dead stderr is ignored
#   ignore_dead_output         a dead stdout/stderr fails writes instead of killing the script
#   now_ms                     wall-clock milliseconds since the epoch (no fork: EPOCHREALTIME)
#   option_value, option_count, option_share, option_duration, unknown_option
#                              the scripts' options (bin/lib/args.sh, sourced from here)

# shellcheck disable=SC2034  # used by the scripts that source this file
INGEST_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck disable=SC2034  # shellcheck: bin/lint checks bin/ with it
INGEST_APT_PACKAGES=(libpq-dev libyaml-dev postgresql postgresql-client pkg-config jq systemd curl prometheus iproute2 nftables librdkafka-dev kcat shellcheck)
_ingest_prog=${0##*/}
# shellcheck source=SCRIPTDIR/args.sh
source "$INGEST_ROOT/bin/lib/args.sh"

info() { say "$_ingest_prog: $*"; }
warn() { say "$_ingest_prog: warning: $*"; }
die() {
  say "$_ingest_prog: error: $*"
  exit 1
}
usage_error() {
  say "$_ingest_prog: error: $*"
  exit 64
}

# say LINE: one line on stderr, and in INGEST_SCRIPT_LOG when the script keeps one (bin/run:
# logs/run.log; bin/pipeline: logs/pipeline.log). A stderr that is gone (the terminal closed, the
# `| tee` reading it ended) is not a reason to stop: the script goes on and its lines still reach
# the log. A failed write never fails the caller (set -e would end the script mid-stop).
INGEST_SCRIPT_LOG=${INGEST_SCRIPT_LOG-}
_ingest_stderr_gone=0
say() {
  if [[ -n $INGEST_SCRIPT_LOG ]]; then printf '%s\n' "$1" 2>/dev/null >>"$INGEST_SCRIPT_LOG" || true; fi
  ((_ingest_stderr_gone == 0)) || return 0
  printf '%s\n' "$1" >&2 2>/dev/null || stderr_gone
}

# say_progress TEXT: TEXT on stderr without a newline (a progress line redrawn in place); not logged.
say_progress() {
  ((_ingest_stderr_gone == 0)) || return 0
  printf '%s' "$1" >&2 2>/dev/null || stderr_gone
}

# stderr_gone: stop writing to stderr (its reader or terminal is gone); whatever else this shell
# runs writes its stderr to the script's log from now on, or nowhere.
stderr_gone() {
  _ingest_stderr_gone=1
  if [[ -n $INGEST_SCRIPT_LOG ]] && exec 2>>"$INGEST_SCRIPT_LOG"; then return 0; fi
  exec 2>/dev/null
}

# ignore_dead_output: a write to a pipe nobody reads (`bin/run | tee`, tee gone) fails with EPIPE
# instead of killing the script with SIGPIPE. A handler, not SIG_IGN: the programs the script
# starts get the default back, as they expect.
ignore_dead_output() { trap : PIPE; }

now_ms() {
  local micro=${EPOCHREALTIME/[.,]/}
  printf '%s\n' $((10#$micro / 1000))
}

# duration_ms DURATION
# The grammar of the tools' DurationArgument (Sources/CommandLineDialect): a decimal number and
# a unit, 250ms, 1.5s, 5m, 1h; a bare number is seconds. Prints whole milliseconds (rounded);
# digits of the fraction past the ninth are ignored; anything else is a usage error (exit 64).
duration_ms() {
  local text=$1 number unit scale whole fraction=''
  [[ $text =~ ^([0-9]{1,12})(\.([0-9]+))?(ms|s|m|h)?$ ]] ||
    usage_error "not a duration: '$text' (use 250ms, 1.5s, 5m, 1h; a bare number is seconds)"
  whole=${BASH_REMATCH[1]} fraction=${BASH_REMATCH[3]} unit=${BASH_REMATCH[4]:-s}
  case $unit in ms) scale=1 ;; s) scale=1000 ;; m) scale=60000 ;; h) scale=3600000 ;; esac
  number=$((10#$whole * scale))
  if [[ -n $fraction ]]; then
    # fraction * scale, rounded half up, in integers: 0.FRACTION = FRACTION / 10^len
    fraction=${fraction:0:9}  # beyond a nanosecond of an hour nothing changes; no overflow
    local digits=${#fraction} denominator=1
    for ((; digits > 0; digits--)); do denominator=$((denominator * 10)); done
    number=$((number + (10#$fraction * scale * 2 + denominator) / (2 * denominator)))
  fi
  printf '%s\n' "$number"
}

# env_file_entries FILE
# The rules of EnvFile (Sources/Postgres/EnvFile.swift): a line's surrounding blanks and a
# final CR ignored; blank and #-lines skipped; optional "export "; KEY=VALUE with KEY an
# identifier (else skipped); a value in matching '' or "" is taken verbatim; otherwise it ends
# before " #" or tab-#. Prints KEY=VALUE per entry, in file order (a later entry wins).
env_file_entries() {
  local line key value quote
  while IFS= read -r line || [[ -n $line ]]; do
    line=${line%$'\r'}
    line=${line#"${line%%[!$' \t']*}"}
    line=${line%"${line##*[!$' \t']}"}
    [[ -n $line && $line != '#'* ]] || continue
    [[ $line =~ ^export[$' \t']+(.*)$ ]] && line=${BASH_REMATCH[1]}
    [[ $line == *=* ]] || continue
    key=${line%%=*}
    key=${key%"${key##*[!$' \t']}"}
    [[ $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    value=${line#*=}
    value=${value#"${value%%[!$' \t']*}"}
    quote=${value:0:1}
    if [[ ($quote == "'" || $quote == '"') && ${value:1} == *"$quote"* ]]; then
      value=${value:1}
      value=${value%%"$quote"*}
    else
      value=${value%%[$' \t']#*}
      value=${value%"${value##*[!$' \t']}"}
    fi
    printf '%s=%s\n' "$key" "$value"
  done <"$1"
}

# env_file_check FILE
# The first line of FILE that env_file_entries would skip or read other than it looks, as
# "FILE:LINE: problem" (EnvFile.firstProblem's rules and words; values are never shown);
# nothing when the file is clean. bin/ refuses such a file, as the tools do.
env_file_check() {
  local line key value quote number=0
  while IFS= read -r line || [[ -n $line ]]; do
    number=$((number + 1))
    line=${line%$'\r'}
    line=${line#"${line%%[!$' \t']*}"}
    line=${line%"${line##*[!$' \t']}"}
    [[ -n $line && $line != '#'* ]] || continue
    [[ $line =~ ^export[$' \t']+(.*)$ ]] && line=${BASH_REMATCH[1]}
    if [[ $line != *=* ]]; then
      printf '%s:%d: not a KEY=VALUE line\n' "$1" "$number"
      return 0
    fi
    key=${line%%=*}
    key=${key%"${key##*[!$' \t']}"}
    if [[ ! $key =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
      printf '%s:%d: not a KEY=VALUE line (a key is letters, digits and _, not starting with a digit)\n' "$1" "$number"
      return 0
    fi
    value=${line#*=}
    value=${value#"${value%%[!$' \t']*}"}
    quote=${value:0:1}
    if [[ ($quote == "'" || $quote == '"') && ${value:1} != *"$quote"* ]]; then
      printf "%s:%d: %s: the value's opening %s is not closed\n" "$1" "$number" "$key" "$quote"
      return 0
    fi
  done <"$1"
}

# need_apt_packages PKG...
# Checks each package with dpkg-query. Missing ones are installed when running as root
# (apt-get update once per shell, then a non-interactive install); otherwise prints the
# exact sudo command and exits.
_ingest_apt_updated=0
need_apt_packages() {
  local pkg missing=()
  if ! command -v dpkg-query >/dev/null; then
    warn "not a Debian system; make sure these are installed: $*"
    return 0
  fi
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$pkg")
    fi
  done
  ((${#missing[@]} == 0)) && return 0

  if ((EUID != 0)); then
    die "missing packages: ${missing[*]}; install them with:
  sudo apt-get install -y --no-install-recommends ${missing[*]}"
  fi
  info "installing missing packages: ${missing[*]}"
  if ((_ingest_apt_updated == 0)); then
    DEBIAN_FRONTEND=noninteractive apt-get update >&2 || die "apt-get update failed"
    _ingest_apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    die "apt-get install failed for: ${missing[*]}"
}

# restore_stop_signals "$@"   (call first thing in scripts that stop their children gracefully)
# A parent may start a script with SIGINT/SIGTERM blocked (Foundation's Process does) or
# ignored (a non-interactive shell's "cmd &"). bash can neither unblock nor trap them then, so
# the graceful stop could never start: re-exec once through perl with both restored.
restore_stop_signals() {
  local blocked ignored
  # Once per process: if perl could not restore them, go on rather than loop.
  if [[ -n ${_INGEST_SIGNALS_RESTORED:-} ]]; then
    unset _INGEST_SIGNALS_RESTORED
    return 0
  fi
  blocked=$(sed -n 's/^SigBlk:[[:space:]]*//p' "/proc/$$/status" 2>/dev/null) || return 0
  ignored=$(sed -n 's/^SigIgn:[[:space:]]*//p' "/proc/$$/status" 2>/dev/null) || return 0
  [[ -n $blocked && -n $ignored ]] || return 0
  if (((16#$blocked | 16#$ignored) & 0x4002)) && command -v perl >/dev/null; then
    _INGEST_SIGNALS_RESTORED=1 exec perl -MPOSIX -e '$SIG{INT} = $SIG{TERM} = "DEFAULT";
      sigprocmask(SIG_UNBLOCK, POSIX::SigSet->new(SIGINT, SIGTERM)); exec @ARGV or die "exec $ARGV[0]: $!\n"' \
      -- "$0" "$@"
  fi
}
