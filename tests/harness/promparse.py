#!/usr/bin/env python3
"""A strict parser of the Prometheus text exposition format, 0.0.4, as
node_exporter's textfile collector reads it
(https://prometheus.io/docs/instrumenting/exposition_formats/), for the tests
of --metrics-file and vmdr-ls --metrics.  Stricter than Prometheus where our
writer has no reason to differ (no blanks inside braces, no trailing blanks).

  promparse.py FILE|-                    check; exit 0, or 1 and "FILE:LINE: why"
  promparse.py FILE|- NAME [K=V...]      check, then print the value of the one
                                         series NAME whose labels include K=V...
  promparse.py --count FILE|- NAME [K=V...]   the number of such series

Checked: UTF-8, every line ended by a line feed; "# HELP NAME TEXT" (escapes
\\\\ and \\n only) and "# TYPE NAME TYPE" at most once per name and before
its samples; metric names [a-zA-Z_:][a-zA-Z0-9_:]*; label names
[a-zA-Z_][a-zA-Z0-9_]*, not "__...", not twice in a sample; label values
quoted, escapes \\\\ \\" \\n only; values as Go's ParseFloat takes them in the
format (decimal, NaN, +Inf, -Inf); an optional integer timestamp; every
sample under a TYPE; a metric's samples in one group; no series twice.
"""
import math
import re
import sys

METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
TIMESTAMP = re.compile(r"-?[0-9]+\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


class ParseError(Exception):
    pass


def unescape(s, allowed):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 == len(s) or s[i + 1] not in allowed:
                raise ParseError("bad escape %r" % s[i:i + 2])
            out.append("\n" if s[i + 1] == "n" else s[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_value(s):
    if s in ("NaN", "+Inf", "-Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not FLOAT.match(s):
        raise ParseError("bad value %r" % s)
    return float(s)


def parse_labels(s, i):
    """Labels from s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ParseError("bad label name at column %d" % (i + 1))
        name = m.group()
        if name.startswith("__"):
            raise ParseError("reserved label name %r" % name)
        if name in labels:
            raise ParseError("label %r twice" % name)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ParseError("expected '=\"' after label %r" % name)
        i += 2
        start = i
        while i < len(s) and s[i] != '"':
            i += 2 if s[i] == "\\" else 1
        if i >= len(s):
            raise ParseError("unterminated value of label %r" % name)
        labels[name] = unescape(s[start:i], '\\"n')
        i += 1
        if i < len(s) and s[i] == ",":
            i += 1
        elif i >= len(s) or s[i] != "}":
            raise ParseError("expected ',' or '}' after label %r" % name)


def family_of(name, types):
    if name in types:
        return name
    for fam, t in types.items():
        for suf in SUFFIXES.get(t, ()):
            if name == fam + suf:
                return fam
    return None


def parse(text):
    """[(name, labels, value)]; raises ParseError with a line number."""
    if text and not text.endswith("\n"):
        raise ParseError("%d: no line feed at the end of the file" % (text.count("\n") + 1))
    helps, types, seen, done, samples = set(), {}, set(), set(), []
    current = None
    for no, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        try:
            if "\r" in line:
                raise ParseError("carriage return")
            if line == "":
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[0] == "#" and parts[1] in ("HELP", "TYPE"):
                    kw, name = parts[1], parts[2]
                    if not METRIC.fullmatch(name):
                        raise ParseError("bad metric name %r" % name)
                    if name in done or name == current:
                        raise ParseError("%s of %s after its samples" % (kw, name))
                    if kw == "HELP":
                        if name in helps:
                            raise ParseError("second HELP of %s" % name)
                        helps.add(name)
                        unescape(parts[3] if len(parts) == 4 else "", "\\n")
                    else:
                        if name in types:
                            raise ParseError("second TYPE of %s" % name)
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise ParseError("bad TYPE line")
                        types[name] = parts[3]
                continue
            m = METRIC.match(line)
            if not m:
                raise ParseError("bad metric name")
            name, i = m.group(), m.end()
            labels = {}
            if i < len(line) and line[i] == "{":
                labels, i = parse_labels(line, i)
            rest = line[i:]
            if not rest.startswith((" ", "\t")) or rest != rest.rstrip(" \t"):
                raise ParseError("expected one value (and a timestamp) after the labels")
            fields = rest.split()
            if len(fields) not in (1, 2):
                raise ParseError("expected one value (and a timestamp) after the labels")
            value = parse_value(fields[0])
            if len(fields) == 2 and not TIMESTAMP.match(fields[1]):
                raise ParseError("bad timestamp %r" % fields[1])
            fam = family_of(name, types)
            if fam is None:
                raise ParseError("sample of %s without a TYPE" % name)
            if fam != current:
                if fam in done:
                    raise ParseError("samples of %s not in one group" % fam)
                if current is not None:
                    done.add(current)
                current = fam
            key = (name, tuple(sorted(labels.items())))
            if key in seen:
                raise ParseError("series %s%s twice" % (name, labels))
            seen.add(key)
            samples.append((name, labels, value))
        except ParseError as e:
            raise ParseError("%d: %s" % (no, e)) from None
    return samples


def show(v):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 2 ** 53:
        return str(int(v))
    return repr(v)


def main(argv):
    count = len(argv) > 1 and argv[1] == "--count"
    args = argv[2:] if count else argv[1:]
    if not args:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    path = args[0]
    try:
        data = sys.stdin.buffer.read() if path == "-" else open(path, "rb").read()
        samples = parse(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ParseError) as e:
        print("%s:%s" % (path, e) if isinstance(e, ParseError) else "%s: %s" % (path, e),
              file=sys.stderr)
        return 1
    if len(args) == 1:
        return 0
    want = dict(a.split("=", 1) for a in args[2:])
    hits = [v for n, l, v in samples
            if n == args[1] and all(l.get(k) == x for k, x in want.items())]
    if count:
        print(len(hits))
        return 0
    if len(hits) != 1:
        print("%s: %d series %s %s" % (path, len(hits), args[1], want), file=sys.stderr)
        return 1
    print(show(hits[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
