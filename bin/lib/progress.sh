# shellcheck shell=bash
# Live progress for bin/run and bin/status (issue 14): rows/s as rows are read, the backlog,
# an ETA while it drains, the lag, and what load is committing or isolating meanwhile (issue 25).
# Source common.sh, pg-embedded.sh and job.sh first.
#
#   progress_sample        set the P_* figures below from the data they describe
#   progress_rate          rows/s between this sample and the previous one (P_RATE)
#   progress_line          one human line from the P_* figures
#   progress_json          one JSON object from the P_* figures
#
# Sources, each the thing it describes: rows loaded and rejected, files committed and the bytes
# per row are sums over ingest_checkpoints (one row per file or batch, written in the commit's
# transaction), never count(*) over the events table: a sample costs the same at 10 rows and at
# 100 M. The backlog and the lag from data/incoming itself (files, bytes, and each file's arrival:
# its ctime, which a rename into the folder sets, unlike the mtime a writer may have set hours
# before); rows read from the running load's /metrics (ingest_rows_read_total, counted as rows
# arrive, before commit), else the rows committed. From the same scrape: the rows in load's
# transactions now (ingest_rows_committing) and, while the server refused a row and load finds
# it, the records being isolated and those not through yet (ingest_rows_isolating, _left): a big
# file in isolation shows its own rate and ETA instead of "0 rows/s".
#
# When the database does not answer, P_DB_DOWN_SINCE is set (epoch seconds) and the figures
# from it are the last known ones: the line says so instead of showing 0.

P_LOADED=0 P_REJECTED=0 P_FILES=0 P_BYTES_PER_ROW=0 P_PENDING_FILES=0 P_PENDING_BYTES=0
P_LAG=0 P_READ='' P_RATE='' P_ETA='' P_DB_DOWN_SINCE='' P_DB_KNOWN=0
P_COMMITTING='' P_ISOLATING='' P_ISOLATING_LEFT='' P_ISOLATION_RATE='' P_LAST_RATE=
# Samples of the last PROGRESS_WINDOW seconds (default 10): rows/s over that window, so one slow
# second on a busy machine does not swing the ETA.
PROGRESS_WINDOW=${PROGRESS_WINDOW:-10}
_P_TIMES=() _P_COUNTS=() _P_LEFTS=()

