#!/usr/bin/env python3
"""Regenerates the fuzz seed corpora in tests/fuzz/corpus/ from the tables
the parser and configuration tests already hold, so the fuzzers start from
every row a human thought worth testing:

  metric         every string literal with a '|' in test_parse_metric.c
  event          every "_e{..." literal of test_parse_event.c
  service_check  every "_sc..." literal of test_parse_service_check.c
  stream         the metric rows as 4-byte little-endian length frames
                 (one frame per file, and all of them in one file)
  env            NAME=VALUE pairs: each "DD_..." literal of the
                 tests/*/test_config.c tables with the literal after it
  agg            each metric row alone, and all rows as one input, plus
                 the hostile cases of test_e2e_hostile.c in spirit

Adjacent literals are joined as C joins them; C escapes are decoded.
Files are named by the hash of their content: rerunning is idempotent.
Usage: scripts/fuzz-seeds.py (from anywhere).
"""
import hashlib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
LIT = re.compile(r'"((?:[^"\\\n]|\\.)*)"((?:\s*"(?:[^"\\\n]|\\.)*")*)')
ESC = {"n": 10, "r": 13, "t": 9, "\\": 92, '"': 34, "'": 39, "0": 0,
       "a": 7, "b": 8, "f": 12, "v": 11, "?": 63}


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = s[i + 1]
        if n == "x":
            m = re.match(r"[0-9a-fA-F]+", s[i + 2:])
            out.append(int(m.group(0), 16) & 0xFF)
            i += 2 + len(m.group(0))
        elif n in "01234567":
            m = re.match(r"[0-7]{1,3}", s[i + 1:])
            out.append(int(m.group(0), 8) & 0xFF)
            i += 1 + len(m.group(0))
        else:
            out.append(ESC.get(n, ord(n)))
            i += 2
    return bytes(out)


def literals(path):
    text = open(path, encoding="utf-8", errors="surrogateescape").read()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    out = []
    for m in LIT.finditer(text):
        parts = [m.group(1)] + re.findall(r'"((?:[^"\\\n]|\\.)*)"',
                                          m.group(2))
        raw = "".join(parts)
        out.append(unescape(raw.encode("utf-8", "surrogateescape")
                            .decode("latin-1")))
    return out


def write(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def frame(b):
    return len(b).to_bytes(4, "little") + b


def main():
    t = os.path.join(ROOT, "tests")
    metric = [l for l in literals(os.path.join(t, "dogstatsd",
                                               "test_parse_metric.c"))
              if b"|" in l and not l.startswith(b"row ")]
    event = [l for l in literals(os.path.join(t, "dogstatsd",
                                              "test_parse_event.c"))
             if l.startswith(b"_e")]
    sc = [l for l in literals(os.path.join(t, "dogstatsd",
                                           "test_parse_service_check.c"))
          if l.startswith(b"_sc")]
    env = []
    for comp in ("common", "dogstatsd", "aggregator", "forwarder",
                 "lifecycle"):
        p = os.path.join(t, comp, "test_config.c")
        if not os.path.exists(p):
            continue
        lits = literals(p)
        for i, l in enumerate(lits[:-1]):
            if re.fullmatch(rb"(DD|DRAINPIPE)_[A-Z0-9_]+", l):
                env.append(l + b"=" + lits[i + 1])
    if not (metric and event and sc and env):
        sys.exit("fuzz-seeds: a table came out empty")
    for l in metric:
        write("metric", l)
        write("stream", frame(l))
        write("agg", l)
    write("stream", b"".join(frame(l) for l in metric))
    write("stream", frame(b"x" * 65) + frame(b"a:1|c"))
    write("agg", b"\n".join(metric + event + sc))
    write("agg", b"k:1|c\nk:2|c\nk:1e308|c\nk:1e308|c\n")
    write("agg", b"h:0:1:2:3|h|@1e-16\nd:1e308|d\nd:1e308|d\n"
                 b"b\xff:1|c|#t\xc3(\n")
    for l in event:
        write("event", l)
        write("agg", l)
    for l in sc:
        write("service_check", l)
        write("agg", l)
    for l in env:
        write("env", l)
    write("env", b"\n".join(env))
    print("fuzz-seeds: metric %d, event %d, service_check %d, env %d"
          % (len(metric), len(event), len(sc), len(env)))


main()
