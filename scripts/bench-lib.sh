# Shared by the benchmark scripts that compare a softvpc half with a kernel half (bench.sh,
# bench-nat.sh): `source` it after the script's own cleanup trap. A half runs through run_half;
# a signal stops that half's whole process tree (by pid) before the EXIT trap cleans up.

HALF_PID=
kill_tree() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null || true
}
on_signal() {
  [ -n "$HALF_PID" ] && kill_tree "$HALF_PID"
  exit 130
}
trap on_signal INT TERM

log() { echo "==> $*" >&2; }

# run_half CMD ARGS...: runs one half in a background subshell with errexit live, waited for so
# that a signal reaches on_signal at once; its exit status goes to HALF_RC. It returns 0 and must
# be called as a plain command: bash ignores -e in everything run under || or if, subshells
# included, so `run_half X || ...` would let a failing step pass unnoticed.
HALF_RC=0
run_half() {
  (set -e; "$@") &
  HALF_PID=$!
  HALF_RC=0
  wait "$HALF_PID" || HALF_RC=$?
  HALF_PID=
}
