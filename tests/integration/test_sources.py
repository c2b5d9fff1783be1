#!/usr/bin/env python3
"""Integration tests for coecho-load --source and its per-target and
per-source counts.

Each test runs the real client (src/load/coecho-load) against the real
daemon (src/server/coechod) on 127.0.0.1 (all of 127.0.0.0/8 is local, so
127.0.0.2 and up serve as source addresses), and checks the client's
summary and the daemon's own view: its connection log names each peer.
One test opens 19,000 connections from one client process (skipped when
the descriptor hard limit is under 19,100).

    test_sources.py              run every test
    test_sources.py NAME...      run only the named tests
    test_sources.py --list       list the test names

Environment as for test_load.py (COECHO_LOAD, COECHOD, BUILDDIR,
COECHO_LOAD_IT_VERBOSE). Exit status: 0 if every test passed, 1 if any
failed, 77 if a binary is missing, 2 on a usage error.
"""

import collections
import os
import re
import resource
import sys
import time

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, SCRIPT_DIR)
import harness  # noqa: E402
from harness import TestSkip, check, have_ipv6_loopback, yaml_config, wait_for  # noqa: E402
from test_load import (COECHO_LOAD, COECHOD, LoadCtx, expect_clean, parse_json,  # noqa: E402
                       run_load, error_counts)

# The 19,000-connection test needs more than test_load.py's 30 s.
TEST_DEADLINE = 90.0
VERBOSE = bool(os.environ.get("COECHO_LOAD_IT_VERBOSE"))
ERROR_KEYS = ["connect_refused", "connect_timeout", "reset", "unexpected_eof",
              "message_timeout", "mismatch", "spawn", "other", "source"]
CLOSE_PEER = re.compile(r"close peer=(\S+):\d+ ")

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def logging_daemon(ctx, limits=None, nofile=None, listen=(("127.0.0.1", 0),)):
    """coechod logging a close line per connection; returns it and its
    "host:port" targets."""
    d = ctx.daemon([], config=yaml_config(listen, limits, "log: { connections: true }\n"),
                   nofile=nofile)
    found = d.wait_listening(len(listen))
    return d, ["%s:%d" % (h, p) for h, p in found]  # an IPv6 host comes bracketed


def peers_by_address(d, count, timeout):
    """The peer addresses of the daemon's close lines, once there are
    count of them: {address: connections}."""
    seen = collections.Counter()

    def probe():
        with d.cond:
            lines = list(d.lines)
        seen.clear()
        for line in lines:
            m = CLOSE_PEER.search(line)
            if m:
                seen[m.group(1).strip("[]")] += 1
        return sum(seen.values()) >= count
    wait_for(probe, timeout, "%d close lines in the daemon's log" % count, 0.2)
    return dict(seen)


def counts(obj, key, name_key):
    return {e[name_key]: (e["connections"], e["failed"], e["errors"]) for e in obj[key]}


@test
def eight_connections_two_sources(ctx):
    """-c 8 --source 127.0.0.2,127.0.0.3: the daemon's log shows 4
    connections from each; per_source says the same, per_target has the
    one target; the errors object keeps its keys in order, "source" last."""
    d, (target,) = logging_daemon(ctx)
    r = run_load(ctx, ["-c", 8, "-n", 16, "-q", "--json", "--source", "127.0.0.2,127.0.0.3",
                       target])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(list(obj["errors"]) == ERROR_KEYS, "errors keys %r, expected %r"
          % (list(obj["errors"]), ERROR_KEYS))
    check(counts(obj, "per_source", "source") == {"127.0.0.2": (4, 0, 0),
                                                  "127.0.0.3": (4, 0, 0)},
          "per_source %r, expected 4 connections from each source" % obj.get("per_source"))
    check(counts(obj, "per_target", "target") == {target: (8, 0, 0)},
          "per_target %r" % obj.get("per_target"))
    peers = peers_by_address(d, 8, 10.0)
    check(peers == {"127.0.0.2": 4, "127.0.0.3": 4},
          "the daemon saw peers %r, expected 4 from 127.0.0.2 and 4 from 127.0.0.3" % peers)


