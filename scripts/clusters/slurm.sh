#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the tests: install, start, stop.
#   scripts/clusters/slurm.sh install   Debian packages (root)
#   scripts/clusters/slurm.sh start     munged, slurmctld, slurmd; waits until the node is idle
#   scripts/clusters/slurm.sh stop      cancels jobs, stops the daemons by pid
# Everything listens on 127.0.0.1. State lives in $SLURM_TEST_DIR (default /var/tmp/mlxpy-slurm).
set -euo pipefail
DIR="${SLURM_TEST_DIR:-/var/tmp/mlxpy-slurm}"
CONF=/etc/slurm/slurm.conf

install() {
  if ! command -v slurmctld >/dev/null || ! command -v sbatch >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge
  fi
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
  mkdir -p /etc/slurm
  cat > "$CONF" <<CONF
ClusterName=mlxpytest
SlurmctldHost=localhost(127.0.0.1)
AuthType=auth/munge
# a requeued job waits cred_expire seconds before it may start again (default 120)
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmUser=root
MailProg=/bin/true
MinJobAge=300
MaxArraySize=1001
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
KillWait=5
NodeName=node1 NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  install
  stop >/dev/null 2>&1 || true
  rm -rf "$DIR"
  mkdir -p "$DIR/state" "$DIR/spool" /run/slurm /run/munge
  chown munge:munge /run/munge
  write_conf
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  runuser -u munge -- /usr/sbin/munged
  for _ in $(seq 50); do munge -n | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null
  slurmctld
  slurmd -N node1
  for _ in $(seq 100); do
    state=$(sinfo -h -n node1 -o %T 2>/dev/null || true)
    [ "$state" = "idle" ] && { echo "slurm: node1 idle"; return 0; }
    sleep 0.1
  done
  echo "slurm: node1 never became idle (state: ${state:-none})" >&2
  tail -20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
  return 1
}

stop() {
  scancel --full --quiet -u root 2>/dev/null || true
  for pidfile in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/munge/munged.pid; do
    if [ -f "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  pkill -x slurmstepd 2>/dev/null || true
}

"${1:?usage: slurm.sh install|start|stop}"
