#!/bin/bash
# Tests/slurm/run.sh - end-to-end tests of ghost on a real (single-node) Slurm.
#
# Run as root from anywhere:
#   Tests/slurm/run.sh                 # all scenarios
#   Tests/slurm/run.sh srun spank      # only these (names below)
#   Tests/slurm/run.sh --list
#   Tests/slurm/run.sh --keep ...      # keep the work directory even when all pass
#
# It starts Slurm with scripts/slurm/up.sh (installing it if needed), copies
# ghost-run/ghost-resume (GHOST_BIN_DIR, else `swift build --show-bin-path`,
# building if needed) and examples/mgs (built here) to $GHOST_TEST_PREFIX/bin
# (/opt/ghost-test/bin), installs the SPANK plugin from slurm-plugins/, and
# submits every job as the ordinary user $GHOST_SLURM_USER (ghostuser).
# Each result file is compared with one from an uninterrupted plain run.
# Every wait has a timeout; jobs it submitted are cancelled on exit. The last
# line is exactly "N passed, M failed"; the exit status is 1 if M > 0.
#
# Scenarios (the node-wide ones run alone, first; the others in parallel):
#   node-down     --requeue job, node set DOWN after a checkpoint: requeued, resumes, same result
#   slurmd-kill   kill -9 slurmd: orphans keep checkpointing; requeued; a second copy waits for
#                 the image-dir lock; same result (also: lock, a second writer is refused)
#   srun          srun ghost-run mgs: same result as a plain run
#   time-signal   --time=1 job needing ~2 limits: --signal=B:USR1@20 + --requeue-on-signal
#   before-end    the same with --requeue-before-end 20s and no --signal
#   term          scancel --signal=TERM --batch: final checkpoint (--checkpoint-on-term); requeue; resumes
#   suspend       SIGURG: job checkpointed and gone (RSS freed), ghost-run waits; SIGWINCH: resumes
#   spank         srun --checkpoint-interval=3s runs under ghost-run; =abc fails clearly;
#                 #SBATCH --checkpoint-interval + requeue resumes
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PREFIX=${GHOST_TEST_PREFIX:-/opt/ghost-test}
BIN=$PREFIX/bin
TUSER=${GHOST_SLURM_USER:-ghostuser}
KEEP=0
ALL_TESTS="node-down slurmd-kill srun time-signal before-end term suspend spank"
SERIAL_TESTS="node-down slurmd-kill"
SELECTED=""
for a in "$@"; do
    case "$a" in
        --keep) KEEP=1 ;;
        --list) for t in $ALL_TESTS; do echo "$t"; done; exit 0 ;;
        -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
        -*) echo "run.sh: unknown option $a" >&2; exit 64 ;;
        *) case " $ALL_TESTS " in
               *" $a "*) SELECTED="$SELECTED $a" ;;
               *) echo "run.sh: unknown test '$a' (known: $ALL_TESTS)" >&2; exit 64 ;;
           esac ;;
    esac
done
[ -n "$SELECTED" ] || SELECTED=$ALL_TESTS
[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (it starts the Slurm daemons); try sudo" >&2; exit 1; }

T0=$SECONDS
# Processes started here (the stand-in ghost-run) must not inherit the
# caller's stray descriptors.
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
done
note() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }

# ------------------------------------------------------------------ set-up
if ! command -v cc >/dev/null || ! command -v make >/dev/null; then
    note "installing gcc make (for mgs and the SPANK plugin)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc make libc6-dev >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q gcc make libc6-dev >/dev/null; }
fi
"$ROOT/scripts/slurm/up.sh" || { echo "0 passed, 1 failed"; exit 1; }
NODE=$(sinfo -h -N -o '%N' | head -n1)
UHOME=$(getent passwd "$TUSER" | cut -d: -f6)

if [ -n "${GHOST_BIN_DIR:-}" ]; then
    SRC_BIN=$GHOST_BIN_DIR
else
    SRC_BIN=$(cd "$ROOT" && swift build --show-bin-path 2>/dev/null) || SRC_BIN=""
    if [ -z "$SRC_BIN" ] || [ ! -x "$SRC_BIN/ghost-run" ]; then
        note "building ghost (swift build)"
        (cd "$ROOT" && swift build 2>&1 | tail -n 5) || true
        SRC_BIN=$(cd "$ROOT" && swift build --show-bin-path)
    fi
