#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (Debian's slurmctld, slurmd and munge), for `make test-slurm`:
#   tests/slurm/cluster.sh start    configure it under $LPNB_SLURM_DIR (default /tmp/lpnb-slurm), start munged,
#                                   slurmctld and slurmd as root, wait until the node is idle; prints SLURM_CONF
#   tests/slurm/cluster.sh stop     cancel every job and stop the daemons
set -euo pipefail
dir=${LPNB_SLURM_DIR:-/tmp/lpnb-slurm}
export SLURM_CONF=$dir/slurm.conf
case ${1:-} in
start)
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then  # a second cluster on the same ports would take the first's jobs
        echo "SLURM daemons already run on this machine (pids $(pgrep -d ' ' -x slurmctld) $(pgrep -d ' ' -x slurmd)): stop them first" >&2
        exit 1
    fi
    mkdir -p "$dir"/state "$dir"/spool "$dir"/log /run/munge
    [ -f /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge: /etc/munge/munge.key /run/munge 2>/dev/null || true
    chmod 400 /etc/munge/munge.key
    pgrep -x munged >/dev/null || munged --force
    host=$(hostname -s)
    cat > "$SLURM_CONF" <<CONF
ClusterName=lpnb
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobRequeue=1
ReturnToService=2
MpiDefault=none
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(($(free -m | awk '/^Mem:/ {print $2}') / 2)) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    slurmctld -c
    slurmd -c
    for _ in $(seq 60); do
        sinfo -h -o %t 2>/dev/null | grep -qx idle && { echo "SLURM_CONF=$SLURM_CONF"; exit 0; }
        sleep 1
    done
    echo "the SLURM node did not become idle; logs in $dir/log" >&2
    exit 1
    ;;
stop)
    # cancel every job and let each end and report to slurmctld before the daemons go: a job step left
    # behind would keep slurmd alive, and its job id would collide with the next cluster's
    scancel --user "$(id -un)" 2>/dev/null || true
    for _ in $(seq 90); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 1; done
    pids=$(cat "$dir"/slurmd.pid "$dir"/slurmctld.pid 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    for _ in $(seq 60); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 1; done
    pkill -KILL -x 'slurmctld|slurmd|slurmstepd' 2>/dev/null || true
    ;;
*)
    sed -n 2,5p "$0"
    exit 2
    ;;
esac
