# shellcheck shell=bash
# One job per incoming folder: a lock and a pidfile, for bin/run, bin/pipeline, bin/stop and
# bin/status. Source common.sh, pg-embedded.sh and job.sh first, then this file.
#
#   job_pidfile            $INGEST_INCOMING/.ingest-job.pid: pid, start time (UTC), command
#   job_claim COMMAND      lock the pidfile (descriptor 9, inherited by every process of the
#                          job) and write it, or die naming the job that holds it
#   job_running            true while a job holds the lock; sets job_pid, job_since, job_what
#   job_tree PID           PID and every process below it, parents first
#   job_holders            every process that holds the pidfile open: the job's processes, even
#                          when its script is gone (killed) and they live on
#   job_describe           one line for bin/status: running since when, which pid and script, or
#                          that the script is gone and which of its processes live on
#   stop_with_script PID...  SIGTERM to each PID (this script's stages) once this script is gone
#                          without stopping them (kill -9, the OOM killer): a job lives and dies
#                          as one
#   stop_with_script_end   end that watcher (call before a normal exit)
#
# The lock, not the pid, says whether a job runs: a pid can be reused after a crash, a lock
# dies with the last process that holds it. watch skips dot-files, so the pidfile is never read
# as data.

# With INGEST_PIPELINE_NAME (several pipelines sharing the folder, `watch --shared`), each named
# pipeline is a job of its own: .ingest-job.NAME.pid.
job_pidfile() {
  if [[ -n ${INGEST_PIPELINE_NAME-} ]]; then
    printf '%s/.ingest-job.%s.pid\n' "$INGEST_INCOMING" "${INGEST_PIPELINE_NAME//[^A-Za-z0-9._-]/_}"
  else
    printf '%s/.ingest-job.pid\n' "$INGEST_INCOMING"
  fi
}

# Other jobs on the folder (named pipelines, or the unnamed job), for a joining pipeline to say so.
job_others() {
  local own other n=0
  own=$(job_pidfile)
  for other in "$INGEST_INCOMING"/.ingest-job*.pid; do
    [[ -f $other && $other != "$own" ]] || continue
    flock -n "$other" true 2>/dev/null || n=$((n + 1))
  done
  printf '%s\n' "$n"
}

_job_read() {
  job_pid='' job_since='' job_what=''
  local file
  file=$(job_pidfile)
  [[ -f $file ]] || return 0
  { IFS= read -r job_pid && IFS= read -r job_since && IFS= read -r job_what; } <"$file" || true
}

job_running() {
  local file
  file=$(job_pidfile)
  [[ -f $file ]] || return 1
  # A fresh descriptor cannot take the lock while the job's descriptor holds it.
  if flock -n "$file" true 2>/dev/null; then return 1; fi
  _job_read
  return 0
}

job_claim() {
  local file
  file=$(job_pidfile)
  mkdir -p -- "$INGEST_INCOMING" || die "cannot create $INGEST_INCOMING (permissions?)"
  exec 9>>"$file" || die "cannot open $file (permissions?)"
  # Try for a moment: job_running (bin/status, bin/stop) probes by taking the lock for an
  # instant, and a probe must not make a starting job think another one runs; a job holds it
  # for good. A loop, not `flock -w`: its SIGALRM timeout never fires where the caller blocked
  # signals (a test runner does).
  local tries=0
  until flock -n 9; do
    ((++tries < 20)) || break
    sleep 0.1
  done
  if ((tries >= 20)); then
    _job_read
    die "a job is already running on $INGEST_INCOMING (pid ${job_pid:-?}, ${job_what:-?}, since ${job_since:-?}); stop it with bin/stop"
  fi
  _job_refuse_mixed
  printf '%s\n%s\n%s\n' "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" >"$file"
  if [[ -n ${INGEST_PIPELINE_NAME-} ]]; then
    local others
    others=$(job_others)
    if ((others > 0)); then
      info "joining as pipeline $INGEST_PIPELINE_NAME: $others other job(s) run on $INGEST_INCOMING; the files are split between them (claims in .claims/)"
    fi
  fi
}

