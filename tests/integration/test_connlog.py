#!/usr/bin/env python3
"""Integration tests for coechod's connection log (log.connections) and
JSON log format (log.format: json).

Every test starts the real daemon on 127.0.0.1 port 0, closes connections
in each way the log names (eof, reset, idle_timeout, shutdown,
per_ip_limit) and reads the lines it logs on stderr or to its log.file,
waiting for them (never sleeping a fixed time); it always kills and reaps
what it started.

    test_connlog.py              run every test
    test_connlog.py NAME...      run only the named tests
    test_connlog.py --list       list the test names

Environment as for test_coechod.py: COECHOD, BUILDDIR, SRCDIR,
COECHOD_IT_VERBOSE. Exit status: 0 if every test passed, 1 if any failed,
77 (automake SKIP) if the binary is missing, 2 on a usage error.
"""

import json
import os
import re
import signal
import socket
import struct
import sys

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, SCRIPT_DIR)
from harness import (COECHOD, check, echo_ok, recv_exact, recv_until_eof,  # noqa: E402
                     run_suite, wait_closed, wait_for, yaml_config)

TESTS = []

# "close peer=127.0.0.1:5 local=127.0.0.1:7 duration_s=0.001 bytes_in=1
# bytes_out=1 reason=eof" and maybe " error=ECONNRESET"
CLOSE_RE = re.compile(
    r"close peer=(?P<peer>\S+) local=(?P<local>\S+) duration_s=(?P<duration>\d+\.\d{3}) "
    r"bytes_in=(?P<bytes_in>\d+) bytes_out=(?P<bytes_out>\d+) reason=(?P<reason>\w+)"
    r"(?: error=(?P<error>E\w+))?$")
JSON_FIELDS = ("time", "level", "pid", "msg")
CLOSE_FIELDS = ("event", "peer", "local", "duration_s", "bytes_in", "bytes_out", "reason")


def test(fn):
    TESTS.append(fn)
    return fn


def addr_text(sock_addr):
    return "%s:%d" % sock_addr[:2]


def connlog_config(limits=None, extra=""):
    return yaml_config(limits=limits, extra="log: { connections: true }\n" + extra)


def wait_close_line(d, peer, timeout=10.0, start=0):
    """The text close line of the client at peer ("127.0.0.1:5000"), as a
    match of CLOSE_RE."""
    m = d.wait_log(r"close peer=%s " % re.escape(peer), timeout, start,
                   what="a close line for %s" % peer)
    line = m.string
    full = CLOSE_RE.search(line)
    check(full is not None, "close line not in the documented form: %r" % line)
    return full


def expect_close(d, client_addr, port, reason, nbytes=0, error=None, start=0):
    m = wait_close_line(d, addr_text(client_addr), start=start)
    check(m.group("local") == "127.0.0.1:%d" % port, "local %r, expected 127.0.0.1:%d"
          % (m.group("local"), port))
    check(m.group("reason") == reason, "reason %r, expected %r in %r"
          % (m.group("reason"), reason, m.string))
    check(m.group("error") == error, "error %r, expected %r in %r"
          % (m.group("error"), error, m.string))
    check(int(m.group("bytes_in")) == nbytes and int(m.group("bytes_out")) == nbytes,
          "bytes in/out %s/%s, expected %d each in %r"
          % (m.group("bytes_in"), m.group("bytes_out"), nbytes, m.string))
    return m


@test
def close_eof_counts_bytes(ctx):
    """A client that sends, reads its echo and closes: reason eof, and the
    bytes it sent in and out."""
    d = ctx.daemon([], config=connlog_config())
    port = d.port()
    c = ctx.connect(port)
    payload = bytes(range(256)) * 37 + b"end"
    c.sendall(payload)
    recv_exact(c, len(payload))
    c.shutdown(socket.SHUT_WR)
    recv_until_eof(c)
    m = expect_close(d, c.getsockname(), port, "eof", len(payload))
    check(float(m.group("duration")) < 10.0, "duration %s s" % m.group("duration"))
    # The stamp and level of the usual text format come first.
    check(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} coechod\[\d+\] info: close ",
                   m.string), "close line without the usual stamp: %r" % m.string)


@test
def close_reset(ctx):
    """A client that resets (SO_LINGER 0): reason reset, error ECONNRESET."""
    d = ctx.daemon([], config=connlog_config())
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c, b"12345")
    addr = c.getsockname()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    expect_close(d, addr, port, "reset", 5, error="ECONNRESET")


@test
def close_idle_timeout(ctx):
    """A silent client over limits.idle_timeout: reason idle_timeout, with
    about the timeout as its duration."""
    d = ctx.daemon([], config=connlog_config(limits={"idle_timeout": "300ms"}))
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c, b"hi")
    addr = c.getsockname()
    wait_closed(c, 10.0, "idle client")
    m = expect_close(d, addr, port, "idle_timeout", 2)
    check(float(m.group("duration")) >= 0.29, "duration %s s under the 300 ms timeout"
          % m.group("duration"))


@test
def close_shutdown(ctx):
    """SIGTERM with a client still open past shutdown_grace: reason
    shutdown, logged before the daemon exits."""
    d = ctx.daemon([], config=connlog_config(extra="shutdown_grace: 200ms\n"))
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c, b"abc")
    addr = c.getsockname()
    d.send_signal(signal.SIGTERM)
    wait_closed(c, 10.0, "client after the grace")
    rc = d.wait_exit(10.0)
    check(rc == 0, "exit status %s after SIGTERM" % rc)
    expect_close(d, addr, port, "shutdown", 3)


