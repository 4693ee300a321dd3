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

# shellcheck disable=SC2034  # used by the scripts that source this file
INGEST_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
# shellcheck disable=SC2034
INGEST_APT_PACKAGES=(libpq-dev postgresql postgresql-client pkg-config jq librdkafka-dev kcat)
_ingest_prog=${0##*/}

info() { printf '%s: %s\n' "$_ingest_prog" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$_ingest_prog" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$_ingest_prog" "$*" >&2
  exit 1
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
