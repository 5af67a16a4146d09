#!/bin/bash
# guest-build.sh [CACHE_DIR] -- a tiny real Linux guest for the tests, built
# from Debian packages and cached: prints the directory holding
#   vmlinuz  initrd.gz  data.qcow2 (1 GiB ext4, seeded)  KERNEL_VERSION
# A second call returns the cached build at once; the cache key covers this
# script and the kernel package version, so a change to either rebuilds.
#
# The kernel comes from linux-image-amd64 (apt-get download + dpkg -x:
# nothing is installed on the host), the userland from busybox-static, the
# agent from qemu-guest-agent.  The init script is guest-init.sh beside this.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${1:-${VMDR_CACHE_DIR:-/var/cache/vmdr-test}}
log() { echo "guest-build: $*" >&2; }

kernel_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -1
}

KPKG=$(kernel_pkg)
if [ -z "$KPKG" ]; then
  log "no package lists yet: apt-get update"
  apt-get -q update >/dev/null
  KPKG=$(kernel_pkg)
fi
[ -n "$KPKG" ] || { log "cannot find the kernel package behind linux-image-amd64"; exit 1; }
KVER=${KPKG#linux-image-}
KPKGVER=$(apt-cache policy "$KPKG" | sed -n 's/^  Candidate: //p')
key=$(cat "$0" "$HERE/guest-init.sh" | sha256sum | cut -c1-16)-$KPKGVER
O=$CACHE/guest-$key
if [ -f "$O/.complete" ]; then echo "$O"; exit 0; fi

# Build in a temporary directory and rename it into place: a killed build
# never leaves a half guest in the cache.
mkdir -p "$CACHE"
W=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/dl" "$W/out"
pkgs="$KPKG busybox-static qemu-guest-agent"
(cd "$W/dl" && apt-get -q -o DPkg::Lock::Timeout=600 download $pkgs 2>&1 |
   grep -v 'Download is performed unsandboxed' >&2) || true
for p in $pkgs; do
  ls "$W/dl/${p}"_*.deb >/dev/null 2>&1 || { log "apt-get download $p failed"; exit 1; }
  dpkg -x "$W/dl/${p}"_*.deb "$W/x-$p"
done
K=$W/x-$KPKG
M=$K/lib/modules/$KVER/kernel
cp "$K/boot/vmlinuz-$KVER" "$W/out/vmlinuz"
echo "$KVER" > "$W/out/KERNEL_VERSION"

# --- initramfs: busybox, the modules in dependency order (the package has
# no modules.dep for us: the order comes from the modules' depends= fields),
# the guest agent with its libraries, and the init script.
R=$W/root
mkdir -p "$R"/{bin,dev,proc,sys,data,run,tmp,lib/modules,etc,usr/sbin}
mkdir -p "$R/var"; ln -s ../run "$R/var/run"
mknod -m 600 "$R/dev/console" c 5 1
cp "$W/x-busybox-static/bin/busybox" "$R/bin/busybox"
MODS="drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev
 drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci drivers/block/virtio_blk
 drivers/char/virtio_console lib/crc16 fs/mbcache crypto/crc32c_generic
 fs/jbd2/jbd2 fs/ext4/ext4"
: > "$R/lib/modules/order"
for m in $MODS; do
  cp "$M/$m.ko" "$R/lib/modules/"
  basename "$m" >> "$R/lib/modules/order"
done
cp "$W/x-qemu-guest-agent/usr/sbin/qemu-ga" "$R/usr/sbin/"
for l in $(ldd "$R/usr/sbin/qemu-ga" | grep -o '/[^ ]*'); do
  mkdir -p "$R$(dirname "$l")"; cp -L "$l" "$R$l"
done
cp "$HERE/guest-init.sh" "$R/init"; chmod 755 "$R/init"
BB=$W/x-busybox-static/bin/busybox
(cd "$R" && find . | LC_ALL=C sort | "$BB" cpio -o -H newc -R 0:0 2>/dev/null | gzip -1) > "$W/out/initrd.gz"

# --- data disk: 1 GiB ext4, seeded with files and their manifest.
S=$W/seed; mkdir -p "$S/seed"
for i in 1 2 3; do head -c $((i * 100000)) /dev/urandom > "$S/seed/file$i"; done
(cd "$S" && find seed -type f | LC_ALL=C sort | xargs sha256sum > MANIFEST)
truncate -s 1G "$W/data.raw"
mkfs.ext4 -q -F -L vmdrdata -d "$S" "$W/data.raw"
qemu-img convert -f raw -O qcow2 "$W/data.raw" "$W/out/data.qcow2"
rm -f "$W/data.raw"

touch "$W/out/.complete"
rm -rf "$O"; mv "$W/out" "$O"
log "built $O: $KPKG $KPKGVER, initrd $(du -h "$O/initrd.gz" | cut -f1)"
# Older builds are dead weight.
find "$CACHE" -maxdepth 1 -name 'guest-*' ! -name "guest-$key" -exec rm -rf {} +
echo "$O"
