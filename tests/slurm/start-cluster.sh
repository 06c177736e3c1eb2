#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests/test_slurm.py: Debian's slurmctld, slurmd,
# slurm-client and munge, no accounting database (job status comes from squeue), and a node that
# advertises GPUs through GRES, backed by links to /dev/null, so GPU requests are exercised.
#
# Usage (as root): tests/slurm/start-cluster.sh    installs what is missing, (re)starts the daemons
# and waits until the node takes jobs. Idempotent: a cluster already answering is left running.
# Prints the partition name on success; exits with 3 when SLURM cannot be installed here (not root,
# no apt-get, or the packages cannot be fetched), with another non-zero code when it fails to start.
set -euo pipefail

PARTITION=main
GPUS=4          # advertised GRES gpus (links to /dev/null)
STATE=/var/spool/slurm-slm
CONF=/etc/slurm/slurm.conf

if [ "$(id -u)" != 0 ]; then
    echo "start-cluster.sh: SLURM is not running and installing it needs root" >&2
    exit 3
fi

if sinfo -h -p "$PARTITION" -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)' \
    && grep -q '^Name=gpu File=' /etc/slurm/gres.conf 2>/dev/null; then
    echo "$PARTITION"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    if ! command -v apt-get >/dev/null; then
        echo "start-cluster.sh: SLURM is not installed and there is no apt-get to install it" >&2
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null; }; then
        echo "start-cluster.sh: apt-get could not install slurmctld slurmd slurm-client munge" >&2
        exit 3
    fi
fi

host=$(hostname -s)
# The node's shape from what slurmd detects: twice its cores (the test jobs spend much of their
# time starting Python, so two share a core well), 90% of its memory.
read -r cpus mem < <(slurmd -C | awk '/^NodeName/ {
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print 2 * v["CPUs"], int(v["RealMemory"] * 0.9) }')

mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" /var/log/slurm /run/munge /var/lib/munge /var/log/munge
cat > "$CONF" <<EOF
# Written by tests/slurm/start-cluster.sh: one node, no accounting database.
ClusterName=slm-test
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue / scontrol for an hour: the status checks of Snakemake's
# slurm executor (and the tests) read them there, as there is no accounting database.
MinJobAge=3600
ReturnToService=2
# Take the CPUs below as configured, not as detected.
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:$GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
# The GPUs: slurmd drops a GPU without a device file and wants a character device, so each is a
# link to /dev/null. (A count set with scontrol update instead lasts only until slurmd's next
# registration, about 30 minutes later, which sets the node INVAL: jobs then pend for ever.)
for i in $(seq 0 $((GPUS - 1))); do
    ln -sfn /dev/null "$STATE/gpu$i"
done
echo "Name=gpu File=$STATE/gpu[0-$((GPUS - 1))]" > /etc/slurm/gres.conf

# munge: a key, then the daemon.
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
    if id munge >/dev/null 2>&1; then
        runuser -u munge -- munged --force
    else
        munged --force
    fi
fi

# (Re)start the daemons on the fresh configuration (the loopback address: the host name need not
# resolve); only those this script started (pid files).
for daemon in slurmctld slurmd; do
    pidfile=/run/$daemon.pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
done
slurmctld -c -i
slurmd

# Wait until the node takes jobs; one drained by an earlier configuration is resumed (an invalid one
# cannot be: it fails here, with slurmctld's reason).
wait_for_node() {
    for _ in $(seq 60); do
        state=$(sinfo -h -n "$host" -o '%T' 2>/dev/null || true)
        case "$state" in
            idle | mixed | allocated) return 0 ;;
            drain*) scontrol update NodeName="$host" State=RESUME || true ;;
        esac
        sleep 1
    done
    echo "start-cluster.sh: node $host is '$state' ($(scontrol show node "$host" | grep -o 'Reason=.*'));" \
        "see /var/log/slurm/" >&2
    exit 1
}
wait_for_node
# The node must stay valid when slurmd registers again: have it do so now.
scontrol reconfigure
sleep 2
wait_for_node
if ! scontrol show node "$host" | grep -q "Gres=gpu:$GPUS"; then
    echo "start-cluster.sh: node $host does not advertise gpu:$GPUS" >&2
    exit 1
fi
echo "$PARTITION"
