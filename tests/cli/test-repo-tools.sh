#!/bin/bash
# vmdr-init, vmdr-ls and vmdr-verify on a local repository: what a user sees,
# round trips of images through snapshots, damage found and named, and bad
# input refused with one clear line and nothing changed.
. "$(dirname "$0")/../harness/lib.sh"
need_cmd repo-image vmdr-init vmdr-ls vmdr-verify vmdr-snapshot python3
prom() { python3 "$HARNESS_DIR/promparse.py" "$@"; }

R=$T/repo
errline() {   # errline CMD...: stderr of a failing command, if exactly one line
  "$@" >"$T/out" 2>"$T/err" && return 1
  [ "$(wc -l < "$T/err")" = 1 ] && cat "$T/err"
}

# --- init
# A blob per chunk: the damage test below spoils exactly one chunk.
tap_ok "vmdr-init creates a repository" vmdr-init -q -r "$R" --group-size 0
tap_is "config names the format" "$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["format"], c["version"], c["chunk_size"])' "$R/config")" "vmdr-repository 2 65536"
tap_is "init twice is refused" "$(errline vmdr-init -r "$R")" "vmdr-init: '$R' is already a vmdr repository"
tap_ok "VMDR_REPO is honoured" env VMDR_REPO="$T/repo2" vmdr-init -q
tap_ok "--hash, --chunk-size, --compression-level" \
  vmdr-init -q -r "file://$T/repo3" --hash sha256 --chunk-size 1M --compression-level=-3
tap_is "options recorded" "$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["hash"], c["chunk_size"], c["compression"]["level"])' "$T/repo3/config")" "sha256 1048576 -3"
vmdr-init -q -r "$T/repo5"
tap_is "a new repository groups chunks in 8 MiB, at zstd 2" \
  "$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(c["group_size"], c["compression"]["level"])' "$T/repo5/config")" "8388608 2"
tap_is "--group-size 0: a blob per chunk, recorded" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["group_size"])' "$R/config")" 0
vmdr-init -r "$T/bad" --group-size 16M >/dev/null 2>"$T/err"; st=$?
tap_is "a group size above 8M: exit 2" "$st" 2
vmdr-init -r "$T/bad" --chunk-size 96K >/dev/null 2>"$T/err"; st=$?
tap_is "a chunk size that is not a power of two: exit 2" "$st" 2
tap_is "... and nothing created" "$(ls "$T/bad" 2>&1 | wc -l)" "1"
tap_is "a missing parent directory" "$(errline vmdr-init -r "$T/no/such")" \
  "vmdr-init: cannot create '$T/no/such': No such file or directory"

# --- not a repository, newer format
mkdir -p "$T/plain"
tap_is "ls on a plain directory" "$(errline vmdr-ls -r "$T/plain")" \
  "vmdr-ls: '$T/plain' is not a vmdr repository (no config; create one with vmdr-init)"
tap_is "ls on a missing path" "$(errline vmdr-ls -r "$T/missing")" \
  "vmdr-ls: cannot open repository '$T/missing': No such file or directory"
mkdir -p "$T/newer"; echo '{"format":"vmdr-repository","version":7}' > "$T/newer/config"
tap_ok "ls on a newer format says so" sh -c "vmdr-ls -r '$T/newer' 2>&1 | grep -q 'newer repository format'"
tap_is "unknown scheme" "$(errline vmdr-verify -r "ftp://x")" \
  "vmdr-verify: 'ftp://x': unknown repository type (use a path, file://PATH or s3://BUCKET[/PREFIX])"
env -u VMDR_REPO vmdr-ls >/dev/null 2>"$T/err"; st=$?
tap_is "no repository given: exit 2" "$st" 2

# --- images through snapshots
img() {  # img NAME SIZE [OFFSET:LEN:SEED]...: a sparse image with data regions
  local f=$T/$1; truncate -s "$2" "$f"; shift 2
  for r in "$@"; do
    IFS=: read -r off len seed <<< "$r"
    python3 -c "import random,sys; random.seed($seed); sys.stdout.buffer.write(bytes(random.getrandbits(8) if i%3 else i%251 for i in range($len)))" |
      dd of="$f" bs=4096 seek="$((off / 4096))" conv=notrunc status=none
  done
}
img a.raw 20M 0:300000:1 8388608:65536:2 20905984:65536:3
img b.raw 5000001 4096:100000:4
id1=$(repo-image put "$R" web1 vda="$T/a.raw" vdb="$T/b.raw") || tap_bail "put failed"
tap_ok "snapshot id has the domain and a UTC time" sh -c "echo '$id1' | grep -qE '^web1/[0-9]{8}T[0-9]{6}\.[0-9]{3}Z\$'"
for d in vda:a.raw vdb:b.raw; do
  repo-image get "$R" "$id1" "${d%%:*}" "$T/out-${d%%:*}.raw"
  tap_ok "restored ${d%%:*} equals the source (qemu-img compare)" \
    qemu-img compare -q -f raw -F raw "$T/${d#*:}" "$T/out-${d%%:*}.raw"
