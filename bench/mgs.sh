#!/usr/bin/env bash
# examples/mgs under ghost: (1) speed of the job under ghost-run (no
# checkpoint) against the job alone, (2) image size per matrix size beside the
# Kerrighed paper's Table 1 ghost sizes. Medians of RUNS runs, alternating the
# two configurations so that machine noise hits both alike.
#   bench/mgs.sh [RUNS]      (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
BIN=${GHOST_BIN_DIR:-$(swift build -c release --static-swift-stdlib --show-bin-path)}
[ -x "$BIN/ghost-run" ] || swift build -c release --static-swift-stdlib >/dev/null
make -s -C examples/mgs
MGS=$PWD/examples/mgs/mgs
WORK=$(mktemp -d /tmp/ghost-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "== ghost-run overhead on examples/mgs (N=1000, 12 reps, no checkpoint), $RUNS runs each"
: > "$WORK/alone"; : > "$WORK/ghost"
for i in $(seq "$RUNS"); do
  t0=$(now); "$MGS" -n 1000 -r 12 -q -o "$WORK/a.out" >/dev/null; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}' >> "$WORK/alone"
  rm -rf "$WORK/img"
  t0=$(now); "$BIN/ghost-run" --image-dir "$WORK/img" -- "$MGS" -n 1000 -r 12 -q -o "$WORK/g.out" >/dev/null 2>&1; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}' >> "$WORK/ghost"
done
A=$(median < "$WORK/alone"); G=$(median < "$WORK/ghost")
printf "alone  median %.3f s   (runs: %s)\n" "$A" "$(tr '\n' ' ' < "$WORK/alone")"
printf "ghost  median %.3f s   (runs: %s)\n" "$G" "$(tr '\n' ' ' < "$WORK/ghost")"
awk -v a="$A" -v g="$G" 'BEGIN{printf "ratio ghost/alone: %.4f  (overhead %+.2f%%)\n", g/a, (g/a-1)*100}'

echo
echo "== image size per matrix size (one checkpoint after the first repetitions)"
printf "%-10s %14s %16s %16s %14s %12s\n" "N" "paper (KB)" "process mem (KB)" "stored raw (KB)" "on disk (KB)" "ckpt time"
declare -A PAPER=([500]=4229 [1000]="" [1500]="" [2000]=32933)
for N in 500 1000 1500 2000; do
  rm -rf "$WORK/img" "$WORK/s.out"
  "$BIN/ghost-run" --image-dir "$WORK/img" -- "$MGS" -n "$N" -r 100000 -q -o "$WORK/s.out" >/dev/null 2>"$WORK/err" &
  GP=$!
  # wait until the first repetition is written, then checkpoint
  for _ in $(seq 600); do [ -s "$WORK/s.out" ] && break; sleep 0.05; done
  kill -USR1 $GP
  for _ in $(seq 600); do grep -q "checkpoint 1 " "$WORK/err" && break; sleep 0.05; done
  kill -9 $GP; wait $GP 2>/dev/null || true
  line=$(grep "checkpoint 1 " "$WORK/err")
  mem=$(echo "$line" | sed -E 's/.*memory ([0-9.]+ [KMG]iB).*/\1/')
  stored=$(echo "$line" | sed -E 's/.*stored ([0-9.]+ [KMG]iB).*/\1/')
  took=$(echo "$line" | sed -E 's/.* ([0-9.]+ m?s) total.*/\1/')
  disk=$(du -sk "$WORK/img" | cut -f1)
  tokb() { awk -v v="$1" -v u="$2" 'BEGIN { m = (u=="GiB") ? 1048576 : (u=="MiB") ? 1024 : (u=="KiB") ? 1 : 1/1024; printf "%d", v*m }'; }
  printf "%-10s %14s %16s %16s %14s %12s\n" "${N}x${N}" "${PAPER[$N]:--}" "$(tokb $mem)" "$(tokb $stored)" "$disk" "$took"
done
echo "(paper: Vallée et al., ISPDC 2005, Table 1, uncompressed ghost size; 'stored raw' = pages ghost keeps before zstd; 'on disk' = image directory, zstd-compressed)"
