# shellcheck shell=bash
# Options of the bin/ scripts, read one way: a missing or bad value is a one-line usage error
# naming the option (exit 64), in every script. Sourced by common.sh; the caller's loop:
#
#   while (($#)); do
#     case $1 in
#       -h | --help) usage && exit 0 ;;
#       --rows) option_count rows 1 "$@" && shift ;;
#       --topic) option_value topic "$@" && shift ;;
#       --keep-data) keep_data=1 ;;
#       *) unknown_option "$1" ;;
#     esac
#     shift
#   done
#
#   option_value VAR OPTION [VALUE ...]      VAR=VALUE; no VALUE: "OPTION needs a value"
#   option_count VAR MIN OPTION [VALUE ...]  the same, VALUE a whole number >= MIN
#   option_share VAR OPTION [VALUE ...]      the same, VALUE a share: a decimal from 0 to 1
#   option_duration VAR OPTION [VALUE ...]   the same, VALUE a duration (duration_ms: 250ms,
#                                            1.5s, 5m, 1h; a bare number is seconds); VAR is
#                                            the text as given
#   unknown_option ARG                       "unknown option ARG" (or "unexpected argument")
#
# VALUE is the caller's next argument, so the caller passes "$@" from the option on and shifts
# once more on success. VAR is set in the caller's scope (printf -v).

option_value() {
  (($# >= 3)) || usage_error "$2 needs a value; see --help"
  printf -v "$1" '%s' "$3"
}

option_count() {
  (($# >= 4)) || usage_error "$3 needs a value (a whole number >= $2); see --help"
  if [[ ! $4 =~ ^[0-9]{1,15}$ ]] || ((10#$4 < $2)); then
    usage_error "$3 needs a whole number >= $2 (got '$4'); see --help"
  fi
  printf -v "$1" '%s' "$((10#$4))"
}

option_share() {
  (($# >= 3)) || usage_error "$2 needs a value (a share from 0 to 1); see --help"
  [[ $3 =~ ^(0(\.[0-9]+)?|1(\.0+)?|\.[0-9]+)$ ]] ||
    usage_error "$2 needs a share from 0 to 1 (got '$3'); see --help"
  printf -v "$1" '%s' "$3"
}

option_duration() {
  (($# >= 3)) || usage_error "$2 needs a value (a duration: 250ms, 1.5s, 5m, 1h); see --help"
  # duration_ms exits on a bad one: asked in a subshell, so the message names the option.
  (duration_ms "$3") >/dev/null 2>&1 ||
    usage_error "$2 needs a duration: 250ms, 1.5s, 5m, 1h, a bare number is seconds (got '$3'); see --help"
  printf -v "$1" '%s' "$3"
}

unknown_option() {
  if [[ $1 == -* ]]; then
    usage_error "unknown option: $1; see --help"
  fi
  usage_error "unexpected argument: $1; see --help"
}