progress_sample() {
  local line now
  now=$(date +%s.%N)
  # connect_timeout: a server that does not answer costs a sample 3 s, not libpq's default wait.
  line=$(PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-3} db_psql -At -F ' ' -c "SELECT
      coalesce(sum(rows_loaded) FILTER (WHERE status = 'committed'), 0),
      coalesce(sum(rows_rejected) FILTER (WHERE status = 'committed'), 0),
      count(source_file) FILTER (WHERE status = 'committed'),
      coalesce(round(sum(file_bytes) FILTER (WHERE source_file IS NOT NULL AND status = 'committed')::numeric
        / nullif(sum(rows_loaded + rows_rejected) FILTER (WHERE source_file IS NOT NULL AND status = 'committed'), 0), 1), 0)
    FROM ingest_checkpoints" 2>/dev/null) || line=''
  if [[ $line =~ ^[0-9]+\ [0-9]+\ [0-9]+\ [0-9.]+$ ]]; then
    read -r P_LOADED P_REJECTED P_FILES P_BYTES_PER_ROW <<<"$line"
    P_DB_DOWN_SINCE='' P_DB_KNOWN=1
  elif [[ -z $P_DB_DOWN_SINCE ]]; then
    P_DB_DOWN_SINCE=${now%.*}
  fi
  read -r P_PENDING_FILES P_PENDING_BYTES P_LAG < <(
    find "$INGEST_INCOMING" -maxdepth 1 -type f -name '*.csv' ! -name '.*' -printf '%s %C@\n' 2>/dev/null |
      awk -v now="$now" '{ n++; b += $1; if (!o || $2 < o) o = $2 }
        END { printf "%d %d %d\n", n, b, (n ? now - o : 0) }')
  _progress_metrics
  _P_TIMES+=("$now")
  _P_COUNTS+=("${P_READ:-$((P_LOADED + P_REJECTED))}")
  _P_LEFTS+=("${P_ISOLATING_LEFT:-0}")
  while ((${#_P_TIMES[@]} > 2)) && awk -v a="${_P_TIMES[1]}" -v t="$now" -v w="$PROGRESS_WINDOW" 'BEGIN { exit !(t - a >= w) }'; do
    _P_TIMES=("${_P_TIMES[@]:1}") _P_COUNTS=("${_P_COUNTS[@]:1}") _P_LEFTS=("${_P_LEFTS[@]:1}")
  done
  progress_rate
}

# P_READ, P_COMMITTING, P_ISOLATING, P_ISOLATING_LEFT from one scrape of the running load
# (empty without one).
_progress_metrics() {
  local url values
  P_READ='' P_COMMITTING='' P_ISOLATING='' P_ISOLATING_LEFT=''
  url=$(metrics_url) || return 0
  # awk reads to the end: leaving early would fail curl (exit 23) and, under pipefail, the caller.
  values=$({ curl -s --max-time 2 "$url" 2>/dev/null || true; } | awk '
    $1 == "ingest_rows_read_total" { r = $2 } $1 == "ingest_rows_committing" { c = $2 }
    $1 == "ingest_rows_isolating" { i = $2 } $1 == "ingest_rows_isolating_left" { l = $2 }
    function n(v) { return v == "" ? "-" : sprintf("%d", v) }
    END { if (r != "") printf "%s %s %s %s\n", n(r), n(c), n(i), n(l) }')
  [[ $values =~ ^([0-9]+)\ ([0-9]+|-)\ ([0-9]+|-)\ ([0-9]+|-)$ ]] || return 0
  P_READ=${BASH_REMATCH[1]}
  [[ ${BASH_REMATCH[2]} == - ]] || P_COMMITTING=${BASH_REMATCH[2]}
  [[ ${BASH_REMATCH[3]} == - ]] || P_ISOLATING=${BASH_REMATCH[3]}
  [[ ${BASH_REMATCH[4]} == - ]] || P_ISOLATING_LEFT=${BASH_REMATCH[4]}
}

# Rows/s over the window (rows read; while isolating, also the records through isolation). The
# ETA: the isolation's records left at its rate, plus the backlog's rows not read yet (its bytes
# ÷ the bytes per row of the files committed so far, less the rows load already holds) at the
# read rate (the last one seen while reading, when reading is done for now). Empty when unknown.
progress_rate() {
  P_RATE='' P_ETA='' P_ISOLATION_RATE=''
  local n=${#_P_TIMES[@]}
  ((n >= 2)) || return 0
  P_RATE=$(awk -v c="${_P_COUNTS[n - 1]}" -v p="${_P_COUNTS[0]}" -v t="${_P_TIMES[n - 1]}" -v s="${_P_TIMES[0]}" \
    'BEGIN { d = t - s; r = (d > 0 && c >= p) ? (c - p) / d : 0; printf "%d", r }')
  ((P_RATE == 0)) || P_LAST_RATE=$P_RATE
  if ((${P_ISOLATING:-0} > 0)); then
    P_ISOLATION_RATE=$(awk -v c="${_P_LEFTS[n - 1]}" -v p="${_P_LEFTS[0]}" -v t="${_P_TIMES[n - 1]}" -v s="${_P_TIMES[0]}" \
      'BEGIN { d = t - s; r = (d > 0 && p >= c) ? (p - c) / d : 0; printf "%d", r }')
  fi
  P_ETA=$(awk -v b="$P_PENDING_BYTES" -v r="${P_LAST_RATE:-0}" -v bpr="$P_BYTES_PER_ROW" -v held="${P_COMMITTING:-0}" \
    -v iso="${P_ISOLATING:-0}" -v left="${P_ISOLATING_LEFT:-0}" -v ir="${P_ISOLATION_RATE:-0}" 'BEGIN {
      eta = 0; known = 1; any = 0
      if (iso > 0) { any = 1; if (left > 0) { if (ir > 0) eta += left / ir; else known = 0 } }
      if (b > 0 && bpr > 0) { rows = b / bpr - held; if (rows > 0) { any = 1; if (r > 0) eta += rows / r; else known = 0 } }
      if (known && any) printf "%d", eta
    }')
}

_progress_duration() {
  local s=$1
  if ((s >= 3600)); then printf '%dh%02dm' $((s / 3600)) $((s % 3600 / 60))
  elif ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60))
  else printf '%ds' "$s"; fi
}

_progress_bytes() {
  awk -v b="$1" 'BEGIN { split("B KB MB GB TB", u); i = 1; while (b >= 1000 && i < 5) { b /= 1000; i++ }
    printf (i == 1 ? "%d %s" : "%.1f %s"), b, u[i] }'
}

progress_line() {
  local line
  if [[ -n $P_DB_DOWN_SINCE ]]; then
    local down=$((${EPOCHSECONDS:-$(date +%s)} - P_DB_DOWN_SINCE))
    line="the database does not answer (for $(_progress_duration "$down"))"
    ((P_DB_KNOWN == 0)) || line+="; last known: loaded $P_LOADED rows, rejected $P_REJECTED"
    line+="; ${P_RATE:-?} rows/s read"
  else
    line="loaded $P_LOADED rows, rejected $P_REJECTED; ${P_RATE:-?} rows/s"
  fi
  [[ -z $P_READ ]] || line+=" (read $P_READ)"
  if ((${P_ISOLATING:-0} > 0)); then
    line+="; isolating $P_ISOLATING rows in load: ${P_ISOLATING_LEFT:-?} left, ${P_ISOLATION_RATE:-?} rows/s"
  elif ((${P_COMMITTING:-0} > 0)); then
    line+="; committing $P_COMMITTING rows"
  fi
  line+="; backlog $P_PENDING_FILES files ($(_progress_bytes "$P_PENDING_BYTES"))"
  [[ -z $P_ETA ]] || line+=", ETA $(_progress_duration "$P_ETA")"
  ((P_PENDING_FILES == 0)) || line+="; lag $(_progress_duration "$P_LAG")"
  printf '%s\n' "$line"
}

progress_json() {
  printf '{"rows_loaded":%d,"rows_rejected":%d,"files_committed":%d,"files_pending":%d,"bytes_pending":%d,' \
    "$P_LOADED" "$P_REJECTED" "$P_FILES" "$P_PENDING_FILES" "$P_PENDING_BYTES"
  printf '"oldest_pending_age_seconds":%d,"rows_read":%s,"rows_per_second":%s,"eta_seconds":%s,"metrics_url":%s,' \
    "$P_LAG" "${P_READ:-null}" "${P_RATE:-null}" "${P_ETA:-null}" "$(_progress_json_string "$(metrics_url || true)")"
  printf '"rows_committing":%s,"rows_isolating":%s,"rows_isolating_left":%s,"isolation_rows_per_second":%s,' \
    "${P_COMMITTING:-null}" "${P_ISOLATING:-null}" "${P_ISOLATING_LEFT:-null}" "${P_ISOLATION_RATE:-null}"
  printf '"database_answers":%s}\n' "$([[ -z $P_DB_DOWN_SINCE ]] && echo true || echo false)"
}

_progress_json_string() { [[ -n $1 ]] && jq -Rn --arg s "$1" '$s' || printf 'null'; }
