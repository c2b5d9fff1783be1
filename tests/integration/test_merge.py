#!/usr/bin/env python3
"""Integration tests of coecho-load's results you can trust and merge: the
--hgrm file (HdrHistogram percentile text) read back by a reader written
here, the requested and achieved rate of -r (exit 3 when missed), the full
histogram in --json, and --merge of several runs' JSON files.

    test_merge.py              run every test
    test_merge.py NAME...      run only the named tests
    test_merge.py --list       list the test names

Environment and exit status as tests/integration/test_load.py, whose
helpers (the client runner, the JSON contract check, the daemon) it uses.
Python 3 standard library only.
"""

import json
import os
import re
import sys

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, SCRIPT_DIR)
import harness  # noqa: E402
from harness import TestFailure, check  # noqa: E402
import test_load as tl  # noqa: E402

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def daemon_target(ctx):
    _, found = tl.start_daemon(ctx)
    return "127.0.0.1:%d" % found[0][1]


HGRM_ROW = re.compile(r"^ *(\d+\.\d{3}) (\d\.\d{12}) +(\d+)(?: +(\d+\.\d{2}))?$")
HGRM_FOOTER = (
    re.compile(r"^#\[Mean    = +(\d+\.\d{3}), StdDeviation   = +(\d+\.\d{3})\]$"),
    re.compile(r"^#\[Max     = +(\d+\.\d{3}), Total count    = +(\d+)\]$"),
    re.compile(r"^#\[Buckets = +(\d+), SubBuckets     = +(\d+)\]$"))


def read_hgrm(path):
    """HdrHistogram's percentile text, line by line: the rows as (value,
    percentile, count), and the footer's max and total count."""
    with open(path) as f:
        lines = f.read().split("\n")
    check(lines[0] == "       Value     Percentile TotalCount 1/(1-Percentile)",
          "header %r" % lines[0])
    check(lines[1] == "", "no blank line after the header: %r" % lines[1])
    check(lines[-1] == "", "no newline at the end")
    body, footer = lines[2:-4], lines[-4:-1]
    rows = []
    for n, line in enumerate(body, 3):
        m = HGRM_ROW.match(line)
        check(m, "line %d is no row: %r" % (n, line))
        value, p, count = float(m.group(1)), float(m.group(2)), int(m.group(3))
        last = n == len(body) + 2
        check((m.group(4) is None) == last,
              "line %d: only the last (100%%) row lacks 1/(1-p): %r" % (n, line))
        if not last:
            check(abs(float(m.group(4)) - 1 / (1 - p)) <= 0.01 * 1 / (1 - p),
                  "line %d: 1/(1-p) wrong: %r" % (n, line))
        rows.append((value, p, count))
    check(rows and rows[-1][1] == 1.0, "the last row is not at percentile 1: %r" % rows[-1:])
    for a, b in zip(rows, rows[1:]):
        check(a[0] <= b[0] and a[1] < b[1] and a[2] <= b[2],
              "rows not increasing: %r then %r" % (a, b))
    found = [rx.match(l) for rx, l in zip(HGRM_FOOTER, footer)]
    check(all(found), "footer %r" % footer)
    return rows, float(found[1].group(1)), int(found[1].group(2))


@test
def hgrm_file_reads_back(ctx):
    """--hgrm: HdrHistogram's layout; the final count and the footer's
    total are the JSON messages, its max the JSON max (within 1 us)."""
    target = daemon_target(ctx)
    path = os.path.join(ctx.dir, "lat.hgrm")
    r = tl.run_load(ctx, ["-c", "4", "-d", "1s", "--json", "--hgrm", path, target], 20)
    obj = tl.parse_json(r)
    tl.expect_clean(r, obj)
    rows, max_ms, total = read_hgrm(path)
    check(rows[-1][2] == obj["messages"] == total,
          "final count %d, footer total %d, JSON messages %d" % (rows[-1][2], total,
                                                                 obj["messages"]))
    check(abs(max_ms * 1000 - obj["latency_us"]["max"]) <= 1.0,
          "footer max %.3f ms, JSON max %.1f us" % (max_ms, obj["latency_us"]["max"]))
    check(obj["histogram"]["total"] == obj["messages"], "histogram.total %r"
          % obj["histogram"]["total"])


@test
def rate_far_beyond_reach_exits_3(ctx):
    """-c 1 -r 5000000 for 1 s cannot be achieved: exit 3 and a warning."""
    target = daemon_target(ctx)
    r = tl.run_load(ctx, ["-c", "1", "-r", "5000000", "-d", "1s", "--json", target], 20)
    obj = tl.parse_json(r)
    check(r.rc == 3, "expected exit 3: %s" % r.summary())
    check("below the requested" in r.stderr, "no warning: %s" % r.summary())
    rate = obj["rate"]
    check(rate["requested"] == 5000000 and rate["missed_pct"] > 5, "rate %r" % rate)


