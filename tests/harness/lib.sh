# Sourced by every shell test: TAP output, a scratch directory, cleanup traps,
# skips (exit 77), and access to the service harnesses.
#
#   . "$(dirname "$0")/../harness/lib.sh"
#   tap_ok "name" cmd args...      run a check, print ok/not ok
#   tap_is "name" GOT WANT         compare two strings
#   tap_skip_all "reason"          nothing here can run: exit 77
#   at_exit 'cmd'                  run at exit, last registered first
#   tap_done                       print the plan, exit 1 if anything failed
#
# Environment from meson (tests/meson.build): VMDR_BUILD_ROOT, VMDR_SOURCE_ROOT.

set -uo pipefail

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VMDR_SOURCE_ROOT=${VMDR_SOURCE_ROOT:-$(cd "$HARNESS_DIR/../.." && pwd)}
VMDR_BUILD_ROOT=${VMDR_BUILD_ROOT:-$VMDR_SOURCE_ROOT/build}
export PATH="$VMDR_BUILD_ROOT/cmd:$VMDR_BUILD_ROOT/tests/harness:$PATH"

_tap_n=0
_tap_failed=0
_exit_cmds=()

_run_exit_cmds() {
  local i
  for ((i = ${#_exit_cmds[@]} - 1; i >= 0; i--)); do
    eval "${_exit_cmds[i]}" || true
  done
}
trap _run_exit_cmds EXIT
trap 'exit 130' INT TERM HUP

at_exit() { _exit_cmds+=("$1"); }

# A private scratch directory, removed at exit unless VMDR_TEST_KEEP=1.
T=$(mktemp -d "${TMPDIR:-/tmp}/vmdr-test.XXXXXX")
if [ "${VMDR_TEST_KEEP:-0}" = 1 ]; then
  echo "# keeping $T" >&2
else
  at_exit 'rm -rf "$T"'
fi

diag() { echo "# $*"; }

_tap_result() {    # _tap_result STATUS NAME [DETAIL...]
  local st=$1 name=$2; shift 2
  _tap_n=$((_tap_n + 1))
  if [ "$st" = 0 ]; then
    echo "ok $_tap_n - $name"
  else
    echo "not ok $_tap_n - $name"
    _tap_failed=$((_tap_failed + 1))
    local l
    for l in "$@"; do printf '%s\n' "$l" | sed 's/^/#   /'; done
  fi
}

# tap_ok NAME CMD...: ok when CMD exits 0; its output is shown only on failure.
tap_ok() {
  local name=$1 out st; shift
  out=$("$@" 2>&1); st=$?
  _tap_result "$st" "$name" "command: $*" "exit: $st" "$out"
  return "$st"
}

# tap_fails NAME CMD...: ok when CMD exits non-zero.
tap_fails() {
  local name=$1 out st; shift
  out=$("$@" 2>&1); st=$?
  [ "$st" != 0 ]; _tap_result $? "$name" "command: $*" "expected failure, got exit 0" "$out"
}

# tap_is NAME GOT WANT
tap_is() {
  [ "$2" = "$3" ]; _tap_result $? "$1" "got:  $2" "want: $3"
}

tap_skip() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $1 # SKIP ${2:-}"; }

tap_skip_all() { echo "1..0 # SKIP $*"; trap - EXIT; _run_exit_cmds; exit 77; }

# tap_bail REASON: a precondition broke; later checks would only add noise.
tap_bail() { echo "Bail out! $*"; exit 1; }

tap_done() {
  echo "1..$_tap_n"
  [ "$_tap_failed" = 0 ]
  exit $?
}

need_root() { [ "$(id -u)" = 0 ] || tap_skip_all "needs root"; }
need_cmd() {
  local c
  for c in "$@"; do command -v "$c" >/dev/null 2>&1 || tap_skip_all "needs $c"; done
}

# wait_until SECONDS CMD...: poll CMD every 0.1 s; 0 once it succeeds.
wait_until() {
  local limit=$1 i; shift
  for ((i = 0; i < limit * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
