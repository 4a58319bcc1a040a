#!/usr/bin/env bash
# ghost speed benchmark (issue #5). Builds ghost (release) and its own
# workloads, measures checkpoint, resume and incremental checkpoints of the
# half-random memory workload at several sizes, the machine's own baselines
# (process_vm_readv, zstd -1 -T0, disk write+fsync) in the same run, CRIU on
# the same workload when it works here, and examples/mgs (bench/mgs.sh).
# Prints one report (a markdown table plus reference and mgs blocks) and
# saves it as bench/results/latest.md (and a dated copy).
#
#   bench/run.sh [--quick] [--runs N] [--sizes "64 256 ..."] [--no-criu] [--no-mgs] [--no-dirty]
#
# See bench/README.md for what each figure means.
set -uo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1

usage() {
  cat <<'EOF'
usage: bench/run.sh [--quick] [--runs N] [--sizes "64 256 1024 4096"] [--no-criu] [--no-mgs] [--no-dirty]
  --quick      64 and 256 MiB only, 3 runs each (default: 64 MiB .. 4 GiB, 5 runs)
  --runs N     runs per measurement (median and min-max of N)
  --sizes L    memory sizes in MiB (quoted, space-separated)
  --no-criu    skip the CRIU comparison
  --no-mgs     skip examples/mgs (bench/mgs.sh)
  --no-dirty   skip the job that keeps writing 1% of its memory per second
Set GHOST_BIN_DIR to use already built ghost-run/ghost-resume instead of building.
EOF
}

CMDLINE="bench/run.sh${*:+ $*}"
QUICK=0 RUNS= SIZES_ARG= DO_CRIU=1 DO_MGS=1 DO_DIRTY=1
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --runs) RUNS=${2:-}; shift ;;
    --sizes) SIZES_ARG=${2:-}; shift ;;
    --no-criu) DO_CRIU=0 ;;
    --no-mgs) DO_MGS=0 ;;
    --no-dirty) DO_DIRTY=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench/run.sh: unknown option '$1'" >&2; usage >&2; exit 64 ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then SIZES=(64 256); : "${RUNS:=3}"; else SIZES=(64 256 1024 4096); : "${RUNS:=5}"; fi
[ -n "$SIZES_ARG" ] && read -r -a SIZES <<< "$SIZES_ARG"
case $RUNS in ''|*[!0-9]*) echo "bench/run.sh: --runs needs a number" >&2; exit 64 ;; esac
[ "$RUNS" -ge 1 ] || { echo "bench/run.sh: --runs must be >= 1" >&2; exit 64; }
for s in "${SIZES[@]}"; do
  case $s in ''|*[!0-9]*|0) echo "bench/run.sh: bad size '$s' (MiB)" >&2; exit 64 ;; esac
done

NOTES=()
note() { NOTES+=("$*"); }
say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- memory check
AVAIL_KIB=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
KEEP=()
for s in "${SIZES[@]}"; do
  if [ "$s" -ge 4096 ] && [ "$AVAIL_KIB" -lt $((12 * 1024 * 1024)) ]; then
    note "$s MiB skipped: only $((AVAIL_KIB / 1024 / 1024)) GiB of memory available (< 12 GiB needed)."
    say "skipping $s MiB: only $((AVAIL_KIB / 1024)) MiB available"
  else
    KEEP+=("$s")
  fi
