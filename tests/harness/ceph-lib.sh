# shellcheck shell=bash
# Sourced by the ceph and s3 test scripts, after lib.sh:
#
#   . "$(dirname "$0")/../harness/lib.sh"
#   . "$(dirname "$0")/../harness/ceph-lib.sh"
#   use_ceph             # a running cluster; its env.sh is sourced, and
#                        # $CEPH_DIR names its directory (logs in $CEPH_DIR/log)
#
# use_ceph reuses the cluster in $VMDR_TEST_CEPH_DIR when that directory holds
# a live one (so that scripts/test starts one cluster for both suites);
# otherwise it starts a private cluster under $T and stops it at exit.
# Without the Ceph packages the whole test is skipped (exit 77).

CEPH_HARNESS=$HARNESS_DIR/ceph.sh

use_ceph() {
  need_cmd ceph ceph-mon ceph-osd radosgw radosgw-admin ceph-authtool monmaptool \
           rbd uuidgen curl python3 timeout
  local dir=${VMDR_TEST_CEPH_DIR:-}
  if [ -n "$dir" ] && "$CEPH_HARNESS" status "$dir" >/dev/null 2>&1; then
    diag "using the cluster in $dir"
  else
    [ -n "$dir" ] && diag "no live cluster in $dir: starting a private one"
    dir=$T/ceph
    at_exit "\"$CEPH_HARNESS\" stop \"$dir\" >/dev/null 2>&1"
    if ! "$CEPH_HARNESS" start "$dir" > "$T/ceph-start.log" 2>&1; then
      sed 's/^/# /' "$T/ceph-start.log"
      tap_bail "cannot start a Ceph cluster (log: $dir/log, kept with VMDR_TEST_KEEP=1)"
    fi
  fi
  CEPH_DIR=$dir    # for the tests
  export CEPH_DIR
  # shellcheck source=/dev/null
  . "$dir/env.sh"
}
