#!/usr/bin/env python3
"""Integration tests for coechod's access lists (access, listen[].access).

Every test starts the real daemon on loopback, port 0, and connects from
chosen loopback source addresses (127.0.0.2, 127.0.0.3: the whole of
127.0.0.0/8 is local on Linux) by binding the client socket before
connecting. A refused client sees its connection closed at once; the tests
wait for that, for log lines and for counters (never sleeping a fixed
time), and always kill and reap what they started.

    test_access.py              run every test
    test_access.py NAME...      run only the named tests
    test_access.py --list       list the test names

Environment as for test_coechod.py: COECHOD, BUILDDIR, SRCDIR,
COECHOD_IT_VERBOSE. Exit status: 0 if every test passed, 1 if any failed,
77 (automake SKIP) if the binary is missing, 2 on a usage error.
"""

import math
import os
import re
import signal
import socket
import sys
import time

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, SCRIPT_DIR)
from harness import (COECHOD, TestFailure, check, echo_ok, run_suite,  # noqa: E402
                     usr1_stats, wait_closed, wait_for)

TESTS = []
REFUSED_RE = r"refused a connection from (\S+): denied by the access list"


def test(fn):
    TESTS.append(fn)
    return fn


def config(listen, access=None, extra=""):
    """listen: [(host, own access list or None)], all on port 0."""
    lines = ["listen:"]
    for host, own in listen:
        entry = '  - { address: "%s", port: 0' % host
        if own is not None:
            entry += ", access: [ %s ]" % ", ".join('"%s"' % r for r in own)
        lines.append(entry + " }")
    if access is not None:
        lines.append("access: [ %s ]" % ", ".join('"%s"' % r for r in access))
    return "\n".join(lines) + "\n" + extra


def connect_from(ctx, source, port, host="127.0.0.1"):
    """A client socket bound to source before it connects to host:port."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with ctx.lock:
        ctx.socks.append(s)
    s.settimeout(5.0)
    try:
        s.bind((source, 0))
        s.connect((host, port))
    except OSError as e:
        raise TestFailure("connect from %s to %s port %d: %s" % (source, host, port, e))
    return s


def expect_refused(ctx, source, port, host="127.0.0.1"):
    s = connect_from(ctx, source, port, host)
    wait_closed(s, 10.0, "connection from %s" % source)
    s.close()


stats = usr1_stats


@test
def deny_one_address(ctx):
    """deny 127.0.0.3: a client from there is closed at once, with a close
    line (reason access_denied) and a count; 127.0.0.2 is served."""
    d = ctx.daemon([], config=config([("127.0.0.1", None)], ["deny 127.0.0.3", "allow all"],
                                     "log: { connections: true }\n"))
    port = d.port()
    served = connect_from(ctx, "127.0.0.2", port)
    echo_ok(served, b"from .2")
    refused = connect_from(ctx, "127.0.0.3", port)
    addr = "%s:%d" % refused.getsockname()
    wait_closed(refused, 10.0, "connection from 127.0.0.3")
    d.wait_log(r"close peer=%s .* reason=access_denied$" % re.escape(addr), 10.0,
               what="the close line of the refused client")
    d.wait_log(REFUSED_RE, 10.0, what="the refusal")
    st = stats(d)
    check(st["rejected_access"] == 1, "rejected_access=%d, expected 1" % st["rejected_access"])
    check(st["accepted"] == 1, "accepted=%d: a refused client is not accepted" % st["accepted"])
    echo_ok(served, b"still served")


@test
def first_match_wins(ctx):
    """allow 127.0.0.2 before deny 127.0.0.0/8 lets .2 in, though the deny
    matches it too; .3 meets the deny first, before the final allow all."""
    d = ctx.daemon([], config=config([("127.0.0.1", None)],
                                     ["allow 127.0.0.2", "deny 127.0.0.0/8", "allow all"]))
    port = d.port()
    echo_ok(connect_from(ctx, "127.0.0.2", port))
    expect_refused(ctx, "127.0.0.3", port)


@test
def listener_list_replaces_the_global_one(ctx):
    """A listener with its own list ignores the top-level one: .3 is
    refused on the first listener (global deny) and served on the second
    (its own allow); the second's deny of .2 holds only there."""
    d = ctx.daemon([], config=config([("127.0.0.1", None), ("127.0.0.5", ["deny 127.0.0.2"])],
                                     ["deny 127.0.0.3"]))
    ports = dict(d.wait_listening(2))
    p1, p5 = ports["127.0.0.1"], ports["127.0.0.5"]
    expect_refused(ctx, "127.0.0.3", p1, "127.0.0.1")
    echo_ok(connect_from(ctx, "127.0.0.2", p1, "127.0.0.1"))
    echo_ok(connect_from(ctx, "127.0.0.3", p5, "127.0.0.5"))
    expect_refused(ctx, "127.0.0.2", p5, "127.0.0.5")


@test
def reload_applies_to_new_connections(ctx):
    """A reload that adds deny 127.0.0.3 refuses new clients from there;
    one connected before keeps being served; a second reload lifts it."""
    d = ctx.daemon([], config=config([("127.0.0.1", None)]))
    port = d.port()
    before = connect_from(ctx, "127.0.0.3", port)
    echo_ok(before, b"before")
    for access, refused in ((["deny 127.0.0.3"], True), ([], False)):
        ctx.write_config(config([("127.0.0.1", None)], access))
        mark = d.mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"reloaded", 10.0, mark)
        if refused:
            expect_refused(ctx, "127.0.0.3", port)
        else:
            echo_ok(connect_from(ctx, "127.0.0.3", port), b"after")
        echo_ok(before, b"still")


