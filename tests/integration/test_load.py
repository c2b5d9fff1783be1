#!/usr/bin/env python3
"""Integration tests for coecho-load, the coecho load client.

The tests run the real client (src/load/coecho-load) against the real daemon
(src/server/coechod, on a loopback address with port 0) and against
deliberately broken echo servers written here (bit flips, dropped, extra and
reordered bytes, silence, resets), and check its exit status, its --json and
text summaries and its histogram file against src/load/CONTRACT.md. Every
process started is killed and reaped; every test has a deadline.

    test_load.py              run every test
    test_load.py NAME...      run only the named tests
    test_load.py --list       list the test names

Environment: COECHO_LOAD (the client; default BUILDDIR/src/load/coecho-load),
COECHOD (the daemon; default BUILDDIR/src/server/coechod), BUILDDIR (default:
the current directory), COECHO_LOAD_IT_VERBOSE=1 prints each run's command,
exit status and timing.
Exit status: 0 if every test passed, 1 if any failed, 77 (automake SKIP) if
a binary is missing, 2 on a usage error.

Python 3 standard library only. Helpers (the daemon wrapper, per-test
context, outcomes, runner) come from harness.py next to this file.
"""

import json
import os
import re
import resource
import select
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, SCRIPT_DIR)
import harness  # noqa: E402
from harness import (TestFailure, TestSkip, check, free_port,  # noqa: E402
                          have_ipv6_loopback, yaml_config, configured_version,
                          descendants, kill_pid)

BUILDDIR = harness.BUILDDIR
COECHOD = harness.COECHOD
COECHO_LOAD = os.path.abspath(os.environ.get("COECHO_LOAD")
                              or os.path.join(BUILDDIR, "src", "load", "coecho-load"))

TEST_DEADLINE = 30.0  # seconds per test, enforced by the runner
VERBOSE = bool(os.environ.get("COECHO_LOAD_IT_VERBOSE"))
MiB = 1024 * 1024

ERROR_KEYS = ("connect_refused", "connect_timeout", "reset", "unexpected_eof",
              "message_timeout", "mismatch", "spawn", "other", "source")
LATENCY_KEYS = ("p50", "p90", "p99", "p999", "max", "mean")


# ---------------------------------------------------------------------------
# registry

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------------------
# running the client

class LoadResult:
    def __init__(self, args, rc, stdout, stderr, elapsed):
        self.args, self.rc, self.stdout, self.stderr = args, rc, stdout, stderr
        self.elapsed = elapsed

    def cmd(self):
        return "coecho-load " + " ".join(shlex.quote(a) for a in self.args)

    def summary(self):
        err = self.stderr.strip().splitlines()
        out = self.stdout.strip()
        return "%s: exit %s after %.2f s, stdout %r, stderr %r" % (
            self.cmd(), self.rc, self.elapsed,
            out[:400] + ("..." if len(out) > 400 else ""), err[:4])


class LoadCtx(harness.Ctx):
    """The harness's per-test context (daemons, sockets, a private
    directory) plus coecho-load processes and the fault servers."""

    def __init__(self, name):
        super().__init__(name)
        self.procs = []
        self.servers = []
        self.runs = []

    def track(self, proc):
        with self.lock:
            self.procs.append(proc)

    def server(self, handler, name, host="127.0.0.1", rcvbuf=None):
        srv = FaultServer(handler, name, host, rcvbuf)
        with self.lock:
            self.servers.append(srv)
        return srv

    def cleanup(self):
        with self.lock:
            procs, servers = list(self.procs), list(self.servers)
        for p in procs:
            if p.poll() is None:
                for kid in descendants(p.pid):
                    kill_pid(kid)
                p.kill()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for srv in servers:
            srv.close()
        super().cleanup()

    def diagnostics(self):
        out = []
        for r in self.runs[-3:]:
            out.append("%s -> exit %s after %.2f s" % (r.cmd(), r.rc, r.elapsed))
            out.extend("    stdout: " + l for l in r.stdout.splitlines()[:12])
            out.extend("    stderr: " + l for l in r.stderr.splitlines()[-8:])
        with self.lock:
            servers = list(self.servers)
        for srv in servers:
            out.append("fault server %s: %d connection(s) accepted%s" % (
                srv.name, srv.accepted,
                "; handler errors: %s" % srv.problems[:3] if srv.problems else ""))
        return out + super().diagnostics()


