#!/usr/bin/env bash
# A real single-node OAR 2.5 cluster on this machine, for the tests: install, start, stop.
# Jobs must be submitted by an unprivileged user ($OAR_TEST_USER, created here) from a
# directory that user can write. PostgreSQL, the node's sshd and Almighty run on this machine.
set -euo pipefail
OAR_USER="${OAR_TEST_USER:-mlxpyoar}"
CONF=/etc/oar/oar.conf

install() {
  if ! command -v oarsub >/dev/null || ! command -v oar-database >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq oar-server oar-server-pgsql \
      oar-node oar-user oar-user-pgsql postgresql openssh-server
  fi
  id "$OAR_USER" >/dev/null 2>&1 || useradd -m -s /bin/bash "$OAR_USER"
  # the test user runs the tests' Python, which may live under /root (pyenv): let it traverse
  # (not list) the directories on the way to the interpreter
  local exe dir
  exe=$(readlink -f "$(command -v "${PYTHON:-python3}")")
  dir=$(dirname "$exe")
  while [ "$dir" != "/" ]; do chmod o+x "$dir"; dir=$(dirname "$dir"); done
}

configure() {
  sed -i 's/^DB_BASE_PASSWD=.*/DB_BASE_PASSWD="oarpass"/; s/^DB_BASE_PASSWD_RO=.*/DB_BASE_PASSWD_RO="oarpassro"/' "$CONF"
  sed -i 's/^SCHEDULER_MIN_TIME_BETWEEN_2_CALLS=.*/SCHEDULER_MIN_TIME_BETWEEN_2_CALLS="0"/' "$CONF"
  # the stock cpuset job manager deletes the job user's files in /tmp when a job ends
  sed -i 's/^JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD=/#JOB_RESOURCE_MANAGER_PROPERTY_DB_FIELD=/' "$CONF"
  chown oar "$CONF"
  chmod 600 "$CONF"
}

start() {
  install
  stop >/dev/null 2>&1 || true
  configure
  local ver
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  pg_ctlcluster "$ver" main start || true
  for _ in $(seq 50); do runuser -u postgres -- psql -qAtc 'select 1' >/dev/null 2>&1 && break; sleep 0.2; done
  oar-database --drop --db-is-local -y >/dev/null 2>&1 || true
  oar-database --create --db-is-local -y >/dev/null
  mkdir -p /run/sshd
  /usr/sbin/sshd -f /etc/oar/sshd_config -o ListenAddress=127.0.0.1 -o PidFile=/run/oar-sshd.pid
  oarproperty -a cpu >/dev/null 2>&1 || true
  oarproperty -a core >/dev/null 2>&1 || true
  oarproperty -c -a host >/dev/null 2>&1 || true
  local n
  for n in $(seq 1 "$(nproc)"); do
    oarnodesetting -a -h localhost -p host=localhost -p cpu=1 -p core="$n" -p cpuset="$((n - 1))" >/dev/null
  done
  /usr/sbin/oar-server
  for _ in $(seq 100); do
    (echo > /dev/tcp/127.0.0.1/6666) 2>/dev/null && break
    sleep 0.1
  done
  oarnodes -s
  echo "oar: server up, submit as $OAR_USER"
}

stop() {
  oardel $(oarstat -J 2>/dev/null | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)))' 2>/dev/null) >/dev/null 2>&1 || true
  [ -f /var/run/oar-server.pid ] && kill "$(cat /var/run/oar-server.pid)" 2>/dev/null || true
  [ -f /run/oar-sshd.pid ] && kill "$(cat /run/oar-sshd.pid)" 2>/dev/null || true
  pkill -u "$OAR_USER" 2>/dev/null || true
  local ver
  ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$ver" ] && pg_ctlcluster "$ver" main stop -m fast 2>/dev/null || true
}

"${1:?usage: oar.sh install|start|stop}"