@test
def refusals_in_the_metrics(ctx):
    """Refusals show as coechod_connections_rejected_total{reason="access"}."""
    d = ctx.daemon([], config=config([("127.0.0.1", None)], ["deny 127.0.0.3"],
                                     "metrics: { address: 127.0.0.1, port: 0 }\n"))
    port = d.port()
    mport = int(d.wait_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", 10.0).group(1))
    for _ in range(3):
        expect_refused(ctx, "127.0.0.3", port)

    def scraped():
        s = socket.create_connection(("127.0.0.1", mport), timeout=5.0)
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        m = re.search(rb'coechod_connections_rejected_total\{reason="access"\} (\d+)', data)
        return m is not None and int(m.group(1)) == 3

    wait_for(scraped, 10.0, 'rejected_total{reason="access"} 3 in the metrics')


@test
def flood_is_logged_once_a_second(ctx):
    """300 refused connections in a burst: each counted, but at most one
    refusal line a second (plus the first)."""
    d = ctx.daemon([], config=config([("127.0.0.1", None)], ["deny 127.0.0.3"]))
    port = d.port()
    mark = d.mark()
    started = time.monotonic()
    n = 300
    for _ in range(n):
        s = connect_from(ctx, "127.0.0.3", port)
        s.close()
        ctx.socks.remove(s)
    wait_for(lambda: stats(d)["rejected_access"] == n, 20.0, "%d refusals counted" % n)
    elapsed = time.monotonic() - started
    lines = [line for line in d.lines[mark:] if re.search(REFUSED_RE, line)]
    allowed = math.ceil(elapsed) + 1
    check(1 <= len(lines) <= allowed, "%d refusal lines in %.2f s, expected 1 to %d"
          % (len(lines), elapsed, allowed))
    counted = sum(int(m) for m in re.findall(r"\((\d+) refused since", "\n".join(lines)))
    check(counted <= n, "lines count %d refusals of %d" % (counted, n))


@test
def workers_check_the_lists_too(ctx):
    """With workers: 2 every worker refuses by the same lists (a listener's
    own too), and the main process's SIGUSR1 totals count the refusals."""
    d = ctx.daemon([], config=config([("127.0.0.1", None), ("127.0.0.5", ["deny 127.0.0.2"])],
                                     ["deny 127.0.0.3"], "workers: 2\n"))
    ports = dict(d.wait_listening(2))
    d.wait_log(r"\b2 workers ready", 20.0)
    p1, p5 = ports["127.0.0.1"], ports["127.0.0.5"]
    for _ in range(4):  # SO_REUSEPORT spreads them over both workers
        expect_refused(ctx, "127.0.0.3", p1, "127.0.0.1")
        expect_refused(ctx, "127.0.0.2", p5, "127.0.0.5")
    echo_ok(connect_from(ctx, "127.0.0.2", p1, "127.0.0.1"))
    echo_ok(connect_from(ctx, "127.0.0.3", p5, "127.0.0.5"))

    def totals():
        mark = d.mark()
        d.send_signal(signal.SIGUSR1)
        m = d.wait_log(r"info: stats: .*rejected_access=(\d+)", 10.0, mark,
                       what="the main process's totals")
        return int(m.group(1)) == 8

    wait_for(totals, 10.0, "rejected_access=8 in the totals")
    # A reload reaches the workers (the main process sends them the lists).
    ctx.write_config(config([("127.0.0.1", None), ("127.0.0.5", None)], ["deny 127.0.0.2"],
                            "workers: 2\n"))
    reload_workers(d, 2)
    check(echo_probe(ctx, "127.0.0.3", p1, "127.0.0.1") == 4,
          "127.0.0.3 not served by every worker after the reload")
    for _ in range(4):
        expect_refused(ctx, "127.0.0.2", p1, "127.0.0.1")


MAX_RULES = 10000  # CONFIG_MAX_ACCESS_RULES


def reload_workers(d, workers):
    """SIGHUP, then wait until every worker took the new configuration."""
    mark = d.mark()
    d.send_signal(signal.SIGHUP)
    wait_for(lambda: sum("reloaded the main process's configuration" in line
                         for line in d.lines[mark:]) == workers, 30.0, "every worker to reload")


@test
def longest_list_reaches_workers(ctx):
    """A reload to a list of the most rules a configuration holds (10,000)
    reaches both workers (the configuration, about 210 KB, is past a unix
    datagram's default limit: it crosses in a memory file): each refuses
    the rule near the end and serves what the last rule allows."""
    d = ctx.daemon([], config=config([("127.0.0.1", None)], [], "workers: 2\n"))
    port = d.port()
    d.wait_log(r"\b2 workers ready", 20.0)
    rules = ["deny 10.%d.%d.0/24" % (i // 256, i % 256) for i in range(MAX_RULES - 2)]
    ctx.write_config(config([("127.0.0.1", None)], rules + ["deny 127.0.0.3", "allow all"],
                            "workers: 2\n"))
    reload_workers(d, 2)
    check(echo_probe(ctx, "127.0.0.3", port, "127.0.0.1") == 0,
          "127.0.0.3 served by a worker despite the list")
    check(echo_probe(ctx, "127.0.0.2", port, "127.0.0.1") == 4,
          "127.0.0.2 not served by every worker")


def echo_probe(ctx, source, port, host):
    """How many of 4 connections from source are served (echo back)."""
    served = 0
    for _ in range(4):
        s = connect_from(ctx, source, port, host)
        try:
            s.sendall(b"x")
            served += s.recv(1) == b"x"
        except OSError:
            pass
        s.close()
    return served


def main(argv):
    return run_suite(argv, TESTS, "coechod-access", [("daemon", COECHOD, "COECHOD")], __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