fi
for b in ghost-run ghost-resume; do
    [ -x "$SRC_BIN/$b" ] || { echo "run.sh: $SRC_BIN/$b missing (set GHOST_BIN_DIR or run swift build)"; echo "0 passed, 1 failed"; exit 1; }
done
mkdir -p "$BIN" "$PREFIX/libexec"
chmod 0755 "$PREFIX" "$BIN" "$PREFIX/libexec"
install -m 0755 "$SRC_BIN/ghost-run" "$SRC_BIN/ghost-resume" "$BIN/"
cc -O2 -std=c99 -o "$BIN/mgs" "$ROOT/examples/mgs/mgs.c" -lm || { echo "0 passed, 1 failed"; exit 1; }
chmod 0755 "$BIN/mgs"

WORK=$UHOME/ghost-slurm-tests/run-$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$WORK"
chown "$TUSER:" "$UHOME/ghost-slurm-tests" "$WORK"
chmod 0755 "$WORK"
RESULTS=$WORK/results
JOBS=$WORK/jobs
: >"$RESULTS"; : >"$JOBS"

# The SPANK plugin, built out of the source tree.
mkdir -p "$WORK/plugin"
cp "$ROOT/slurm-plugins/"*.c "$ROOT/slurm-plugins/Makefile" "$WORK/plugin/"
if ! make -s -C "$WORK/plugin" install GHOST_RUN="$BIN/ghost-run" LIBEXECDIR="$PREFIX/libexec" >"$WORK/plugin/make.log" 2>&1; then
    cat "$WORK/plugin/make.log"
    echo "run.sh: building the SPANK plugin failed" >&2
fi

# ------------------------------------------------------------------ helpers
# Run a command as the test user with a small, clean environment.
as_user() {
    runuser -u "$TUSER" -- env -i HOME="$UHOME" USER="$TUSER" LOGNAME="$TUSER" LANG=C.UTF-8 \
        PATH="$BIN:/usr/local/bin:/usr/bin:/bin" "$@"
}

# submit DIR [VAR=value...] sbatch-args... -> prints the job id
submit() {
    local dir=$1; shift
    local vars=()
    while [ $# -gt 0 ] && [[ $1 == *=* ]] && [[ $1 != -* ]]; do vars+=("$1"); shift; done
    local id
    id=$(cd "$dir" && as_user "${vars[@]}" sbatch --parsable "$@") || return 1
    id=${id%%;*}
    echo "$id" >>"$JOBS"
    echo "$id"
}

# job_field JOB FIELD -> value from scontrol (empty if the job is gone)
job_field() {
    scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1
}

# wait_until TIMEOUT DESCRIPTION CMD... : poll CMD every 0.5 s
wait_until() {
    local timeout=$1 what=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@"; do
        if [ $SECONDS -ge $deadline ]; then
            echo "timed out after ${timeout}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
}

# wait_done JOB TIMEOUT -> prints the final state (COMPLETED, FAILED, ...; GONE if purged)
TERMINAL="COMPLETED FAILED CANCELLED TIMEOUT NODE_FAIL OUT_OF_MEMORY BOOT_FAIL DEADLINE PREEMPTED"
wait_done() {
    local j=$1 timeout=$2 st
    local deadline=$((SECONDS + timeout))
    while :; do
        st=$(job_field "$j" JobState)
        [ -z "$st" ] && { echo GONE; return 0; }
        case " $TERMINAL " in *" $st "*) echo "$st"; return 0 ;; esac
        if [ $SECONDS -ge $deadline ]; then echo "TIMEOUT-WAITING($st)"; return 1; fi
        sleep 0.5
    done
}

