#!/usr/bin/env python3
"""Sum meson test results over builds: TAP tests count per subtest, other
tests per test.  Prints 'N passed, N failed, N skipped'; exit 1 on failure."""
import json
import re
import sys

def count(entry):
    passed = failed = skipped = 0
    out = entry.get("stdout") or entry.get("stdo") or ""
    tap = [l for l in out.splitlines() if re.match(r"(not )?ok\b", l)]
    if tap:
        for l in tap:
            if l.startswith("not ok"):
                failed += 1
            elif re.search(r"#\s*SKIP", l, re.I):
                skipped += 1
            else:
                passed += 1
    result = entry.get("result", "")
    if result in ("SKIP",) and not tap:
        skipped += 1
    elif result in ("OK", "EXPECTEDFAIL") and not tap:
        passed += 1
    elif result not in ("OK", "EXPECTEDFAIL", "SKIP") and failed == 0:
        failed += 1   # crashed, timed out or failed outside its subtests
    return passed, failed, skipped

def main(argv):
    leftover = None
    files = []
    it = iter(argv)
    for a in it:
        if a == "--leftover":
            leftover = next(it)
        else:
            files.append(a)
    p = f = s = 0
    for path in files:
        try:
            with open(path) as fh:
                for line in fh:
                    a, b, c = count(json.loads(line))
                    p, f, s = p + a, f + b, s + c
        except FileNotFoundError:
            print(f"count-results: no test log '{path}'", file=sys.stderr)
            f += 1
    if leftover:
        print("services left running after the tests:\n" + leftover, file=sys.stderr)
        f += 1
    print(f"{p} passed, {f} failed, {s} skipped")
    return 1 if f else 0

sys.exit(main(sys.argv[1:]))