done
tap_ok "holes stay holes" test "$(du -k "$T/out-vda.raw" | cut -f1)" -lt 2048

# A second snapshot of a slightly changed image stores only the change.
printf 'changed' | dd of="$T/a.raw" bs=1 seek=100000 conv=notrunc status=none
before=$(du -sb "$R/data" | cut -f1)
id2=$(repo-image put "$R" web1 vda="$T/a.raw" vdb="$T/b.raw")
grew=$(( $(du -sb "$R/data" | cut -f1) - before ))
tap_ok "second snapshot stores about one chunk, not the image ($grew bytes)" test "$grew" -lt 200000
id3=$(repo-image put "$R" "db 2" vda="$T/b.raw")

# --- ls
ls_out=$(vmdr-ls -r "$R")
tap_is "ls lists three snapshots" "$(echo "$ls_out" | tail -n +2 | wc -l)" 3
tap_ok "ls shows kind, consistency, size and status" sh -c "echo '$ls_out' | grep '^web1/' | head -1 | grep -E 'full +crash +24\.8 MiB .* ok\$'"
tap_is "ls DOMAIN filters (names with spaces too)" "$(vmdr-ls -r "$R" 'db 2' | tail -n +2 | awk '{print $1, $2}')" "$id3"
tap_is "ls --json" "$(vmdr-ls -r "$R" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); s=[x for x in d["snapshots"] if x["id"]==sys.argv[1]][0]; print(len(d["snapshots"]), s["size"], s["damaged"], [x["target"] for x in s["disks"]])' "$id1")" \
  "3 25971521 False ['vda', 'vdb']"

# --- the Prometheus parser the metrics checks rely on must be able to fail
bad_prom() {   # bad_prom TEXT: promparse refuses it
  printf "$1" > "$T/bad.prom"
  ! prom "$T/bad.prom" 2>/dev/null
}
cat > "$T/good.prom" <<'PROM'
# HELP a Help with \\ and \n escapes
# TYPE a gauge
a{d="q\"\\\n"} 1.5e3
a{d="x",} -Inf 1700000000000
# a comment
PROM
tap_ok "promparse: a valid file passes" prom "$T/good.prom"
tap_is "promparse: label values unescaped" "$(prom "$T/good.prom" a 'd=q"\
')" 1500
while IFS='|' read -r why t; do
  tap_ok "promparse refuses $why" bad_prom "$t"
done <<'CASES'
a sample without TYPE|a 1\n
a last line without its line feed|# TYPE a gauge\na 1
a bad escape in a label value|# TYPE a gauge\na{d="x\\q"} 1\n
a series twice|# TYPE a gauge\na{d="1"} 1\na{d="1"} 2\n
an unterminated label value|# TYPE a gauge\na{d="1} 1\n
a bad value|# TYPE a gauge\na 1,5\n
a reserved label name|# TYPE a gauge\na{__d="1"} 1\n
a metric in two groups|# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{d="2"} 1\n
two TYPE lines|# TYPE a gauge\n# TYPE a gauge\na 1\n
a label twice|# TYPE a gauge\na{d="1",d="2"} 1\n
a bad metric name|# TYPE 1a gauge\n1a 1\n
CASES

# --- ls --metrics: per domain the newest snapshot (RPO), counts, damage; repository size
vmdr-ls -r "$R" --metrics > "$T/ls.prom"; st=$?
tap_ok "ls --metrics is valid Prometheus text" prom "$T/ls.prom"
tap_is "... exit 0, one series per domain" "$st $(prom --count "$T/ls.prom" vmdr_repository_snapshots)" "0 2"
tap_is "... snapshots per domain" \
  "$(prom "$T/ls.prom" vmdr_repository_snapshots domain=web1 "repo=$R") $(prom "$T/ls.prom" vmdr_repository_snapshots 'domain=db 2')" "2 1"
tap_is "... none damaged" "$(prom "$T/ls.prom" vmdr_repository_snapshots_damaged domain=web1)" 0
idtime() { python3 -c "import calendar,sys,time; t=sys.argv[1].rsplit('/',1)[1]; v=calendar.timegm(time.strptime(t[:15], '%Y%m%dT%H%M%S')) + int(t[16:19]) / 1000; print(int(v) if v == int(v) else v)" "$1"; }
tap_is "... the newest snapshot's time is in its id" \
  "$(prom "$T/ls.prom" vmdr_repository_newest_snapshot_timestamp_seconds domain=web1)" "$(idtime "$id2")"