has() { grep -qE -- "$2" "$1" 2>/dev/null; }          # has FILE REGEX
lines() { [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; }   # lines FILE N

# Reference results of plain, uninterrupted runs: ref N REPS -> path
# They are kept in $REFS, keyed by the mgs binary, so a second run of the
# suite does not compute them again.
REFS=${GHOST_SLURM_REFS:-/var/lib/ghost-slurm/refs}/$(sha256sum "$BIN/mgs" | cut -c1-16)
mkdir -p "$REFS"
ref_path() { echo "$REFS/n$1-r$2.txt"; }
start_ref() {
    local out; out=$(ref_path "$1" "$2")
    [ -f "$out" ] || [ -f "$out.$$" ] && return 0
    : >"$out.$$"
    ( nice -n 5 "$BIN/mgs" -n "$1" -r "$2" -q -o "$out.tmp.$$" >/dev/null 2>&1 && mv "$out.tmp.$$" "$out"; rm -f "$out.$$" ) &
}
ref() {
    local out; out=$(ref_path "$1" "$2")
    start_ref "$1" "$2"
    wait_until 600 "the reference run mgs -n $1 -r $2" test -f "$out" >/dev/null || return 1
    echo "$out"
}

pass() { echo "PASS $1${2:+ ($2)}" >>"$RESULTS"; echo "PASS $1${2:+ ($2)}"; }
fail() { echo "FAIL $1: $2" >>"$RESULTS"; echo "FAIL $1: $2"; }

# same_result NAME RESULT_FILE N REPS -> 0 if byte-identical to the plain run
same_result() {
    local r; r=$(ref "$3" "$4") || { echo "no reference for $3/$4"; return 1; }
    if ! cmp -s "$r" "$2"; then
        echo "result $2 differs from the plain run $r:"
        diff <(tail -n 3 "$r") <(tail -n 3 "$2" 2>/dev/null) | head -n 10
        return 1
    fi
}

# newest_checkpoint DIR -> number of the newest checkpoint in an image directory
newest_checkpoint() {
    as_user ghost-resume --list "$1" 2>/dev/null | sed -n 's/^checkpoint \([0-9]*\):.*/\1/p' | tail -n1
}

tdir() { local d=$WORK/$1; mkdir -p "$d"; chown "$TUSER:" "$d"; echo "$d"; }

node_up() { case "$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null)" in idle*|mixed*|alloc*) return 0 ;; esac; return 1; }

show() { # show FILE: the tail of a job's output, indented
    [ -f "$1" ] && { echo "--- $1 (tail)"; tail -n 25 "$1" | sed 's/^/    /'; }
}

# ------------------------------------------------------------------ scenarios
N=500   # matrix size of the mgs jobs: ~80 ms per repetition here

t_srun() {
    local T; T=$(tdir srun)
    start_ref $N 200
    cd "$T" || return 1
    as_user timeout 300 srun -J g-srun --chdir="$T" -o "$T/out" -e "$T/err" \
        ghost-run --image-dir "$T/img" --checkpoint-interval 3s -- "$BIN/mgs" -n $N -r 200 -q -o "$T/result"
    local rc=$?
    local why=""
    [ $rc = 0 ] || why="srun exited $rc"
    [ -z "$why" ] && ! has "$T/err" "^ghost: started pid" && why="no 'ghost: started' in the step's stderr"
    [ -z "$why" ] && why=$(same_result srun "$T/result" $N 200)
    [ -z "$why" ] && ! diff -q <(tail -n 2 "$(ref_path $N 200)") "$T/out" >/dev/null && why="stdout differs from the plain run's"
    if [ -z "$why" ]; then
        pass srun "$(grep -c 'checkpoint [0-9]* done' "$T/err") checkpoints on the way"
    else
        fail srun "$why"; show "$T/err"; show "$T/out"
    fi
}

t_node_down() {
    local T; T=$(tdir node-down); local R=400
    start_ref $N $R
    local j why=""
    j=$(submit "$T" MGS="$BIN/mgs" MGS_ARGS="-n $N -r $R -q -o $T/result" GHOST_INTERVAL=3s \
        -J g-node-down -o "$T/out" "$ROOT/examples/mgs/batch/interval-requeue.sbatch" "$T/img") ||
        { fail node-down "sbatch failed"; return; }
    note "node-down: job $j; waiting for its first checkpoint"
    why=$(wait_until 120 "the first checkpoint" has "$T/out" "checkpoint 1 done")
    if [ -z "$why" ]; then
        note "node-down: scontrol update nodename=$NODE state=down"
        scontrol update nodename="$NODE" state=down reason=ghost-test
        why=$(wait_until 30 "the job to be requeued" bash -c "[ \"\$(scontrol show job -o $j | grep -o 'Restarts=[0-9]*')\" != Restarts=0 ]")
        # ReturnToService=2 brings the node back by itself as soon as slurmd
        # answers; state=resume is only needed (and only valid) if it did not.
        node_up || scontrol update nodename="$NODE" state=resume 2>/dev/null
        [ -z "$why" ] && why=$(wait_until 30 "the node to come back" node_up)
    fi
    local st=""
    [ -z "$why" ] && { st=$(wait_done "$j" 300); [ "$st" = COMPLETED ] || why="job ended $st, not COMPLETED"; }
    [ -z "$why" ] && ! has "$T/out" "run 1 on" && why="the job did not run a second time (no 'run 1' line: SLURM_RESTART_COUNT)"
    [ -z "$why" ] && ! has "$T/out" "^ghost: resumed checkpoint [0-9]+" && why="no 'ghost: resumed checkpoint' after the requeue"
    [ -z "$why" ] && why=$(same_result node-down "$T/result" $N $R)
    if [ -z "$why" ]; then
        pass node-down "$(grep -o 'resumed checkpoint [0-9]*' "$T/out" | head -n1) after requeue"
    else
        fail node-down "$why"; show "$T/out"
    fi
}

