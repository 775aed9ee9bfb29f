#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine: munged, slurmctld and slurmd, configured for this
# host in a folder of their own, for running the workflow through workflow/profiles/slurm (issue 26).
#
#   tests/slurm/cluster.sh start STATE_DIR   install slurm-wlm and munge through apt when missing,
#                                            write STATE_DIR/slurm.conf, start the daemons, wait for
#                                            the node
#   tests/slurm/cluster.sh stop STATE_DIR    stop the daemons, remove the configuration link
#
# The configuration is linked from /etc/slurm/slurm.conf, where every SLURM command looks: Snakemake's
# slurm-jobstep plugin runs each rule with `srun` in an environment stripped of SLURM_* variables, so
# SLURM_CONF would not reach it.  A /etc/slurm/slurm.conf of another cluster is never replaced.
#
# Exit status 3 with one line on stderr when the cluster cannot run here (no root, apt or a daemon
# failing); the tests skip with that line.  Two partitions, cpu (default) and gpu, share the node,
# so the profile's partitions exist (the node has no GPU: the test's overrides drop --gres).
# Accounting is off: the Snakemake plugin then asks squeue, which keeps finished jobs for MinJobAge.
set -euo pipefail

SYSTEM_CONF=/etc/slurm/slurm.conf

unavailable() {
    echo "SLURM cluster unavailable: $*" >&2
    exit 3
}

start() {
    local state=$1
    [[ $(id -u) == 0 ]] || unavailable "needs root to install packages and run slurmd (running as $(id -un))"
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        command -v apt-get >/dev/null || unavailable "slurm-wlm is not installed and there is no apt-get"
        export DEBIAN_FRONTEND=noninteractive
        { apt-get install -y -q slurm-wlm munge || { apt-get update -q && apt-get install -y -q slurm-wlm munge; }; } \
            >"$state.apt.log" 2>&1 || unavailable "apt-get install slurm-wlm munge failed (see $state.apt.log)"
    fi
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
        unavailable "a slurmctld or slurmd already runs on this machine (pids $(pgrep -d, -x 'slurmctld|slurmd'))"
    fi
    mkdir -p "$state"/{munge,ctld,spool,log}
    state=$(cd "$state" && pwd)
    chmod 700 "$state/munge"
    head -c 1024 /dev/urandom >"$state/munge/munge.key"
    chmod 400 "$state/munge/munge.key"
    munged --force --socket="$state/munge/munge.socket" --key-file="$state/munge/munge.key" \
        --pid-file="$state/munge/munged.pid" --log-file="$state/log/munged.log" \
        --seed-file="$state/munge/munged.seed" || unavailable "munged did not start (see $state/log/munged.log)"

    local host cpus memory
    host=$(hostname -s)
    cpus=$(nproc --all)  # plain nproc follows OMP_NUM_THREADS
    memory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10))
    cat >"$state/slurm.conf" <<EOF
ClusterName=img2spec-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$state/munge/munge.socket
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=3600
KillWait=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
    if [[ -e $SYSTEM_CONF && ! -L $SYSTEM_CONF ]]; then
        unavailable "$SYSTEM_CONF belongs to another cluster; not replacing it"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$state/slurm.conf" "$SYSTEM_CONF"
    slurmctld -c || unavailable "slurmctld did not start (see $state/log/slurmctld.log)"
    slurmd || unavailable "slurmd did not start (see $state/log/slurmd.log)"
    for _ in $(seq 60); do
        if sinfo -h -N -o %t 2>/dev/null | grep -q idle; then
            return 0
        fi
        sleep 1
    done
    unavailable "node $host not idle after 60 s: $(sinfo -h -N -o '%t %E' 2>&1 | head -1)"
}

stop() {
    local state
    state=$(cd "$1" && pwd)
    scontrol shutdown >/dev/null 2>&1 || true
    for pidfile in "$state/slurmd.pid" "$state/slurmctld.pid" "$state/munge/munged.pid"; do
        [[ -f $pidfile ]] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    if [[ $(readlink "$SYSTEM_CONF" 2>/dev/null) == "$state/slurm.conf" ]]; then
        rm -f "$SYSTEM_CONF"
    fi
}

case ${1:-} in
start) start "${2:?state folder}" ;;
stop) stop "${2:?state folder}" ;;
*)
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
    ;;
esac
