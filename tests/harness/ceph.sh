#!/bin/bash
# A throw-away single-node Ceph for the ceph and s3 test suites: one mon, one
# bluestore OSD on a sparse file, an RBD pool and radosgw with one S3 user.
# No systemd, no cephadm, no mgr (RBD and S3 do not need one); all state lives
# in DIR and every socket is on 127.0.0.1.
#
#   ceph.sh start DIR    stop whatever DIR still runs, start afresh, write DIR/env.sh
#   ceph.sh stop DIR     stop the daemons started from DIR (DIR itself is kept)
#   ceph.sh status DIR   exit 0 when mon, osd and radosgw of DIR are up and answer
#
# DIR/env.sh exports CEPH_CONF, CEPH_POOL, AWS_ENDPOINT_URL, AWS_REGION,
# AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (mode 0600: it holds the S3 secret).
# DIR/ports records the TCP ports, DIR/log/ the harness and daemon logs.
#
# The mon and radosgw ports are chosen at random among free ones, so a stray
# daemon on 3300/7480 or a second cluster does not get in the way; the OSD picks
# its own from Ceph's 6800-7300 range.  Keys are generated: S3 keys by
# radosgw-admin, so no secret ever appears on a command line.
#
# Knobs: CEPH_POOL (rbd), CEPH_HARNESS_TIMEOUT (30: seconds for any one CLI call).
set -euo pipefail

usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
cmd=${1:-}; D=${2:-}
[ -n "$cmd" ] && [ -n "$D" ] || usage
case "$cmd" in start|stop|status) ;; *) usage ;; esac
[ "$cmd" = start ] && mkdir -p "$D"
# stop also works on a DIR deleted under running daemons: see stop_strays
[ -d "$D" ] || [ "$cmd" = stop ] || { echo "$0: '$D' is not a directory" >&2; exit 1; }
D=$(realpath -m -- "$D")
case "$D" in *[[:space:]]*) echo "$0: '$D' contains white space" >&2; exit 1 ;; esac
# Unix socket paths are limited to 108 bytes: DIR/run/client.rgw.asok must fit.
[ ${#D} -le 80 ] || { echo "$0: '$D' is longer than 80 bytes" >&2; exit 1; }

POOL=${CEPH_POOL:-rbd}
CONF=$D/ceph.conf
LOG=$D/log/harness.log
TMO=${CEPH_HARNESS_TIMEOUT:-30}
T=(timeout "$TMO")          # a dead mon must hang no CLI call forever
DAEMONS_DOWN_ORDER=(client.rgw osd.0 mon.a)   # rgw hangs in shutdown without its OSD

log() {
  local line; line="[ceph.sh $(date +%T.%3N)] $*"
  echo "$line" >&2
  [ -d "$D/log" ] && echo "$line" >> "$LOG"
  return 0
}
die() {
  log "error: $*"
  [ -d "$D/log" ] && tail -n 15 "$LOG" "$D"/log/*.0.log "$D"/log/mon.a.log \
    "$D"/log/client.rgw.log 2>/dev/null | sed 's/^/  /' >&2
  exit 1
}
# run CMD... with its output in the log, bounded by timeout
run() { "${T[@]}" "$@" < /dev/null >> "$LOG" 2>&1; }

# --- processes --------------------------------------------------------------

# pid_of NAME: the pid from DIR/run/NAME.pid if that process is alive, is not
# a zombie and was started with this DIR's ceph.conf (pids get reused).
pid_of() {
  local f=$D/run/$1.pid p
  [ -f "$f" ] || return 1
  p=$(cat "$f" 2>/dev/null) || return 1
  [[ $p =~ ^[0-9]+$ ]] || return 1
  grep -qs '^State:[[:space:]]*[^Z[:space:]]' "/proc/$p/status" || return 1
  tr '\0' '\n' < "/proc/$p/cmdline" 2>/dev/null | grep -qxF -- "$CONF" || return 1
  echo "$p"
}

gone() { ! grep -qs '^State:[[:space:]]*[^Z[:space:]]' "/proc/$1/status"; }

# kill_wait NAME PID: SIGTERM, wait up to 10 s, then SIGKILL and wait again.
# PID 1 here reaps orphans slowly, so a zombie counts as gone.
kill_wait() {
  local name=$1 p=$2 i
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do gone "$p" && break; sleep 0.1; done
  if ! gone "$p"; then
    log "$name (pid $p) ignored SIGTERM for 10 s: SIGKILL"
    kill -KILL "$p" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do gone "$p" && break; sleep 0.1; done
    gone "$p" || die "$name (pid $p) survived SIGKILL"
  fi
  log "stopped $name (pid $p)"
  STOPPED+=("$p")
}

stop_one() {   # stop_one NAME: the daemon its pid file names
  local p
  if p=$(pid_of "$1"); then kill_wait "$1" "$p"; fi
  rm -f "$D/run/$1.pid"
}

# Daemons of this DIR without a pid file: the file was lost, or DIR was
# deleted under them.  Ours are those with DIR/ceph.conf in their argv.
stop_strays() {
  local want comm d p
  for want in radosgw ceph-osd ceph-mon; do          # the stop order again
    for d in /proc/[0-9]*; do
      comm=
      read -r comm < "$d/comm" 2>/dev/null || continue   # a builtin: no fork per process
      [ "$comm" = "$want" ] || continue
      p=${d#/proc/}
      tr '\0' '\n' < "$d/cmdline" 2>/dev/null | grep -qxF -- "$CONF" || continue
      gone "$p" || kill_wait "$want (no pid file)" "$p"
    done
  done
}

do_stop() {
  local n p i
  STOPPED=()
  if [ -d "$D/run" ]; then
    for n in "${DAEMONS_DOWN_ORDER[@]}"; do stop_one "$n"; done
  fi
  stop_strays
  rm -f "$D/env.sh"
  # Dead but unreaped daemons still show in ps; PID 1 may take a second or two
  # to reap them, and callers check ps to prove nothing is left.
  for p in "${STOPPED[@]}"; do
    for ((i = 0; i < 50; i++)); do [ -e "/proc/$p" ] || break; sleep 0.1; done
  done
}

do_status() {
  local n p rc=0 port
  for n in mon.a osd.0 client.rgw; do
    if p=$(pid_of "$n"); then echo "$n running (pid $p)"
    else echo "$n not running"; rc=1; fi
  done
  [ $rc = 0 ] && [ -f "$D/env.sh" ] || return 1
  port=$(awk '$1 == "rgw" { print $2 }' "$D/ports")
  CEPH_CONF=$CONF timeout 10 ceph health >/dev/null 2>&1 || { echo "mon not answering"; return 1; }
  [ "$(rgw_http_code "$port")" = 200 ] || { echo "radosgw not answering"; return 1; }
  echo "cluster in $D is up"
}

# --- ports ------------------------------------------------------------------

# TCP ports something listens on, from /proc (ss may be missing).
listening_ports() {
  local addr state
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
    while read -r _ addr _ state _; do      # state 0A is LISTEN
      if [ "$state" = 0A ]; then echo $((16#${addr##*:})); fi
    done
  return 0
}

# pick_port EXCLUDED...: a random port below the ephemeral range (32768) with
# no listener.  Racy by nature: if another process binds it before our daemon
# does, start_once fails with EX_PORT_TAKEN and do_start tries again.
pick_port() {
  local busy p i
  busy=" $(listening_ports | tr '\n' ' ') $* "
  for ((i = 0; i < 500; i++)); do
    p=$((20000 + RANDOM % 12000))
    [[ $busy == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    echo "$p"; return 0
  done
  return 1
}

# port_taken NAME: did daemon NAME fail because its port was taken after
# pick_port chose it?
port_taken() { grep -qs 'Address already in use' "$D/log/$1.log"; }
EX_PORT_TAKEN=75

rgw_http_code() {
  curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null || true
}

# --- start ------------------------------------------------------------------

write_conf() {   # write_conf FSID MON_PORT RGW_PORT
  cat > "$CONF" <<EOF
[global]
fsid = $1
mon host = v2:127.0.0.1:$2
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.1/32
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
crash dir = $D/crash
mon data = $D/mon/\$name
osd data = $D/osd/\$name
client mount timeout = 30
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
mon warn on insecure global id reclaim allowed = false
# without these two, every map change waits a second: 21 s to start, not 7
paxos propose interval = 0.1
paxos min wait = 0.01
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mkfs = false
bluestore block db create = false
bluestore block wal create = false
osd memory target = 1073741824
[mon]
# a port taken after we chose it: fail in 2 s, not 10, and start again
ms bind retry count = 2
ms bind retry delay = 1
[client]
# test programs run concurrently as client.admin: one socket name cannot serve
# them all, and they need none
admin socket =
[client.rgw]
admin socket = $D/run/\$name.asok
rgw data = $D/rgw
# tcp_nodelay: without it each response with a body waits for the client's
# delayed ACK of its headers, 40 ms (Nagle's algorithm), as no S3 service does
rgw frontends = beast endpoint=127.0.0.1:$3 tcp_nodelay=1
# Host: BUCKET.localhost means virtual-host style; curl maps *.localhost to
# loopback itself, so no resolver change is needed
rgw dns name = localhost
EOF
  # Benchmarks count requests and bytes per bucket (radosgw-admin usage
  # show): a usage log flushed every second (not per request, which would
  # cost the tool that makes more requests more).  The tests need none.
  [ -z "${VMDR_CEPH_RGW_USAGE:-}" ] || cat >> "$CONF" <<EOF
rgw enable usage log = true
rgw usage log tick interval = 1
rgw usage log flush threshold = 1024
EOF
}

make_keyring() {
  local K=$D/keyring A=(ceph-authtool "$D/keyring" --gen-key)
  run ceph-authtool --create-keyring "$K" --gen-key -n mon. --cap mon 'allow *'
  run "${A[@]}" -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *'
  run "${A[@]}" -n osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' --cap osd 'allow *'
  run "${A[@]}" -n client.rgw --cap mon 'allow rw' --cap osd 'allow rwx' --cap mgr 'allow rw'
  chmod 600 "$K"
}

start_mon() {   # start_mon FSID PORT
  log "mon.a on 127.0.0.1:$2"
  run monmaptool --create --fsid "$1" --addv a "[v2:127.0.0.1:$2]" "$D/monmap" || die "monmaptool"
  run ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring" || die "ceph-mon --mkfs"
  if ! run ceph-mon -c "$CONF" -i a; then
    port_taken mon.a && exit "$EX_PORT_TAKEN"
    die "ceph-mon did not start"
  fi
  run ceph health || die "mon not answering"
}

# Ceph's own packages build ceph-osd and radosgw with tcmalloc, the allocator
# Ceph is tuned for; Debian's use glibc's malloc.  There each 4 MiB message
# buffer the OSD receives is fresh memory, faulted in page by page: that
# cost the OSD three times the CPU per byte written here (3.8 CPU-s instead
# of 1.2 for 680 MB), CPU that the tools under test share on a small
# machine.  Preloaded when installed (radosgw's package pulls it in).
PRELOAD=()
for f in /usr/lib/*/libtcmalloc.so.4; do
  [ -e "$f" ] && PRELOAD=(env "LD_PRELOAD=$f")
  break
done

start_osd() {
  local uuid id i
  log "osd.0 (bluestore on a sparse file)"
  uuid=$(uuidgen)
  id=$("${T[@]}" ceph osd new "$uuid" 2>>"$LOG") || die "ceph osd new"
  [ "$id" = 0 ] || die "ceph osd new gave id '$id', want 0"
  run ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" || die "ceph-osd --mkfs"
  run "${PRELOAD[@]}" ceph-osd -c "$CONF" -i 0 || die "ceph-osd did not start"
  for ((i = 0; i < 300; i++)); do
    "${T[@]}" ceph osd stat -f json 2>>"$LOG" | grep -q '"num_up_osds":1' && return 0
    pid_of osd.0 >/dev/null || die "osd.0 died while starting"
    sleep 0.1
  done
  die "osd.0 not up after 30 s"
}

start_rgw() {   # start_rgw PORT
  local i
  log "radosgw on 127.0.0.1:$1"
  run "${PRELOAD[@]}" radosgw -c "$CONF" -n client.rgw || true
  for ((i = 0; i < 600; i++)); do
    [ "$(rgw_http_code "$1")" = 200 ] && return 0
    if ! pid_of client.rgw >/dev/null; then
      port_taken client.rgw && exit "$EX_PORT_TAKEN"
      die "radosgw did not start"
    fi
    sleep 0.1
  done
  die "radosgw not answering on port $1 after 60 s"
}

# make_s3_user: let radosgw-admin generate the keys (a secret given to it would
# sit in argv) and take them from its JSON answer.
make_s3_user() {
  local json
  json=$("${T[@]}" radosgw-admin -c "$CONF" user create --uid=vmdr-test \
           --display-name=vmdr-test 2>>"$LOG") || die "radosgw-admin user create"
  S3_KEYS=$(printf '%s' "$json" | python3 -c '
import json, sys
k = json.load(sys.stdin)["keys"][0]
print(k["access_key"]); print(k["secret_key"])') || die "cannot parse radosgw-admin output"
}

write_env() {   # write_env MON_PORT RGW_PORT
  local ak sk
  { read -r ak; read -r sk; } <<< "$S3_KEYS"
  printf 'mon %s\nrgw %s\n' "$1" "$2" > "$D/ports"
  (
    umask 077
    cat > "$D/env.sh.tmp" <<EOF
# written by ceph.sh start $D
export CEPH_CONF=$CONF
export CEPH_POOL=$POOL
export CEPH_MON_PORT=$1
export AWS_ENDPOINT_URL=http://127.0.0.1:$2
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=$ak
export AWS_SECRET_ACCESS_KEY=$sk
# settings that would send the tests elsewhere
unset AWS_ENDPOINT_URL_S3 AWS_DEFAULT_REGION AWS_SESSION_TOKEN AWS_PROFILE VMDR_S3_ADDRESSING_STYLE
EOF
  )
  mv "$D/env.sh.tmp" "$D/env.sh"
}

# One try at a cluster, in a subshell (die ends only the try): exit status
# EX_PORT_TAKEN when a port was taken by someone else meanwhile.
start_once() {
  local fsid mon_port rgw_port
  rm -rf "$D"/{ceph.conf,keyring,monmap,mon,osd,rgw,run,crash,env.sh,env.sh.tmp,ports}
  mkdir -p "$D"/{mon,osd/osd.0,rgw,run,log,crash}
  fsid=$(uuidgen)
  mon_port=$(pick_port) || die "no free port for the mon"
  rgw_port=$(pick_port "$mon_port") || die "no free port for radosgw"
  write_conf "$fsid" "$mon_port" "$rgw_port"
  make_keyring
  start_mon "$fsid" "$mon_port"
  start_osd
  log "pool $POOL"
  run ceph osd pool create "$POOL" 8 8 || die "ceph osd pool create $POOL"
  run rbd pool init "$POOL" || die "rbd pool init $POOL"
  start_rgw "$rgw_port"
  make_s3_user
  write_env "$mon_port" "$rgw_port"
}

do_start() {
  local t0=$SECONDS need try rc f
  for need in ceph ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool \
              rbd uuidgen curl python3; do
    command -v "$need" >/dev/null || { echo "$0: needs $need" >&2; exit 1; }
  done
  do_stop
  rm -rf "$D/log"
  export CEPH_CONF=$CONF
  for ((try = 1; ; try++)); do
    # not "( ... ) || rc=$?": set -e would be off inside
    set +e; ( set -e; start_once ); rc=$?; set -e
    [ "$rc" = 0 ] && break
    [ "$rc" = "$EX_PORT_TAKEN" ] && [ "$try" -lt 3 ] || exit "$rc"
    log "a port was taken meanwhile: starting again on other ports"
    do_stop
    for f in "$D"/log/*.log; do [ "$f" = "$LOG" ] || mv "$f" "$f.try$try"; done
  done
  log "ready in $((SECONDS - t0)) s: mon on port $(awk '$1 == "mon" { print $2 }' "$D/ports"),\
 radosgw on $(awk '$1 == "rgw" { print $2 }' "$D/ports"), env in $D/env.sh"
}

case "$cmd" in
  start)
    # a half-started cluster is worse than none
    trap 'rc=$?; if [ $rc != 0 ]; then do_stop || true; fi; exit $rc' EXIT
    do_start ;;
  stop)   do_stop ;;
  status) do_status ;;
esac