t_slurmd_kill() {
    # The job must outlast slurmd's death (~45-55 s until the requeue) plus
    # the stand-in's turn (~20 s), on a fast machine too: R=900 (~56 s on a
    # CI machine) once finished before the stand-in could hold the lock.
    local T; T=$(tdir slurmd-kill); local R=2600
    start_ref $N $R
    local args="-n $N -r $R -q -o $T/result"
    local j why=""
    j=$(submit "$T" MGS="$BIN/mgs" MGS_ARGS="$args" GHOST_INTERVAL=3s \
        -J g-slurmd-kill -o "$T/out" "$ROOT/examples/mgs/batch/interval-requeue.sbatch" "$T/img") ||
        { fail slurmd-kill "sbatch failed"; return; }
    note "slurmd-kill: job $j; waiting for its first checkpoint"
    why=$(wait_until 120 "the first checkpoint" has "$T/out" "checkpoint 1 done")
    if [ -n "$why" ]; then fail slurmd-kill "$why"; show "$T/out"; return; fi

    # A second writer on the same image directory is refused, naming the holder.
    as_user timeout 60 ghost-run --image-dir "$T/img" --lock-timeout 0 --resume-if-present -- \
        "$BIN/mgs" $args >"$T/second.out" 2>"$T/second.err"
    local rc=$?
    local holder; holder=$(grep -oE '[0-9]+@[A-Za-z0-9._-]+' "$T/second.err" | head -n1)
    if [ $rc != 0 ] && [ -n "$holder" ]; then
        pass lock "second ghost-run exit $rc, names the holder $holder"
    else
        fail lock "a second ghost-run on a locked image dir exited $rc without naming the holder pid@host: $(head -c 300 "$T/second.err")"
    fi
    local old_gr=${holder%@*}

    note "slurmd-kill: kill -9 slurmd (ghost-run pid ${old_gr:-?} keeps running)"
    local before; before=$(newest_checkpoint "$T/img")
    kill -9 "$(cat /run/ghost-slurm/slurmd.pid)"
    why=$(wait_until 150 "slurmctld to requeue the job (SlurmdTimeout)" bash -c "[ \"\$(scontrol show job -o $j | grep -o 'Restarts=[0-9]*')\" = Restarts=1 ]")
    if [ -n "$why" ]; then fail slurmd-kill "$why"; "$ROOT/scripts/slurm/up.sh" >/dev/null; show "$T/out"; return; fi
    # Hold the requeued job until slurmd is back: if it is launched in the
    # same second as the returning slurmd reports the stale job, slurmd
    # refuses it ("Job credential revoked") and the job is lost, not
    # requeued again (Slurm 22.05; see docs/SLURM.md).
    scontrol hold "$j"
    local orphan_ok=0 after
    [ -n "$old_gr" ] && [ -d "/proc/$old_gr" ] && orphan_ok=1
    sleep 4     # one more interval: the orphan keeps checkpointing
    after=$(newest_checkpoint "$T/img")
    [ -n "$old_gr" ] && [ -d "/proc/$old_gr" ] || orphan_ok=0
    note "slurmd-kill: requeued; the old copy (ghost-run $old_gr) is $([ $orphan_ok = 1 ] && echo alive || echo gone), checkpoints $before -> $after"
    if [ $orphan_ok = 0 ] && [ -s "$T/result" ]; then
        fail slurmd-kill "the job finished (mgs -r $R) before the test could play the old copy; give it more repetitions"
        show "$T/out"; scontrol release "$j" 2>/dev/null; "$ROOT/scripts/slurm/up.sh" >/dev/null; return
    fi

    # On a real cluster the requeued job starts on another node while the
    # old copy still runs on the dead one. Here the restarted slurmd SIGKILLs
    # the old copy before the new one starts, so a stand-in plays the old
    # copy: the orphan dies, a ghost-run outside Slurm resumes the job and
    # holds the image directory, and the requeued job must wait for it
    # (--lock-timeout, 5 min under Slurm), not write beside it.
    [ $orphan_ok = 1 ] && kill -9 "$old_gr" 2>/dev/null
    # The stand-in checkpoints too, so the requeued job goes on from its work.
    as_user setsid ghost-run --image-dir "$T/img" --resume-if-present --checkpoint-interval 3s -- "$BIN/mgs" $args \
        >"$T/stand-in.out" 2>"$T/stand-in.err" </dev/null &
    local stand_in=$!
    why=$(wait_until 30 "the stand-in to resume and hold the image dir" has "$T/stand-in.err" "resumed checkpoint")
    [ -n "$why" ] && { fail slurmd-kill "$why"; show "$T/stand-in.err"; }
    note "slurmd-kill: restarting slurmd"
    "$ROOT/scripts/slurm/up.sh" >"$T/up.log" 2>&1 || { fail slurmd-kill "slurmd did not come back: $(tail -n 5 "$T/up.log")"; return; }
    # Release only when the old copy's slurmstepds are gone: the stale batch
    # step reports "job complete" when it finally exits, and slurmctld applies
    # that to whatever run of the job is current (seen: the new run killed).
    wait_until 60 "the old slurmstepds of job $j to exit" no_stepd_of "$j" >/dev/null
    sleep 1
    scontrol release "$j"
    why=$(wait_until 90 "the requeued job to wait for the lock" has "$T/out" "is in use by ghost")
    local waited=0
    [ -z "$why" ] && waited=1
    sleep 3
    # The stand-in dies as the old copy would (SIGKILL; its job follows by PDEATHSIG).
    local sgr; sgr=$(grep -oE 'is in use by ghost [0-9]+' "$T/out" | grep -oE '[0-9]+$' | head -n1)
    [ -n "$sgr" ] && kill -9 "$sgr" 2>/dev/null
    kill -9 "$stand_in" 2>/dev/null; wait "$stand_in" 2>/dev/null
    local st; st=$(wait_done "$j" 400)
    why=""
    [ $orphan_ok = 1 ] || why="the old copy did not survive the death of slurmd"
    [ -z "$why" ] && [ $waited = 0 ] && why="the requeued job did not report waiting for the lock held by the stand-in"
    [ -z "$why" ] && [ "$st" != COMPLETED ] && why="job ended $st, not COMPLETED"
    [ -z "$why" ] && ! has "$T/out" "run 1 on" && why="no second run of the job"
    [ -z "$why" ] && ! has "$T/out" "^ghost: resumed checkpoint [0-9]+" && why="no 'ghost: resumed checkpoint'"
    [ -z "$why" ] && why=$(same_result slurmd-kill "$T/result" $N $R)
    if [ -z "$why" ]; then
        pass slurmd-kill "old copy kept checkpointing ($before -> $after) while slurmd was dead; the requeued job waited for the lock, then $(grep -o 'resumed checkpoint [0-9]*' "$T/out" | tail -n1)"
    else
        fail slurmd-kill "$why"; show "$T/out"; show "$T/stand-in.err"
    fi
}