done
SIZES=("${KEEP[@]}")
[ ${#SIZES[@]} -gt 0 ] || { echo "bench/run.sh: no size left to measure" >&2; exit 1; }

# ---------------------------------------------- work dir on the disk of /work
pick_base() {
  local b
  for b in "${TMPDIR:-/tmp}" /var/tmp; do
    [ -d "$b" ] && [ -w "$b" ] || continue
    [ "$(stat -f -c %T "$b")" = tmpfs ] && continue
    [ "$(stat -c %d "$b")" = "$(stat -c %d "$ROOT")" ] || continue
    echo "$b"; return
  done
  mkdir -p "$ROOT/bench/results" && echo "$ROOT/bench/results"
}
BASE=$(pick_base)
WORK=$(mktemp -d "$BASE/ghost-bench.XXXXXX") || { echo "bench/run.sh: cannot create a work dir in $BASE" >&2; exit 1; }
DATA=$WORK/data
mkdir -p "$DATA" "$WORK/bin" "$WORK/runs"

# Processes started here; killed on exit only if their command line still
# names the work dir (so a recycled pid is never touched).
PIDS=()
track() { [ -n "${1:-}" ] && PIDS+=("$1"); }
ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF "$WORK"; }
cleanup() {
  local p
  for p in "${PIDS[@]}"; do ours "$p" && kill -9 "$p" 2>/dev/null; done
  sleep 0.2
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

# ------------------------------------------------------------------- helpers
# tslog FILE: copy stdin to FILE, each line prefixed by the wall-clock time it arrived
tslog() { local l; while IFS= read -r l || [ -n "$l" ]; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done > "$1"; }

# wait_nth FILE ERE N TIMEOUT_S [PID]: print the N-th line matching ERE once it exists.
# Returns 1 on timeout, 2 if PID ended first.
wait_nth() {
  local f=$1 re=$2 n=$3 to=$4 pid=${5:-} end=$((EPOCHSECONDS + $4)) c
  while :; do
    c=$(grep -cE -- "$re" "$f" 2>/dev/null); c=${c:-0}
    if [ "$c" -ge "$n" ]; then grep -E -- "$re" "$f" | sed -n "${n}p"; return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      sleep 0.3
      c=$(grep -cE -- "$re" "$f" 2>/dev/null); c=${c:-0}
      if [ "$c" -ge "$n" ]; then grep -E -- "$re" "$f" | sed -n "${n}p"; return 0; fi
      return 2
    fi
    [ "$EPOCHSECONDS" -ge "$end" ] && return 1
    sleep 0.02
  done
}
# gone PID TIMEOUT_S: wait until PID no longer exists
gone() { local end=$((EPOCHSECONDS + $2)); while kill -0 "$1" 2>/dev/null; do [ "$EPOCHSECONDS" -ge "$end" ] && return 1; sleep 0.05; done; return 0; }

# last "ghost"-ish line of a log (time stamp removed), for error cells
lastmsg() { grep -E 'ghost|error|Error|rror:' "$1" 2>/dev/null | tail -1 | cut -d' ' -f2- ; }

# rec SIZE KEY VALUE / recerr SIZE MSG KEY...
rec() { printf '%s\n' "$3" >> "$DATA/$1.$2"; }
recerr() {
  local s=$1 msg=$2 k; shift 2
  msg=$(printf '%s' "$msg" | tr '|\n' '/ ' | sed -e 's/^ghost: //' | cut -c1-160)
  [ -n "$msg" ] || msg="failed (no message)"
  for k in "$@"; do printf 'ERR %s\n' "$msg" >> "$DATA/$s.$k"; done
}
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
to_bytes() { awk -v v="$1" -v u="$2" 'BEGIN { m = (u=="TiB")?1099511627776:(u=="GiB")?1073741824:(u=="MiB")?1048576:(u=="KiB")?1024:1; printf "%.0f", v*m }'; }
to_ms() { awk -v v="$1" -v u="$2" 'BEGIN { m = (u=="s")?1000:(u=="min")?60000:(u=="us"||u=="µs")?0.001:1; printf "%.3f", v*m }'; }

# parse a "checkpoint N done" line into P_TOTAL (ms) P_FROZEN (ms) P_WROTE P_STORED P_MEM (bytes)
parse_done() {
  local l=$1
  P_TOTAL= P_FROZEN= P_WROTE= P_STORED= P_MEM=
  [[ $l =~ memory\ ([0-9.]+)\ ([KMGT]?i?B) ]] && P_MEM=$(to_bytes "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
  [[ $l =~ stored\ ([0-9.]+)\ ([KMGT]?i?B) ]] && P_STORED=$(to_bytes "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
  [[ $l =~ wrote\ ([0-9.]+)\ ([KMGT]?i?B) ]] && P_WROTE=$(to_bytes "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
  [[ $l =~ ([0-9.]+)\ (ms|s|us|µs|min)\ total ]] && P_TOTAL=$(to_ms "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
  [[ $l =~ frozen\ ([0-9.]+)\ (ms|s|us|µs|min) ]] && P_FROZEN=$(to_ms "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
  [ -n "$P_TOTAL" ] && [ -n "$P_FROZEN" ] && [ -n "$P_WROTE" ]
}

# longest stop seen by the job (resumed-marker gap_ms) between wall times A and B (s)
max_gap() {
  awk -v a="$2" -v b="$3" -v floor="$STALL_MS" '
    / resumed-marker / { r=""; g="";
      for (i=1;i<=NF;i++) { if ($i ~ /^real_ns=/) r=substr($i,9)/1e9; if ($i ~ /^gap_ms=/) g=substr($i,8)+0 }
      if (r>=a && r<=b && g>m) m=g }
    END { printf "%.1f", (m>floor)?m:floor }' "$1"
}

# ckpt GP ERRFILE N TIMEOUT: request checkpoint N with SIGUSR1 and wait for its log line.
# Sets C_T0 C_T1 (wall s), C_EXT (ms, SIGUSR1 -> line), P_* ; C_ERR on failure.
ckpt() {
  local gp=$1 err=$2 n=$3 to=$4 line rc
  C_ERR= C_EXT= C_T1=
  C_T0=$EPOCHREALTIME
  if ! kill -USR1 "$gp" 2>/dev/null; then C_ERR="ghost-run is gone before checkpoint $n: $(lastmsg "$err")"; return 1; fi
  line=$(wait_nth "$err" 'ghost: checkpoint [0-9]+ (done|failed)' "$n" "$to" "$gp"); rc=$?
  case $rc in
    1) C_ERR="no checkpoint line within ${to}s after SIGUSR1 (checkpoint $n)"; return 1 ;;
    2) C_ERR="ghost-run exited during checkpoint $n: $(lastmsg "$err")"; return 1 ;;
  esac
  C_T1=${line%% *}; line=${line#* }
  C_EXT=$(calc "($C_T1 - $C_T0) * 1000")
  if [[ $line == *failed* ]]; then C_ERR=$line; return 1; fi
  parse_done "$line" || { C_ERR="cannot parse: $line"; return 1; }
  return 0
}

# start_ghost DIR RUNDIR ARGS...: ghost-run on the workload; sets GP, JOBPID, READY line
start_ghost() {
  local d=$1 r=$2 line rc; shift 2
  # --keep 5: every checkpoint of a run stays, so the first (full) one can be resumed too
  "$BIN/ghost-run" --keep 5 --image-dir "$d" -- "$HR" "$@" > >(tslog "$r/out") 2> >(tslog "$r/err") &
  GP=$!; track "$GP"
  JOBPID= READY= START_ERR=
  line=$(wait_nth "$r/err" 'ghost: started pid [0-9]+' 1 30 "$GP"); rc=$?
  if [ $rc -ne 0 ]; then START_ERR="ghost-run did not start the job: $(lastmsg "$r/err")"; return 1; fi
  [[ $line =~ started\ pid\ ([0-9]+) ]] && JOBPID=${BASH_REMATCH[1]} && track "$JOBPID"
  READY=$(wait_nth "$r/out" ' ready ' 1 "$T_READY" "$GP"); rc=$?
  if [ $rc -ne 0 ]; then START_ERR="workload not ready within ${T_READY}s: $(lastmsg "$r/err")"; return 1; fi
  return 0
}

# stop_ghost_run: kill -9 ghost-run (the job dies with it) and make sure the job is gone
stop_kill9() {
  kill -9 "$GP" 2>/dev/null; wait "$GP" 2>/dev/null
  if [ -n "$JOBPID" ] && ! gone "$JOBPID" 10; then
    note "job pid $JOBPID outlived kill -9 of ghost-run by 10 s (killed by the benchmark)."
    ours "$JOBPID" && kill -9 "$JOBPID" 2>/dev/null
  fi
}

# resume_once JOBKEY LINEKEY [ghost-resume options]: resume $D, record the time
# until the job runs again (and until ghost's 'resumed' line), then stop it
resume_once() {
  local kjob=$1 kline=$2 RT0 RP line rc rl msg; shift 2
  JOBPID=
  RT0=$EPOCHREALTIME
  "$BIN/ghost-resume" "$@" "$D" > >(tslog "$R/rout") 2> >(tslog "$R/rerr") &
  RP=$!; track "$RP"
  line=$(wait_nth "$R/rout" 'resumed-marker' 1 "$T_RESUME" "$RP"); rc=$?
  if [ $rc = 0 ] && [[ $line =~ real_ns=([0-9]+) ]]; then
    rec "$S" "$kjob" "$(calc "${BASH_REMATCH[1]} / 1e6 - $RT0 * 1000")"
    rl=$(grep -m1 'ghost: resumed' "$R/rerr")
    [[ $rl =~ as\ pid\ ([0-9]+) ]] && JOBPID=${BASH_REMATCH[1]} && track "$JOBPID"
    if [ -n "$kline" ]; then
      if [ -n "$rl" ]; then rec "$S" "$kline" "$(calc "(${rl%% *} - $RT0) * 1000")"
      else recerr "$S" "no 'ghost: resumed' line" "$kline"; fi
    fi
  else
    msg=$(lastmsg "$R/rerr"); [ $rc = 1 ] && msg="job did not run again within ${T_RESUME}s: $msg"
    recerr "$S" "${msg:-ghost-resume exited without a message}" "$kjob" $kline
  fi
  # kill -9, as a node failure: no checkpoint at the stop, the image stays as it was
  kill -9 "$RP" 2>/dev/null; wait "$RP" 2>/dev/null
  if [ -n "$JOBPID" ] && ! gone "$JOBPID" 10; then ours "$JOBPID" && kill -9 "$JOBPID" 2>/dev/null; fi
  rm -f "$R/rout" "$R/rerr"
}

touch_rate() { # READY line -> MB/s of the warm-up fill
  [[ $1 =~ size_mib=([0-9]+).*touch_ms=([0-9.]+) ]] && calc "${BASH_REMATCH[1]} * 1.048576 / (${BASH_REMATCH[2]} / 1000)"
}

# ------------------------------------------------------------- statistics
# stats FILE -> "median min max n nerr firsterr"
stats() {
  awk '
    /^ERR / { ne++; if (fe=="") fe=substr($0,5); next }
    NF { v[++n]=$1+0 }
    END {
      if (n>0) {
        for (i=2;i<=n;i++) { x=v[i]; j=i-1; while (j>0 && v[j]>x) { v[j+1]=v[j]; j-- } v[j+1]=x }
        med = (n%2) ? v[(n+1)/2] : (v[n/2]+v[n/2+1])/2
        printf "%.6f %.6f %.6f %d %d %s\n", med, v[1], v[n], n, ne, fe
      } else printf "- - - 0 %d %s\n", ne, fe
    }' "$1" 2>/dev/null
}
fmt() { awk -v x="$1" 'BEGIN { a=(x<0)?-x:x; if (a>=100) printf "%.0f", x; else if (a>=10) printf "%.1f", x; else if (a>=1) printf "%.2f", x; else printf "%.3f", x }'; }
med() { local f="$DATA/$1.$2"; [ -s "$f" ] || return 0; local s; s=$(stats "$f"); set -- $s; [ "$1" != - ] && echo "$1"; }
cell() {
  local f="$DATA/$1.$2" s m lo hi n ne fe out
  [ -s "$f" ] || { echo "n/a"; return; }
  s=$(stats "$f"); read -r m lo hi n ne fe <<< "$s"
  if [ "$n" = 0 ]; then echo "**failed:** $fe"; return; fi
  if [ "$n" = 1 ]; then out=$(fmt "$m"); else out="$(fmt "$m") [$(fmt "$lo")–$(fmt "$hi")]"; fi
  [ "$ne" -gt 0 ] && out="$out ($ne of $((n + ne)) runs failed: $fe)"
  echo "$out"
}
# ratio of two medians: rcell A B  (A, B numbers or empty)
rcell() { if [ -n "$1" ] && [ -n "$2" ] && awk -v b="$2" 'BEGIN{exit !(b>0)}'; then fmt "$(calc "$1 / $2")"; else echo "n/a"; fi; }

# ----------------------------------------------------------------- build
if [ -n "${GHOST_BIN_DIR:-}" ]; then
  BIN=$GHOST_BIN_DIR
else
  say "building ghost (swift build -c release --static-swift-stdlib)"
  if ! swift build -c release --static-swift-stdlib > "$WORK/build.log" 2>&1; then
    tail -20 "$WORK/build.log" >&2; echo "bench/run.sh: release build failed" >&2; exit 1
  fi
  BIN=$(swift build -c release --static-swift-stdlib --show-bin-path)
fi
[ -x "$BIN/ghost-run" ] && [ -x "$BIN/ghost-resume" ] || { echo "bench/run.sh: no ghost-run/ghost-resume in $BIN" >&2; exit 1; }
CC=${CC:-cc}
HR=$WORK/bin/halfrandom
VR=$WORK/bin/vmreadv
$CC -O2 -Wall -o "$HR" bench/workloads/halfrandom.c || { echo "bench/run.sh: cannot build halfrandom" >&2; exit 1; }
$CC -O2 -Wall -o "$VR" bench/workloads/vmreadv.c || { echo "bench/run.sh: cannot build vmreadv" >&2; exit 1; }

IS_ROOT=0; [ "$(id -u)" = 0 ] && IS_ROOT=1
if ! command -v zstd >/dev/null; then
  if [ $IS_ROOT = 1 ] && command -v apt-get >/dev/null; then
    say "installing zstd"; apt-get install -y zstd > "$WORK/apt-zstd.log" 2>&1
  fi
  command -v zstd >/dev/null || note "zstd CLI not installed: zstd baselines missing (apt-get install zstd)."
fi
CRIU_STATE=
if [ "$DO_CRIU" = 1 ]; then
  if [ $IS_ROOT != 1 ]; then CRIU_STATE="not run: CRIU needs root"
  else
    if ! command -v criu >/dev/null && command -v apt-get >/dev/null; then
      say "installing criu"; apt-get install -y criu > "$WORK/apt-criu.log" 2>&1
    fi
    command -v criu >/dev/null || CRIU_STATE="not run: criu is not installed and apt-get install criu failed"
  fi
else
  CRIU_STATE="not run (--no-criu)"
fi

STALL_MS=2          # the workload reports every stop >= 2 ms
HAVE_ZSTD=0; command -v zstd >/dev/null && HAVE_ZSTD=1

# ------------------------------------------------------------- machine info
START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC'); START_S=$EPOCHSECONDS
CPU=$(awk -F: '/^model name/ {gsub(/^ +/,"",$2); print $2; exit}' /proc/cpuinfo)
MEMTOTAL=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
FSINFO=$(df -T "$WORK" | awk 'NR==2 {print $2 " on " $1}')
THP=$(sed -E 's/.*\[(.*)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo "?")
GITREV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "?")
GITDIRTY=$(git -C "$ROOT" status --porcelain -- Sources Package.swift 2>/dev/null | wc -l)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "work dir $WORK ($FSINFO); sizes ${SIZES[*]} MiB; $RUNS runs"

# ================================================================ measure
for S in "${SIZES[@]}"; do
  T_READY=$((60 + S / 40)); T_CKPT=$((60 + S / 10)); T_RESUME=$((60 + S / 20)); T_BASE=$((60 + S / 10))

  # ---------------------------------------------------------- baselines
  say "$S MiB: baselines (process_vm_readv, zstd, disk)"
  if out=$(timeout "$T_BASE" "$VR" "$S" "$RUNS" 2>&1); then
    while read -r _ rep ms gb; do
      rec "$S" bl_readv_ms "${ms#ms=}"; rec "$S" bl_readv_gbps "${gb#gbps=}"
    done < <(printf '%s\n' "$out" | grep '^readv rep=')
  else
    recerr "$S" "vmreadv: $(printf '%s' "$out" | tail -1)" bl_readv_ms bl_readv_gbps
  fi
  RAW=$WORK/raw.$S
  if timeout "$T_BASE" "$HR" "$S" --dump "$RAW" 2> "$WORK/dump.err"; then
    if [ $HAVE_ZSTD = 1 ]; then
      zstd -1 -T0 -q -c "$RAW" > "$RAW.zst"
      zsize=$(stat -c %s "$RAW.zst")
      for r in $(seq "$RUNS"); do
        t0=$EPOCHREALTIME; timeout "$T_BASE" zstd -1 -T0 -q -c "$RAW" > /dev/null; t1=$EPOCHREALTIME
        rec "$S" bl_zstd_ms "$(calc "($t1 - $t0) * 1000")"
        t0=$EPOCHREALTIME; timeout "$T_BASE" zstd -d -q -c "$RAW.zst" > /dev/null; t1=$EPOCHREALTIME
        rec "$S" bl_unzstd_ms "$(calc "($t1 - $t0) * 1000")"
      done
      rec "$S" bl_zstd_mib "$(calc "$zsize / 1048576")"
    fi
    # write+fsync into the file system of the images: the N MiB, the zstd output, 4 KiB
    for r in $(seq "$RUNS"); do
      rm -f "$WORK/dd.out"
      t0=$EPOCHREALTIME
      if timeout "$T_BASE" dd if="$RAW" of="$WORK/dd.out" bs=4M conv=fsync status=none 2> "$WORK/dd.err"; then
        t1=$EPOCHREALTIME
        rec "$S" bl_disk_ms "$(calc "($t1 - $t0) * 1000")"
        rec "$S" bl_disk_gbps "$(calc "$S * 1048576 / ($t1 - $t0) / 1e9")"
      else
        recerr "$S" "dd: $(tail -1 "$WORK/dd.err")" bl_disk_ms bl_disk_gbps
      fi
      rm -f "$WORK/dd.out"
      if [ -f "$RAW.zst" ]; then
        t0=$EPOCHREALTIME
        if timeout "$T_BASE" dd if="$RAW.zst" of="$WORK/dd.out" bs=4M conv=fsync status=none 2> "$WORK/dd.err"; then
          t1=$EPOCHREALTIME; rec "$S" bl_diskz_ms "$(calc "($t1 - $t0) * 1000")"
        else recerr "$S" "dd: $(tail -1 "$WORK/dd.err")" bl_diskz_ms; fi
        rm -f "$WORK/dd.out"
        # the same with O_DIRECT (as ghost writes packs), then read back with O_DIRECT (as a resume reads them)
        t0=$EPOCHREALTIME
        if timeout "$T_BASE" dd if="$RAW.zst" of="$WORK/dd.out" bs=4M oflag=direct conv=fsync status=none 2> "$WORK/dd.err"; then
          t1=$EPOCHREALTIME; rec "$S" bl_diskzd_ms "$(calc "($t1 - $t0) * 1000")"
          t0=$EPOCHREALTIME
          if timeout "$T_BASE" dd if="$WORK/dd.out" of=/dev/null bs=4M iflag=direct status=none 2> "$WORK/dd.err"; then
            t1=$EPOCHREALTIME; rec "$S" bl_readzd_ms "$(calc "($t1 - $t0) * 1000")"
          else recerr "$S" "dd: $(tail -1 "$WORK/dd.err")" bl_readzd_ms; fi
        else recerr "$S" "dd: $(tail -1 "$WORK/dd.err")" bl_diskzd_ms bl_readzd_ms; fi
        rm -f "$WORK/dd.out"
      fi
      t0=$EPOCHREALTIME
      if timeout 60 dd if="$RAW" of="$WORK/dd.out" bs=4k count=1 conv=fsync status=none 2> "$WORK/dd.err"; then
        t1=$EPOCHREALTIME; rec "$S" bl_fsync_ms "$(calc "($t1 - $t0) * 1000")"
      else recerr "$S" "dd: $(tail -1 "$WORK/dd.err")" bl_fsync_ms; fi
      rm -f "$WORK/dd.out"
    done
    rm -f "$WORK/dd.out" "$RAW" "$RAW.zst"
  else
    recerr "$S" "halfrandom --dump: $(tail -1 "$WORK/dump.err")" bl_zstd_ms bl_unzstd_ms bl_zstd_mib bl_disk_ms bl_disk_gbps
    rm -f "$RAW"
  fi

  # ------------------------------------------- ghost: checkpoints and resume
  GKEYS=(ck_total ck_ext ck_frozen ck_stall ck_stored ck_wrote ck_du inc0_total inc0_frozen inc0_wrote inc5s_pct inc5s_floor inc5s_total inc5c_pct inc5c_floor inc5c_total inc5k_pct inc5k_floor inc5k_total rs_job rs_line rs1_job)
  for r in $(seq "$RUNS"); do
    say "$S MiB: ghost run $r/$RUNS"
    R=$WORK/runs/g.$S.$r; D=$R/img; mkdir -p "$R"
    if ! start_ghost "$D" "$R" "$S" --stall-ms "$STALL_MS"; then
      recerr "$S" "$START_ERR" "${GKEYS[@]}"; stop_kill9; rm -rf "$R"; continue
    fi
    rate=$(touch_rate "$READY") && rec "$S" bl_touch_mbps "$rate"
    sleep 0.5
    n=0 FULL_WROTE=
    # 1. full checkpoint
    n=$((n + 1))
    if ckpt "$GP" "$R/err" $n "$T_CKPT"; then
      rec "$S" ck_total "$P_TOTAL"; rec "$S" ck_frozen "$P_FROZEN"; rec "$S" ck_ext "$C_EXT"
      rec "$S" ck_wrote "$(calc "$P_WROTE / 1048576")"; rec "$S" ck_stored "$(calc "$P_STORED / 1048576")"
      rec "$S" ck_stall "$(max_gap "$R/out" "$C_T0" "$(calc "$C_T1 + 0.1")")"
      rec "$S" ck_du "$(du -sk "$D" | awk '{printf "%.3f", $1/1024}')"
      FULL_WROTE=$P_WROTE
    else
      [ -n "$C_T1" ] || n=$((n - 1))   # no log line: the next one keeps this number
      recerr "$S" "$C_ERR" ck_total ck_frozen ck_ext ck_wrote ck_stored ck_stall ck_du
    fi
    sleep 0.3
    # 2. nothing changed
    n=$((n + 1))
    if ckpt "$GP" "$R/err" $n "$T_CKPT"; then
      rec "$S" inc0_total "$P_TOTAL"; rec "$S" inc0_frozen "$P_FROZEN"; rec "$S" inc0_wrote "$(calc "$P_WROTE / 1024")"
    else [ -n "$C_T1" ] || n=$((n - 1)); recerr "$S" "$C_ERR" inc0_total inc0_frozen inc0_wrote; fi
    # 3. 5% of the pages changed, scattered; 4. 5% changed, one contiguous block;
    # 5. 5% scattered, each page rewritten with bytes of its own kind (random or zero)
    for kind in scattered contiguous samekind; do
      case $kind in scattered) k=inc5s sig=USR2 ;; contiguous) k=inc5c sig=ALRM ;; samekind) k=inc5k sig=HUP ;; esac
      c0=$(grep -c "changed $kind" "$R/out")
      # Sent to the workload itself: ghost-run does not pass on a signal its
      # caller ignores (SIGHUP under nohup), by design.
      kill -"$sig" "${JOBPID:-$GP}" 2>/dev/null
      if ! cl=$(wait_nth "$R/out" "changed $kind" $((c0 + 1)) 60 "$GP"); then
        recerr "$S" "workload did not report the $kind change: $(lastmsg "$R/err")" ${k}_pct ${k}_total; continue
      fi
      # The changed pages hold new random bytes, which no compressor shrinks:
      # their own size is the least any checkpoint of them can write.
      # (samekind: only the pages that got random bytes; the others are zero again)
      if [[ $cl =~ random=([0-9]+) ]] || [[ $cl =~ pages=([0-9]+) ]] && [ -n "$FULL_WROTE" ] && [ "$FULL_WROTE" -gt 0 ]; then
        rec "$S" ${k}_floor "$(calc "100 * ${BASH_REMATCH[1]} * 4096 / $FULL_WROTE")"
      fi
      n=$((n + 1))
      if ckpt "$GP" "$R/err" $n "$T_CKPT"; then
        rec "$S" ${k}_total "$P_TOTAL"
        if [ -n "$FULL_WROTE" ] && [ "$FULL_WROTE" -gt 0 ]; then rec "$S" ${k}_pct "$(calc "100 * $P_WROTE / $FULL_WROTE")"
        else recerr "$S" "no full checkpoint to compare with" ${k}_pct; fi
      else [ -n "$C_T1" ] || n=$((n - 1)); recerr "$S" "$C_ERR" ${k}_pct ${k}_total; fi
    done
    # ghost-run's own peak memory over these checkpoints
    hwm=$(awk '/^VmHWM:/ {printf "%.3f", $2/1024}' "/proc/$GP/status" 2>/dev/null)
    [ -n "$hwm" ] && rec "$S" gr_hwm "$hwm"
    # 5. kill -9 (as a node failure), then resume from the image: the newest
    # checkpoint (a full one plus three overlay layers), then the first (full) one
    stop_kill9
    resume_once rs_job rs_line
    resume_once rs1_job "" --checkpoint 1
    rm -rf "$R"
  done

  # ------------------------------------ ghost: a job writing 1% of its memory per second
  if [ "$DO_DIRTY" = 1 ]; then
    DKEYS=(dy_frozen1 dy_stall1 dy_total1 dy_frozen2 dy_stall2 dy_total2 dy_wrote2)
    for r in $(seq "$RUNS"); do
      say "$S MiB: ghost run $r/$RUNS, job writing 1%/s"
      R=$WORK/runs/d.$S.$r; D=$R/img; mkdir -p "$R"
      if ! start_ghost "$D" "$R" "$S" --dirty-rate 1 --stall-ms "$STALL_MS"; then
        recerr "$S" "$START_ERR" "${DKEYS[@]}"; stop_kill9; rm -rf "$R"; continue
      fi
      sleep 1
      n=1
      if ckpt "$GP" "$R/err" $n "$T_CKPT"; then
        rec "$S" dy_frozen1 "$P_FROZEN"; rec "$S" dy_total1 "$P_TOTAL"
        rec "$S" dy_stall1 "$(max_gap "$R/out" "$C_T0" "$(calc "$C_T1 + 0.1")")"
      else [ -n "$C_T1" ] || n=0; recerr "$S" "$C_ERR" dy_frozen1 dy_total1 dy_stall1; fi
      sleep 1
      n=$((n + 1))
      if ckpt "$GP" "$R/err" $n "$T_CKPT"; then
        rec "$S" dy_frozen2 "$P_FROZEN"; rec "$S" dy_total2 "$P_TOTAL"; rec "$S" dy_wrote2 "$(calc "$P_WROTE / 1048576")"
        rec "$S" dy_stall2 "$(max_gap "$R/out" "$C_T0" "$(calc "$C_T1 + 0.1")")"
      else recerr "$S" "$C_ERR" dy_frozen2 dy_total2 dy_wrote2 dy_stall2; fi
      stop_kill9
      rm -rf "$R"
    done
  fi

  # ------------------------------------------------------------ CRIU
  if [ -z "$CRIU_STATE" ]; then
    CKEYS=(cr_dump cr_sync cr_img cr_restore)
    for r in $(seq "$RUNS"); do
      say "$S MiB: CRIU run $r/$RUNS"
      R=$WORK/runs/c.$S.$r; D=$R/img; mkdir -p "$R/img" "$R/wd"
      "$HR" "$S" --stall-ms "$STALL_MS" > "$R/out" 2>&1 < /dev/null &
      CP=$!; track "$CP"
      if ! wait_nth "$R/out" '^ready ' 1 "$T_READY" "$CP" > /dev/null; then
        recerr "$S" "workload not ready" "${CKEYS[@]}"; kill -9 "$CP" 2>/dev/null; wait "$CP" 2>/dev/null; rm -rf "$R"; continue
      fi
      sleep 0.5
      t0=$EPOCHREALTIME
      timeout "$T_CKPT" criu dump -t "$CP" -D "$D" -W "$R/wd" --shell-job -o dump.log > "$R/criu.out" 2>&1; rc=$?
      t1=$EPOCHREALTIME
      if [ $rc != 0 ]; then
        # the first informative error line and the last one, without "(time) Error (file:line): "
        msg=$(grep -h 'Error' "$R/wd/dump.log" "$R/criu.out" 2>/dev/null | grep -v 'exited, status' \
              | sed -E 's/^\([0-9. ]+\) //; s/^Error \([^)]*\): //' | awk 'NR==1 {f=$0} {l=$0} END {if (NR>1) print f " … " l; else print f}')
        [ -n "$msg" ] || msg="exit status $rc: $(tail -1 "$R/criu.out")"
        recerr "$S" "criu dump failed: $msg" "${CKEYS[@]}"
        kill -9 "$CP" 2>/dev/null; wait "$CP" 2>/dev/null; rm -rf "$R"
        break   # the same error on every run: do not repeat it
      fi
      wait "$CP" 2>/dev/null   # criu dump kills the task after dumping
      rec "$S" cr_dump "$(calc "($t1 - $t0) * 1000")"
      t2=$EPOCHREALTIME; sync "$D"/* 2>/dev/null; t3=$EPOCHREALTIME
      rec "$S" cr_sync "$(calc "($t3 - $t0 - ($t2 - $t1)) * 1000")"
      rec "$S" cr_img "$(du -sk "$D" | awk '{printf "%.3f", $1/1024}')"
      c0=$(grep -c resumed-marker "$R/out")
      t0=$EPOCHREALTIME
      timeout "$T_RESUME" criu restore -D "$D" -W "$R/wd" --shell-job -d -o restore.log > "$R/criu.out" 2>&1; rc=$?
      if [ $rc = 0 ] && line=$(wait_nth "$R/out" 'resumed-marker' $((c0 + 1)) "$T_RESUME") && [[ $line =~ real_ns=([0-9]+) ]]; then
        rec "$S" cr_restore "$(calc "${BASH_REMATCH[1]} / 1e6 - $t0 * 1000")"
      else
        msg=$(grep -h 'Error' "$R/wd/restore.log" 2>/dev/null | tail -1)
        recerr "$S" "criu restore: ${msg:-exit status $rc}" cr_restore
      fi
      ours "$CP" && kill -9 "$CP" 2>/dev/null; gone "$CP" 10
      rm -rf "$R"
    done
  fi
done

# --------------------------------------------------------------- mgs
MGS_OUT=
if [ "$DO_MGS" = 1 ]; then
  say "examples/mgs: bench/mgs.sh $RUNS"
  MGS_OUT=$(GHOST_BIN_DIR=$BIN timeout 3600 bash bench/mgs.sh "$RUNS" 2>&1) || MGS_OUT="$MGS_OUT
(bench/mgs.sh failed, exit status $?)"
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)

# =============================================================== report
label() { if [ "$1" -ge 1024 ] && [ $(($1 % 1024)) = 0 ]; then echo "$(($1 / 1024)) GiB"; else echo "$1 MiB"; fi; }
REPORT=$WORK/report.md
{
  echo "# ghost speed benchmark"
  echo
  echo "\`$CMDLINE\` · $START_DATE · $(hostname) · $CPU, $(nproc) cores, $MEMTOTAL RAM · kernel $(uname -r) · THP $THP · images on $FSINFO"
  echo "ghost $GITREV$([ "$GITDIRTY" -gt 0 ] && echo " + $GITDIRTY uncommitted change(s) in Sources/") (release build) · zstd $(zstd --version 2>/dev/null | grep -oE 'v[0-9.]+' | head -1) · load average $LOAD0 at start, $LOAD1 at end · took $(( (EPOCHSECONDS - START_S + 30) / 60 )) min"
  echo "workload: halfrandom N MiB (half random pages, half written zero pages), warmed up; $RUNS runs per figure: median [min–max]; times in ms;"
  echo "'longest stop seen by the job' = longest gap in the job's 1 ms sleep loop during the checkpoint ($STALL_MS = none of $STALL_MS ms or more)"
  echo
  hdr="| |"; sep="|---|"
  for S in "${SIZES[@]}"; do hdr="$hdr $(label "$S") |"; sep="$sep---|"; done
  echo "$hdr"; echo "$sep"
  row() { local t=$1 k=$2 line="| $1 |" S; for S in "${SIZES[@]}"; do line="$line $(cell "$S" "$k") |"; done; echo "$line"; }
  sect() { local line="| **$1** |" S; for S in "${SIZES[@]}"; do line="$line |"; done; echo "$line"; }
  rrow() { local line="| $1 |" S a b; for S in "${SIZES[@]}"; do a=$($2 "$S"); b=$($3 "$S"); line="$line $(rcell "$a" "$b") |"; done; echo "$line"; }
  sect "ghost: full checkpoint (job idle)"
  row "checkpoint total, ghost log (ms)" ck_total
  row "checkpoint, outside: SIGUSR1 → log line (ms)" ck_ext
  row "frozen, ghost log (ms)" ck_frozen
  row "longest stop seen by the job (ms)" ck_stall
  row "stored: pages the image needs (MiB)" ck_stored
  row "wrote (MiB)" ck_wrote
  row "image on disk, du (MiB)" ck_du
  row "ghost-run peak RSS over 5 checkpoints, VmHWM (MiB)" gr_hwm
  sect "ghost: resume after kill -9 (image read from disk: packs are written and read with O_DIRECT)"
  row "ghost-resume start → job runs again (ms)" rs_job
  row "ghost-resume start → 'resumed' log line (ms)" rs_line
  row "ghost-resume --checkpoint 1 (the full checkpoint alone) → job runs again (ms)" rs1_job
  sect "ghost: incremental checkpoints"
  row "nothing changed: total (ms)" inc0_total
  row "nothing changed: frozen (ms)" inc0_frozen
  row "nothing changed: wrote (KiB)" inc0_wrote
  row "5% of pages changed, scattered: wrote (% of full)" inc5s_pct
  row "5% scattered: the changed pages' own bytes, random (% of full: the floor)" inc5s_floor
  row "5% of pages changed, scattered: total (ms)" inc5s_total
  row "5% changed, one contiguous block: wrote (% of full)" inc5c_pct
  row "5% contiguous: the changed pages' own bytes (% of full: the floor)" inc5c_floor
  row "5% changed, one contiguous block: total (ms)" inc5c_total
  row "5% changed, scattered, each page new bytes of its kind (random or zero): wrote (% of full)" inc5k_pct
  row "5% same kind: the pages that got random bytes (% of full: the floor)" inc5k_floor
  row "5% same kind: total (ms)" inc5k_total
  if [ "$DO_DIRTY" = 1 ]; then
    sect "ghost: job writing 1% of its memory per second"
    row "full checkpoint: frozen (ms)" dy_frozen1
    row "full checkpoint: longest stop seen by the job (ms)" dy_stall1
    row "full checkpoint: total (ms)" dy_total1
    row "next checkpoint 1 s later: frozen (ms)" dy_frozen2
    row "next checkpoint: longest stop seen by the job (ms)" dy_stall2
    row "next checkpoint: total (ms)" dy_total2
    row "next checkpoint: wrote (MiB)" dy_wrote2
  fi
  sect "baselines (this machine, this run, same bytes)"
  row "process_vm_readv of the whole job (ms)" bl_readv_ms
  row "process_vm_readv (GB/s)" bl_readv_gbps
  row "zstd -1 -T0 (ms)" bl_zstd_ms
  row "zstd -1 -T0 output (MiB)" bl_zstd_mib
  row "zstd -d of that output (ms)" bl_unzstd_ms
  row "disk write+fsync of N MiB, dd (ms)" bl_disk_ms
  row "disk write+fsync (GB/s)" bl_disk_gbps
  row "disk write+fsync of the zstd output (ms)" bl_diskz_ms
  row "disk write+fsync of the zstd output, O_DIRECT (ms)" bl_diskzd_ms
  row "disk read of the zstd output, O_DIRECT (ms)" bl_readzd_ms
  row "write+fsync of one 4 KiB file (ms)" bl_fsync_ms
  row "first touch of fresh memory: workload warm-up fill (MB/s)" bl_touch_mbps
  # derived medians
  m_() { med "$1" "$2"; }
  b_ckpt() { local a b c; a=$(m_ "$1" bl_readv_ms); b=$(m_ "$1" bl_zstd_ms); c=$(m_ "$1" bl_diskz_ms); [ -n "$a" ] && [ -n "$b" ] && [ -n "$c" ] && calc "$a + $b + $c"; }
  b_resume() { local a b c; a=$(m_ "$1" bl_unzstd_ms); b=$(m_ "$1" bl_readv_ms); c=$(m_ "$1" bl_readzd_ms); [ -n "$a" ] && [ -n "$b" ] && [ -n "$c" ] && calc "$a + $b + $c"; }
  brow() { local line="| $1 |" S v; for S in "${SIZES[@]}"; do v=$($2 "$S"); line="$line $([ -n "$v" ] && fmt "$v" || echo n/a) |"; done; echo "$line"; }
  brow "baseline checkpoint = readv + zstd + write+fsync of its output (ms)" b_ckpt
  brow "baseline resume = disk read + zstd -d + readv (ms)" b_resume
  sect "ratios ghost / baseline (medians)"
  g_total() { m_ "$1" ck_total; }; g_frozen() { m_ "$1" ck_frozen; }; b_readv() { m_ "$1" bl_readv_ms; }
  g_du() { m_ "$1" ck_du; }; g_wrote() { m_ "$1" ck_wrote; }; b_zmib() { m_ "$1" bl_zstd_mib; }
  g_rs() { m_ "$1" rs_job; }; g_inc0() { m_ "$1" inc0_total; }
  rrow "checkpoint total / (readv + zstd + write)" g_total b_ckpt
  rrow "frozen / readv of the whole job" g_frozen b_readv
  rrow "image on disk / zstd -1 output" g_du b_zmib
  rrow "wrote / zstd -1 output" g_wrote b_zmib
  rrow "resume / (disk read + zstd -d + readv)" g_rs b_resume
  rrow "incremental (nothing changed) / full checkpoint time" g_inc0 g_total
  CRV=$(criu --version 2>/dev/null | awk '/^Version/ {print $2}')
  sect "CRIU ${CRV:-} (measured in this run, same workload, dump to the same disk)"
  if [ -n "$CRIU_STATE" ]; then
    line="| CRIU |"; for S in "${SIZES[@]}"; do line="$line $CRIU_STATE |"; done; echo "$line"
  else
    line="| criu dump = frozen (ms) |"; any=0 prev=
    for S in "${SIZES[@]}"; do
      c=$(cell "$S" cr_dump); [ -n "$(med "$S" cr_dump)" ] && any=1
      if [ -n "$prev" ] && [ "$c" = "$prev" ] && [ -z "$(med "$S" cr_dump)" ]; then line="$line (same error) |"
      else line="$line $c |"; fi
      prev=$c
    done
    echo "$line"
    [ $any = 1 ] || { CRIU_ONLY_ERRORS=1; }
  fi
  if [ -z "$CRIU_STATE" ] && [ -z "${CRIU_ONLY_ERRORS:-}" ]; then
    row "criu dump + fsync of the image (ms)" cr_sync
    row "image on disk (MiB)" cr_img
    row "criu restore → job runs again (ms)" cr_restore
    c_dump() { m_ "$1" cr_dump; }; c_sync() { m_ "$1" cr_sync; }; c_img() { m_ "$1" cr_img; }; c_rs() { m_ "$1" cr_restore; }
    rrow "ghost/CRIU checkpoint total (ghost fsyncs; vs dump+fsync)" g_total c_sync
    rrow "ghost/CRIU frozen" g_frozen c_dump
    rrow "ghost/CRIU image size" g_du c_img
    rrow "ghost/CRIU resume" g_rs c_rs
  fi
  echo
  echo "Reference (not measured in this run; issue #5, same VM kind, 2 cores, half-random workload):"
  echo
  echo '```'
  echo "CRIU 4.2 dump to local disk:  64 MiB 0.11 s, 256 MiB 0.29 s, 1 GiB ~2.8 s (frozen nearly all of it); image = N MiB (no compression);"
  echo "                              incremental dumps do not work on this kernel (no soft-dirty)"
  echo "CRIU 4.2 restore:             256 MiB 0.25 s, 1 GiB ~1.2 s (warm cache), 3.6 s cold"
  echo "DMTCP 4.2, 1 GiB:             checkpoint 3.9 s uncompressed (image 1094 MB), 27.6 s with default gzip (image 543 MB);"
  echo "                              restart 0.97 s / 7.65 s"
  echo "limits:                       process_vm_readv ~6 GB/s (8-11 GB/s with huge pages), memcpy ~11 GB/s, fork of 1 GiB ~20 ms"
  echo "issue #5 targets (1 GiB):     checkpoint <= 600 ms, image <= 540 MB, frozen <= 50 ms while writing 1%/s,"
  echo "                              incremental unchanged <= 50 ms and <= 1 MiB, 5% changed <= 8% of full, resume <= 600 ms"
  echo '```'
  if [ "$DO_MGS" = 1 ]; then
    echo
    echo "examples/mgs (bench/mgs.sh $RUNS):"
    echo
    echo '```'
    printf '%s\n' "$MGS_OUT"
    echo '```'
  fi
  [ "$DO_MGS" = 1 ] && { echo; echo "Whole jobs (bench/whole-jobs.sh $RUNS):"; echo; GHOST_BIN_DIR=$BIN timeout 1800 bash "$ROOT/bench/whole-jobs.sh" "$RUNS" 2>/dev/null || echo "(bench/whole-jobs.sh failed)"; }
  if [ ${#NOTES[@]} -gt 0 ]; then
    echo
    echo "Notes:"
    for n in "${NOTES[@]}"; do echo "- $n"; done
  fi
} > "$REPORT"

mkdir -p "$ROOT/bench/results"
cp "$REPORT" "$ROOT/bench/results/latest.md"
cp "$REPORT" "$ROOT/bench/results/$(date -u +%Y%m%d-%H%M%S)$([ "$QUICK" = 1 ] && echo -quick).md"
cat "$REPORT"
say "saved bench/results/latest.md"
