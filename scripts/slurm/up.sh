#!/bin/bash
# scripts/slurm/up.sh - bring up a single-node Slurm on this machine for ghost's tests.
#
# Run as root. Works from nothing on a fresh Debian 12 machine (installs
# slurmctld slurmd slurm-client munge libslurm-dev with apt-get) and again on a
# machine where it already runs (then it only checks that the node is idle).
#
#   scripts/slurm/up.sh            # install if needed, configure, start, wait for the node
#   scripts/slurm/up.sh --fresh    # also restart the daemons with an empty job state
#
# Environment:
#   GHOST_SLURM_STATE  state, spool and logs       (default /var/lib/ghost-slurm)
#   GHOST_SLURM_RUN    pid files                    (default /run/ghost-slurm)
#   GHOST_SLURM_USER   ordinary user for test jobs  (default ghostuser; created if missing)
#   GHOST_SLURM_WAIT   seconds to wait for the node (default 60)
#
# Daemons: munged (as user munge), slurmctld (as user slurm), slurmd (root).
# There is no systemd here: each daemon is started by hand and daemonizes.
# See docs/SLURM.md for the settings and why they are what they are.
set -euo pipefail

STATE=${GHOST_SLURM_STATE:-/var/lib/ghost-slurm}
RUN=${GHOST_SLURM_RUN:-/run/ghost-slurm}
TEST_USER=${GHOST_SLURM_USER:-ghostuser}
WAIT=${GHOST_SLURM_WAIT:-60}
CONF=/etc/slurm/slurm.conf
MARK="# written by ghost scripts/slurm/up.sh"
FRESH=0
for a in "$@"; do
    case "$a" in
        --fresh) FRESH=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "up.sh: unknown argument '$a' (try --help)" >&2; exit 64 ;;
    esac
done

say() { echo "slurm-up: $*"; }
die() { echo "slurm-up: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts root daemons)"

# ---------------------------------------------------------------- packages
PKGS="slurmctld slurmd slurm-client munge libslurm-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    say "installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be absent on a fresh image (or stale): update once, retry on failure.
    if ! apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1; then
        apt-get update -q >/dev/null || die "apt-get update failed"
        apt-get install -y -q --no-install-recommends $missing || die "apt-get install$missing failed"
    fi
fi
for b in slurmctld slurmd munged sinfo scontrol; do
    command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || die "$b not found after installing $PKGS"
done

# ---------------------------------------------------------------- users
getent passwd slurm >/dev/null || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin slurm
getent passwd munge >/dev/null || die "user munge missing (the munge package creates it)"
if ! getent passwd "$TEST_USER" >/dev/null; then
    say "creating user $TEST_USER"
    useradd --create-home --shell /bin/bash "$TEST_USER"
fi

# ---------------------------------------------------------------- pid helpers
# A daemon "runs" when its pid file names a live process with the right name.
pid_of() { # name pidfile
    local pid
    [ -f "$2" ] || return 1
    pid=$(cat "$2" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
    echo "$pid"
}
running() { pid_of "$1" "$2" >/dev/null; }

MUNGE_PID=/run/munge/munged.pid
CTLD_PID=$RUN/slurmctld.pid
SLURMD_PID=$RUN/slurmd.pid

# ---------------------------------------------------------------- configuration
mkdir -p "$STATE/ctld" "$STATE/slurmd" "$STATE/log" "$RUN"
chown slurm:slurm "$STATE/ctld" "$STATE/log"
chmod 0755 "$STATE" "$STATE/log" "$RUN"
chmod 0700 "$STATE/ctld"

NODELINE=$(slurmd -C 2>/dev/null | head -n1)
case "$NODELINE" in
    NodeName=*) ;;
    *) die "'slurmd -C' did not print a node line: $NODELINE" ;;