# time-limit NAME SCRIPT [VAR=...] [sbatch args...]
time_limit_test() {
    local name=$1 script=$2; shift 2
    local T; T=$(tdir "$name"); local R=900
    start_ref $N $R
    local j why=""
    j=$(submit "$T" MGS="$BIN/mgs" MGS_ARGS="-n $N -r $R -q -o $T/result" "$@" \
        -J "g-$name" -o "$T/out" "$ROOT/examples/mgs/batch/$script" "$T/img") ||
        { fail "$name" "sbatch failed"; return; }
    note "$name: job $j (--time=1, ~$((R * 8 / 100)) s of work)"
    local st; st=$(wait_done "$j" 480)
    [ "$st" = COMPLETED ] || why="job ended $st, not COMPLETED"
    local runs; runs=$(grep -c '^job .* run [0-9]* on' "$T/out" 2>/dev/null)
    [ -z "$why" ] && [ "${runs:-0}" -lt 2 ] && why="the job ran $runs time(s); it needs more than its time limit"
    [ -z "$why" ] && ! has "$T/out" "requeued Slurm job $j" && why="no 'ghost: requeued Slurm job $j'"
    [ -z "$why" ] && ! has "$T/out" "^ghost: resumed checkpoint [0-9]+" && why="no 'ghost: resumed checkpoint'"
    [ -z "$why" ] && has "$T/out" "DUE TO TIME LIMIT" && why="Slurm killed a run at its time limit"
    [ -z "$why" ] && why=$(same_result "$name" "$T/result" $N $R)
    if [ -z "$why" ]; then
        pass "$name" "$runs runs of a 1-minute job"
    else
        fail "$name" "$why"; show "$T/out"
    fi
}
t_time_signal() { time_limit_test time-signal time-limit-signal.sbatch --signal=B:USR1@20; }
t_before_end() { time_limit_test before-end time-limit-before-end.sbatch GHOST_BEFORE_END=20s; }