def run_load(ctx, args, timeout=15.0, on_start=None):
    """Runs coecho-load to completion with stdout and stderr in files (not a
    terminal); kills it and fails the test if it outlives timeout.
    on_start(proc), if given, is called once it runs."""
    args = [str(a) for a in args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        proc = subprocess.Popen([COECHO_LOAD] + args, cwd=ctx.dir,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        ctx.track(proc)
        timed_out = False
        try:
            if on_start:
                on_start(proc)
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            rc = proc.wait(5)
        elapsed = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        r = LoadResult(args, rc, out.read().decode("utf-8", "replace"),
                       err.read().decode("utf-8", "replace"), elapsed)
    ctx.runs.append(r)
    ctx.note("%s -> exit %s in %.2f s" % (r.cmd(), r.rc, r.elapsed))
    if timed_out:
        raise TestFailure("%s did not exit within %.0f s (killed); stdout %r, stderr %r"
                          % (r.cmd(), timeout, r.stdout[:300],
                             r.stderr.strip().splitlines()[-4:]))
    return r


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_json(r):
    """The one-line JSON summary on stdout, with every key of the contract."""
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    check(len(lines) == 1, "--json: expected exactly one line on stdout, got %d; %s"
          % (len(lines), r.summary()))
    try:
        obj = json.loads(lines[0])
    except ValueError as e:
        raise TestFailure("--json: stdout is not JSON (%s); %s" % (e, r.summary()))
    check(isinstance(obj, dict), "--json: not an object: %r" % lines[0][:200])
    problems = []
    for key in ("connections", "connections_failed", "messages", "mismatches"):
        if not (isinstance(obj.get(key), int) and not isinstance(obj.get(key), bool)):
            problems.append("%s is %r, not an integer" % (key, obj.get(key, "<missing>")))
    for key in ("duration_s", "msgs_per_sec", "mib_per_sec", "mib_per_sec_out",
                "mib_per_sec_in"):
        if not is_number(obj.get(key)):
            problems.append("%s is %r, not a number" % (key, obj.get(key, "<missing>")))
    if not (isinstance(obj.get("targets"), list)
            and all(isinstance(t, str) for t in obj["targets"])):
        problems.append("targets is %r, not a list of strings" % obj.get("targets", "<missing>"))
    errors = obj.get("errors")
    if not isinstance(errors, dict):
        problems.append("errors is %r, not an object" % errors)
    else:
        for key in ERROR_KEYS:
            if not isinstance(errors.get(key), int) or isinstance(errors.get(key), bool):
                problems.append("errors.%s is %r, not an integer"
                                % (key, errors.get(key, "<missing>")))
    lat = obj.get("latency_us")
    if not isinstance(lat, dict):
        problems.append("latency_us is %r, not an object" % lat)
    else:
        for key in LATENCY_KEYS:
            v = lat.get(key, "<missing>")
            # with no echo at all there is no latency to report
            if not (is_number(v) or (v is None and obj.get("messages") == 0)):
                problems.append("latency_us.%s is %r, not a number" % (key, v))
    check(not problems, "--json summary does not match the contract: %s; line %r"
          % ("; ".join(problems), lines[0][:600]))
    return obj


def expect_clean(r, obj):
    """Exit 0, no errors, no mismatches."""
    check(r.rc == 0, "expected exit 0: %s" % r.summary())
    bad = {k: v for k, v in obj["errors"].items() if v}
    check(not bad, "errors reported on a clean run: %r; %s" % (bad, r.summary()))
    check(obj["mismatches"] == 0, "mismatches %r on a clean run" % obj["mismatches"])
    check(obj["connections_failed"] == 0,
          "connections_failed %r on a clean run" % obj["connections_failed"])


def check_latency_order(obj):
    lat = obj["latency_us"]
    seq = [lat[k] for k in ("p50", "p90", "p99", "p999", "max")]
    check(all(is_number(v) for v in seq), "latency values missing: %r" % lat)
    check(seq[0] > 0, "p50 latency %r us is not positive" % seq[0])
    check(all(a <= b for a, b in zip(seq, seq[1:])),
          "latency not ordered p50 <= p90 <= p99 <= p999 <= max: %r" % lat)
    check(seq[0] <= lat["max"] and lat["mean"] <= lat["max"] and lat["mean"] > 0,
          "mean latency %r outside (0, max]: %r" % (lat["mean"], lat))


def check_rate_consistent(obj):
    """msgs_per_sec is messages over duration_s."""
    d, m, mps = obj["duration_s"], obj["messages"], obj["msgs_per_sec"]
    check(d > 0, "duration_s %r is not positive" % d)
    want = m / d
    check(abs(mps - want) <= 0.05 * want + 1,
          "msgs_per_sec %r is not messages/duration_s = %d/%r = %.1f" % (mps, m, d, want))


def refusing_port(ctx):
    """A port of 127.0.0.1 that refuses connections for the rest of the
    test: held by a bound socket that never listens, so that no other
    process can start listening there meanwhile."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with ctx.lock:
        ctx.socks.append(s)
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def check_prompt(r, obj, limit, what):
    """The run ended well before the default --timeout (5 s) would have let
    it: duration_s, the client's own clock (from after its start-up to its
    exit), under limit; the wall time seen from here (which adds starting
    the program and a busy machine's delays) under twice that."""
    check(obj["duration_s"] < limit and r.elapsed < 2 * limit,
          "%s: duration_s %.2f s (expected < %.1f s), %.2f s wall time (expected < %.1f s)"
          % (what, obj["duration_s"], limit, r.elapsed, 2 * limit))


def error_counts(obj):
    return ", ".join("%s=%d" % (k, v) for k, v in obj["errors"].items() if v) or "none"


# ---------------------------------------------------------------------------
# the real daemon

def start_daemon(ctx, listen=("127.0.0.1:0",)):
    args = []
    for l in listen:
        args += ["-l", l]
    d = ctx.daemon(args, config=yaml_config())
    return d, d.wait_listening(len(listen))


def daemon_stats(d, settle=3.0):
    """The counters of the daemon's SIGUSR1 statistics line, once no
    connection is open any more (or after settle seconds)."""
    deadline = time.monotonic() + settle
    while True:
        mark = d.mark()
        d.send_signal(signal.SIGUSR1)
        m = d.wait_log(r"stats: .*accepted=\d+", 3.0, mark, what="with SIGUSR1 statistics")
        stats = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.string)}
        if stats.get("connections", 0) == 0 or time.monotonic() > deadline:
            return stats
        time.sleep(0.1)


# ---------------------------------------------------------------------------
# broken echo servers

class Stopped(Exception):
    pass


class FaultServer:
    """A listener on host port 0; every accepted connection runs
    handler(conn, server) in its own thread. Handlers use recv/send/finish
    below, which give up when the server is closed."""

    def __init__(self, handler, name, host="127.0.0.1", rcvbuf=None):
        self.handler, self.name = handler, name
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.conns, self.threads, self.problems = [], [], []
        self.accepted = 0
        self.accept_times = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if rcvbuf:  # inherited by accepted sockets; fixes their window
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((host, 0))
        self.sock.listen(512)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self.acceptor.start()

    def _accept_loop(self):
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(0.1)
            t = threading.Thread(target=self._run, args=(c,), daemon=True)
            with self.lock:
                self.conns.append(c)
                self.threads.append(t)
                self.accepted += 1
                self.accept_times.append(time.monotonic())
            t.start()

    def _run(self, c):
        try:
            self.handler(c, self)
        except (Stopped, OSError):
            pass  # the client went away, or the test is over
        except Exception as e:  # a bug in the test's own server
            with self.lock:
                self.problems.append("%s: %s" % (type(e).__name__, e))
        finally:
            try:
                c.close()
            except OSError:
                pass

    def recv(self, c, n=65536):
        """Some bytes, or b"" at EOF."""
        while True:
            if self.stop.is_set():
                raise Stopped()
            try:
                return c.recv(n)
            except socket.timeout:
                continue

    def send(self, c, data):
        view = memoryview(bytes(data))
        while view:
            if self.stop.is_set():
                raise Stopped()
            try:
                n = c.send(view)
            except socket.timeout:
                continue
            view = view[n:]

    def finish(self, c, limit=10.0):
        """FIN, then read (and drop) until the client closes, so that the
        final close cannot turn into a reset."""
        c.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self.recv(c):
            pass

    def close(self):
        self.stop.set()
        self.acceptor.join(2.0)
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            threads, conns = list(self.threads), list(self.conns)
        for t in threads:
            t.join(1.0)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass


def echo_handler(c, srv):
    """A correct echo server."""
    while True:
        data = srv.recv(c)
        if not data:
            return srv.finish(c)
        srv.send(c, data)


def rewriting_handler(rewrite, at_eof=b""):
    """Echoes rewrite(chunk, stream_offset) for each chunk read; at the
    client's EOF sends at_eof, then FIN."""
    def handler(c, srv):
        pos = 0
        while True:
            data = srv.recv(c)
            if not data:
                if at_eof:
                    srv.send(c, at_eof)
                return srv.finish(c)
            out = rewrite(data, pos)
            pos += len(data)
            if out:
                srv.send(c, out)
    return handler


def bitflip_every(every):
    """Flips bit 2 of each byte whose stream offset is every-1 mod every."""
    def rewrite(data, pos):
        buf = bytearray(data)
        for i in range((every - 1 - pos) % every, len(buf), every):
            buf[i] ^= 0x04
        return buf
    return rewriting_handler(rewrite)


def insert_byte_at(offset):
    """Inserts one byte (not the one due there) before stream offset."""
    def rewrite(data, pos):
        if pos <= offset < pos + len(data):
            k = offset - pos
            return data[:k] + bytes([data[k] ^ 0x5A]) + data[k:]
        return data
    return rewriting_handler(rewrite)