@test
def no_source_no_per_source(ctx):
    """Without --source: per_target is there, per_source is not."""
    d, (target,) = logging_daemon(ctx)
    r = run_load(ctx, ["-c", 2, "-n", 4, "-q", "--json", target])
    obj = parse_json(r)
    expect_clean(r, obj)
    check("per_source" not in obj, "per_source without --source: %r" % obj.get("per_source"))
    check(counts(obj, "per_target", "target") == {target: (2, 0, 0)},
          "per_target %r" % obj.get("per_target"))


@test
def two_targets_text_summary(ctx):
    """Two targets and three sources, text summary: a targets line per
    target, a sources line per source, and connection i on source
    (i / 2) % 3 of its target."""
    d1, (t1,) = logging_daemon(ctx)
    d2, (t2,) = logging_daemon(ctx)
    r = run_load(ctx, ["-c", 12, "-n", 24, "--source", "127.0.0.2-127.0.0.4", t1, t2])
    check(r.rc == 0, "expected exit 0: %s" % r.summary())
    for t in (t1, t2):
        check(re.search(r"(?m)^targets\s+%s\s+6 up, 0 failed, 0 errors$" % re.escape(t),
                        r.stdout), "no targets line for %s:\n%s" % (t, r.stdout))
    for a in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        check(re.search(r"(?m)^sources\s+%s\s+4 up, 0 failed, 0 errors$" % re.escape(a),
                        r.stdout), "no sources line for %s:\n%s" % (a, r.stdout))
    # Connections 0, 2, 4 ... go to t1 and take sources 0, 1, 2, 0, 1, 2.
    for d in (d1, d2):
        peers = peers_by_address(d, 6, 10.0)
        check(peers == {"127.0.0.2": 2, "127.0.0.3": 2, "127.0.0.4": 2},
              "a daemon saw peers %r, expected 2 from each source" % peers)


@test
def many_sources_summary_line(ctx):
    """More than 16 sources: one line with the spread of connections per
    source, and the sources with errors (here none)."""
    d, (target,) = logging_daemon(ctx)
    r = run_load(ctx, ["-c", 40, "-n", 40, "--source", "127.0.1.1-127.0.1.20", target])
    check(r.rc == 0, "expected exit 0: %s" % r.summary())
    check(re.search(r"(?m)^sources\s+20 addresses, connections per source min 2 median 2 "
                    r"max 2; errors at none$", r.stdout),
          "no spread line for 20 sources:\n%s" % r.stdout)
    peers = peers_by_address(d, 40, 10.0)
    check(len(peers) == 20 and set(peers.values()) == {2},
          "the daemon saw peers %r, expected 2 from each of 20 sources" % peers)


@test
def unbindable_source(ctx):
    """A source that is no local address (192.0.2.1, TEST-NET-1): every
    connection fails with a "source" error, counted for that source; exit 1."""
    d, (target,) = logging_daemon(ctx)
    r = run_load(ctx, ["-c", 3, "-n", 3, "-q", "--json", "--source", "192.0.2.1", target])
    obj = parse_json(r)
    check(r.rc == 1, "expected exit 1: %s" % r.summary())
    check(obj["errors"]["source"] == 3 and obj["connections_failed"] == 3,
          "expected 3 source errors and 3 failed connections, got %s and %d failed"
          % (error_counts(obj), obj["connections_failed"]))
    check(counts(obj, "per_source", "source") == {"192.0.2.1": (0, 3, 3)},
          "per_source %r" % obj.get("per_source"))


@test
def mixed_families(ctx):
    """An IPv4 and an IPv6 target with --source 127.0.0.2,::1: each target
    takes the source of its family."""
    if not have_ipv6_loopback():
        raise TestSkip("no IPv6 loopback")
    d, targets = logging_daemon(ctx, listen=(("127.0.0.1", 0), ("::1", 0)))
    r = run_load(ctx, ["-c", 4, "-n", 8, "-q", "--json", "--source", "127.0.0.2,::1"]
                 + targets)
    obj = parse_json(r)
    expect_clean(r, obj)
    check(counts(obj, "per_source", "source") == {"127.0.0.2": (2, 0, 0), "::1": (2, 0, 0)},
          "per_source %r" % obj.get("per_source"))
    peers = peers_by_address(d, 4, 10.0)
    check(peers == {"127.0.0.2": 2, "::1": 2}, "the daemon saw peers %r" % peers)


