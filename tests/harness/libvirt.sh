#!/bin/bash
# A private libvirtd + QEMU in its own mount namespace, all state under DIR.
#
#   libvirt.sh up DIR      start it (idempotent: a live instance is reused); prints the URI
#   libvirt.sh down DIR    destroy its domains, stop it, kill leftovers, remove DIR
#   libvirt.sh stop DIR    stop libvirtd only: its QEMU guests keep running and
#                          its state stays in DIR (as a host's daemon restart
#                          or upgrade does)
#   libvirt.sh restart DIR stop libvirtd if it runs, start it again on the same
#                          state; prints the URI
#   libvirt.sh uri DIR     print the URI
#   libvirt.sh status DIR  exit 0 when it answers
#
# Two DIRs make two independent instances (the second plays the DR site).
# Needs root and libvirt-daemon-system qemu-system-x86 qemu-utils tini.
set -euo pipefail

cmd=${1:-}; H=${2:-}
[ -n "$cmd" ] && [ -n "$H" ] || { echo "usage: $0 up|down|stop|restart|uri|status DIR" >&2; exit 2; }
mkdir -p "$H"; H=$(cd "$H" && pwd)
URI="qemu:///system?socket=$H/sock/libvirt-sock"

log() { echo "libvirt-harness: $*" >&2; }
V() { timeout 60 virsh -q -c "$URI" "$@"; }
running() { ps -o stat= -p "$1" 2>/dev/null | grep -qv Z; }   # a zombie is dead
alive() { [ -f "$H/daemon.pid" ] && running "$(cat "$H/daemon.pid")"; }

write_config() {
  mkdir -p "$H"/{etc,run,lib,cache,log,sock,img}
  cat > "$H/etc/libvirtd.conf" <<CONF
unix_sock_dir = "$H/sock"
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$H/log/libvirtd.log"
CONF
  # stdio_handler=file: no virtlogd here.  No cgroups, no ownership games:
  # this is a throw-away root instance.
  cat > "$H/etc/qemu.conf" <<CONF
stdio_handler = "file"
user = "root"
group = "root"
cgroup_controllers = [ ]
remember_owner = 0
CONF
}

# Runs inside the new mount namespace: the daemon's system paths become $H.
write_inner() {
  cat > "$H/inner.sh" <<INNER
#!/bin/bash
set -e
echo \$\$ > "$H/daemon.pid"
mount --make-rprivate /
mount --bind "$H/etc" /etc/libvirt
mount -t tmpfs tmpfs /run
mkdir -p /run/libvirt
mount --bind "$H/run" /run/libvirt
mount --bind "$H/lib" /var/lib/libvirt
mount --bind "$H/cache" /var/cache/libvirt
mount --bind "$H/log" /var/log/libvirt
# tini -s reaps QEMU's children at once; PID 1 here is slow to.
exec tini -s -- /usr/sbin/libvirtd --config /etc/libvirt/libvirtd.conf --timeout 0 --pid-file "$H/libvirtd.pid"
INNER
  chmod +x "$H/inner.sh"
}

# Start the daemon on what $H holds and wait until it answers.
start() {
  rm -f "$H/daemon.pid"
  setsid unshare --mount "$H/inner.sh" >> "$H/daemon.out" 2>&1 < /dev/null &
  for _ in $(seq 1 300); do
    if V version >/dev/null 2>&1; then echo "$URI"; return 0; fi
    sleep 0.1
    [ -f "$H/daemon.pid" ] && ! alive && break
  done
  log "libvirtd in '$H' did not come up:"
  cat "$H/daemon.out" "$H/log/libvirtd.log" 2>/dev/null | tail -20 >&2
  down_quiet; return 1
}

up() {
  if alive && V version >/dev/null 2>&1; then echo "$URI"; return 0; fi
  down_quiet
  mkdir -p "$H"; write_config; write_inner
  start
}

# SIGTERM is libvirtd's orderly shutdown: it leaves its domains running and
# their state in run/ and lib/, which the next daemon reconnects to.  The
# QEMUs outlive tini and keep the old mount namespace, where the paths they
# use are bind mounts of the same directories under $H.
stop() {
  local p
  alive || return 0
  p=$(cat "$H/daemon.pid"); kill -TERM "$p"
  for _ in $(seq 1 300); do running "$p" || return 0; sleep 0.1; done
  log "libvirtd in '$H' did not stop"; return 1
}

restart() {
  [ -x "$H/inner.sh" ] || { log "no libvirt instance in '$H'"; return 1; }
  stop && start
}

# Kill a process if its command line still says what we started (pids recycle).
kill_ours() {
  local p=$1 pattern=$2
  [ -r "/proc/$p/cmdline" ] || return 0
  tr '\0' ' ' < "/proc/$p/cmdline" | grep -qE "$pattern" || return 0
  kill -KILL "$p" 2>/dev/null || true
}

down_quiet() {
  local p f d
  if alive; then
    for d in $(V list --all --name 2>/dev/null); do
      V destroy "$d" >/dev/null 2>&1 || true
      V undefine "$d" --checkpoints-metadata --snapshots-metadata >/dev/null 2>&1 || true
    done
    p=$(cat "$H/daemon.pid"); kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 100); do running "$p" || break; sleep 0.1; done
  fi
  # Leftovers of a killed instance: the daemon and the QEMUs it started.
  for f in "$H/daemon.pid" "$H/libvirtd.pid" "$H"/run/qemu/*.pid; do
    [ -f "$f" ] && kill_ours "$(cat "$f")" 'tini|libvirtd|qemu-system|inner.sh'
  done
  for p in $(pgrep -f "qemu-system.*$H/" 2>/dev/null); do kill_ours "$p" qemu-system; done
  rm -rf "$H"
}

case "$cmd" in
  up) up ;;
  down) down_quiet ;;
  stop) stop ;;
  restart) restart ;;
  uri) echo "$URI" ;;
  status) alive && V version >/dev/null 2>&1 ;;
  *) echo "usage: $0 up|down|stop|restart|uri|status DIR" >&2; exit 2 ;;
esac