# A plain job (no INGEST_PIPELINE_NAME) reads every file without claiming it, so beside named
# pipelines, which split the files through claims, each file would be read by two jobs. Refuse
# the one starting second, naming the other; never a "split" that is not.
_job_refuse_mixed() {
  local other pid what since names=()
  if [[ -n ${INGEST_PIPELINE_NAME-} ]]; then
    other=$INGEST_INCOMING/.ingest-job.pid
    [[ -f $other ]] && ! flock -n "$other" true 2>/dev/null || return 0
    { IFS= read -r pid && IFS= read -r since && IFS= read -r what; } <"$other" || true
    die "a job without a pipeline name runs on $INGEST_INCOMING (pid ${pid:-?}, ${what:-?}, since ${since:-?}): it does not claim files, so both would read every file; stop it (bin/stop) and start each pipeline with its own INGEST_PIPELINE_NAME"
  fi
  for other in "$INGEST_INCOMING"/.ingest-job.*.pid; do
    if [[ ! -f $other ]] || flock -n "$other" true 2>/dev/null; then continue; fi
    other=${other##*/.ingest-job.}
    names+=("${other%.pid}")
  done
  ((${#names[@]} == 0)) ||
    die "named pipelines run on $INGEST_INCOMING (${names[*]}): they split its files through claims, and a job without a name would read them all again; start this one with INGEST_PIPELINE_NAME=NAME, or stop them first"
}

job_holders() {
  local file fd pid
  file=$(cd -- "$(dirname -- "$(job_pidfile)")" && pwd -P)/$(basename -- "$(job_pidfile)")
  for fd in /proc/[0-9]*/fd/*; do
    [[ $(readlink -- "$fd" 2>/dev/null) == "$file" ]] || continue
    pid=${fd#/proc/}
    printf '%s\n' "${pid%%/*}"
  done | sort -un
}

job_tree() {
  local -a queue=("$1")
  local pid child
  while ((${#queue[@]} > 0)); do
    pid=${queue[0]}
    queue=("${queue[@]:1}")
    printf '%s\n' "$pid"
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do queue+=("$child"); done
  done
}

job_describe() {
  if kill -0 "${job_pid:-0}" 2>/dev/null; then
    printf 'running since %s (pid %s, %s)\n' "$job_since" "$job_pid" "$job_what"
    return 0
  fi
  local holders
  holders=$(job_holders | tr '\n' ' ')
  printf 'running since %s, but %s (pid %s) is gone; its processes live on: %s(bin/stop stops them)\n' \
    "$job_since" "${job_what:-its script}" "${job_pid:-?}" "${holders:-? }"
}

# The watcher is a process of its own (its own group, so a terminal's Ctrl+C does not reach it),
# holding neither the job's lock nor the script's stdio, and not a child of the script: started
# through a subshell that exits at once, so the script's `wait -n` never waits for it (bash may
# wait for any child when the stages it names are gone, and the watcher lives as long as the
# script: they would wait for each other). `tail --pid` wakes when the script is gone; a script
# that ends normally ends the watcher's group first, so its stages' pids are never signalled
# after they were reaped (and possibly reused).
_job_watcher=
stop_with_script() {
  local script=$$ flags=$-
  set -m
  (
    trap '' INT TERM HUP
    (
      tail --pid="$script" -f /dev/null 2>/dev/null || true
      kill -TERM "$@" 2>/dev/null || true
    ) &
  ) </dev/null >/dev/null 2>&1 9>&- &
  _job_watcher=$!
  [[ $flags == *m* ]] || set +m
  wait "$_job_watcher" 2>/dev/null || true
}

stop_with_script_end() {
  [[ -z $_job_watcher ]] || kill -KILL -- "-$_job_watcher" 2>/dev/null || true
  _job_watcher=
}
