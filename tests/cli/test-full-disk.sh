#!/bin/bash
# A repository on a full or read-only file system: the write fails with a
# clear error, and nothing half-written becomes visible.  Runs in its own
# mount namespace (tmpfs mounts), so nothing is left mounted.
if [ "${VMDR_IN_NS:-}" != 1 ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
  VMDR_IN_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi
. "$(dirname "$0")/../harness/lib.sh"
[ "${VMDR_IN_NS:-}" = 1 ] || tap_skip_all "needs root and unshare (a private mount namespace)"
need_cmd mount repo-image vmdr-init vmdr-ls vmdr-verify vmdr-restore python3
M=$T/mnt
mkdir -p "$M"
mount -t tmpfs -o size=3m tmpfs "$M" || tap_skip_all "cannot mount tmpfs"
at_exit "umount -l '$M' 2>/dev/null"

R=$M/repo
tap_ok "init on a small file system" vmdr-init -q -r "$R"
python3 -c "import random,sys; random.seed(5); sys.stdout.buffer.write(random.randbytes(1 << 20))" > "$T/small"
python3 -c "import random,sys; random.seed(6); sys.stdout.buffer.write(random.randbytes(8 << 20))" > "$T/big"
id=$(repo-image put "$R" vm vda="$T/small") || tap_bail "first put"
repo-image put "$R" vm vda="$T/big" > /dev/null 2> "$T/err"; st=$?
tap_is "a write that does not fit fails" "$st" 1
tap_ok "... saying why" grep -q 'No space left on device' "$T/err"
tap_is "... and no partial snapshot is listed" "$(vmdr-ls -r "$R" | tail -n +2 | awk '{print $1}')" "$id"
tap_ok "the earlier snapshot verifies" vmdr-verify -q -r "$R"
repo-image get "$R" "$id" vda "$T/out"
tap_ok "and restores" cmp "$T/small" "$T/out"

mount -o remount,ro "$M"
repo-image put "$R" vm vda="$T/small" > /dev/null 2> "$T/err"; st=$?
tap_is "a read-only repository refuses writes" "$st" 1
tap_ok "... saying why" grep -q 'Read-only file system' "$T/err"
tap_ok "it can still be listed" vmdr-ls -r "$R"
tap_ok "and verified" vmdr-verify -q -r "$R"
vmdr-init -r "$M/new" > /dev/null 2> "$T/err"; st=$?
tap_is "init on a read-only file system: exit 1, one line" "$st $(wc -l < "$T/err")" "1 1"
tap_ok "... saying why" grep -q "^vmdr-init: cannot create '$M/new': Read-only file system" "$T/err"

# A restore into a file system too small for it: one line, nothing left.
R2=$T/repo2
O=$T/small-out
mkdir -p "$O"
mount -t tmpfs -o size=2m tmpfs "$O" || tap_bail "cannot mount tmpfs"
at_exit "umount -l '$O' 2>/dev/null"
vmdr-init -q -r "$R2"
repo-image put "$R2" vm vda="$T/big" > /dev/null || tap_bail "put to $R2"
for fmt in raw qcow2; do
  vmdr-restore -r "$R2" vm@latest -o "$O" --format $fmt > /dev/null 2> "$T/err"; st=$?
  tap_is "restore ($fmt) to a full file system: exit 1, one line" "$st $(wc -l < "$T/err")" "1 1"
  tap_ok "... saying why" grep -q "^vmdr-restore: cannot write '$O/vm-vda.$fmt': No space left on device" "$T/err"
  tap_is "... and nothing is left" "$(ls -A "$O")" ""
done

tap_done
