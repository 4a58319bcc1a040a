#!/usr/bin/env bash
# Whole jobs under ghost: examples/mgs built with OpenMP (2 threads) and a
# 4-process shell pipeline with data in its pipes (gen | filter | filter |
# sink, plus the shell that waits for them). For each: one checkpoint while
# it runs, kill -9, resume; medians of RUNS runs of image size (image
# directory on disk), checkpoint wall time and frozen time (from ghost's log
# line), resume time (ghost-resume start -> its 'resumed' log line).
# Prints a markdown table.
#   bench/whole-jobs.sh [RUNS]      (default 5)
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BIN=${GHOST_BIN_DIR:-$(swift build -c release --static-swift-stdlib --show-bin-path)}
[ -x "$BIN/ghost-run" ] || swift build -c release --static-swift-stdlib >/dev/null
make -s -C examples/mgs mgs-omp
MGS=$PWD/examples/mgs/mgs-omp
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ghost-bench-jobs.XXXXXX")
GP=
trap '[ -n "$GP" ] && kill -9 "$GP" 2>/dev/null; rm -rf "$WORK"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# stamp FILE: stdin to FILE, each line prefixed by its arrival time
stamp() { local l; while IFS= read -r l || [ -n "$l" ]; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done > "$1"; }
# waitline FILE ERE TIMEOUT_S: print the first matching line once it exists
waitline() {
  local end=$((EPOCHSECONDS + $3))
  while [ "$EPOCHSECONDS" -lt "$end" ]; do grep -m1 -E "$2" "$1" 2>/dev/null && return 0; sleep 0.01; done
  return 1
}
ms() { awk -v v="$1" -v u="$2" 'BEGIN { printf "%.1f", (u=="s") ? v*1000 : (u=="us"||u=="µs") ? v/1000 : v }'; }

# one NAME CMD...: a run of the scenario; appends to $WORK/NAME.{img,ckpt,frozen,resume}
one() {
  local name=$1; shift
  local d="$WORK/run" line
  rm -rf "$d"; mkdir -p "$d"
  (cd "$d" && exec env OMP_NUM_THREADS=2 "$BIN/ghost-run" --image-dir "$d/img" -- "$@" > "$d/out" 2> >(stamp "$d/err")) &
  GP=$!
  waitline "$d/err" 'ghost: started pid' 30 > /dev/null || { echo "$name: ghost-run did not start" >&2; return 1; }
  sleep 3                                 # let it work and fill its pipes
  kill -USR1 "$GP"
  line=$(waitline "$d/err" 'ghost: checkpoint 1 (done|failed)' 300) || { echo "$name: no checkpoint line" >&2; return 1; }
  [[ $line == *failed* ]] && { echo "$name: $line" >&2; kill -9 "$GP"; GP=; return 1; }
  [[ $line =~ ([0-9.]+)\ (ms|s)\ total ]] && ms "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" >> "$WORK/$name.ckpt" && echo >> "$WORK/$name.ckpt"
  [[ $line =~ frozen\ ([0-9.]+)\ (ms|s|us|µs) ]] && ms "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}" >> "$WORK/$name.frozen" && echo >> "$WORK/$name.frozen"
  du -sk "$d/img" | awk '{printf "%.1f\n", $1/1024}' >> "$WORK/$name.img"
  kill -9 "$GP"; wait "$GP" 2>/dev/null; GP=
  sleep 0.5
  local t0=$EPOCHREALTIME
  (cd "$d" && exec env OMP_NUM_THREADS=2 "$BIN/ghost-resume" "$d/img" > "$d/out2" 2> >(stamp "$d/err2")) &
  GP=$!
  line=$(waitline "$d/err2" 'ghost: resumed checkpoint|ghost: .*(error|failed)' 120) || { echo "$name: no resume line" >&2; return 1; }
  [[ $line == *resumed* ]] || { echo "$name: $line" >&2; return 1; }
  awk -v a="$t0" -v b="${line%% *}" 'BEGIN { printf "%.1f\n", (b - a) * 1000 }' >> "$WORK/$name.resume"
  sleep 1                                 # it runs again
  kill -9 "$GP"; wait "$GP" 2>/dev/null; GP=
}

PIPE='od -An -tu4 -w4 -v /dev/urandom | awk "{ print \$1 % 1000003, \$1 }" | grep -v "^0 " | cksum'
echo "== whole jobs under ghost: $RUNS runs each (one checkpoint after 3 s, kill -9, resume)" >&2
for i in $(seq "$RUNS"); do
  one mgs "$MGS" -n 1000 -r 100000 -q
  one pipeline /bin/bash -c "$PIPE"
done

echo "| job | image on disk (MiB) | checkpoint (ms) | frozen (ms) | resume (ms) |"
echo "| --- | --- | --- | --- | --- |"
row() {
  printf '| %s | %s | %s | %s | %s |\n' "$2" "$(median < "$WORK/$1.img")" "$(median < "$WORK/$1.ckpt")" \
    "$(median < "$WORK/$1.frozen")" "$(median < "$WORK/$1.resume")"
}
row mgs "mgs-omp N=1000, OMP_NUM_THREADS=2 (1 process, 2 threads)"
row pipeline "od /dev/urandom \| awk \| grep \| cksum (bash + 4 processes)"
echo
echo "Medians of $RUNS runs; checkpoint and frozen from ghost's log line, image = du of the image directory (zstd chunks), resume = ghost-resume start to its 'resumed' line."
