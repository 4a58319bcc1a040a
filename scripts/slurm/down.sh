#!/bin/bash
# scripts/slurm/down.sh - stop the single-node Slurm started by up.sh.
#
# Stops slurmd, slurmctld and munged (by the pids in their pid files) and
# removes the pid files; slurmctld runs as user slurm and cannot remove its
# own pid file, and a leftover one makes the package's removal script fail.
# Job processes left by a killed slurmd are not touched (they belong to
# the test that made them). Run as root.
#   scripts/slurm/down.sh            # stop everything
#   scripts/slurm/down.sh --keep-munge
set -uo pipefail

RUN=${GHOST_SLURM_RUN:-/run/ghost-slurm}
KEEP_MUNGE=0
[ "${1:-}" = --keep-munge ] && KEEP_MUNGE=1
[ "$(id -u)" = 0 ] || { echo "slurm-down: error: must run as root" >&2; exit 1; }

stop() { # name pidfile
    local pid
    if [ -f "$2" ]; then
        pid=$(cat "$2" 2>/dev/null)
        if [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]; then
            kill "$pid" 2>/dev/null
            for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
            if [ -d "/proc/$pid" ]; then
                echo "slurm-down: $1 ($pid) ignored SIGTERM for 10 s; SIGKILL" >&2
                kill -9 "$pid" 2>/dev/null
            fi
            echo "slurm-down: stopped $1 ($pid)"
        fi
        rm -f "$2"
    fi
}

stop slurmd "$RUN/slurmd.pid"
stop slurmctld "$RUN/slurmctld.pid"
[ $KEEP_MUNGE = 1 ] || stop munged /run/munge/munged.pid
exit 0