t_term() {
    local T; T=$(tdir term); local R=400
    start_ref $N $R
    local j why=""
    j=$(submit "$T" MGS="$BIN/mgs" MGS_ARGS="-n $N -r $R -q -o $T/result" \
        -J g-term -o "$T/out" "$ROOT/examples/mgs/batch/preempt-term.sbatch" "$T/img") ||
        { fail term "sbatch failed"; return; }
    note "term: job $j"
    why=$(wait_until 120 "40 repetitions" lines "$T/result" 40)
    local done_before=0
    if [ -z "$why" ]; then
        as_user scancel --signal=TERM --batch "$j"
        done_before=$(wc -l <"$T/result")
        local st; st=$(wait_done "$j" 60)
        case "$st" in GONE|TIMEOUT-WAITING*) why="job did not stop after SIGTERM ($st)" ;; esac
    fi
    [ -z "$why" ] && ! has "$T/out" "checkpoint 1 done" && why="no final checkpoint on SIGTERM"
    [ -z "$why" ] && { as_user scontrol requeue "$j" || why="scontrol requeue $j failed"; }
    if [ -z "$why" ]; then
        local st2; st2=$(wait_done "$j" 240)
        [ "$st2" = COMPLETED ] || why="after the requeue the job ended $st2, not COMPLETED"
    fi
    [ -z "$why" ] && ! has "$T/out" "^ghost: resumed checkpoint 1 " && why="the requeued job did not resume checkpoint 1 (the one taken on SIGTERM)"
    [ -z "$why" ] && why=$(same_result term "$T/result" $N $R)
    if [ -z "$why" ]; then
        pass term "checkpoint on SIGTERM after ~$done_before repetitions, resumed after scontrol requeue"
    else
        fail term "$why"; show "$T/out"
    fi
}

# children_of PID -> pids whose parent is PID (from /proc; no procps needed)
children_of() {
    local f
    for f in /proc/[0-9]*/stat; do
        awk -v p="$1" '{ sub(/^.*\) /, ""); if ($2 == p) { split(FILENAME, a, "/"); print a[3] } }' "$f" 2>/dev/null
    done
}

# no_stepd_of JOB -> true when no slurmstepd of JOB runs on this machine
no_stepd_of() {
    local f
    for f in /proc/[0-9]*/cmdline; do
        case "$(tr '\0' ' ' 2>/dev/null <"$f")" in "slurmstepd: [$1."*) return 1 ;; esac
    done
    return 0
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