@test
def close_per_ip_limit(ctx):
    """Over max_connections_per_ip a connection is accepted and closed at
    once: reason per_ip_limit, no bytes."""
    d = ctx.daemon([], config=connlog_config(limits={"max_connections_per_ip": 1}))
    port = d.port()
    first = ctx.connect(port)
    echo_ok(first, b"first")
    second = ctx.connect(port)
    addr = second.getsockname()
    wait_closed(second, 10.0, "connection over the per-IP limit")
    expect_close(d, addr, port, "per_ip_limit", 0)
    echo_ok(first, b"still")


@test
def off_by_default(ctx):
    """Without log.connections no close line is written."""
    d = ctx.daemon([], config=yaml_config())
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c)
    c.close()
    # The close is counted once the daemon has handled it; then a barrier
    # proves every line it logged so far has been read.
    wait_for(lambda: stats_closed(d) >= 1, 10.0, "the daemon to count the close")
    check(not any("close peer=" in line for line in d.lines),
          "a close line without log.connections: %r"
          % [line for line in d.lines if "close peer=" in line])


def stats_closed(d):
    """closed= of a fresh statistics line (SIGUSR1)."""
    d.barrier()
    m = re.search(r"closed=(\d+)", d.lines[-1])
    return int(m.group(1)) if m else -1


@test
def reload_turns_it_on(ctx):
    """A reload turns the log on for connections accepted after it, and a
    second one off again at once."""
    d = ctx.daemon([], config=yaml_config())
    port = d.port()
    before = ctx.connect(port)
    echo_ok(before)
    ctx.write_config(connlog_config())
    mark = d.mark()
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"reloaded", 10.0, mark)
    after = ctx.connect(port)
    echo_ok(after, b"xy")
    addr_after, addr_before = after.getsockname(), before.getsockname()
    after.close()
    before.close()
    expect_close(d, addr_after, port, "eof", 2, start=mark)
    wait_for(lambda: stats_closed(d) >= 2, 10.0, "both closes counted")
    check(not any("close peer=%s " % addr_text(addr_before) in line for line in d.lines),
          "a close line for a connection accepted before the log was on")

    ctx.write_config(yaml_config())
    mark = d.mark()
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"reloaded", 10.0, mark)
    c = ctx.connect(port)
    echo_ok(c)
    c.close()
    wait_for(lambda: stats_closed(d) >= 3, 10.0, "the third close counted")
    check(not any("close peer=" in line for line in d.lines[mark:]),
          "a close line after a reload turned the log off")


def json_lines(d):
    return [json.loads(line) for line in d.lines]


@test
def json_format(ctx):
    """log.format json: every stderr line is a JSON object with time,
    level, pid and msg; a close line has the structured fields."""
    d = ctx.daemon([], config=yaml_config(extra="log: { connections: true, format: json }\n"))
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c, b"0123456789")
    addr = c.getsockname()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    d.wait_log(r'"peer":"%s"' % re.escape(addr_text(addr)), 10.0, what="a JSON close line")
    objs = json_lines(d)
    for o in objs:
        for k in JSON_FIELDS:
            check(k in o, "field %r missing from %r" % (k, o))
        check(o["pid"] == d.pid, "pid %r, expected %d" % (o["pid"], d.pid))
        check(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", o["time"]),
              "time %r" % o["time"])
    close = [o for o in objs if o.get("event") == "close"]
    check(len(close) == 1, "close objects: %r" % close)
    o = close[0]
    for k in CLOSE_FIELDS:
        check(k in o, "field %r missing from %r" % (k, o))
    check(o["peer"] == addr_text(addr) and o["local"] == "127.0.0.1:%d" % port,
          "peer/local %r/%r" % (o["peer"], o["local"]))
    check(o["bytes_in"] == 10 and o["bytes_out"] == 10, "bytes %r/%r"
          % (o["bytes_in"], o["bytes_out"]))
    check(o["reason"] == "reset" and o["error"] == "ECONNRESET", "reason %r error %r"
          % (o["reason"], o.get("error")))
    check(isinstance(o["duration_s"], float) and o["duration_s"] >= 0, "duration_s %r"
          % o["duration_s"])
    check(any(x["msg"].startswith("listening on 127.0.0.1:") for x in objs),
          "no 'listening on' message: %r" % objs[:3])


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


@test
def json_odd_bytes(ctx):
    """A message naming a path with a quote, a newline and a byte that is
    not UTF-8 stays one valid JSON line (the byte as U+FFFD), in log.file."""
    odd = os.path.join(ctx.dir.encode(), b'q"u\\o\nte\xff')
    os.mkdir(odd)
    cfg = os.path.join(odd, b"c.yaml")
    logfile = os.path.join(ctx.dir, "coechod.log")
    with open(cfg, "w") as f:
        f.write(yaml_config(extra='log: { format: json, file: "%s" }\n' % logfile))
    d = ctx.daemon(["-c", os.fsdecode(cfg)])

    def reloaded():
        lines = read_bytes(logfile).split(b"\n")[:-1]
        objs = [json.loads(line.decode("utf-8")) for line in lines]  # strict UTF-8
        hits = [o for o in objs if o["msg"].startswith("reloaded ")]
        return (objs, hits) if hits else None

    wait_for(lambda: b"listening on" in read_bytes(logfile), 10.0,
             "'listening on' in the log file")
    d.send_signal(signal.SIGHUP)
    objs, hits = wait_for(reloaded, 10.0, "a JSON 'reloaded' line in the log file")
    expected = "reloaded " + os.fsdecode(cfg).replace("\udcff", "\ufffd")
    check(hits[0]["msg"] == expected, "msg %r, expected %r" % (hits[0]["msg"], expected))
    check(d.alive(), "daemon exited")


def main(argv):
    return run_suite(argv, TESTS, "coechod-connlog", [("daemon", COECHOD, "COECHOD")], __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