age=$(prom "$T/ls.prom" vmdr_repository_newest_snapshot_age_seconds domain=web1)
tap_ok "... its age is >= 0 and recent ($age s)" python3 -c "import sys; sys.exit(not 0 <= $age < 600)"
tap_is "... the repository size is the sum of its objects" "$(prom "$T/ls.prom" vmdr_repository_size_bytes)" \
  "$(cd "$R" && find . -path ./tmp -prune -o -type f ! -name '.*' -printf '%s\n' | awk '{s += $1} END {print s}')"
vmdr-ls -r "$R" --metrics nosuch > "$T/ls1.prom"
tap_is "ls --metrics DOMAIN without snapshots: 0 snapshots, newest at 0" \
  "$(prom "$T/ls1.prom" vmdr_repository_snapshots domain=nosuch) $(prom "$T/ls1.prom" vmdr_repository_newest_snapshot_timestamp_seconds domain=nosuch) $(prom --count "$T/ls1.prom" vmdr_repository_snapshots)" "0 0 1"
vmdr-ls -r "$R" --metrics --json >/dev/null 2>&1; st=$?
tap_is "--metrics with --json: exit 2" "$st" 2
# A snapshot run that fails before its first domain (no libvirt needed):
# every domain's attempt is in the metrics, as failed.
vmdr-snapshot -r "$R" --scratch-dir "$T/nosuch" --metrics-file "$T/snap.prom" web1 'db 2' >/dev/null 2>&1; st=$?
tap_ok "vmdr-snapshot failing early writes valid metrics" prom "$T/snap.prom"
tap_is "... exit 1, last_result 1 for each domain, no success known" \
  "$st $(prom "$T/snap.prom" vmdr_snapshot_last_result domain=web1 "repo=$R") $(prom "$T/snap.prom" vmdr_snapshot_last_result 'domain=db 2') $(prom "$T/snap.prom" vmdr_snapshot_last_success_timestamp_seconds domain=web1)" \
  "1 1 1 0"
tap_is "latest selector" "$(repo-image get "$R" web1@latest vdb "$T/l.raw" && cmp "$T/l.raw" "$T/b.raw" && echo same)" same
tap_ok "an invalid domain is refused" sh -c "vmdr-ls -r '$R' 'a/b' 2>&1 | grep -q \"invalid domain name 'a/b'\""

# --- verify
tap_ok "verify: all intact" vmdr-verify -q -r "$R"
tap_is "verify --json" "$(vmdr-verify -r "$R" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["damaged"], len(d["snapshots"]), all(s["chunks_checked"] > 0 for s in d["snapshots"]))')" "0 3 True"
tap_ok "verify --sample 10 web1@latest" vmdr-verify -q -r "$R" --sample 10 web1@latest
M=$T/metrics/vmdr-verify.prom
mkdir -p "$T/metrics"
vmdr-verify -q -r "$R" --metrics-file "$M"; st=$?
tap_ok "verify --metrics-file writes valid Prometheus text" prom "$M"
tap_is "... exit 0, last_result 0, snapshots checked per domain, none damaged" \
  "$st $(prom "$M" vmdr_verify_last_result "repo=$R") $(prom "$M" vmdr_verify_snapshots_checked domain=web1) $(prom "$M" vmdr_verify_snapshots_checked 'domain=db 2') $(prom "$M" vmdr_verify_snapshots_damaged domain=web1)" \
  "0 0 2 1 0"
ok_at=$(prom "$M" vmdr_verify_last_success_timestamp_seconds)
tap_is "... a success is an attempt" "$(prom "$M" vmdr_verify_last_attempt_timestamp_seconds)" "$ok_at"
tap_ok "... when it ended (now)" python3 -c "import sys,time; sys.exit(not 0 <= time.time() - $ok_at < 60)"
tap_is "... and nothing else in the directory (no temporary file left)" "$(ls -A "$T/metrics")" vmdr-verify.prom
vmdr-verify -q -r "$R" --metrics-file "$T/no/such/m.prom" > /dev/null 2> "$T/err"; st=$?
tap_is "a metrics file that cannot be written: done with warnings (exit 3), one line" \
  "$st $(cat "$T/err")" "3 vmdr-verify: cannot write metrics '$T/no/such/m.prom': No such file or directory"
vmdr-verify -r "$R" --metrics-file '' > /dev/null 2>&1; st=$?
tap_is "an empty --metrics-file: exit 2" "$st" 2
# Damage a chunk that only the first snapshot of web1 has (the overwritten one).
python3 - "$R" <<'PY' || tap_bail "cannot find the chunk to damage"
import glob, os, sys
# The newest pack written before id2 holds the original first chunk: find the
# blob whose header says raw length 65536 at offset 0 of the oldest pack.
packs = sorted(glob.glob(sys.argv[1] + "/data/*/*"), key=os.path.getmtime)
with open(packs[0], "r+b") as f:
    f.seek(56 + 1000)          # inside the first blob's payload
    b = f.read(1); f.seek(56 + 1000); f.write(bytes([b[0] ^ 0xff]))