t_suspend() {
    local T; T=$(tdir suspend); local SN=1500 R=12
    start_ref $SN $R
    cat >"$T/job.sbatch" <<EOF
#!/bin/bash
#SBATCH --open-mode=append
exec ghost-run --image-dir "$T/img" --resume-if-present -- "$BIN/mgs" -n $SN -r $R -q -o "$T/result"
EOF
    chown "$TUSER:" "$T/job.sbatch"
    local j why=""
    j=$(submit "$T" -J g-suspend -o "$T/out" "$T/job.sbatch") || { fail suspend "sbatch failed"; return; }
    note "suspend: job $j"
    why=$(wait_until 120 "2 repetitions" lines "$T/result" 2)
    local pid="" gr="" rss_job=0 rss_gr=0 rss_gr_after=0
    if [ -z "$why" ]; then
        pid=$(sed -n 's/^ghost: started pid \([0-9]*\).*/\1/p' "$T/out" | head -n1)
        gr=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        # In its namespaces the job's parent is ghost-init; ghost-run is above it.
        if [ -n "$gr" ] && [ "$(cat /proc/$gr/comm 2>/dev/null)" != ghost-run ]; then
            gr=$(awk '/^PPid:/ {print $2}' "/proc/$gr/status" 2>/dev/null)
        fi
        rss_job=$(rss_kb "$pid"); rss_gr=$(rss_kb "$gr")
        [ -n "$pid" ] && [ -n "$gr" ] && [ "$rss_job" -gt 0 ] || why="cannot find the job process (pid '$pid', ghost-run '$gr')"
    fi
    if [ -z "$why" ]; then
        as_user scancel --signal=URG --batch "$j"
        why=$(wait_until 60 "'ghost: suspended'" has "$T/out" "^ghost: suspended")
        [ -z "$why" ] && why=$(wait_until 10 "the job process to be gone" bash -c "[ ! -d /proc/$pid ]")
    fi
    if [ -z "$why" ]; then
        [ -d "/proc/$gr" ] || why="ghost-run (pid $gr) did not stay"
        [ -n "$(children_of "$gr")" ] && why="ghost-run still has a child while suspended: pid $(children_of "$gr")"
        rss_gr_after=$(rss_kb "$gr")
        local n1; n1=$(wc -l <"$T/result"); sleep 3
        [ "$(wc -l <"$T/result")" = "$n1" ] || why="the result file grew while suspended"
        [ "$(job_field "$j" JobState)" = RUNNING ] || why="the Slurm job is $(job_field "$j" JobState) while suspended, not RUNNING"
    fi
    if [ -z "$why" ]; then
        # scancel knows no SIGWINCH by name in 22.05 ("Unknown job signal: WINCH"): use its number.
        as_user scancel --signal="$(kill -l WINCH)" --batch "$j"
        why=$(wait_until 60 "'ghost: resumed checkpoint'" has "$T/out" "^ghost: resumed checkpoint")
    fi
    if [ -z "$why" ]; then
        local st; st=$(wait_done "$j" 240)
        [ "$st" = COMPLETED ] || why="job ended $st, not COMPLETED"
    fi
    [ -z "$why" ] && why=$(same_result suspend "$T/result" $SN $R)
    if [ -z "$why" ]; then
        pass suspend "RSS job ${rss_job} kB + ghost-run ${rss_gr} kB -> ghost-run alone ${rss_gr_after} kB while suspended"
    else
        fail suspend "$why"; show "$T/out"
    fi
}