def swap_window(start, first, total):
    """Holds the total bytes from stream offset start and echoes them with
    the first `first` bytes moved behind the rest (once per connection)."""
    def handler(c, srv):
        pend = bytearray()

        def rewrite(data, pos):
            out = bytearray()
            i0 = max(0, min(len(data), start - pos))
            i1 = max(0, min(len(data), start + total - pos))
            out += data[:i0]
            if i1 > i0:
                pend.extend(data[i0:i1])
                if len(pend) == total:
                    out += pend[first:] + pend[:first]
            out += data[i1:]
            return out
        return rewriting_handler(rewrite)(c, srv)
    return handler


def truncating_handler(limit):
    """Echoes faithfully until it has read `limit` bytes; of the chunk that
    reaches the limit it echoes all but the last byte, then closes (FIN)."""
    def handler(c, srv):
        pos = 0
        while True:
            data = srv.recv(c)
            if not data:
                return srv.finish(c)
            pos += len(data)
            if pos >= limit:
                srv.send(c, data[:-1])
                return srv.finish(c)
            srv.send(c, data)
    return handler


def silent_handler(c, srv):
    """Accepts and reads, never echoes."""
    while srv.recv(c):
        pass
    srv.finish(c)


def resetting_handler(limit):
    """Echoes until it has read `limit` bytes, then echoes half of that
    chunk and resets the connection (SO_LINGER 0)."""
    def handler(c, srv):
        pos = 0
        while True:
            data = srv.recv(c)
            if not data:
                return srv.finish(c)
            pos += len(data)
            if pos >= limit:
                srv.send(c, data[:len(data) // 2])
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
                return
            srv.send(c, data)
    return handler


def stalling_handler(stall):
    """A correct echo server that reads nothing for its first stall seconds."""
    def handler(c, srv):
        if srv.stop.wait(stall):
            raise Stopped()
        echo_handler(c, srv)
    return handler


def no_eof_handler(c, srv):
    """Echoes faithfully, but after the client's half-close neither closes
    nor sends EOF: holds the connection until the test ends."""
    while True:
        data = srv.recv(c)
        if not data:
            srv.stop.wait(60)
            raise Stopped()
        srv.send(c, data)


def closing_handler(c, srv):
    """Closes every connection at once, before reading anything."""
    c.close()


def delaying_handler(delay):
    """A correct echo server that waits delay seconds before each echo."""
    def handler(c, srv):
        while True:
            data = srv.recv(c)
            if not data:
                return srv.finish(c)
            time.sleep(delay)
            srv.send(c, data)
    return handler


def run_faulty(ctx, handler, name, extra=(), msg_timeout="1s", timeout=12.0):
    """Runs the client against a fault server; expects exit 1 with a JSON
    summary. Returns (result, summary, server)."""
    srv = ctx.server(handler, name)
    args = ["-c", "2", "-d", "1s", "--timeout", msg_timeout] + list(extra) + [
        "-q", "--json", "127.0.0.1:%d" % srv.port]
    r = run_load(ctx, args, timeout)
    check(srv.accepted >= 1, "%s: the client never connected; %s" % (name, r.summary()))
    check(not srv.problems, "test bug in the %s server: %s" % (name, srv.problems))
    obj = parse_json(r)
    ctx.note("%s: %s" % (name, r.stdout.strip()))
    check(r.rc == 1, "%s: expected exit 1, errors %s, mismatches %s; %s"
          % (name, error_counts(obj), obj["mismatches"], r.summary()))
    return r, obj, srv


# ---------------------------------------------------------------------------
# against the real daemon

@test
def daemon_200_connections(ctx):
    """200 connections for 2 s against coechod: exit 0, every key of the
    JSON summary, 200 up, messages verified, no error, ordered latencies;
    the daemon saw 200 connections and about messages*64 bytes."""
    d, found = start_daemon(ctx)
    port = found[0][1]
    target = "127.0.0.1:%d" % port
    r = run_load(ctx, ["-c", "200", "-d", "2s", "-q", "--json", target], 20)
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["targets"] == [target], "targets %r, expected [%r]" % (obj["targets"], target))
    check(obj["connections"] == 200, "connections %r, expected 200" % obj["connections"])
    check(obj["messages"] > 0, "messages %r, expected > 0" % obj["messages"])
    # duration_s runs until every connection has seen EOF: the upper bound
    # only catches a run far too long (the default -d is 10 s).
    check(1.8 <= obj["duration_s"] <= 8.0, "duration_s %r for -d 2s" % obj["duration_s"])
    check(obj["mib_per_sec"] > 0, "mib_per_sec %r" % obj["mib_per_sec"])
    check_latency_order(obj)
    check_rate_consistent(obj)
    stats = daemon_stats(d)
    ctx.note("daemon: %r" % stats)
    check(stats.get("accepted") == 200, "daemon accepted %r connections, expected 200"
          % stats.get("accepted"))
    sent = obj["messages"] * 64
    check(sent <= stats.get("bytes_in", -1) <= sent + 200 * 64,
          "daemon read %r bytes, but the client reports %d verified 64-byte echoes"
          % (stats.get("bytes_in"), obj["messages"]))


def has_socket(pid):
    """Whether pid holds a socket (its first connection is under way)."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                return True
        except OSError:
            pass
    return False


def vmsize_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise TestFailure("no VmSize in /proc/%d/status" % pid)


@test
def spawn_failures_are_an_error_kind(ctx):
    """-c 200 --connect-rate 100 -d 4s; once the first connection is under
    way its address space is limited (RLIMIT_AS, prlimit) to what it maps
    plus 1 MiB, less than the next 8 MiB slab of stacks that the connections
    past the first slab's 64 need: those connections count as errors.spawn
    and as failed,
    one warning on stderr; those that started run to the end with no other
    error or mismatch; exit 1."""
    if not hasattr(resource, "prlimit"):
        raise TestSkip("no resource.prlimit")
    with open(COECHO_LOAD, "rb") as f:
        if b"__asan_init" in f.read():
            raise TestSkip("AddressSanitizer reserves terabytes of address space: "
                           "RLIMIT_AS cannot be used")
    d, found = start_daemon(ctx)
    target = "127.0.0.1:%d" % found[0][1]
    conns = 200
    limited = []

    def limit(proc):
        harness.wait_for(lambda: has_socket(proc.pid) or proc.poll() is not None, 5.0,
                 "coecho-load's first connection")
        try:
            _, hard = resource.prlimit(proc.pid, resource.RLIMIT_AS)
            want = vmsize_bytes(proc.pid) + 1024 * 1024
            if hard == resource.RLIM_INFINITY or hard >= want:
                resource.prlimit(proc.pid, resource.RLIMIT_AS, (want, hard))
                limited.append(want)
        except (OSError, ValueError, TestFailure) as e:
            ctx.note("cannot limit coecho-load: %s" % e)
    r = run_load(ctx, ["-c", conns, "--connect-rate", "100", "-d", "4s", "-q", "--json",
                       target], 20, on_start=limit)
    if not limited:
        raise TestSkip("cannot set coecho-load's RLIMIT_AS")
    obj = parse_json(r)
    errs = obj["errors"]
    ctx.note("RLIMIT_AS %d MiB: %d up, errors %r" % (limited[0] >> 20, obj["connections"],
                                                       error_counts(obj)))
    check(r.rc == 1, "expected exit 1: %s" % r.summary())
    check(errs["spawn"] >= 10, "errors.spawn %r, expected >= 10; %s" % (errs["spawn"],
                                                                         r.summary()))
    check(obj["connections"] >= 1, "no connection up; %s" % r.summary())
    check(obj["connections"] + obj["connections_failed"] == conns,
          "%d up + %d failed, expected %d" % (obj["connections"], obj["connections_failed"],
                                              conns))
    check(obj["connections_failed"] == errs["spawn"],
          "%d failed but %d spawn errors" % (obj["connections_failed"], errs["spawn"]))
    other = {k: v for k, v in errs.items() if v and k != "spawn"}
    check(not other and obj["mismatches"] == 0,
          "errors besides spawn: %r, mismatches %r" % (other, obj["mismatches"]))
    check(obj["messages"] > 0, "no message echoed by the connections that started")
    warnings = [l for l in r.stderr.splitlines() if "cannot start connection" in l]
    check(len(warnings) == 1, "%d 'cannot start connection' lines on stderr: %r"
          % (len(warnings), r.stderr[-500:]))


@test
def exact_message_count(ctx):
    """-n 1000 -c 10: exactly 1000 messages, and the daemon read exactly
    1000 * 64 bytes."""
    d, found = start_daemon(ctx)
    r = run_load(ctx, ["-n", "1000", "-c", "10", "-q", "--json",
                       "127.0.0.1:%d" % found[0][1]])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["messages"] == 1000, "messages %r, expected 1000" % obj["messages"])
    check(obj["connections"] == 10, "connections %r, expected 10" % obj["connections"])
    stats = daemon_stats(d)
    check(stats.get("bytes_in") == 64000 and stats.get("bytes_out") == 64000,
          "daemon read %r and wrote %r bytes, expected 64000 for 1000 messages of 64 B"
          % (stats.get("bytes_in"), stats.get("bytes_out")))


@test
def fewer_messages_than_connections(ctx):
    """-n 7 -c 10: exactly 7 messages, exit 0."""
    d, found = start_daemon(ctx)
    r = run_load(ctx, ["-n", "7", "-c", "10", "-q", "--json", "127.0.0.1:%d" % found[0][1]])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["messages"] == 7, "messages %r, expected 7" % obj["messages"])
    stats = daemon_stats(d)
    check(stats.get("bytes_in") == 7 * 64, "daemon read %r bytes, expected %d"
          % (stats.get("bytes_in"), 7 * 64))


@test
def large_pipelined(ctx):
    """-s 64KiB -p 4: -n 400 gives exactly 400 messages (26214400 bytes at
    the daemon); with -d, mib_per_sec is msgs_per_sec * 64 KiB."""
    d, found = start_daemon(ctx)
    target = "127.0.0.1:%d" % found[0][1]
    r = run_load(ctx, ["-s", "64KiB", "-p", "4", "-c", "4", "-n", "400", "-q", "--json", target])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["messages"] == 400, "messages %r, expected 400" % obj["messages"])
    stats = daemon_stats(d)
    check(stats.get("bytes_in") == 400 * 65536, "daemon read %r bytes, expected %d"
          % (stats.get("bytes_in"), 400 * 65536))

    r = run_load(ctx, ["-s", "64KiB", "-p", "4", "-c", "4", "-d", "1s", "-q", "--json", target])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["messages"] > 0, "messages %r" % obj["messages"])
    check_latency_order(obj)
    want = obj["msgs_per_sec"] * 65536 / MiB
    check(abs(obj["mib_per_sec"] - want) <= 0.1 * want + 0.1,
          "mib_per_sec %r, but msgs_per_sec %r of 64 KiB make %.2f MiB/s"
          % (obj["mib_per_sec"], obj["msgs_per_sec"], want))
    check(abs(obj["mib_per_sec_in"] - obj["mib_per_sec"]) <= 0.1 * want + 0.1
          and abs(obj["mib_per_sec_out"] - obj["mib_per_sec_in"]) <= 0.1 * want + 0.1,
          "in/out throughput %r/%r differ from mib_per_sec %r (every byte sent came back)"
          % (obj["mib_per_sec_in"], obj["mib_per_sec_out"], obj["mib_per_sec"]))


@test
def message_size_extremes(ctx):
    """1-byte messages and 1 MiB messages are echoed and counted exactly."""
    d, found = start_daemon(ctx)
    target = "127.0.0.1:%d" % found[0][1]
    for args, n, size in ((["-s", "1B", "-n", "500", "-c", "5"], 500, 1),
                          (["-s", "1MiB", "-n", "12", "-c", "3", "-p", "2"], 12, MiB),
                          (["-s", "1000", "-n", "50", "-c", "2"], 50, 1000)):
        r = run_load(ctx, args + ["-q", "--json", target])
        obj = parse_json(r)
        expect_clean(r, obj)
        check(obj["messages"] == n, "%s: messages %r, expected %d"
              % (r.cmd(), obj["messages"], n))
    stats = daemon_stats(d)
    total = 500 * 1 + 12 * MiB + 50 * 1000
    check(stats.get("bytes_in") == total, "daemon read %r bytes, expected %d"
          % (stats.get("bytes_in"), total))


@test
def open_loop_rate(ctx):
    """-r 2000 -d 2s -c 20: msgs_per_sec within 20% of 2000."""
    d, found = start_daemon(ctx)
    r = run_load(ctx, ["-r", "2000", "-d", "2s", "-c", "20", "-q", "--json",
                       "127.0.0.1:%d" % found[0][1]])
    obj = parse_json(r)
    expect_clean(r, obj)
    ctx.note("%d messages in %.3f s: %.1f/s" % (obj["messages"], obj["duration_s"],
                                               obj["msgs_per_sec"]))
    # Load only lowers these figures: a late writer catches up on its
    # schedule, claims nothing after -d, and duration_s (>= 2 s) grows by the
    # final drain. Above +20% the client sends faster than asked.
    check(1600 <= obj["msgs_per_sec"] <= 2400,
          "msgs_per_sec %r, expected 2000 +- 20%%" % obj["msgs_per_sec"])
    check(3200 <= obj["messages"] <= 4800,
          "messages %r in 2 s at 2000/s, expected 4000 +- 20%%" % obj["messages"])
    check_rate_consistent(obj)


@test
def open_loop_latency_from_schedule(ctx):
    """Open loop, latency from the scheduled send time: a server that reads
    nothing for its first second, -s 256KiB -r 200 -c 1 -d 2s. Only ~4 MiB
    fit in the socket buffers, so most messages due in that second leave
    late; counted from their schedule they wait up to 1 s, so p90 is
    hundreds of ms (counted from the actual send, only the few buffered
    messages would be slow and p90 would be a few ms)."""
    srv = ctx.server(stalling_handler(1.0), "stalling echo", rcvbuf=64 * 1024)
    r = run_load(ctx, ["-s", "256KiB", "-r", "200", "-d", "2s", "-c", "1", "-q", "--json",
                       "127.0.0.1:%d" % srv.port], 15)
    obj = parse_json(r)
    expect_clean(r, obj)
    lat = obj["latency_us"]
    ctx.note("latency %r, messages %r" % (lat, obj["messages"]))
    check(200 <= obj["messages"] <= 480, "messages %r, expected about 400" % obj["messages"])
    check(lat["max"] >= 800000, "max latency %r us, but the server stalled for 1 s" % lat["max"])
    check(lat["p90"] >= 200000,
          "p90 latency %r us: messages due during the server's 1 s stall left late; "
          "counted from their schedule, over 10%% of them waited > 200 ms" % lat["p90"])


@test
def ipv6_target(ctx):
    """[::1]:PORT against a daemon listening only on ::1."""
    if not have_ipv6_loopback():
        raise TestSkip("no IPv6 loopback on this machine")
    d, found = start_daemon(ctx, ["[::1]:0"])
    port = found[0][1]
    r = run_load(ctx, ["-c", "4", "-d", "1s", "-q", "--json", "[::1]:%d" % port])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["connections"] == 4 and obj["messages"] > 0,
          "connections %r, messages %r" % (obj["connections"], obj["messages"]))
    check(len(obj["targets"]) == 1 and "::1" in obj["targets"][0]
          and str(port) in obj["targets"][0], "targets %r" % obj["targets"])
    check(daemon_stats(d).get("accepted") == 4, "daemon did not see 4 connections")


@test
def name_target(ctx):
    """A host name: localhost:PORT (daemon on 127.0.0.1 and ::1, same port)."""
    listen = ["127.0.0.1:%d"]
    if have_ipv6_loopback():
        listen.append("[::1]:%d")
    last = None
    for _ in range(5):  # the fixed port may be taken between probe and bind
        port = free_port()
        try:
            d, found = start_daemon(ctx, [l % port for l in listen])
            break
        except TestFailure as e:
            last = e
    else:
        raise last
    r = run_load(ctx, ["-c", "3", "-d", "1s", "-q", "--json", "localhost:%d" % port])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["connections"] == 3 and obj["messages"] > 0,
          "connections %r, messages %r" % (obj["connections"], obj["messages"]))


@test
def two_targets(ctx):
    """Two targets share -c 10 round-robin: 5 connections each."""
    d1, f1 = start_daemon(ctx)
    d2, f2 = start_daemon(ctx)
    t1, t2 = "127.0.0.1:%d" % f1[0][1], "127.0.0.1:%d" % f2[0][1]
    r = run_load(ctx, ["-c", "10", "-d", "1s", "-q", "--json", t1, t2])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["targets"] == [t1, t2], "targets %r, expected %r" % (obj["targets"], [t1, t2]))
    check(obj["connections"] == 10, "connections %r, expected 10" % obj["connections"])
    a1, a2 = daemon_stats(d1).get("accepted"), daemon_stats(d2).get("accepted")
    check((a1, a2) == (5, 5), "the daemons accepted %r and %r connections, expected 5 and 5"
          % (a1, a2))


@test
def connect_rate(ctx):
    """--connect-rate 20 -c 10: the connections open over about 0.45 s,
    not all at once."""
    srv = ctx.server(echo_handler, "echo")
    r = run_load(ctx, ["--connect-rate", "20", "-c", "10", "-d", "1500ms", "-q", "--json",
                       "127.0.0.1:%d" % srv.port])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["connections"] == 10, "connections %r" % obj["connections"])
    times = sorted(srv.accept_times)
    check(len(times) == 10, "server accepted %d connections" % len(times))
    span = times[-1] - times[0]
    ctx.note("accepts spread over %.3f s" % span)
    # The accept times come from a Python thread that competes for the GIL
    # with the echo threads: late accepts stretch the span, hence the wide
    # upper bound; the lower bound is the contract (not all at once).
    check(0.3 <= span <= 2.4, "10 connections at 20/s opened within %.3f s, expected ~0.45 s"
          % span)


# ---------------------------------------------------------------------------
# against broken servers

def expect_mismatch(srv, r, name):
    """The client connected to the faulty server and reported it: exit 1,
    a mismatch error and a mismatching message."""
    check(srv.accepted >= 1, "%s: the client never connected" % name)
    obj = parse_json(r)
    check(r.rc == 1 and obj["errors"]["mismatch"] >= 1 and obj["mismatches"] >= 1,
          "%s: expected exit 1 with a mismatch, got exit %s, errors %s, mismatches %s; %s"
          % (name, r.rc, error_counts(obj), obj["mismatches"], r.summary()))


@test
def fault_bit_flip(ctx):
    """A server flipping one bit every 3001 bytes: exit 1, mismatches."""
    r, obj, _ = run_faulty(ctx, bitflip_every(3001), "bit flip")
    check(obj["mismatches"] >= 1 and obj["errors"]["mismatch"] >= 1,
          "mismatches %r, errors.mismatch %r, expected >= 1; errors %s"
          % (obj["mismatches"], obj["errors"]["mismatch"], error_counts(obj)))


@test
def fault_truncate(ctx):
    """A server echoing all but the last byte of the first 2000+ bytes,
    then closing: exit 1, unexpected_eof or mismatch."""
    r, obj, _ = run_faulty(ctx, truncating_handler(2000), "truncate")
    e = obj["errors"]
    check(e["unexpected_eof"] + e["mismatch"] >= 1,
          "expected unexpected_eof or mismatch, errors %s" % error_counts(obj))


@test
def fault_extra_byte(ctx):
    """An extra byte mid-stream (at offset 1000), and an extra byte after
    the client's half-close: exit 1, mismatch, both times."""
    for handler, name, args in (
            (insert_byte_at(1000), "extra byte mid-stream", ["-d", "1s", "--timeout", "1s"]),
            (rewriting_handler(lambda data, pos: data, at_eof=b"\x55"),
             "extra byte at the end", ["-n", "100", "--timeout", "2s"])):
        srv = ctx.server(handler, name)
        r = run_load(ctx, ["-c", "2"] + args + ["-q", "--json", "127.0.0.1:%d" % srv.port], 12)
        expect_mismatch(srv, r, name)


@test
def fault_swap_chunks(ctx):
    """Reordering: two whole messages swapped (-p 2), and the two parts of
    one message swapped (20 and 44 bytes, ping-pong): exit 1, mismatch."""
    for handler, name, extra in (
            (swap_window(64 * 50, 64, 128), "two messages swapped", ["-p", "2"]),
            (swap_window(64 * 50, 20, 64), "two parts of a message swapped", ["-p", "1"])):
        srv = ctx.server(handler, name)
        r = run_load(ctx, ["-c", "2", "-d", "1s", "--timeout", "1s", "-s", "64"] + extra
                     + ["-q", "--json", "127.0.0.1:%d" % srv.port], 12)
        expect_mismatch(srv, r, name)


@test
def fault_never_echoes(ctx):
    """A server that reads but never echoes, --timeout 300ms -d 1s: exit 1
    with message_timeout, no verified message, done well before the
    default 5 s timeout would allow."""
    r, obj, _ = run_faulty(ctx, silent_handler, "silent", msg_timeout="300ms")
    check(obj["errors"]["message_timeout"] >= 1,
          "errors.message_timeout %r, expected >= 1; errors %s"
          % (obj["errors"]["message_timeout"], error_counts(obj)))
    check(obj["messages"] == 0, "messages %r from a server that never echoes" % obj["messages"])
    check_prompt(r, obj, 4.5, "-d 1s --timeout 300ms")


@test
def fault_reset(ctx):
    """A server that resets each connection after 640 bytes: exit 1, reset."""
    r, obj, _ = run_faulty(ctx, resetting_handler(640), "reset")
    check(obj["errors"]["reset"] >= 1, "errors.reset %r, expected >= 1; errors %s"
          % (obj["errors"]["reset"], error_counts(obj)))


@test
def fault_no_eof(ctx):
    """A server that echoes everything but never sends EOF after the
    client's half-close: -n 100 --timeout 300ms ends with exit 1 and an
    error, promptly."""
    srv = ctx.server(no_eof_handler, "no EOF")
    r = run_load(ctx, ["-c", "2", "-n", "100", "--timeout", "300ms", "-q", "--json",
                       "127.0.0.1:%d" % srv.port], 12)
    obj = parse_json(r)
    check(r.rc == 1 and sum(obj["errors"].values()) >= 1,
          "expected exit 1 with an error: exit %s, errors %s; %s"
          % (r.rc, error_counts(obj), r.summary()))
    check(obj["messages"] == 100, "messages %r: all 100 echoes were correct" % obj["messages"])
    check_prompt(r, obj, 4.0, "--timeout 300ms")


@test
def fault_close_at_once(ctx):
    """A server that closes each connection on accept: exit 1, an error,
    no message."""
    r, obj, _ = run_faulty(ctx, closing_handler, "close at once")
    check(sum(obj["errors"].values()) >= 1 and obj["messages"] == 0,
          "errors %s, messages %r" % (error_counts(obj), obj["messages"]))
    check_prompt(r, obj, 4.0, "a server closing at once")


@test
def connect_timeout(ctx):
    """A listener with a full backlog that never accepts: new connections'
    SYNs go unanswered, so with --timeout 500ms the connects time out:
    exit 1, connect_timeout."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with ctx.lock:
        ctx.socks.append(lsock)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    # fill the accept queue ourselves
    fillers = []
    for _ in range(3):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with ctx.lock:
            ctx.socks.append(s)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    # Full once one of them is connected (the queue holds one; the others'
    # SYNs are dropped).
    _, ready, _ = select.select([], fillers, [], 5.0)
    check(any(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in ready),
          "no connection to fill the accept queue within 5 s")
    r = run_load(ctx, ["-c", "3", "-d", "1s", "--timeout", "500ms", "-q", "--json",
                       "127.0.0.1:%d" % port], 12)
    obj = parse_json(r)
    check(r.rc == 1, "expected exit 1: %s" % r.summary())
    check(obj["errors"]["connect_timeout"] >= 1 and obj["connections_failed"] >= 1,
          "errors.connect_timeout %r, connections_failed %r; errors %s"
          % (obj["errors"]["connect_timeout"], obj["connections_failed"], error_counts(obj)))
    check_prompt(r, obj, 4.5, "--timeout 500ms")


@test
def connect_refused(ctx):
    """Nothing listening: exit 1, connect_refused, in --json and in the text
    summary's errors line."""
    target = "127.0.0.1:%d" % refusing_port(ctx)
    r = run_load(ctx, ["-c", "3", "-d", "1s", "-q", "--json", target], 12)
    obj = parse_json(r)
    check(r.rc == 1, "expected exit 1: %s" % r.summary())
    check(obj["errors"]["connect_refused"] >= 1,
          "errors.connect_refused %r, expected >= 1; errors %s"
          % (obj["errors"]["connect_refused"], error_counts(obj)))
    check(obj["connections_failed"] >= 1 and obj["connections"] == 0 and obj["messages"] == 0,
          "connections %r up, %r failed, messages %r with nothing listening"
          % (obj["connections"], obj["connections_failed"], obj["messages"]))
    r = run_load(ctx, ["-c", "3", "-d", "1s", target], 12)
    check(r.rc == 1, "text mode: expected exit 1: %s" % r.summary())
    m = re.search(r"(?m)^errors\s+(.*)$", r.stdout)
    check(m and re.search(r"\bconnect_refused=[1-9]", m.group(1)),
          "text summary lacks 'errors ... connect_refused=N': %r" % r.stdout[:500])


# ---------------------------------------------------------------------------
# command line and output

@test
def usage_errors(ctx):
    """Bad command lines: exit 2, a one-line reason then the usage on
    stderr, nothing on stdout."""
    port = refusing_port(ctx)  # a buggy client that runs anyway fails fast here
    t = "127.0.0.1:%d" % port
    cases = [
        ([], r"target|host|argument|usage"),
        (["-c", "0", t], r"-c\b|connection|\b0\b"),
        (["-c", "abc", t], r"-c\b|connection|abc"),
        (["-s", "1XB", t], r"-s\b|size|1XB|unit"),
        (["-d", "5", t], r"-d\b|duration|unit|\b5\b"),
        (["-d", "1s", "-n", "10", t], r"-d|-n|duration|messages|exclu|both|together"),
        (["-p", "0", t], r"-p\b|pipeline|\b0\b"),
        (["nohost"], r"nohost|target|port"),
        (["[::1"], r"\[::1|target|bracket|port"),
        (["[::1:%d" % port], r"\[::1|target|bracket"),
        (["--no-such-flag", t], r"no-such-flag|unrecognized|unknown|option"),
        ([t, "-c"], r"-c\b|connections|argument|requires"),
    ]
    problems = []
    for args, reason_rx in cases:
        r = run_load(ctx, args, 10)
        what = " ".join(args) or "(no arguments)"
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        if r.rc != 2:
            problems.append("%s: exit %s, expected 2; stderr %r" % (what, r.rc, lines[:2]))
        elif not lines or re.match(r"(?i)\s*usage", lines[0]):
            problems.append("%s: no one-line reason before the usage: %r" % (what, lines[:2]))
        elif not re.search(r"(?i)usage", r.stderr):
            problems.append("%s: no usage on stderr: %r" % (what, lines[:3]))
        elif not re.search(reason_rx, lines[0], re.I):
            problems.append("%s: reason %r does not say what is wrong" % (what, lines[0]))
        elif r.stdout.strip():
            problems.append("%s: output on stdout: %r" % (what, r.stdout[:200]))
    check(not problems, "%d of %d bad command lines:\n%s"
          % (len(problems), len(cases), "\n".join(problems)))


@test
def help_and_version(ctx):
    """-h/--help: usage on stdout naming every option, exit 0;
    -V/--version: "coecho-load VERSION", exit 0."""
    for flag in ("-h", "--help"):
        r = run_load(ctx, [flag], 10)
        check(r.rc == 0, "%s: %s" % (flag, r.summary()))
        check(re.search(r"(?i)usage", r.stdout), "%s: no usage on stdout: %s" % (flag, r.summary()))
        missing = [o for o in ("--connections", "--connect-rate", "--duration", "--messages",
                               "--size", "--pipeline", "--rate", "--timeout", "--json",
                               "--histogram", "--progress", "--quiet", "--help", "--version")
                   if o not in r.stdout]
        check(not missing, "%s: usage does not mention %s" % (flag, " ".join(missing)))
    version = configured_version()
    for flag in ("-V", "--version"):
        r = run_load(ctx, [flag], 10)
        check(r.rc == 0, "%s: %s" % (flag, r.summary()))
        m = re.match(r"coecho-load (\S+)\s*$", r.stdout)
        check(m, "%s: stdout %r, expected 'coecho-load VERSION'" % (flag, r.stdout[:200]))
        if version:
            check(m.group(1) == version, "%s: version %r, configure.ac says %r"
                  % (flag, m.group(1), version))


@test
def histogram_file(ctx):
    """--histogram FILE: header, one row per non-empty bucket, values
    increasing, percentiles non-decreasing up to 100, counts summing to
    messages; its median agrees with the summary's p50."""
    d, found = start_daemon(ctx)
    path = os.path.join(ctx.dir, "latency.hist")
    r = run_load(ctx, ["-c", "4", "-d", "1s", "-q", "--json", "--histogram", path,
                       "127.0.0.1:%d" % found[0][1]])
    obj = parse_json(r)
    expect_clean(r, obj)
    check(os.path.isfile(path), "no histogram file %s" % path)
    with open(path) as f:
        text = f.read()
    lines = text.splitlines()
    check(lines and lines[0].strip() == "# value_us percentile count",
          "histogram header %r, expected '# value_us percentile count'"
          % (lines[0] if lines else text[:100]))
    rows = []
    for i, line in enumerate(lines[1:], 2):
        parts = line.split()
        try:
            check(len(parts) == 3, "")
            rows.append((float(parts[0]), float(parts[1]), int(parts[2])))
        except (ValueError, TestFailure):
            raise TestFailure("histogram line %d is not 'value_us percentile count': %r"
                              % (i, line))
    check(rows, "histogram has no rows")
    for (v0, p0, _), (v1, p1, _), i in zip(rows, rows[1:], range(3, len(rows) + 2)):
        check(v1 > v0, "histogram line %d: value %r not above %r" % (i, v1, v0))
        check(p1 >= p0, "histogram line %d: percentile %r below %r" % (i, p1, p0))
    check(all(0 <= p <= 100 for _, p, _ in rows), "percentile outside 0-100")
    check(abs(rows[-1][1] - 100) < 1e-6, "last percentile %r, expected 100" % rows[-1][1])
    check(all(c >= 1 for _, _, c in rows), "a row with count < 1 (rows are non-empty buckets)")
    total = sum(c for _, _, c in rows)
    check(total == obj["messages"], "histogram counts sum to %d, messages %d"
          % (total, obj["messages"]))
    median = next(v for v, p, _ in rows if p >= 50)
    p50 = obj["latency_us"]["p50"]
    check(p50 / 2 - 2 <= median <= p50 * 2 + 2,
          "histogram median bucket %r us far from the summary's p50 %r us" % (median, p50))


@test
def text_summary(ctx):
    """Without --json and -q: the text summary of the contract on stdout,
    nothing on stderr (not a terminal, no --progress)."""
    d, found = start_daemon(ctx)
    target = "127.0.0.1:%d" % found[0][1]
    r = run_load(ctx, ["-c", "4", "-d", "1s", target])
    check(r.rc == 0, "expected exit 0: %s" % r.summary())
    out = r.stdout
    for prefix in ("target", "connections", "messages", "throughput", "latency (us)",
                   "errors", "mismatches"):
        check(re.search(r"(?m)^%s\s" % re.escape(prefix), out),
              "no line starting %r in the summary:\n%s" % (prefix, out))
    num = r"(\d+(?:\.\d+)?)"
    patterns = [
        r"^target\s+%s\s*$" % re.escape(target),
        r"^connections\s+4 up, 0 failed\s*$",
        r"^messages\s+[1-9]\d* in %s s, %s/s\s*$" % (num, num),
        r"^throughput\s+%s MiB/s out, %s MiB/s in\s*$" % (num, num),
        r"^latency \(us\)\s+p50 %s\s+p90 %s\s+p99 %s\s+p99\.9 %s\s+max %s\s*$"
        % (num, num, num, num, num),
        r"^errors\s+none\s*$",
        r"^mismatches\s+0\s*$",
    ]
    bad = [p for p in patterns if not re.search("(?m)" + p, out)]
    check(not bad, "summary lines not as in the contract (%s):\n%s" % ("; ".join(bad), out))
    m = re.search(r"(?m)^latency \(us\)\s+p50 %s\s+p90 %s\s+p99 %s\s+p99\.9 %s\s+max %s"
                  % (num, num, num, num, num), out)
    vals = [float(v) for v in m.groups()]
    check(vals == sorted(vals), "latencies not ordered: %r" % vals)
    check(not r.stderr.strip(), "stderr not empty without --progress: %r"
          % r.stderr.splitlines()[:3])


@test
def quiet(ctx):
    """-q without --json: nothing on stdout, exit 0."""
    d, found = start_daemon(ctx)
    r = run_load(ctx, ["-q", "-c", "2", "-d", "500ms", "127.0.0.1:%d" % found[0][1]])
    check(r.rc == 0, "expected exit 0: %s" % r.summary())
    check(not r.stdout.strip(), "-q printed on stdout: %r" % r.stdout[:300])


@test
def progress_lines(ctx):
    """--progress on a 2.5 s run, stderr a pipe: at least one progress line
    arrives on stderr while the client still runs; stdout carries only the
    JSON summary."""
    d, found = start_daemon(ctx)
    args = ["--progress", "-c", "4", "-d", "2500ms", "--json", "127.0.0.1:%d" % found[0][1]]
    proc = subprocess.Popen([COECHO_LOAD] + args, cwd=ctx.dir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    ctx.track(proc)
    started = time.monotonic()
    seen = {"out": [], "err": []}  # (seconds since start, line)

    def reader(stream, sink):
        buf = b""
        for chunk in iter(lambda: os.read(stream.fileno(), 4096), b""):
            buf += chunk
            *done, buf = re.split(rb"[\r\n]", buf)
            now = time.monotonic() - started
            sink.extend((now, l.decode("utf-8", "replace")) for l in done if l.strip())
        if buf.strip():
            sink.append((time.monotonic() - started, buf.decode("utf-8", "replace")))

    readers = [threading.Thread(target=reader, args=(proc.stdout, seen["out"]), daemon=True),
               threading.Thread(target=reader, args=(proc.stderr, seen["err"]), daemon=True)]
    for t in readers:
        t.start()
    try:
        rc = proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise TestFailure("coecho-load %s did not exit within 15 s" % " ".join(args))
    ended = time.monotonic() - started
    for t in readers:
        t.join(5)
    out = [l for _, l in seen["out"]]
    r = LoadResult(args, rc, "\n".join(out), "\n".join(l for _, l in seen["err"]), ended)
    ctx.runs.append(r)
    ctx.note("stderr lines at %s s; exit after %.2f s"
             % ([round(t, 2) for t, _ in seen["err"]], ended))
    check(rc == 0, "expected exit 0: %s" % r.summary())
    during = [(t, l) for t, l in seen["err"] if t < ended - 0.3 and re.search(r"\d", l)]
    check(during, "no progress line on stderr during the run (stderr lines at %s, exit "
          "after %.2f s): %r" % ([round(t, 2) for t, _ in seen["err"]], ended,
                                 [l for _, l in seen["err"]][:4]))
    parse_json(r)


# ---------------------------------------------------------------------------
# threads, warm-up and the interval series

def start_daemon_workers(ctx, workers):
    """coechod with `workers` worker processes on one loopback port."""
    d = ctx.daemon([], config=yaml_config(extra="workers: %d\n" % workers))
    found = d.wait_listening(1)
    d.wait_log(r"\b%d workers ready" % workers, 20.0)
    return d, found[0][1]


@test
def two_threads(ctx):
    """-t 2 against coechod with 2 workers: exit 0, a JSON threads array of
    2 whose messages sum to the total, each thread with over 20% of them;
    -n counted exactly across threads with a warm-up (closed and open
    loop); the text summary gains a threads line."""
    d, port = start_daemon_workers(ctx, 2)
    target = "127.0.0.1:%d" % port
    r = run_load(ctx, ["-t", "2", "-c", "8", "-d", "1s", "-q", "--json", target], 20)
    obj = parse_json(r)
    expect_clean(r, obj)
    threads = obj.get("threads")
    check(isinstance(threads, list) and len(threads) == 2,
          "threads %r, expected a list of 2" % (threads,))
    for t in threads:
        check(all(is_number(t.get(k)) for k in ("messages", "cpu_user_s", "cpu_sys_s")),
              "thread entry %r lacks messages, cpu_user_s or cpu_sys_s" % (t,))
    total = sum(t["messages"] for t in threads)
    check(total == obj["messages"], "threads' messages sum to %d, the summary says %d"
          % (total, obj["messages"]))
    check(obj["messages"] > 0, "no message echoed")
    for i, t in enumerate(threads):
        check(t["messages"] > 0.2 * obj["messages"],
              "thread %d has %d of %d messages (expected > 20%%)"
              % (i, t["messages"], obj["messages"]))
    # -n is one budget for both threads; warm-up messages come on top of it.
    for extra in ([], ["-r", "5000"]):
        r = run_load(ctx, ["-t", "2", "-c", "4", "-n", "3000", "--warmup", "200ms", "-q",
                           "--json"] + extra + [target], 20)
        obj = parse_json(r)
        expect_clean(r, obj)
        check(obj["messages"] == 3000, "%s: %d messages counted, expected -n 3000"
              % (r.cmd(), obj["messages"]))
    r = run_load(ctx, ["-t", "2", "-c", "4", "-d", "300ms", target], 20)
    check(r.rc == 0, "expected exit 0: %s" % r.summary())
    check(re.search(r"(?m)^threads\s+2: messages \d+\.\d%/\d+\.\d%, "
                    r"cpu \d+\.\d\d/\d+\.\d\d s of \d+\.\d\d s\s*$", r.stdout),
          "no threads line as in the contract:\n%s" % r.stdout)


def slow_start_handler(slow_for, delay):
    """An echo server that delays every echo by delay seconds during its
    first slow_for seconds (from its first connection), then echoes at once."""
    lock = threading.Lock()
    began = []

    def handler(c, srv):
        with lock:
            if not began:
                began.append(time.monotonic())
        while True:
            data = srv.recv(c)
            if not data:
                return srv.finish(c)
            if time.monotonic() - began[0] < slow_for:
                time.sleep(delay)
            srv.send(c, data)
    return handler


@test
def warmup_excludes_slow_start(ctx):
    """A server slow (200 ms per echo) for its first second: with
    --warmup 1.5s those echoes are not counted (p99 under 100 ms) and the
    duration is the measured second; without, the max shows them."""
    srv = ctx.server(slow_start_handler(1.0, 0.2), "slow-start")
    target = "127.0.0.1:%d" % srv.port
    r = run_load(ctx, ["-c", "2", "-d", "1s", "--warmup", "1500ms", "-q", "--json", target], 20)
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["messages"] > 0, "no message counted after the warm-up")
    check(obj["latency_us"]["p99"] < 100000,
          "p99 %r us after a 1.5 s warm-up: the slow first second was counted"
          % obj["latency_us"]["p99"])
    check(0.9 <= obj["duration_s"] < 5, "duration_s %r: not the measured 1 s"
          % obj["duration_s"])
    srv2 = ctx.server(slow_start_handler(1.0, 0.2), "slow-start-2")
    r = run_load(ctx, ["-c", "2", "-d", "1s", "-q", "--json", "127.0.0.1:%d" % srv2.port], 20)
    obj = parse_json(r)
    expect_clean(r, obj)
    check(obj["latency_us"]["max"] >= 150000,
          "max %r us without warm-up: the 200 ms echoes are missing"
          % obj["latency_us"]["max"])


@test
def interval_series(ctx):
    """--interval 200ms --series F for -d 1s, 2 threads: 4 to 6 JSON lines,
    t increasing, messages summing exactly to the summary's."""
    d, found = start_daemon(ctx)
    path = os.path.join(ctx.dir, "series.jsonl")
    r = run_load(ctx, ["-t", "2", "-c", "4", "-d", "1s", "--interval", "200ms",
                       "--series", path, "-q", "--json", "127.0.0.1:%d" % found[0][1]], 20)
    obj = parse_json(r)
    expect_clean(r, obj)
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    check(4 <= len(lines) <= 6, "%d series lines for -d 1s at 200 ms: %r"
          % (len(lines), lines[:8]))
    rows = []
    for l in lines:
        try:
            row = json.loads(l)
        except ValueError:
            raise TestFailure("series line is not JSON: %r" % l)
        lat = row.get("latency_us", {})
        check(all(is_number(row.get(k)) for k in ("t", "messages", "msgs_per_sec", "errors"))
              and all(is_number(lat.get(k)) for k in ("p50", "p99", "max")),
              "series line lacks a key of the contract: %r" % l)
        rows.append(row)
    ts = [row["t"] for row in rows]
    check(ts == sorted(ts) and ts[0] > 0, "t not increasing from > 0: %r" % ts)
    total = sum(row["messages"] for row in rows)
    check(total == obj["messages"], "series messages sum to %d, the summary says %d"
          % (total, obj["messages"]))


@test
def thread_flag_errors(ctx):
    """-t 0, -t 257, -t above -c, --interval without --series and the
    reverse, --udp with --warmup: usage errors (exit 2)."""
    t = "127.0.0.1:%d" % refusing_port(ctx)
    cases = [["-t", "0", t], ["-t", "257", t], ["-t", "x", t], ["-c", "2", "-t", "3", t],
             ["--interval", "1s", t], ["--series", "f", t], ["--warmup", "x", t],
             ["--udp", "--warmup", "1s", t]]
    for args in cases:
        r = run_load(ctx, args, 10)
        check(r.rc == 2 and re.search(r"(?i)usage", r.stderr),
              "%s: expected a usage error: %s" % (" ".join(args), r.summary()))
    r = run_load(ctx, ["--help"], 10)
    missing = [o for o in ("--threads", "--warmup", "--interval", "--series")
               if o not in r.stdout]
    check(not missing, "usage does not mention %s" % " ".join(missing))


# ---------------------------------------------------------------------------
# runner

def main(argv):
    return harness.run_suite(argv, TESTS, "coecho-load-integration",
                        [("client", COECHO_LOAD, "COECHO_LOAD"), ("daemon", COECHOD, "COECHOD")],
                        __doc__, make_ctx=LoadCtx, verbose=VERBOSE, deadline=TEST_DEADLINE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
