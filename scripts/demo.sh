#!/usr/bin/env bash
# Demo: the Modified Gram-Schmidt example checkpointed, killed and resumed.
#
#   1. runs mgs uninterrupted, for the reference checksum and result file;
#   2. runs it under ghost-run with ./ghost-images/mgs-demo as image directory,
#      takes a checkpoint with SIGUSR1 after a few repetitions, lets it run a
#      little longer, then kill -9's ghost-run (a node failure: the job dies too);
#   3. resumes it with ghost-resume, which runs it to the end;
#   4. prints both final checksums side by side and compares the result files.
# Exits 0 on MATCH, 1 on DIFFER, 2 if a step failed.
#
# Environment: GHOST_BIN_DIR (default: swift build --show-bin-path),
# MGS_N (default 500), MGS_REPS (default 60, about 6 s at N=500).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN="${GHOST_BIN_DIR:-$(swift build --show-bin-path)}"
MGS="$PWD/examples/mgs/mgs"
N="${MGS_N:-500}"
REPS="${MGS_REPS:-60}"
IMAGES="$PWD/ghost-images/mgs-demo"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/ghost-demo.XXXXXX")"
RUN_PID=""
cleanup() {
  if [ -n "$RUN_PID" ] && kill -0 "$RUN_PID" 2>/dev/null; then kill -9 "$RUN_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

die() { echo "demo: $*" >&2; exit 2; }
for f in "$BIN/ghost-run" "$BIN/ghost-resume" "$MGS"; do
  [ -x "$f" ] || die "$f is missing: run 'make build mgs' first"
done

# wait_for FILE PATTERN SECONDS: waits until FILE has a line matching PATTERN.
wait_for() {
  local deadline=$((SECONDS + $3))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "demo: timed out waiting for '$2' in $1; it holds:" >&2
      cat "$1" >&2 || true
      exit 2
    fi
    if [ -n "$RUN_PID" ] && ! kill -0 "$RUN_PID" 2>/dev/null; then
      grep -q -- "$2" "$1" 2>/dev/null && return 0
      echo "demo: ghost-run ended before '$2' appeared in $1:" >&2
      cat "$WORK"/run.err >&2 || true
      exit 2
    fi
    sleep 0.1
  done
}

echo "== 1. uninterrupted: mgs -n $N -r $REPS"
"$MGS" -n "$N" -r "$REPS" -o "$WORK/uninterrupted.out" -q > "$WORK/uninterrupted.stdout"
REF="$(grep '^final checksum:' "$WORK/uninterrupted.stdout")"
echo "   $REF"

echo "== 2. under ghost-run, image directory $IMAGES"
rm -rf "$IMAGES"
mkdir -p "$(dirname "$IMAGES")"
"$BIN/ghost-run" --image-dir "$IMAGES" -- "$MGS" -n "$N" -r "$REPS" -o "$WORK/resumed.out" \
  < /dev/null > "$WORK/run.out" 2> "$WORK/run.err" &
RUN_PID=$!
wait_for "$WORK/run.out" "^rep 5/" 120
echo "   $(tail -n 1 "$WORK/run.out"); sending SIGUSR1 (checkpoint)"
kill -USR1 "$RUN_PID"
wait_for "$WORK/run.err" "ghost: checkpoint 1 \(done\|failed\)" 120
grep "ghost: checkpoint 1" "$WORK/run.err" | sed 's/^/   /'
grep -q "ghost: checkpoint 1 done" "$WORK/run.err" || die "the checkpoint failed"
last=$(grep -c '^rep ' "$WORK/run.out" || true)
wait_for "$WORK/run.out" "^rep $((last + 3))/" 120
echo "   $(tail -n 1 "$WORK/run.out"); kill -9 ghost-run (node failure)"
kill -9 "$RUN_PID"
wait "$RUN_PID" 2>/dev/null || true
RUN_PID=""

echo "== 3. ghost-resume $IMAGES"
set +e
"$BIN/ghost-resume" "$IMAGES" < /dev/null > "$WORK/resume.out" 2> "$WORK/resume.err"
rc=$?
set -e
grep '^ghost: ' "$WORK/resume.err" | sed 's/^/   /' || true
[ $rc -eq 0 ] || { cat "$WORK/resume.err" >&2; die "ghost-resume exited with $rc"; }
GOT="$(grep '^final checksum:' "$WORK/resume.out" || true)"
echo "   the resumed job went on with: $(grep -m1 '^rep ' "$WORK/resume.out" || echo '(no rep line)')"

echo "== 4. result"
printf '   uninterrupted: %s\n   resumed:       %s\n' "$REF" "${GOT:-(none)}"
if [ "$REF" = "$GOT" ] && cmp -s "$WORK/uninterrupted.out" "$WORK/resumed.out"; then
  echo "MATCH: same final checksum and byte-identical result files"
  exit 0
fi
cmp "$WORK/uninterrupted.out" "$WORK/resumed.out" || true
echo "DIFFER"
exit 1