PY
vmdr-verify -r "$R" > "$T/v.out" 2> "$T/v.err"; st=$?
tap_is "verify finds damage: exit 1" "$st" 1
tap_ok "the damaged snapshot is named with disk, offset and chunk" \
  grep -qE "^web1/.*: DAMAGED: 1 chunk damaged; first: disk vd[ab] offset [0-9]+ chunk [0-9a-f]{64}: checksum mismatch" "$T/v.out"
tap_is "one summary line on stderr" "$(cat "$T/v.err")" "vmdr-verify: 1 of 3 snapshots damaged"
sleep 0.01
vmdr-verify -q -r "$R" --metrics-file "$M" > /dev/null 2>&1; st=$?
tap_ok "a failed verify writes its metrics too, valid" prom "$M"
tap_is "... last_result 1, one damaged snapshot of web1, none of db 2" \
  "$st $(prom "$M" vmdr_verify_last_result) $(prom "$M" vmdr_verify_snapshots_damaged domain=web1) $(prom "$M" vmdr_verify_snapshots_damaged 'domain=db 2')" "1 1 1 0"
tap_is "... the last success is still the earlier run's" "$(prom "$M" vmdr_verify_last_success_timestamp_seconds)" "$ok_at"
tap_ok "... the attempt is this one" python3 -c "import sys; sys.exit(not $(prom "$M" vmdr_verify_last_attempt_timestamp_seconds) > $ok_at)"
vmdr-ls -r "$R" --metrics > "$T/ls.prom"
tap_is "ls --metrics counts the damaged snapshot" \
  "$(prom "$T/ls.prom" vmdr_repository_snapshots_damaged domain=web1) $(prom "$T/ls.prom" vmdr_repository_snapshots_damaged 'domain=db 2')" "1 0"
tap_ok "ls marks it DAMAGED" sh -c "vmdr-ls -r '$R' | grep DAMAGED | grep -q '^web1/'"
tap_is "the other snapshots stay ok" "$(vmdr-ls -r "$R" | grep -c ' ok$')" 2
tap_fails "restoring the damaged disk fails" repo-image get "$R" "$(grep DAMAGED "$T/v.out" | cut -d: -f1)" vda "$T/bad.raw"
tap_is "... and leaves no partial output" "$(ls "$T/bad.raw" 2>&1 | grep -c 'No such')" 1
tap_is "verify of a missing snapshot" "$(errline vmdr-verify -r "$R" web1/20000101T000000.000Z)" \
  "vmdr-verify: no snapshot 'web1/20000101T000000.000Z'"
vmdr-verify -r "$R" 'not a selector' >/dev/null 2>&1; st=$?
tap_is "a malformed selector: exit 2" "$st" 2

# --- a damaged group blob: every chunk in it is refused, the others are not
G=$T/grouped
vmdr-init -q -r "$G"
cat /usr/bin/* 2>/dev/null | head -c $((10 << 20)) > "$T/g.raw"
gid=$(repo-image put "$G" grp vda="$T/g.raw") || tap_bail "put into the grouped repository"
tap_ok "a grouped snapshot verifies" vmdr-verify -q -r "$G"
tap_ok "... and restores equal" sh -c "repo-image get '$G' '$gid' vda '$T/g.out' && cmp '$T/g.raw' '$T/g.out'"
tap_is "its full packs hold group blobs (compression 2)" \
  "$(python3 -c 'import glob,sys; print(sorted(open(p,"rb").read(6)[5] for p in glob.glob(sys.argv[1]+"/data/*/*"))[-1])' "$G")" 2
python3 - "$G" <<'PY'
import glob, sys
p = max(glob.glob(sys.argv[1] + "/data/*/*"), key=lambda f: open(f, "rb").read(6)[5])
with open(p, "r+b") as f:
    f.seek(56 + 20000); b = f.read(1); f.seek(56 + 20000); f.write(bytes([b[0] ^ 0xff]))
PY
vmdr-verify -r "$G" > "$T/gv.out" 2>&1; st=$?
tap_is "verify finds the damaged group: exit 1" "$st" 1
tap_ok "... and names its chunks" grep -qE "^grp/.*: DAMAGED: [0-9]+ chunks? damaged; first: disk vda offset [0-9]+ chunk [0-9a-f]{64}" "$T/gv.out"
tap_fails "restoring it fails" repo-image get "$G" "$gid" vda "$T/g2.out"
tap_is "... and leaves no partial output" "$(ls "$T/g2.out" 2>&1 | grep -c 'No such')" 1

tap_done
