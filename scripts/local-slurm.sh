#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for clorch's SLURM integration tests
# (`cargo test -p clorch --test slurm`) and for trying `clorch run --executor slurm` by hand.
#
#   scripts/local-slurm.sh start    install the packages if missing (Debian: slurmctld, slurmd,
#                                   slurm-client, munge; needs root), write the configuration,
#                                   start munged, slurmctld and slurmd, wait for the node
#   scripts/local-slurm.sh stop     stop the three daemons this script started (by their pid files)
#   scripts/local-slurm.sh status   whether the daemons run, and `sinfo`
#
# No systemd is needed. The configuration (/etc/slurm/slurm.conf) is written only when it is
# absent or was written by this script: a machine with a real SLURM configuration is left alone.
# Accounting is off (`sacct` fails), as on many small clusters; clorch works without it.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARKER="# written by clorch scripts/local-slurm.sh"
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
LOG_DIR=/var/log/slurm

say() { printf 'local-slurm: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    if command -v sbatch >/dev/null && [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] \
        && [ -x /usr/sbin/munged ]; then
        return
    fi
    [ "$(id -u)" = 0 ] || die "the SLURM packages are missing and installing them needs root"
    command -v apt-get >/dev/null || die "the SLURM packages are missing and this is not a Debian-like system"
    say "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

write_config() {
    if [ -e "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching a real cluster's configuration"
    fi
    local host cpus mem
    host=$(hostname -s)
    # Every core this process may use. Not plain `nproc`: it honours OMP_NUM_THREADS, which CI
    # sets to 1 for the Python benchmarks, and a one-CPU node runs one job at a time.
    cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
    # 90% of the memory, in MB: SLURM refuses a node that reports less than its RealMemory.
    mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOG_DIR"
    # Addresses are given, so the host name need not resolve (containers, CI machines).
    cat >"$CONF" <<CONF
$MARKER
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmUser=root
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
KillWait=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
    alive "$MUNGE_PID" && return
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        head -c 1024 /dev/urandom >/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
}

wait_for_node() {
    local host state i
    host=$(hostname -s)
    for i in $(seq 1 60); do
        state=$(sinfo --noheader --nodes="$host" --format=%T 2>/dev/null || true)
        case "$state" in
            idle* | mixed* | allocated*) say "node $host is $state"; return ;;
            down* | drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "the node did not come up (state: ${state:-unknown}); see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log"
}

start() {
    install_packages
    write_config
    start_munge
    alive "$CTLD_PID" || /usr/sbin/slurmctld
    alive "$SLURMD_PID" || /usr/sbin/slurmd
    wait_for_node
}

stop() {
    local f pid i
    for f in "$SLURMD_PID" "$CTLD_PID" "$MUNGE_PID"; do
        if alive "$f"; then
            pid=$(cat "$f")
            kill "$pid"
            # slurmctld saves its state on the way out: wait, so a `start` right after works.
            for i in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            say "stopped $(basename "$f" .pid)"
        fi
    done
}

status() {
    local f up=0
    for f in "$MUNGE_PID" "$CTLD_PID" "$SLURMD_PID"; do
        if alive "$f"; then
            say "$(basename "$f" .pid) is running (pid $(cat "$f"))"
        else
            say "$(basename "$f" .pid) is not running"
            up=1
        fi
    done
    if [ "$up" = 0 ]; then
        sinfo
    fi
    return "$up"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