esac
NODENAME=${NODELINE%% *}; NODENAME=${NODENAME#NodeName=}

NEWCONF=$(mktemp)
trap 'rm -f "$NEWCONF"' EXIT
cat >"$NEWCONF" <<EOF
$MARK - edits are overwritten.
# Single-node Slurm for ghost's end-to-end tests; see docs/SLURM.md.
ClusterName=ghost
SlurmctldHost=localhost
AuthType=auth/munge
CredType=cred/munge
# cred_expire=5 (the minimum; smaller is silently 120) + 1 s scheduling:
# a requeued job starts again ~6 s later instead of ~121 s.
AuthInfo=cred_expire=5
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldDebug=info
SlurmdDebug=info
# cgroup v2 "Hybrid mode is not supported" on these VMs: track by /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
ReturnToService=2
KillWait=10
MinJobAge=30
SlurmdTimeout=30
SlurmctldTimeout=30
InactiveLimit=0
Waittime=0
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
PlugStackConfig=/etc/slurm/plugstack.conf
$NODELINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$NODENAME Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF

mkdir -p /etc/slurm/plugstack.conf.d
# Debian ships no plugstack.conf; ours only includes the .d directory, where
# slurm-plugins/Makefile installs ghost.conf.
if [ ! -f /etc/slurm/plugstack.conf ]; then
    printf '%s\ninclude /etc/slurm/plugstack.conf.d/*.conf\n' "$MARK" >/etc/slurm/plugstack.conf
elif ! grep -q 'plugstack.conf.d' /etc/slurm/plugstack.conf; then
    printf 'include /etc/slurm/plugstack.conf.d/*.conf\n' >>/etc/slurm/plugstack.conf
fi

CHANGED=0
if [ -f "$CONF" ] && cmp -s "$NEWCONF" "$CONF"; then
    :
else
    if [ -f "$CONF" ] && ! head -n1 "$CONF" | grep -qF "$MARK"; then
        cp -p "$CONF" "$CONF.before-ghost"
        say "kept the previous $CONF as $CONF.before-ghost"
    fi
    install -m 0644 "$NEWCONF" "$CONF"
    CHANGED=1
    say "wrote $CONF ($NODENAME)"
fi

# ---------------------------------------------------------------- munge
mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    say "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! running munged "$MUNGE_PID"; then
    say "starting munged"
    rm -f "$MUNGE_PID"
    runuser -u munge -- /usr/sbin/munged || die "munged did not start; see /var/log/munge/munged.log"
fi
for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munge does not work: $(tail -n 5 /var/log/munge/munged.log 2>/dev/null)"

# ---------------------------------------------------------------- slurm daemons
stop_daemon() { # name pidfile
    local pid
    if pid=$(pid_of "$1" "$2"); then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
        [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$2"
}

if [ $FRESH = 1 ] || [ $CHANGED = 1 ]; then
    # cred_expire and most settings need both daemons restarted.
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
fi

if ! running slurmctld "$CTLD_PID"; then
    # Empty job state: every start of the test cluster is clean.
    rm -rf "${STATE:?}/ctld/"*
    rm -f "$CTLD_PID"
    say "starting slurmctld"
    # -c: clear the job state; -i: ignore errors in the (empty) state files.
    slurmctld -c -i || die "slurmctld did not start:$(echo; tail -n 20 "$STATE/log/slurmctld.log" 2>/dev/null)"
fi
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q 'is UP' && break; sleep 0.2; done
scontrol ping 2>/dev/null | grep -q 'is UP' ||
    die "slurmctld does not answer:$(echo; tail -n 20 "$STATE/log/slurmctld.log" 2>/dev/null)"

if ! running slurmd "$SLURMD_PID"; then
    rm -f "$SLURMD_PID"
    say "starting slurmd"
    slurmd || die "slurmd did not start:$(echo; tail -n 20 "$STATE/log/slurmd.log" 2>/dev/null)"
fi

# ---------------------------------------------------------------- wait for the node
node_state() { sinfo -h -N -n "$NODENAME" -o '%T' 2>/dev/null | head -n1; }
deadline=$((SECONDS + WAIT))
resumed=0
while :; do
    st=$(node_state)
    case "$st" in
        idle|mixed|allocated|idle~|completing) break ;;
        down*|drain*|fail*)
            # ReturnToService=2 normally brings it back; a node left DOWN by
            # a previous test (state=down reason=...) needs a resume.
            if [ $resumed = 0 ]; then
                scontrol update nodename="$NODENAME" state=resume 2>/dev/null || true
                resumed=1
            fi ;;
    esac
    if [ $SECONDS -ge $deadline ]; then
        echo "slurm-up: error: node $NODENAME is '${st:-unknown}' after ${WAIT}s, not idle" >&2
        scontrol show node "$NODENAME" 2>&1 | sed 's/^/  /' >&2 || true
        echo "--- slurmctld.log (tail)" >&2; tail -n 20 "$STATE/log/slurmctld.log" >&2 2>/dev/null || true
        echo "--- slurmd.log (tail)" >&2; tail -n 20 "$STATE/log/slurmd.log" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 0.5
done
say "node $NODENAME is $st; $(sinfo -h -o '%P %a %D %C' | head -n1) (partition avail nodes cpus A/I/O/T)"