t_spank() {
    local T; T=$(tdir spank)
    start_ref $N 200; start_ref $N 400
    cd "$T" || return 1
    # srun --checkpoint-interval runs the task under ghost-run.
    as_user timeout 300 srun -J g-spank --chdir="$T" -o "$T/srun.out" -e "$T/srun.err" \
        --checkpoint-interval=3s --ghost-image-dir="$T/img-srun" "$BIN/mgs" -n $N -r 200 -q -o "$T/result-srun"
    local rc=$? why=""
    [ $rc = 0 ] || why="srun exited $rc"
    [ -z "$why" ] && ! has "$T/srun.err" "^ghost: started pid" && why="the task did not run under ghost-run (no 'ghost: started')"
    [ -z "$why" ] && ! has "$T/srun.err" "checkpoint 1 done" && why="no checkpoint with --checkpoint-interval=3s"
    [ -z "$why" ] && why=$(same_result spank "$T/result-srun" $N 200)
    if [ -z "$why" ]; then pass spank-srun "$(grep -c 'checkpoint [0-9]* done' "$T/srun.err") checkpoints"
    else fail spank-srun "$why"; show "$T/srun.err"; fi

    # A bad value makes srun fail before anything runs, with a clear message.
    as_user timeout 60 srun -J g-spank-bad --checkpoint-interval=abc /bin/true >"$T/bad.out" 2>"$T/bad.err"
    rc=$?
    if [ $rc != 0 ] && has "$T/bad.err" "checkpoint-interval" && has "$T/bad.err" "not a duration"; then
        pass spank-bad-value "srun exit $rc: $(grep -m1 'not a duration' "$T/bad.err" | cut -c1-120)"
    else
        fail spank-bad-value "srun --checkpoint-interval=abc exited $rc: $(head -c 300 "$T/bad.err")"
    fi

    # #SBATCH --checkpoint-interval: the srun steps of the script run under
    # ghost-run; a requeue (TERM to everything) resumes from the last one.
    cat >"$T/job.sbatch" <<EOF
#!/bin/bash
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --checkpoint-interval=3s
#SBATCH --ghost-image-dir=$T/img-%j.%s
echo "run \${SLURM_RESTART_COUNT:-0}: GHOST_CHECKPOINT_INTERVAL=\$GHOST_CHECKPOINT_INTERVAL"
srun "$BIN/mgs" -n $N -r 400 -q -o "$T/result-sbatch"
EOF
    chown "$TUSER:" "$T/job.sbatch"
    local j
    j=$(submit "$T" -J g-spank-sbatch -o "$T/sbatch.out" "$T/job.sbatch") || { fail spank-sbatch "sbatch failed"; return; }
    note "spank: sbatch job $j"
    why=$(wait_until 120 "the first checkpoint" has "$T/sbatch.out" "checkpoint 2 done")
    if [ -z "$why" ]; then
        as_user scontrol requeue "$j" || why="scontrol requeue failed"
    fi
    if [ -z "$why" ]; then
        local st; st=$(wait_done "$j" 240)
        [ "$st" = COMPLETED ] || why="job ended $st, not COMPLETED"
    fi
    [ -z "$why" ] && ! has "$T/sbatch.out" "GHOST_CHECKPOINT_INTERVAL=3s" && why="the batch script did not see GHOST_CHECKPOINT_INTERVAL=3s"
    [ -z "$why" ] && ! has "$T/sbatch.out" "^run 1:" && why="no second run after scontrol requeue"
    [ -z "$why" ] && ! has "$T/sbatch.out" "^ghost: resumed checkpoint [0-9]+" && why="the requeued step did not resume"
    [ -z "$why" ] && why=$(same_result spank "$T/result-sbatch" $N 400)
    if [ -z "$why" ]; then pass spank-sbatch "#SBATCH --checkpoint-interval=3s; $(grep -o 'resumed checkpoint [0-9]*' "$T/sbatch.out" | head -n1) after requeue"
    else fail spank-sbatch "$why"; show "$T/sbatch.out"; fi
}

# ------------------------------------------------------------------ cleanup
BG_PIDS=""
cleanup() {
    local jobs; jobs=$(sort -u "$JOBS" 2>/dev/null | tr '\n' ' ')
    [ -n "${jobs// /}" ] && scancel $jobs 2>/dev/null
    for p in $BG_PIDS; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null; done
    # Leave a working cluster behind (a failed slurmd-kill could leave slurmd dead).
    node_up || "$ROOT/scripts/slurm/up.sh" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------ run
# Start the reference runs now; they run outside Slurm while the jobs run.
for t in $SELECTED; do
    case $t in
        srun) start_ref $N 200 ;;
        node-down|term) start_ref $N 400 ;;
        slurmd-kill|time-signal|before-end) start_ref $N 900 ;;
        suspend) start_ref 1500 12 ;;
        spank) start_ref $N 200; start_ref $N 400 ;;
    esac
done

fn_of() { echo "t_${1//-/_}"; }
note "work directory $WORK"
for t in $SERIAL_TESTS; do
    case " $SELECTED " in *" $t "*) ;; *) continue ;; esac
    note "$t: start"
    $(fn_of "$t") >"$WORK/$t.log" 2>&1
    sed 's/^/  /' "$WORK/$t.log"
done
PAR=""
for t in $SELECTED; do
    case " $SERIAL_TESTS " in *" $t "*) continue ;; esac
    note "$t: start"
    set -m
    ( $(fn_of "$t") ) >"$WORK/$t.log" 2>&1 &
    set +m
    BG_PIDS="$BG_PIDS $!"
    PAR="$PAR $t:$!"
done
for tp in $PAR; do
    t=${tp%%:*}; p=${tp##*:}
    wait "$p"
    note "$t: done"
    sed 's/^/  /' "$WORK/$t.log"
done
BG_PIDS=""

passed=$(grep -c '^PASS' "$RESULTS")
failed=$(grep -c '^FAIL' "$RESULTS")
echo
echo "results ($((SECONDS - T0)) s):"
sed 's/^/  /' "$RESULTS"
if [ "$failed" = 0 ] && [ $KEEP = 0 ]; then
    rm -rf "$WORK"
else
    echo "work directory kept: $WORK"
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
