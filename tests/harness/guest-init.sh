#!/bin/busybox sh
# /init of the test guest.  Mounts the data disk (vda, ext4) on /data and runs
# a write workload that the tests read back:
#   - a counter kept only in this shell's memory: "N <n>" on the console and
#     appended to /data/log each tick (memory restore shows it continue);
#   - file churn in /data/churn (create, overwrite, delete), and after each
#     change a manifest of every file's SHA-256 (/data/MANIFEST) replaced
#     atomically, so a crash-consistent copy of the disk can be checked:
#     every file matches the manifest except the one named in /data/PENDING.
# Kernel command line knobs: vmdr.tick=SECONDS (0.2), vmdr.churn=EVERY_N_TICKS (3).
/bin/busybox --install -s /bin
# qemu-ga's guest-set-time runs /sbin/hwclock (a resumed guest's clock is set)
mkdir -p /sbin && ln -s /bin/busybox /sbin/hwclock
export PATH=/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

tick=0.2; churn=3
for w in $(cat /proc/cmdline); do
  case "$w" in
    vmdr.tick=*) tick=${w#vmdr.tick=} ;;
    vmdr.churn=*) churn=${w#vmdr.churn=} ;;
  esac
done

for m in $(cat /lib/modules/order); do
  insmod /lib/modules/$m.ko 2>/dev/null || echo "insmod $m failed"
done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 -o rw /dev/vda /data || { echo "VMDR-GUEST MOUNT FAILED"; exec sh; }

# A disk copied mid-change (a crash-consistent snapshot, restored and booted)
# holds a file in doubt, named in PENDING.  Settle it before the agent can
# freeze anything: drop the file and its manifest line, then PENDING.  Else
# the first change below would name a second file in PENDING while the first
# still differs from the manifest, and a copy taken then would fail its check.
p=$(cat /data/PENDING 2>/dev/null)
if [ -n "$p" ]; then
  rm -f "/data/$p"; sync
  grep -v "  $p\$" /data/MANIFEST > /data/MANIFEST.tmp; sync
  mv /data/MANIFEST.tmp /data/MANIFEST
fi
rm -f /data/PENDING; sync

for p in /sys/class/virtio-ports/*; do      # no udev: find the agent's port by name
  if [ "$(cat $p/name 2>/dev/null)" = org.qemu.guest_agent.0 ]; then
    qemu-ga -m virtio-serial -p /dev/${p##*/} -t /run -f /run/qemu-ga.pid -l /run/qga.log &
    echo "VMDR-GUEST QGA /dev/${p##*/}"
  fi
done

manifest() {                                 # after the data is synced
  (cd /data && find seed churn -type f 2>/dev/null | sort | xargs -r sha256sum) > /data/MANIFEST.tmp
  sync
  mv /data/MANIFEST.tmp /data/MANIFEST
  rm -f /data/PENDING
  sync
}

mkdir -p /data/churn
echo "BOOT id=$RANDOM uptime=$(cut -d' ' -f1 /proc/uptime)" | tee -a /data/log
n=0
while true; do
  n=$((n+1))
  echo "N $n" >> /data/log
  if [ $((n % churn)) -eq 0 ]; then
    f=churn/f$((RANDOM % 16))
    echo "$f" > /data/PENDING; sync
    case $((RANDOM % 3)) in
      0) dd if=/dev/urandom of=/data/$f bs=1k count=$((RANDOM % 64 + 1)) 2>/dev/null ;;
      1) dd if=/dev/urandom of=/data/$f bs=1k count=4 seek=$((RANDOM % 32)) conv=notrunc 2>/dev/null ;;
      2) rm -f /data/$f ;;
    esac
    sync
    manifest
  fi
  echo "N $n"
  sleep $tick
done
