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

# run_half CMD ARGS...: runs one half in a background subshell with errexit live (bash ignores -e
# in functions called under || or if), waited for so that a signal reaches on_signal at once.
run_half() {
  (set -e; "$@") &
  HALF_PID=$!
  local rc=0
  wait "$HALF_PID" || rc=$?
  HALF_PID=
  return $rc
}