@test
def udp_with_sources(ctx):
    """--udp --source 127.0.0.2,127.0.0.3 -c 4: a clean run, 2 sessions per
    source."""
    d = ctx.daemon(["-l", "udp://127.0.0.1:0"], config="")
    port = int(d.wait_log(r"listening on udp://127\.0\.0\.1:(\d+)", 10.0).group(1))
    r = run_load(ctx, ["--udp", "-c", 4, "-n", 40, "-q", "--json", "--source",
                       "127.0.0.2,127.0.0.3", "127.0.0.1:%d" % port])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(counts(obj, "per_source", "source") == {"127.0.0.2": (2, 0, 0),
                                                  "127.0.0.3": (2, 0, 0)},
          "per_source %r" % obj.get("per_source"))


@test
def source_usage_errors(ctx):
    """Bad --source lists: exit 2, one line naming the item; a range of
    65,536 addresses is accepted, 65,537 are not; a target with no source
    of its family is named."""
    bad = [
        (["--source", "127.0.0.9-127.0.0.2", "127.0.0.1:7"], "127.0.0.9-127.0.0.2"),
        (["--source", "127.0.0.1-::1", "127.0.0.1:7"], "127.0.0.1-::1"),
        (["--source", "127.0.0.x", "127.0.0.1:7"], "127.0.0.x"),
        (["--source", "127.0.0.1,,127.0.0.2", "127.0.0.1:7"], "empty"),
        (["--source", "10.0.0.0-10.1.0.0", "127.0.0.1:7"], "10.0.0.0-10.1.0.0"),
        (["--source", "10.0.0.1,fd00::1-fd00::1:0", "127.0.0.1:7"], "fd00::1-fd00::1:0"),
        (["--source", "::1", "127.0.0.1:7"], "127.0.0.1:7"),
        (["--source"], "--source"),
    ]
    for args, named in bad:
        r = run_load(ctx, args)
        first = r.stderr.splitlines()[0] if r.stderr else ""
        check(r.rc == 2 and named in first,
              "coecho-load %s: expected exit 2 and a line naming %r, got exit %s, %r"
              % (" ".join(args), named, r.rc, first))
    # Options are read in order: --help after --source exits 0 once the
    # list has been accepted.
    r = run_load(ctx, ["--source", "10.0.0.0-10.0.255.255", "--help"])
    check(r.rc == 0, "65,536 addresses refused: %s" % r.summary())


@test
def connections_19000_four_sources(ctx):
    """19,000 connections from one coecho-load process, 4 sources: all up,
    no error, 4,750 per source, and the daemon's log names peers from
    exactly those 4 addresses, 4,750 each."""
    n = 19000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 100:
        raise TestSkip("RLIMIT_NOFILE hard limit %d is under %d" % (hard, n + 100))
    nofile = min(hard, 20000) if hard != resource.RLIM_INFINITY else 20000
    # coechod wants max_connections + listeners + 32 descriptors.
    d, (target,) = logging_daemon(ctx, {"max_connections": nofile - 33, "backlog": 4096},
                                  nofile=nofile)
    started = time.monotonic()
    r = run_load(ctx, ["-c", n, "--source", "127.0.0.2-127.0.0.5", "--connect-rate", 20000,
                       "-d", "3s", "--timeout", "20s", "-q", "--json", target], 60)
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["connections"] == n, "connections %r, expected %d" % (obj["connections"], n))
    want = {"127.0.0.%d" % i: (4750, 0, 0) for i in range(2, 6)}
    check(counts(obj, "per_source", "source") == want,
          "per_source %r, expected 4,750 connections from each" % obj.get("per_source"))
    peers = peers_by_address(d, n, max(5.0, 80.0 - (time.monotonic() - started)))
    check(peers == {a: 4750 for a in want},
          "the daemon saw peers %r, expected 4,750 from each of %s" % (peers, sorted(want)))
    ctx.note("19,000 connections: %.1f s in all, %d messages" % (r.elapsed, obj["messages"]))


def main(argv):
    return harness.run_suite(argv, TESTS, "coecho-load-sources",
                             [("client", COECHO_LOAD, "COECHO_LOAD"),
                              ("daemon", COECHOD, "COECHOD")],
                             __doc__, make_ctx=LoadCtx, verbose=VERBOSE, deadline=TEST_DEADLINE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