@test
def modest_rate_is_met(ctx):
    """-c 4 -r 200 for 2 s: exit 0, the rate line and the rate member."""
    target = daemon_target(ctx)
    r = tl.run_load(ctx, ["-c", "4", "-r", "200", "-d", "2s", target], 20)
    check(r.rc == 0, "expected exit 0: %s" % r.summary())
    check(re.search(r"^rate +requested 200\.0/s, achieved \d+\.\d/s \([-+]\d+\.\d%\)$",
                    r.stdout, re.M), "no rate line: %s" % r.summary())


def percentile_from_buckets(buckets, p):
    """hist_percentile's rank over merged [index, count] pairs: the index."""
    counts = {}
    for i, c in buckets:
        counts[i] = counts.get(i, 0) + c
    total = sum(counts.values())
    rank = max(1, int(p / 100.0 * total + 0.5))
    seen = 0
    for i in sorted(counts):
        seen += counts[i]
        if seen >= rank:
            return i
    raise TestFailure("empty histogram")


def bucket_value_us(i):
    if i < 128:
        return i / 1e3
    e = i // 128 + 6
    width = 1 << (e - 7)
    return ((128 + i % 128) * width + width // 2) / 1e3


@test
def merge_two_runs(ctx):
    """Two runs' --json merged: counts and rates add, p99 is the p99 of
    both runs' buckets together."""
    target = daemon_target(ctx)
    files, objs = [], []
    for n in (2, 3):
        r = tl.run_load(ctx, ["-c", n, "-d", "1s", "--json", target], 20)
        objs.append(tl.parse_json(r))
        files.append(os.path.join(ctx.dir, "run%d.json" % n))
        with open(files[-1], "w") as f:
            f.write("a log line first\n" + r.stdout)
    r = tl.run_load(ctx, ["--merge", "--json"] + files, 20)
    m = tl.parse_json(r)
    tl.expect_clean(r, m)
    for key in ("messages", "connections", "bytes_in", "mismatches"):
        check(m[key] == sum(o[key] for o in objs), "%s %r" % (key, m[key]))
    for key in tl.ERROR_KEYS:
        check(m["errors"][key] == sum(o["errors"][key] for o in objs), "errors.%s" % key)
    check(abs(m["msgs_per_sec"] - sum(o["msgs_per_sec"] for o in objs)) < 0.01,
          "msgs_per_sec %r" % m["msgs_per_sec"])
    check(m["duration_s"] == max(o["duration_s"] for o in objs), "duration_s")
    both = objs[0]["histogram"]["buckets"] + objs[1]["histogram"]["buckets"]
    want = min(bucket_value_us(percentile_from_buckets(both, 99)),
               max(o["histogram"]["max"] for o in objs) / 1e3)
    check(abs(m["latency_us"]["p99"] - want) <= 0.05,
          "merged p99 %r, from both runs' buckets %.1f" % (m["latency_us"]["p99"], want))


@test
def merge_of_a_malformed_file(ctx):
    """A broken file: exit 2, FILE:LINE:COLUMN and what is wrong; a file
    without a required member names it."""
    bad = os.path.join(ctx.dir, "bad.json")
    with open(bad, "w") as f:
        f.write('{"messages":1,\n "errors":{,}}\n')
    r = tl.run_load(ctx, ["--merge", bad], 10)
    check(r.rc == 2, "expected exit 2: %s" % r.summary())
    check("%s:2:12: expected a member name in quotes" % bad in r.stderr, r.summary())
    short = os.path.join(ctx.dir, "short.json")
    with open(short, "w") as f:
        f.write('{"connections":1}\n')
    r = tl.run_load(ctx, ["--merge", short], 10)
    check(r.rc == 2 and '%s: no member "connections_failed"' % short in r.stderr,
          r.summary())


def run_to_file(ctx, target, name, args):
    """One --json run against target, its stdout in ctx.dir/NAME.json."""
    r = tl.run_load(ctx, ["-d", "1s", "--json"] + args + [target], 20)
    obj = tl.parse_json(r)
    tl.expect_clean(r, obj)
    path = os.path.join(ctx.dir, name + ".json")
    with open(path, "w") as f:
        f.write(r.stdout)
    return path, obj


def merge_json(ctx, files):
    r = tl.run_load(ctx, ["--merge", "--json"] + files, 20)
    m = tl.parse_json(r)
    tl.expect_clean(r, m)
    return m


def keyed(obj, member, key):
    return {e[key]: (e["connections"], e["failed"], e["errors"]) for e in obj[member]}


def summed(objs, member, key):
    total = {}
    for o in objs:
        for name, c in keyed(o, member, key).items():
            total[name] = tuple(a + b for a, b in zip(total.get(name, (0, 0, 0)), c))
    return total


@test
def merge_sources_and_threads(ctx):
    """Two -t 2 runs with --source 127.0.0.2,127.0.0.3 and
    127.0.0.3,127.0.0.4: per_source has 3 entries (127.0.0.3's summed),
    per_target sums, threads lists all 4; the text shows them as a run's
    does. A merge of that merge with a third run equals the three merged
    at once."""
    target = daemon_target(ctx)
    a, oa = run_to_file(ctx, target, "a", ["-c", 4, "-t", 2, "--source", "127.0.0.2,127.0.0.3"])
    b, ob = run_to_file(ctx, target, "b", ["-c", 4, "-t", 2, "--source", "127.0.0.3,127.0.0.4"])
    m = merge_json(ctx, [a, b])
    want = summed([oa, ob], "per_source", "source")
    check(len(want) == 3 and keyed(m, "per_source", "source") == want,
          "per_source %r, expected %r" % (m["per_source"], want))
    check([e["source"] for e in m["per_source"]] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"],
          "per_source not in first-seen order: %r" % m["per_source"])
    check(keyed(m, "per_target", "target") == summed([oa, ob], "per_target", "target"),
          "per_target %r" % m["per_target"])
    check(m["threads"] == oa["threads"] + ob["threads"] and len(m["threads"]) == 4,
          "threads %r" % m["threads"])
    check(m["params"] == oa["params"] and m["version"] == oa["version"]
          and m["start_time"] == min(oa["start_time"], ob["start_time"]),
          "params/version/start_time %r" % [m.get(k) for k in ("params", "version",
                                                               "start_time")])
    r = tl.run_load(ctx, ["--merge", a, b], 20)
    check(r.rc == 0 and re.search(r"^sources +127\.0\.0\.3 +\d+ up", r.stdout, re.M)
          and re.search(r"^threads +4: messages ", r.stdout, re.M), r.summary())
    ab = os.path.join(ctx.dir, "ab.json")
    with open(ab, "w") as f:
        json.dump(m, f)
    c, _ = run_to_file(ctx, target, "c", ["-c", 2])
    once, twice = merge_json(ctx, [a, b, c]), merge_json(ctx, [ab, c])
    for key in ("runs", "messages", "per_source", "per_target", "threads"):
        check(once[key] == twice[key], "%s: %r at once, %r in two steps"
              % (key, once[key], twice[key]))
    check(once["latency_us"]["p99"] == twice["latency_us"]["p99"],
          "p99 %r at once, %r in two steps" % (once["latency_us"], twice["latency_us"]))


@test
def merge_of_a_malformed_per_source(ctx):
    """A per_source entry whose count is a string: exit 2, naming the file
    and the member."""
    bad = os.path.join(ctx.dir, "bad_source.json")
    hist = '{"unit":"ns","sub_bucket_bits":7,"total":1,"max":5,"sum":5,"buckets":[[5,1]]}'
    with open(bad, "w") as f:
        f.write('{"connections":1,"connections_failed":0,"messages":1,"bytes_out":1,'
                '"bytes_in":1,"mismatches":0,"duration_s":1,"msgs_per_sec":1,'
                '"mib_per_sec":0,"mib_per_sec_out":0,"mib_per_sec_in":0,"errors":{%s},'
                '"per_target":[{"target":"t:1","connections":1,"failed":0,"errors":0}],'
                '"per_source":[{"source":"127.0.0.2","connections":"1","failed":0,'
                '"errors":0}],"histogram":%s}\n'
                % (",".join('"%s":0' % k for k in tl.ERROR_KEYS), hist))
    r = tl.run_load(ctx, ["--merge", bad], 10)
    check(r.rc == 2, "expected exit 2: %s" % r.summary())
    check('%s: not a count: "per_source[0].connections"' % bad in r.stderr, r.summary())


def main(argv):
    return harness.run_suite(argv, TESTS, "coecho-load-merge",
                             [("client", tl.COECHO_LOAD, "COECHO_LOAD"),
                              ("daemon", harness.COECHOD, "COECHOD")],
                             __doc__, make_ctx=tl.LoadCtx, verbose=tl.VERBOSE,
                             deadline=tl.TEST_DEADLINE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
