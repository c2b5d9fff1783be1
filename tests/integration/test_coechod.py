#!/usr/bin/env python3
"""Integration tests for coechod, the coecho TCP echo daemon.

Every test starts the real daemon on a loopback address with port 0, learns
the port from its "listening on ADDR:PORT" log line on stderr, talks to it
over sockets and always kills and reaps what it started.

    test_coechod.py              run every test
    test_coechod.py NAME...      run only the named tests
    test_coechod.py --list       list the test names

Environment: COECHOD_IT_VERBOSE=1 prints measurements and timings; COECHOD (the binary; default BUILDDIR/src/server/coechod),
BUILDDIR (default: the current directory), SRCDIR (the source tree, for
tests/configs/ and conf/; default: two levels above this script).
Exit status: 0 if every test passed, 1 if any failed, 77 (automake SKIP) if
the binary is missing, 2 on a usage error.

Python 3 standard library only. The daemon wrapper, per-test context, socket
helpers and runner are in harness.py next to this file.
"""

import os
import random
import re
import signal
import socket
import sys
import time

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, SCRIPT_DIR)
from harness import (BUILDDIR, COECHOD, KiB, LISTEN_RE, MiB, SRCDIR, STAMP_RE,  # noqa: E402
                     TEST_DEADLINE, Stream, TestFailure, TestSkip, check, configured_version,
                     connect_refused, cpu_seconds, echo_ok, expect_silence, file_lines,
                     have_ipv6_loopback, pids_with_arg, process_gone, pump,
                     recv_exact, recv_until_eof, run_coechod, run_suite,
                     send_without_reading, tree_rss_kib, wait_accepting,
                     wait_closed, wait_file_line, wait_for, wait_refused, wait_steady,
                     usr1_stats, yaml_config)


# ---------------------------------------------------------------------------
# registry

TESTS = []


def test(fn):
    """Registers fn as a test case named after the function."""
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------------------
# echo

@test
def echo_concurrent_random(ctx):
    """50 concurrent clients, random payloads from 1 B to 1 MiB, every byte
    checked, each half-closes and must see EOF after exactly its data."""
    d = ctx.daemon(["-l", "127.0.0.1:0"], config=yaml_config())
    port = d.port()
    rng = random.Random(0xC0EC)
    sizes = [1, MiB, 2, 16 * KiB - 1, 16 * KiB, 16 * KiB + 1, 64 * KiB]
    sizes += [rng.randint(1, MiB) for _ in range(50 - len(sizes))]
    rng.shuffle(sizes)
    streams = [Stream(ctx.connect(port), rng.randbytes(n), "client %d (%d B)" % (i, n))
               for i, n in enumerate(sizes)]
    pump(streams, timeout=20)
    check(d.alive(), "daemon exited")


@test
def echo_half_close(ctx):
    """Send, shutdown(SHUT_WR), read until EOF: everything comes back."""
    d = ctx.daemon(["-l", "127.0.0.1:0"], config=yaml_config())
    port = d.port()
    # small: all sent and half-closed before the daemon reads anything
    s = ctx.connect(port)
    msg = b"hello, half-closed world\n" * 3
    s.sendall(msg)
    s.shutdown(socket.SHUT_WR)
    got = recv_until_eof(s, 5, "small half-close")
    check(got == msg, "small half-close: got %r, sent %r" % (got[:40], msg[:40]))
    # nothing sent at all: EOF at once
    s = ctx.connect(port)
    s.shutdown(socket.SHUT_WR)
    got = recv_until_eof(s, 5, "empty half-close")
    check(got == b"", "empty half-close: got %d bytes" % len(got))
    # large: many buffers' worth in flight when the write side closes
    rng = random.Random(7)
    streams = [Stream(ctx.connect(port), rng.randbytes(n), "half-close %d B" % n)
               for n in (3 * MiB + 5, 100 * KiB)]
    pump(streams, timeout=15)


@test
def echo_ipv6(ctx):
    """-l [::1]:0 next to -l 127.0.0.1:0: both listeners echo."""
    if not have_ipv6_loopback():
        raise TestSkip("no IPv6 loopback on this machine")
    d = ctx.daemon(["-l", "127.0.0.1:0", "-l", "[::1]:0"], config=yaml_config())
    found = dict(d.wait_listening(2))
    check("[::1]" in found and "127.0.0.1" in found,
          "expected listeners on 127.0.0.1 and [::1], log says %r" % found)
    rng = random.Random(6)
    streams = [Stream(ctx.connect(found["[::1]"], "::1"), rng.randbytes(200 * KiB), "[::1]"),
               Stream(ctx.connect(found["127.0.0.1"]), rng.randbytes(200 * KiB), "127.0.0.1")]
    pump(streams, timeout=10)


@test
def cli_listen_overrides_config(ctx):
    """-l replaces the listeners of the -c file."""
    # The file's port stays ours for the whole test (bound, not listening,
    # no SO_REUSEADDR): nobody else can take it, so a refused connect there
    # means the daemon does not listen, and a daemon that tried to open the
    # file's listener would fail to bind it and exit.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with ctx.lock:
        ctx.socks.append(holder)
    holder.bind(("127.0.0.1", 0))
    fixed = holder.getsockname()[1]
    d = ctx.daemon(["-l", "127.0.0.1:0"], config=yaml_config([("127.0.0.1", fixed)]))
    port = d.port()
    check(port != fixed, "daemon listens on the config file's port %d" % fixed)
    echo_ok(ctx.connect(port))
    d.barrier()  # every listener opened at start has been logged and read
    check(d.alive(), "daemon exited (status %s)" % d.proc.poll())
    with d.cond:
        found = [LISTEN_RE.search(l).group(0) for l in d.lines if LISTEN_RE.search(l)]
    check(len(found) == 1, "expected one listener, log says %r" % found)
    check(connect_refused(fixed), "config file's port %d accepts connections" % fixed)


# ---------------------------------------------------------------------------
# limits

@test
def max_connections(ctx):
    """At max_connections accepting pauses: the next client waits in the
    backlog without echo and is served once a slot frees."""
    d = ctx.daemon([], config=yaml_config(limits={"max_connections": 2}))
    port = d.port()
    c1, c2 = ctx.connect(port), ctx.connect(port)
    echo_ok(c1, b"one\n", what="client 1")
    echo_ok(c2, b"two\n", what="client 2")
    c3 = ctx.connect(port)  # completes in the kernel's backlog
    c3.sendall(b"three\n")
    expect_silence(c3, 0.3, "client 3 at the limit")
    c1.close()
    got = recv_exact(c3, 6, 3.0, "client 3 after client 1 closed")
    check(got == b"three\n", "client 3: wrong echo %r" % got)
    echo_ok(c2, b"two again\n", what="client 2 after the resume")
    # still two slots: a fourth client waits again until client 2 leaves
    c4 = ctx.connect(port)
    c4.sendall(b"four\n")
    expect_silence(c4, 0.3, "client 4 at the limit")
    c2.close()
    got = recv_exact(c4, 5, 3.0, "client 4 after client 2 closed")
    check(got == b"four\n", "client 4: wrong echo %r" % got)
    echo_ok(c3, b"three again\n", what="client 3")


@test
def max_connections_per_ip(ctx):
    """Over max_connections_per_ip a new connection is closed at once; the
    first keeps echoing; a freed slot can be taken again."""
    d = ctx.daemon([], config=yaml_config(limits={"max_connections_per_ip": 1}))
    port = d.port()
    c1 = ctx.connect(port)
    echo_ok(c1, b"first\n", what="first connection")
    c2 = ctx.connect(port)
    wait_closed(c2, 5.0, "second connection from 127.0.0.1")
    echo_ok(c1, b"first, still\n", what="first connection after the second was refused")
    c1.close()
    # the daemon notices c1's close asynchronously: retry for a while
    deadline = time.monotonic() + 10.0
    while True:
        c3 = ctx.connect(port)
        try:
            echo_ok(c3, b"third\n", timeout=3.0, what="connection after the first closed")
            break
        except TestFailure:
            c3.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@test
def idle_timeout(ctx):
    """idle_timeout 1s: an idle client is closed no sooner than 1 s after
    its last echo (and within 4 s); one that sends every 100 ms stays open
    well past 1 s."""
    d = ctx.daemon([], config=yaml_config(limits={"idle_timeout": "1s"}))
    port = d.port()
    idle, active = ctx.connect(port), ctx.connect(port)
    # The daemon's last activity on the idle client (its echo) comes after
    # t0, so a close sooner than 1 s after t0 is early (co_now() has 1 ms
    # resolution: 10 ms of slack).
    t0 = time.monotonic()
    echo_ok(idle, b"then silence\n", what="idle client")
    idle.setblocking(False)
    closed_at = None
    how = None
    n = 0
    while time.monotonic() - t0 < 2.5:
        echo_ok(active, b"tick %d\n" % n, what="active client round %d" % n)
        n += 1
        if closed_at is None:
            try:
                chunk = idle.recv(100)
                check(not chunk, "idle client got unexpected data %r" % chunk)
                closed_at, how = time.monotonic(), "EOF"
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed_at, how = time.monotonic(), "reset"
        time.sleep(0.1)
    if closed_at is None:
        idle.setblocking(True)
        how = wait_closed(idle, max(0.1, t0 + 4.0 - time.monotonic()), "idle client")
        closed_at = time.monotonic()
    idle_for = closed_at - t0
    ctx.note("idle client closed (%s) %.2f s after its last echo; %d active rounds"
             % (how, idle_for, n))
    check(idle_for >= 0.99, "idle client closed after %.2f s, before idle_timeout 1s"
          % idle_for)
    check(idle_for <= 4.0, "idle client closed only after %.2f s" % idle_for)
    echo_ok(active, b"still here\n",
            what="active client after %.1f s" % (time.monotonic() - t0))


@test
def memory_bounded_nonreading(ctx):
    """20 clients send 8 MiB each and never read: the daemon stops reading
    when its writes block, so its RSS stays within one buffer and one stack
    per client plus slack; then every byte comes back once they read."""
    started = time.monotonic()
    clients, size, buf, stack = 20, 8 * MiB, 16 * KiB, 64 * KiB
    d = ctx.daemon([], config=yaml_config(limits={"buffer_size": "16KiB",
                                                  "stack_size": "64KiB"}))
    port = d.port()
    echo_ok(ctx.connect(port), b"warm up\n")  # first-connection allocations
    base = wait_steady(lambda: tree_rss_kib(d.pid), 5.0, "daemon's VmRSS after the warm-up")
    check(base > 0, "cannot read VmRSS of pid %d" % d.pid)
    blob = os.urandom(size)
    doubled = memoryview(blob + blob)
    streams = []
    for i in range(clients):
        off = (i * 524287) % size
        s = ctx.connect(port, rcvbuf=64 * KiB, sndbuf=64 * KiB)
        streams.append(Stream(s, doubled[off:off + size], "client %d" % i))
    send_without_reading(streams, size, 8.0)
    check(d.alive(), "daemon exited while clients were not reading")
    peak = 0
    for _ in range(3):
        peak = max(peak, tree_rss_kib(d.pid))
        time.sleep(0.1)
    growth = (peak - base) * KiB
    allowed = clients * (buf + stack) + 8 * MiB
    sent = sum(s.sent for s in streams)
    ctx.note("RSS %.1f -> %.1f MiB (+%.2f MiB, allowed %.1f); %.1f MiB sent before "
             "the sends blocked" % (base / 1024.0, peak / 1024.0, growth / MiB,
                                    allowed / MiB, sent / MiB))
    check(growth < allowed,
          "daemon RSS grew by %.1f MiB (from %.1f MiB), allowed %.1f MiB; clients "
          "pushed %.1f MiB without reading" % (growth / MiB, base / 1024.0,
                                              allowed / MiB, sent / MiB))
    # 160 MiB checked byte for byte: whatever is left of the test's
    # deadline (a slow, loaded machine may need most of it).
    pump(streams, timeout=max(1.0, started + TEST_DEADLINE - 2.0 - time.monotonic()))


# ---------------------------------------------------------------------------
# signals

@test
def sigterm_midstream(ctx):
    """SIGTERM while clients stream 1 MiB each: listeners close at once, the
    connected clients get every byte, then the daemon exits 0."""
    d = ctx.daemon([], config=yaml_config(extra="shutdown_grace: 20s"))
    port = d.port()
    rng = random.Random(15)
    streams = [Stream(ctx.connect(port), rng.randbytes(MiB), "client %d" % i)
               for i in range(8)]
    pump(streams, timeout=10, send_limit=MiB // 2, recv_goal=MiB // 2)
    d.send_signal(signal.SIGTERM)
    wait_refused(port, 5.0)
    check(d.alive(), "daemon exited with clients still connected (status %s)"
          % d.proc.poll())
    pump(streams, timeout=10)
    rc = d.wait_exit(10.0)
    check(rc is not None, "daemon still running 10 s after its last client closed "
          "(shutdown_grace 20s)")
    check(rc == 0, "daemon exit status %s after SIGTERM" % rc)


@test
def sigterm_grace_idle(ctx):
    """SIGTERM with a client that never closes, shutdown_grace 3s: the
    client is served during the grace, then closed, and the daemon exits 0."""
    d = ctx.daemon([], config=yaml_config(extra="shutdown_grace: 3s"))
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c, what="before SIGTERM")
    t0 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    # The grace starts when the daemon handles the signal, after t0; once
    # the listener is closed it has, and about 3 s of grace are left.
    wait_refused(port, 3.0)
    echo_ok(c, b"in the grace period\n", timeout=2.0, what="during the grace period")
    how = wait_closed(c, max(0.1, t0 + 10.0 - time.monotonic()),
                      "client after the 3s grace period")
    closed = time.monotonic() - t0
    ctx.note("client closed (%s) %.2f s after SIGTERM" % (how, closed))
    rc = d.wait_exit(max(0.1, t0 + 15.0 - time.monotonic()))
    check(rc is not None, "daemon still running 15 s after SIGTERM (shutdown_grace 3s)")
    check(rc == 0, "daemon exit status %s" % rc)
    check(closed >= 2.9, "client closed (%s) %.2f s after SIGTERM, before the "
          "3s grace" % (how, closed))


@test
def sigterm_twice(ctx):
    """A second SIGTERM ends the daemon at once despite a long grace."""
    d = ctx.daemon([], config=yaml_config(extra="shutdown_grace: 20s"))
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c)
    d.send_signal(signal.SIGTERM)
    wait_refused(port, 5.0)  # the first SIGTERM has been handled
    echo_ok(c, b"after the first SIGTERM\n", what="after the first SIGTERM")
    check(d.alive(), "daemon exited after the first SIGTERM with a client connected")
    t1 = time.monotonic()
    d.send_signal(signal.SIGTERM)
    # Far below the 20 s grace, with room for a slow (sanitizer) exit.
    rc = d.wait_exit(5.0)
    check(rc is not None, "daemon still running 5 s after the second SIGTERM "
          "(shutdown_grace 20s)")
    wait_closed(c, max(0.1, t1 + 6.0 - time.monotonic()), "client after the second SIGTERM")
    elapsed = time.monotonic() - t1
    ctx.note("exited %.2f s after the second SIGTERM" % elapsed)
    check(elapsed < 6.0, "client closed only %.1f s after the second SIGTERM" % elapsed)


@test
def sigint_graceful(ctx):
    """SIGINT stops like SIGTERM: refuse new connections, finish the open
    one, exit 0 once it closes."""
    d = ctx.daemon([], config=yaml_config(extra="shutdown_grace: 20s"))
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c)
    d.send_signal(signal.SIGINT)
    wait_refused(port, 5.0)
    echo_ok(c, b"after SIGINT\n", what="after SIGINT")
    check(d.alive(), "daemon exited with a client connected")
    c.close()
    rc = d.wait_exit(10.0)  # far below the 20 s grace
    check(rc is not None, "daemon still running 10 s after its last client closed "
          "(shutdown_grace 20s)")
    check(rc == 0, "exit status %s after SIGINT" % rc)


@test
def sighup_reload(ctx):
    """SIGHUP opens an added listener and applies a new per-IP limit to new
    connections; the existing connection and listener are left alone."""
    d = ctx.daemon([], config=yaml_config(limits={"max_connections_per_ip": 0}))
    port1 = d.port()
    c1, c1b = ctx.connect(port1), ctx.connect(port1)
    echo_ok(c1, b"c1\n", what="first connection")
    echo_ok(c1b, b"c1b\n", what="second connection from 127.0.0.1 (no per-IP limit yet)")
    c1b.close()
    # The first port-0 entry keeps the running listener, the second adds
    # one on a port the kernel picks (a fixed port could be taken by then).
    ctx.write_config(yaml_config([("127.0.0.1", 0), ("127.0.0.1", 0)],
                                 limits={"max_connections_per_ip": 1}))
    mark = d.mark()
    d.send_signal(signal.SIGHUP)
    m = d.wait_log(LISTEN_RE, 10.0, mark, what="'listening on 127.0.0.1:PORT' after SIGHUP")
    port2 = int(m.group(2))
    check(m.group(1) == "127.0.0.1" and port2 != port1,
          "the reload logged %r; expected a new listener on 127.0.0.1 (first is port %d)"
          % (m.group(0), port1))
    d.wait_log(r"reloaded", 10.0, mark, what="'reloaded' after SIGHUP")
    wait_accepting(port2, 5.0)
    check(d.alive(), "daemon exited on SIGHUP")
    echo_ok(c1, b"c1 after reload\n", what="connection from before the reload")
    check(not connect_refused(port1), "original listener closed by the reload")
    c1.close()
    deadline = time.monotonic() + 10.0
    while True:  # c1's close reaches the daemon asynchronously
        c2 = ctx.connect(port2)
        try:
            echo_ok(c2, b"c2 on the new listener\n", timeout=3.0, what="new listener")
            break
        except TestFailure:
            c2.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    c3 = ctx.connect(port1)
    wait_closed(c3, 5.0, "second connection from 127.0.0.1 under the reloaded limit 1")
    echo_ok(c2, b"c2 still\n", what="new-listener connection")


@test
def sighup_broken_config(ctx):
    """SIGHUP with an invalid file: the error is logged with file:line:col
    and the daemon keeps serving with the old configuration."""
    path = ctx.write_config(yaml_config())
    d = ctx.daemon(["-c", path])
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c)
    ctx.write_config("listen:\n"
                     "  - { address: 127.0.0.1, port: 0 }\n"
                     "limits:\n"
                     "  max_connections: lots\n")
    mark = d.mark()
    d.send_signal(signal.SIGHUP)
    d.wait_log(re.escape(path) + r":4:\d+: limits\.max_connections: \S", 10.0, mark,
               what="'%s:4:COL: limits.max_connections: ...'" % path)
    d.barrier()  # all the failed reload logged has been read
    check(d.alive(), "daemon exited after a reload with a broken file")
    echo_ok(c, b"still echoing\n", what="connection from before the reload")
    echo_ok(ctx.connect(port), b"new\n", what="new connection after the failed reload")
    with d.cond:
        relisten = [l for l in d.lines[mark:] if LISTEN_RE.search(l)]
    check(not relisten, "listeners reopened after a failed reload: %r" % relisten)


@test
def sighup_port_zero_entries_are_distinct(ctx):
    """Each port-0 entry is its own listener: a reload from two such entries
    to one closes one, and to three opens two more."""
    two = yaml_config(listen=(("127.0.0.1", 0), ("127.0.0.1", 0)))
    path = ctx.write_config(two)
    d = ctx.daemon(["-c", path])
    ports = [p for _, p in d.wait_listening(2)]
    check(len(set(ports)) == 2, "two port-0 entries should bind two ports: %r" % ports)
    mark = d.mark()
    ctx.write_config(yaml_config(listen=(("127.0.0.1", 0),)))
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"reloaded", 10, mark)
    d.wait_log(r"closed listener 127\.0\.0\.1:(%d|%d)" % tuple(ports), 10, mark)
    kept = [p for p in ports if not connect_refused(p)]
    check(len(kept) == 1, "after reloading to one entry, listening on %r of %r" % (kept, ports))
    mark = d.mark()
    ctx.write_config(yaml_config(listen=(("127.0.0.1", 0),) * 3))
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"reloaded", 10, mark)  # logged after the listeners it opened
    with d.cond:
        opened = [l for l in d.lines[mark:] if LISTEN_RE.search(l)]
    check(len(opened) == 2, "reloading to three entries should open two: %r" % opened)


@test
def sighup_unopenable_listener_keeps_old(ctx):
    """A reload that moves the listener to a port someone else holds fails
    as a whole: the old listener keeps accepting and the limits stay."""
    path = ctx.write_config(yaml_config())
    d = ctx.daemon(["-c", path])
    port = d.port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        busy = holder.getsockname()[1]
        ctx.write_config(yaml_config(listen=(("127.0.0.1", busy),),
                                     limits={"max_connections_per_ip": 1}))
        mark = d.mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"keeping the running configuration", 10.0, mark, what="reload failure")
        check(d.alive(), "daemon exited after the failed reload")
        a = ctx.connect(port)
        b = ctx.connect(port)  # per-IP limit 1 must not have been applied
        echo_ok(a, b"old listener\n", what="old listener after the failed reload")
        echo_ok(b, b"second\n", what="second client (the new limit was not applied)")
    finally:
        holder.close()


@test
def sighup_on_smallest_stack(ctx):
    """Reloading (valid and invalid files) with stack_size at its 16 KiB
    minimum: the parser runs in a task and must fit."""
    base = yaml_config(limits={"stack_size": "16KiB"})
    path = ctx.write_config(base)
    d = ctx.daemon(["-c", path])
    port = d.port()
    for text in ("listen: []\nlimits: { stack_size: 16KiB }\n",
                 base + "bogus: 1\n", base + "limits2: {a: [1, {b: 2}]}\n", base):
        ctx.write_config(text)
        mark = d.mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"reloaded|keeping the running configuration", 10.0, mark,
                   what="reload result")
        check(d.alive(), "daemon died reloading %r" % text)
    echo_ok(ctx.connect(port), what="echo after the reloads")


@test
def descriptor_exhaustion_pauses_accepting(ctx):
    """With RLIMIT_NOFILE at 64: a warning that max_connections does not fit;
    when accept4 fails with EMFILE, accepting pauses (logged at most once a
    second, no CPU burnt), and the waiting clients are served once
    descriptors free up."""
    d = ctx.daemon(["-l", "127.0.0.1:0"], config=yaml_config(), nofile=64)
    port = d.port()
    d.wait_log(r"does not fit the descriptor limit", 3.0, what="RLIMIT_NOFILE warning")
    t_connect = time.monotonic()  # no pause can be logged before this
    first = [ctx.connect(port) for _ in range(70)]
    served = [s for s in first[:40]]
    for s in served:
        echo_ok(s, what="client below the descriptor limit")
    waiting = first[60:]
    d.wait_log(r"accept: Too many open files; pausing accepts", 10.0, what="EMFILE pause")
    cpu0, t0 = cpu_seconds(d.pid), time.monotonic()
    time.sleep(2.0)
    cpu = cpu_seconds(d.pid) - cpu0
    elapsed = time.monotonic() - t0
    ctx.note("CPU while paused: %.3f s in %.1f s" % (cpu, elapsed))
    check(cpu < 0.25 * elapsed, "burnt %.2f s of CPU in %.1f s while out of descriptors"
          % (cpu, elapsed))
    with d.cond:
        pauses = [l for l in d.lines if "pausing accepts" in l]
    # At most one a second within the time pauses could have been logged
    # (4 for the usual 2.1 s; more only if the machine stalled us).
    window = time.monotonic() - t_connect
    check(len(pauses) <= int(window) + 2, "logged %d pauses in %.1f s" % (len(pauses), window))
    for s in served:
        s.close()
    for s in waiting:
        echo_ok(s, b"served at last\n", timeout=5.0, what="client that waited for a descriptor")


@test
def sigusr1_stats(ctx):
    """SIGUSR1 logs a statistics line mentioning connections."""
    d = ctx.daemon(["-l", "127.0.0.1:0"], config=yaml_config())
    port = d.port()
    c = ctx.connect(port)
    echo_ok(c)
    mark = d.mark()
    d.send_signal(signal.SIGUSR1)
    d.wait_log(r"(?i)connections", 3.0, mark, what="with statistics ('connections')")
    echo_ok(c, b"after SIGUSR1\n", what="after SIGUSR1")
    check(d.alive(), "daemon exited on SIGUSR1")


stats_line = usr1_stats


@test
def idle_handlers_are_parked_and_wake(ctx):
    """200 clients echo once and wait: within a few seconds SIGUSR1 counts
    their 200 handlers parked (stacks given back after a second blocked).
    Then every client sends again, 64 B to 256 KiB, half-closes and gets
    exactly its bytes back; once they are gone only the daemon's own few
    tasks may be parked, and SIGTERM ends the daemon with status 0."""
    try:
        with open(os.path.join(BUILDDIR, "config.h")) as f:
            ucontext = re.search(r"^#define CORO_UCONTEXT 1", f.read(), re.M)
    except OSError:
        ucontext = None
    if ucontext:
        raise TestSkip("the ucontext build does not park tasks")
    n = 200
    d = ctx.daemon(["-l", "127.0.0.1:0"], config=yaml_config(extra="shutdown_grace: 5s"))
    port = d.port()
    clients = [ctx.connect(port) for _ in range(n)]
    for i, c in enumerate(clients):
        echo_ok(c, b"first %03d\n" % i, what="first echo of client %d" % i)
    last = {}

    def all_parked():
        last.update(stats_line(d))
        return last["parked"] >= n
    wait_for(all_parked, 20.0, "%d idle handlers parked" % n, interval=0.2)
    check(last["connections"] == n, "%d connections counted, expected %d"
          % (last["connections"], n))
    rng = random.Random(12)
    streams = [Stream(c, rng.randbytes(rng.choice((64, 4 * KiB, 256 * KiB))),
                      "client %d after parking" % i) for i, c in enumerate(clients)]
    pump(streams, timeout=30)

    def all_closed():
        last.update(stats_line(d))
        return last["connections"] == 0
    wait_for(all_closed, 10.0, "the daemon to count no connection", interval=0.1)
    # The daemon's own tasks (accept, signals) wait long and park too.
    check(last["parked"] <= last["tasks"] < 10, "%d tasks parked of %d with no connection"
          % (last["parked"], last["tasks"]))
    d.send_signal(signal.SIGTERM)
    rc = d.wait_exit(15.0)
    check(rc == 0, "daemon exit status %s after SIGTERM" % rc)


@test
def log_stderr_timestamps(ctx):
    """On plain stderr each line has a timestamp, the pid and the level."""
    d = ctx.daemon(["-l", "127.0.0.1:0"], config=yaml_config())
    d.port()
    d.wait_log(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} coechod\[\d+\] info: "
               r"listening on 127\.0\.0\.1:\d+$", 3.0, what="timestamped line")


@test
def log_journal_prefixes(ctx):
    """With JOURNAL_STREAM set, lines carry <N> syslog priorities and no
    timestamp (the journal adds its own)."""
    d = ctx.daemon(["-l", "127.0.0.1:0"], config=yaml_config(),
                   env={"JOURNAL_STREAM": "8:12345"})
    d.port()
    d.wait_log(r"^<6>listening on 127\.0\.0\.1:\d+$", 3.0, what="<6> info line")
    mark = d.mark()
    d.send_signal(signal.SIGHUP)  # no -c file change: a warning, priority 4
    d.wait_log(r"^<[346]>", 3.0, mark, what="a prefixed line after SIGHUP")


@test
def user_drops_privileges(ctx):
    """`user: nobody` (started as root): the daemon binds, then runs as
    nobody, and still echoes."""
    import pwd
    if os.geteuid() != 0:
        raise TestSkip("needs root")
    nobody = pwd.getpwnam("nobody")
    d = ctx.daemon(["-l", "127.0.0.1:0"], config=yaml_config(extra='user: "nobody"\n'))
    port = d.port()
    echo_ok(ctx.connect(port), what="echo as nobody")
    with open("/proc/%d/status" % d.pid) as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    uids = status["Uid"].split()
    gids = status["Gid"].split()
    groups = status.get("Groups", "").split()
    check(all(int(u) == nobody.pw_uid for u in uids), "Uid is %s, want %d" % (uids, nobody.pw_uid))
    check(all(int(g) == nobody.pw_gid for g in gids), "Gid is %s, want %d" % (gids, nobody.pw_gid))
    check(groups in ([], [str(nobody.pw_gid)]), "supplementary groups %s" % groups)
    # Nothing it might execute could regain a capability or privileges.
    check(status.get("NoNewPrivs", "").strip() == "1",
          "NoNewPrivs is %r, want 1" % status.get("NoNewPrivs"))
    check(status.get("CapBnd", "").strip() == "0000000000000000",
          "CapBnd is %r, want an empty bounding set" % status.get("CapBnd"))


# ---------------------------------------------------------------------------
# configuration checks and the command line

@test
def check_config_bad_corpus(ctx):
    """For each tests/configs/bad/NAME.yaml with NAME.expect: coechod -t
    exits 1 and stderr holds the expected line."""
    bad = os.path.join(SRCDIR, "tests", "configs", "bad")
    names = sorted(f for f in (os.listdir(bad) if os.path.isdir(bad) else [])
                   if f.endswith(".yaml")
                   and os.path.exists(os.path.join(bad, f[:-5] + ".expect")))
    check(names, "no *.yaml with a sibling *.expect in %s" % bad)
    problems = []
    for name in names:
        with open(os.path.join(bad, name[:-5] + ".expect")) as f:
            expected = [l.rstrip("\r\n") for l in f if l.strip()]
        if len(expected) != 1:
            problems.append("%s.expect: expected one line, has %d"
                            % (name[:-5], len(expected)))
            continue
        r = run_coechod(["-t", "-c", name], cwd=bad)
        if r.rc != 1:
            problems.append("%s: %s, expected exit 1" % (name, r.summary()))
        elif expected[0] not in r.stderr:
            problems.append("%s: stderr lacks %r; it says %r"
                            % (name, expected[0], r.stderr.strip().splitlines()[:3]))
    check(not problems, "%d of %d bad configs misjudged:\n%s"
          % (len(problems), len(names), "\n".join(problems)))


@test
def check_config_good_corpus(ctx):
    """Every tests/configs/good/*.yaml passes -t --no-host-check (exit 0,
    the effective configuration on stdout), and that output passes it
    unchanged."""
    good = os.path.join(SRCDIR, "tests", "configs", "good")
    names = sorted(f for f in (os.listdir(good) if os.path.isdir(good) else [])
                   if f.endswith(".yaml"))
    check(names, "no *.yaml in %s" % good)
    problems = []
    for name in names:
        # Not this host's: users, addresses and directories of other machines.
        r = run_coechod(["-t", "--no-host-check", "-c", name], cwd=good)
        if r.rc != 0:
            problems.append("%s: %s, expected exit 0" % (name, r.summary()))
            continue
        if "max_connections" not in r.stdout:
            problems.append("%s: -t output lacks max_connections: %r" % (name, r.stdout[:200]))
            continue
        ctx.write_config(r.stdout, "dumped.yaml")
        r2 = run_coechod(["-t", "--no-host-check", "-c", "dumped.yaml"], cwd=ctx.dir)
        if r2.rc != 0 or r2.stdout != r.stdout:
            problems.append("%s: its -t output does not read back unchanged (%s)"
                            % (name, r2.summary()))
    check(not problems, "%d of %d good configs misjudged:\n%s"
          % (len(problems), len(names), "\n".join(problems)))


@test
def check_config_errors(ctx):
    """-t reports every error as FILE:LINE:COL: key.path: message, exit 1."""
    ctx.write_config("limits:\n"
                     "  max_connections: lots\n"
                     "shutdown_grace: forever\n", "broken.yaml")
    r = run_coechod(["-t", "-c", "broken.yaml"], cwd=ctx.dir)
    check(r.rc == 1, "broken.yaml: %s, expected exit 1" % r.summary())
    for line, key in ((2, r"limits\.max_connections"), (3, r"shutdown_grace")):
        rx = r"(?m)(^|[\s:])broken\.yaml:%d:\d+: %s: \S" % (line, key)
        check(re.search(rx, r.stderr),
              "stderr lacks 'broken.yaml:%d:COL: %s: ...': %r"
              % (line, key.replace("\\", ""), r.stderr.strip().splitlines()[:4]))


@test
def check_config_roundtrip(ctx):
    """-t on a valid file exits 0 and prints the effective configuration as
    YAML that -t accepts again, unchanged."""
    ctx.write_config(yaml_config(limits={"max_connections": 7, "idle_timeout": "1500ms"}),
                     "good.yaml")
    r = run_coechod(["-t", "-c", "good.yaml"], cwd=ctx.dir)
    check(r.rc == 0, "good.yaml: %s, expected exit 0" % r.summary())
    check(re.search(r"(?m)^\s*max_connections:\s*7\s*$", r.stdout),
          "effective config lacks 'max_connections: 7': %r" % r.stdout[:300])
    ctx.write_config(r.stdout, "dumped.yaml")
    r2 = run_coechod(["-t", "-c", "dumped.yaml"], cwd=ctx.dir)
    check(r2.rc == 0, "re-reading the -t output: %s" % r2.summary())
    check(r2.stdout == r.stdout, "-t output changes when read back:\n%s\n---\n%s"
          % (r.stdout, r2.stdout))


def host_problems_config(missing):
    """A valid file, every value of which this host cannot run."""
    return ("listen:\n"
            "  - { address: 127.0.0.1, port: 0 }\n"
            "  - { address: 192.0.2.1, port: 7007 }\n"
            "log:\n"
            "  file: %s/coechod.log\n"
            "pid_file: %s/coechod.pid\n"
            "user: no-such-user-coechod\n" % (missing, missing))


@test
def check_config_host(ctx):
    """-t also checks, creating nothing, what the start needs of this host:
    every problem is reported as FILE:LINE:COL: key: message (the value's
    position), exit 1: an address that is none of this host's (192.0.2.1,
    TEST-NET), log.file and pid_file in a directory that does not exist,
    a user that does not exist. -l addresses are named as such."""
    # The pid file's message names the directory with its links resolved.
    missing = os.path.join(os.path.realpath(ctx.dir), "no-such-dir")
    ctx.write_config(host_problems_config(missing), "host.yaml")
    r = run_coechod(["-t", "-c", "host.yaml"], cwd=ctx.dir)
    check(r.rc == 1, "-t on host.yaml: %s, expected exit 1" % r.summary())
    check(r.stdout == "", "-t printed a configuration despite the problems: %r" % r.stdout[:200])
    d = re.escape(missing)
    for rx in (r"host\.yaml:3:5: listen\[1\]: 192\.0\.2\.1:7007: cannot bind: .*"
               r"\(not an address of this host\)",
               r"host\.yaml:5:9: log\.file: %s/coechod\.log: %s: No such file or directory"
               % (d, d),
               r"host\.yaml:6:11: pid_file: %s/coechod\.pid: %s: No such file or directory"
               % (d, d),
               r"host\.yaml:7:7: user: no such user \"no-such-user-coechod\""):
        check(re.search("(?m)^" + rx + "$", r.stderr),
              "stderr lacks a line matching %r:\n%s" % (rx, r.stderr.strip()))
    check(len(r.stderr.strip().splitlines()) == 4, "expected 4 problems:\n%s" % r.stderr)
    check(not os.path.exists(missing), "-t created %s" % missing)

    r = run_coechod(["-t", "-c", "host.yaml", "-l", "192.0.2.1:7008"], cwd=ctx.dir)
    check(r.rc == 1 and re.search(r"(?m)^coechod: -l 192\.0\.2\.1:7008: cannot bind: ",
                                  r.stderr),
          "-t -l 192.0.2.1:7008: %s, expected exit 1 naming -l" % r.summary())
    check("listen[1]" not in r.stderr, "-l replaced the file's listeners, yet -t checked "
          "them: %r" % r.stderr)

    r = run_coechod(["-t", "--no-host-check", "-c", "host.yaml"], cwd=ctx.dir)
    check(r.rc == 0, "-t --no-host-check: %s, expected exit 0" % r.summary())
    check("no-such-user-coechod" in r.stdout, "-t --no-host-check printed %r" % r.stdout[:300])
    r = run_coechod(["--no-host-check", "-c", "host.yaml"], cwd=ctx.dir)
    check(r.rc == 2, "--no-host-check without -t: %s, expected exit 2" % r.summary())


@test
def check_config_host_ok(ctx):
    """-t passes a configuration this host can run (exit 0, the effective
    configuration) though a running coechod holds its port, and creates
    neither its pid file nor its log file."""
    import pwd
    d = ctx.daemon([], config=yaml_config())
    port = d.port()
    log = os.path.join(ctx.dir, "coechod.log")
    pidfile = os.path.join(ctx.dir, "coechod.pid")
    user = pwd.getpwuid(os.geteuid()).pw_name
    ctx.write_config(yaml_config([("127.0.0.1", port)],
                                 extra='log: { file: %s }\npid_file: %s\nuser: "%s"'
                                 % (log, pidfile, user)), "ok.yaml")
    r = run_coechod(["-t", "-c", "ok.yaml"], cwd=ctx.dir)
    check(r.rc == 0, "-t with port %d in use: %s, expected exit 0" % (port, r.summary()))
    check('pid_file: "%s"' % pidfile in r.stdout, "-t printed %r" % r.stdout[:400])
    check(not os.path.exists(log) and not os.path.exists(pidfile),
          "-t created the log file or the pid file")
    check(d.alive(), "the running coechod exited")


@test
def check_config_fifo(ctx):
    """-t on a FIFO with no writer exits 1 at once with "not a regular file"
    (opening it for reading used to wait for a writer forever)."""
    fifo = os.path.join(ctx.dir, "coechod.yaml")
    os.mkfifo(fifo, 0o600)
    start = time.monotonic()
    r = run_coechod(["-t", "-c", fifo], timeout=5.0)
    elapsed = time.monotonic() - start
    check(r.rc == 1, "-t on a FIFO: %s, expected exit 1" % r.summary())
    check("%s: not a regular file (a FIFO)" % fifo in r.stderr,
          "stderr lacks '%s: not a regular file (a FIFO)': %r"
          % (fifo, r.stderr.strip().splitlines()[:3]))
    check(elapsed < 4.0, "-t on a FIFO took %.1f s" % elapsed)


@test
def check_config_default_file(ctx):
    """-t on the shipped conf/coechod.yaml exits 0 and prints YAML."""
    conf = os.path.join(SRCDIR, "conf", "coechod.yaml")
    check(os.path.exists(conf), "%s does not exist" % conf)
    r = run_coechod(["-t", "-c", conf])
    check(r.rc == 0, "coechod -t -c %s: %s" % (conf, r.summary()))
    check("max_connections" in r.stdout,
          "-t output lacks max_connections: %r" % r.stdout[:300])


@test
def bad_flags(ctx):
    """Bad flags and values: exit 2 with a one-line reason and the usage;
    an unreadable -c file: exit 1 or 2 naming the file."""
    cases = [
        (["--no-such-flag", "-l", "127.0.0.1:0"], "unknown flag"),
        (["-l", "foo"], "-l foo"),
        (["-l", "127.0.0.1:99999"], "-l 127.0.0.1:99999"),
        (["-l"], "-l without a value"),
        (["--log-level", "loud", "-l", "127.0.0.1:0"], "--log-level loud"),
    ]
    problems = []
    for args, what in cases:
        r = run_coechod(args, timeout=5.0)
        lines = r.stderr.strip().splitlines()
        if r.rc != 2:
            problems.append("%s: %s, expected exit 2" % (what, r.summary()))
        elif not lines or not lines[0].strip():
            problems.append("%s: no reason on stderr" % what)
        elif not re.search(r"(?i)usage", r.stderr):
            problems.append("%s: no usage on stderr: %r" % (what, lines[:3]))
    missing = os.path.join(ctx.dir, "nonexistent.yaml")
    r = run_coechod(["-c", missing, "-l", "127.0.0.1:0"], timeout=5.0)
    if r.rc not in (1, 2):
        problems.append("-c %s: %s, expected exit 1 or 2" % (missing, r.summary()))
    elif not any(missing in l for l in r.stderr.splitlines()):
        problems.append("-c %s: no reason naming the file: %r"
                        % (missing, r.stderr.strip().splitlines()[:3]))
    check(not problems, "\n".join(problems))


@test
def version_flag(ctx):
    """-V and --version print the version and exit 0."""
    want = configured_version()
    for flag in ("-V", "--version"):
        r = run_coechod([flag], timeout=5.0)
        check(r.rc == 0, "%s: %s" % (flag, r.summary()))
        text = r.stdout + r.stderr
        if want:
            check(want in text, "%s: output lacks version %s: %r" % (flag, want, text[:200]))
        else:
            check(re.search(r"\d+\.\d+", text), "%s: no version in %r" % (flag, text[:200]))


@test
def help_flag(ctx):
    """-h and --help print the usage and exit 0."""
    for flag in ("-h", "--help"):
        r = run_coechod([flag], timeout=5.0)
        check(r.rc == 0, "%s: %s" % (flag, r.summary()))
        text = r.stdout + r.stderr
        check(re.search(r"(?i)usage", text), "%s: no usage in %r" % (flag, text[:200]))
        for opt in ("-c", "-l", "-t", "--daemon"):
            check(opt in text, "%s: usage does not mention %s" % (flag, opt))


@test
def daemon_mode(ctx):
    """--daemon detaches (double fork, setsid, chdir /, stdio on /dev/null),
    writes the pid file, echoes, refuses a second start on a live pid file,
    removes the pid file on SIGTERM."""
    pidfile = os.path.join(ctx.dir, "coechod.pid")
    # Port 0: the listener opens (and is logged on the starting command's
    # stderr) before the daemon detaches.
    cfg = ctx.write_config(yaml_config([("127.0.0.1", 0)],
                                       extra="pid_file: %s" % pidfile))
    r = run_coechod(["--daemon", "-c", cfg], cwd=ctx.dir, timeout=20.0,
                    env=ctx.syslog_env())
    check(r.rc == 0, "coechod --daemon: %s" % r.summary())
    ports = [int(m.group(2)) for m in LISTEN_RE.finditer(r.stderr)]
    check(len(ports) == 1, "coechod --daemon: expected one 'listening on' line before it "
          "detached, stderr says %r" % r.stderr.strip().splitlines()[:5])
    port = ports[0]
    deadline = time.monotonic() + 10.0
    pid = None
    while pid is None:
        try:
            with open(pidfile) as f:
                text = f.read()
            if text.endswith("\n") or text.strip().isdigit():
                check(re.fullmatch(r"\s*\d+\s*", text), "pid file holds %r" % text)
                pid = int(text)
        except FileNotFoundError:
            pass
        if pid is None:
            check(time.monotonic() < deadline, "no pid file %s within 10 s" % pidfile)
            time.sleep(0.05)
    check(not process_gone(pid), "pid file names pid %d, which is not running" % pid)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    check(cfg in cmdline, "pid %d is not our daemon: %r" % (pid, cmdline))
    check(os.getsid(pid) != os.getsid(0), "daemon did not start a new session")
    check(os.getsid(pid) != pid, "daemon is a session leader (no second fork)")
    check(os.readlink("/proc/%d/cwd" % pid) == "/", "daemon's cwd is not /")
    for fd in (0, 1, 2):
        target = os.readlink("/proc/%d/fd/%d" % (pid, fd))
        check(target == "/dev/null", "daemon's fd %d is %s, not /dev/null" % (fd, target))

    deadline = time.monotonic() + 10.0
    while True:
        c = None
        try:
            c = ctx.connect(port, timeout=3.0)
            echo_ok(c, b"daemonized\n", timeout=3.0)
            break
        except TestFailure:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        finally:
            if c is not None:
                c.close()  # an open client would hold the stop below for the grace

    cfg2 = ctx.write_config(yaml_config([("127.0.0.1", 0)],
                                        extra="pid_file: %s" % pidfile), "second.yaml")
    r2 = run_coechod(["--daemon", "-c", cfg2], cwd=ctx.dir, timeout=20.0,
                     env=ctx.syslog_env())
    check(r2.rc != 0, "second --daemon with a live pid file exited 0")
    check("locked by a running coechod (pid %d)" % pid in r2.stderr,
          "second --daemon does not name the running one: %r" % r2.stderr.strip()[-300:])
    # Nothing started with second.yaml may be left running (serving or not):
    # the starting command has returned, so a detached one would be there.
    left = pids_with_arg(cfg2)
    check(not left, "second --daemon left pid(s) %r running" % left)
    with open(pidfile) as f:
        check(f.read().strip() == str(pid), "second daemon rewrote the pid file")
    check(not process_gone(pid), "first daemon died when a second one was started")

    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10.0
    while os.path.exists(pidfile) or not process_gone(pid):
        check(time.monotonic() < deadline,
              "10 s after SIGTERM: pid file %s, process %s" % (
                  "still there" if os.path.exists(pidfile) else "removed",
                  "gone" if process_gone(pid) else "still running"))
        time.sleep(0.05)


def limited_per_ip(ctx, port, timeout):
    """Waits until a second connection from 127.0.0.1 to port is closed
    unechoed (max_connections_per_ip 1 with one held open); True, or False
    after timeout seconds of every one echoing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = ctx.connect(port)
        try:
            c.settimeout(1.0)
            c.sendall(b"x")
            if c.recv(1) == b"":
                return True
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return True
        except socket.timeout:
            pass
        finally:
            c.close()
        time.sleep(0.1)
    return False


@test
def daemon_relative_config(ctx):
    """`coechod -d -c FILE` with FILE relative to the starting directory:
    the daemon (in /) reloads that file on SIGHUP, not FILE under /."""
    pidfile = os.path.join(ctx.dir, "coechod.pid")
    ctx.write_config(yaml_config([("127.0.0.1", 0)], extra="pid_file: %s" % pidfile),
                     "relative.yaml")
    r = run_coechod(["-d", "-c", "relative.yaml"], cwd=ctx.dir, timeout=20.0,
                    env=ctx.syslog_env())
    check(r.rc == 0, "coechod -d -c relative.yaml: %s" % r.summary())
    pid = pidfile_pid(pidfile)
    held = None
    try:
        port = int(LISTEN_RE.search(r.stderr).group(2))
        held = ctx.connect(port)
        echo_ok(held, b"held\n", what="first connection")
        with ctx.connect(port) as second:
            echo_ok(second, b"second\n", what="second connection before the reload")
        ctx.write_config(yaml_config([("127.0.0.1", 0)], limits={"max_connections_per_ip": 1},
                                     extra="pid_file: %s" % pidfile), "relative.yaml")
        os.kill(pid, signal.SIGHUP)
        check(limited_per_ip(ctx, port, 10.0), "max_connections_per_ip 1 not in force 10 s "
              "after SIGHUP: the daemon did not reload relative.yaml")
        echo_ok(held, b"still\n", what="first connection after the reload")
    finally:
        if held is not None:
            held.close()  # would hold the stop for shutdown_grace
        stop_daemon(pid)


@test
def daemon_without_syslog(ctx):
    """Without log.file, `coechod -d` where syslog's socket cannot be
    reached exits 1 before detaching, naming the socket, the reason and
    the remedy, and leaves nothing running and no pid file."""
    pidfile = os.path.join(ctx.dir, "coechod.pid")
    cfg = ctx.write_config(yaml_config([("127.0.0.1", 0)], extra="pid_file: %s" % pidfile))
    sock = os.path.join(ctx.dir, "syslog.sock")
    env = {"COECHOD_SYSLOG_SOCKET": sock}
    # No socket at all, then one that nobody reads any more.
    for reason in ("No such file or directory", "Connection refused"):
        r = run_coechod(["-d", "-c", cfg], cwd=ctx.dir, timeout=20.0, env=env)
        check(r.rc == 1, "coechod -d with %s: %s: %s, expected exit 1" % (sock, reason,
                                                                         r.summary()))
        for want in ("%s: %s" % (sock, reason), "log.file", "(-f)"):
            check(want in r.stderr, "%s: stderr lacks %r: %r" % (reason, want, r.stderr.strip()))
        check(not pids_with_arg(cfg), "%s: left a daemon running" % reason)
        check(not os.path.exists(pidfile), "%s: wrote the pid file" % reason)
        if not os.path.exists(sock):
            gone = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            gone.bind(sock)
            gone.close()


def log_config(log, extra=""):
    return yaml_config([("127.0.0.1", 0)], extra="log:\n  file: %s\n%s" % (log, extra))


def check_stamped(path):
    """Every line of the file is one whole log line: no two mixed."""
    bad = [l for l in file_lines(path) if not re.match(STAMP_RE, l)]
    check(not bad, "%s holds %d line(s) not in the log format, e.g. %r" % (path, len(bad),
                                                                          bad[:2]))


@test
def daemon_log_file(ctx):
    """With log.file, `coechod -d` needs no syslog (its socket here does not
    exist) and logs to the file, stamped as on stderr: "listening on", a
    SIGUSR1 statistics line, a reload. Once moved away (as logrotate
    does), the file is made again at the next SIGHUP, whose lines go
    there."""
    log = os.path.join(ctx.dir, "coechod.log")
    pidfile = os.path.join(ctx.dir, "coechod.pid")
    cfg = ctx.write_config(log_config(log, "pid_file: %s" % pidfile))
    nosyslog = {"COECHOD_SYSLOG_SOCKET": os.path.join(ctx.dir, "no-such.sock")}
    r = run_coechod(["-d", "-c", cfg], cwd=ctx.dir, timeout=20.0, env=nosyslog)
    check(r.rc == 0, "coechod -d with log.file: %s" % r.summary())
    pid = pidfile_pid(pidfile)
    try:
        m, _ = wait_file_line(log, "^" + STAMP_RE + r"listening on 127\.0\.0\.1:(\d+)$", 5.0)
        with ctx.connect(int(m.group(1))) as c:
            echo_ok(c)
        os.kill(pid, signal.SIGUSR1)
        wait_file_line(log, r"info: stats: connections=\d+ accepted=1 ", 10.0)
        os.kill(pid, signal.SIGHUP)
        _, at = wait_file_line(log, r"info: reloaded %s$" % re.escape(cfg), 10.0)
        os.rename(log, log + ".1")
        os.kill(pid, signal.SIGHUP)
        wait_file_line(log, r"info: log\.file %s: opened$" % re.escape(log), 10.0)
        wait_file_line(log, r"info: reloaded ", 10.0)
        os.kill(pid, signal.SIGUSR1)
        wait_file_line(log, r"info: stats: connections=", 10.0)
        check(len(file_lines(log + ".1")) == at + 1,
              "lines went on to the moved file after the SIGHUP: %r"
              % file_lines(log + ".1")[at + 1:])
    finally:
        stop_daemon(pid)
    wait_file_line(log, r"info: stopped: 1 connection\(s\) served$", 5.0)
    check_stamped(log)
    check_stamped(log + ".1")


@test
def log_file_foreground(ctx):
    """In the foreground, log.file takes the lines too; until coechod
    serves, its warnings (max_connections over a descriptor limit of 64)
    also go to stderr, its other lines do not. A reload that names
    another log.file moves the log there."""
    log = os.path.join(ctx.dir, "coechod.log")
    d = ctx.daemon([], config=log_config(log), nofile=64)
    wait_file_line(log, r"info: listening on 127\.0\.0\.1:\d+$", 5.0)
    warning = r"warn: max_connections 10000 does not fit the descriptor limit 64"
    wait_file_line(log, warning, 5.0)
    d.wait_log(warning, 5.0, what="the start's warning on stderr too")
    d.send_signal(signal.SIGUSR1)
    wait_file_line(log, r"info: stats: connections=", 10.0)
    with d.cond:
        leaked = [l for l in d.lines if re.search(r"info: (listening on|stats:)", l)]
    check(not leaked, "info lines on stderr next to log.file: %r" % leaked)
    other = os.path.join(ctx.dir, "other.log")
    ctx.write_config(log_config(other))
    d.send_signal(signal.SIGHUP)
    wait_file_line(other, r"info: log\.file %s: opened$" % re.escape(other), 10.0)
    d.send_signal(signal.SIGUSR1)
    wait_file_line(other, r"info: stats: connections=", 10.0)
    check_stamped(log)
    check_stamped(other)


@test
def log_file_refused(ctx):
    """A log.file that cannot be opened, or is a symbolic link, stops the
    start with the reason on stderr, before detaching; the file a link
    points to stays untouched."""
    victim = os.path.join(ctx.dir, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    link = os.path.join(ctx.dir, "link.log")
    os.symlink(victim, link)
    missing = os.path.join(ctx.dir, "no-such-dir", "coechod.log")
    for log, reason in ((missing, "No such file or directory"),
                        (link, "is a symbolic link; refusing")):
        cfg = ctx.write_config(log_config(log))
        r = run_coechod(["-d", "-c", cfg], cwd=ctx.dir, timeout=20.0)
        check(r.rc == 1, "log.file %s: %s, expected exit 1" % (log, r.summary()))
        want = "log.file %s: %s" % (log, reason)
        check(want in r.stderr, "stderr lacks %r: %r" % (want, r.stderr.strip()))
        check(not pids_with_arg(cfg), "log.file %s: left a daemon running" % log)
    with open(victim) as f:
        check(f.read() == "precious\n", "the daemon wrote through the symbolic link")


def daemon_pid_dir(ctx, name="run", mode=0o755):
    """A directory for a pid file in the test's private one, with mode
    (its path without symlinks, as the daemon's messages name it)."""
    path = os.path.join(os.path.realpath(ctx.dir), name)
    os.mkdir(path)
    os.chmod(path, mode)  # not subject to the umask
    return path


def start_daemon_mode(ctx, pidfile, extra="", name="coechod.yaml"):
    """Runs `coechod --daemon` with pid_file; returns (Result, config)."""
    cfg = ctx.write_config(yaml_config([("127.0.0.1", 0)],
                                       extra="pid_file: %s\n%s" % (pidfile, extra)), name)
    return run_coechod(["--daemon", "-c", cfg], cwd=ctx.dir, timeout=20.0,
                       env=ctx.syslog_env()), cfg


def pidfile_pid(pidfile):
    """The pid in pidfile; `coechod -d` returns once it is written."""
    check(not os.path.islink(pidfile), "pid file %s is a symlink" % pidfile)
    with open(pidfile) as f:
        text = f.read()
    check(re.fullmatch(r"\d+\n", text), "pid file holds %r" % text)
    return int(text)


def stop_daemon(pid, timeout=10.0):
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not process_gone(pid):
        check(time.monotonic() < deadline, "pid %d still running %.0f s after SIGTERM"
              % (pid, timeout))
        time.sleep(0.05)


def check_refused(ctx, r, cfg, pattern, what):
    check(r.rc != 0, "%s: coechod --daemon exited 0" % what)
    check(re.search(pattern, r.stderr), "%s: stderr %r lacks %r"
          % (what, r.stderr.strip().splitlines()[-3:], pattern))
    left = pids_with_arg(cfg)
    check(not left, "%s: left pid(s) %r running" % (what, left))


def upcoming_pids(count):
    """The next count pids the kernel hands out (if nothing skips ahead)."""
    with open("/proc/sys/kernel/ns_last_pid") as f:
        last = int(f.read())
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    return [(last + i) % pid_max for i in range(1, count + 1)]


@test
def pidfile_symlink_attack(ctx):
    """Symlinks planted where the daemon could write its pid (the temporary
    names coechod.pid.PID.tmp of the next 3000 pids, and the pid file
    itself) are never followed: the file they point to stays untouched and
    a symlink at the pid file's own path is refused."""
    victim = os.path.join(ctx.dir, "victim")
    with open(victim, "w") as f:
        f.write("precious\n")
    piddir = daemon_pid_dir(ctx)
    pidfile = os.path.join(piddir, "coechod.pid")
    for pid in upcoming_pids(3000):
        os.symlink(victim, "%s.%d.tmp" % (pidfile, pid))
    r, cfg = start_daemon_mode(ctx, pidfile)
    check(r.rc == 0, "coechod --daemon: %s" % r.summary())
    with open(victim) as f:
        text = f.read()
    check(text == "precious\n", "the daemon wrote through a planted symlink: the file it "
          "points to now holds %r" % text)
    pid = pidfile_pid(pidfile)
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            check(cfg.encode() in f.read(), "pid file names %d, not our daemon" % pid)
    finally:
        stop_daemon(pid)

    os.symlink(victim, pidfile)
    r, cfg = start_daemon_mode(ctx, pidfile, name="second.yaml")
    check_refused(ctx, r, cfg, re.escape("%s: is a symbolic link; refusing" % pidfile),
                  "symlink at the pid file")
    check(os.path.islink(pidfile), "the symlink at the pid file was replaced")
    with open(victim) as f:
        check(f.read() == "precious\n", "the daemon wrote through the pid file's symlink")


@test
def pidfile_symlinked_directory(ctx):
    """A symlink in the pid file's directory part is followed only if root
    owns it (like /var/run -> /run): one that another user planted in a
    sticky directory, to choose where the root daemon writes, is refused."""
    if os.geteuid() != 0:
        raise TestSkip("needs root (to chown a symlink)")
    import pwd
    nobody = pwd.getpwnam("nobody").pw_uid
    piddir = daemon_pid_dir(ctx)
    shared = daemon_pid_dir(ctx, "shared", 0o1777)
    trusted = os.path.join(shared, "trusted")
    os.symlink("../run", trusted)
    r, cfg = start_daemon_mode(ctx, os.path.join(trusted, "coechod.pid"))
    check(r.rc == 0, "pid file through a root-owned symlink: %s" % r.summary())
    stop_daemon(pidfile_pid(os.path.join(piddir, "coechod.pid")))

    planted = os.path.join(shared, "planted")
    os.symlink(piddir, planted)
    os.lchown(planted, nobody, -1)
    pidfile = os.path.join(planted, "coechod.pid")
    r, cfg = start_daemon_mode(ctx, pidfile, name="second.yaml")
    check_refused(ctx, r, cfg, re.escape("pid_file %s: %s is a symbolic link owned by uid %d; "
                                         "refusing" % (pidfile, planted, nobody)),
                  "symlink owned by nobody")
    check(not os.path.lexists(os.path.join(piddir, "coechod.pid")),
          "a pid file was created through the planted symlink")


@test
def pidfile_unsafe_directory(ctx):
    """A pid file directory that group or others may write (even sticky),
    or an ancestor they may write without the sticky bit, is refused with
    the reason; nothing is created and nothing is left running."""
    shared = daemon_pid_dir(ctx, "shared", 0o777)
    deep = daemon_pid_dir(ctx, os.path.join("shared", "run"))
    cases = [(shared, shared, 0o777), (shared, shared, 0o1777), (deep, shared, 0o777)]
    for i, (piddir, culprit, mode) in enumerate(cases):
        os.chmod(culprit, mode)
        pidfile = os.path.join(piddir, "coechod.pid")
        what = "%s with %s at mode %o" % (pidfile, culprit, mode)
        r, cfg = start_daemon_mode(ctx, pidfile, name="c%d.yaml" % i)
        check_refused(ctx, r, cfg, re.escape(
            "pid_file %s: directory %s is writable by group or others; refusing "
            "(make it 0755, owned by root)" % (pidfile, culprit)), what)
        check(not os.path.lexists(pidfile), "%s: the pid file was created" % what)


@test
def pidfile_stale_after_user_switch(ctx):
    """With `user: nobody` the daemon may not unlink its pid file in a
    root-owned directory: at exit it empties the file instead, and a later
    start is not refused because a stale pid file names a live process
    (here the test itself) that is no coechod."""
    if os.geteuid() != 0:
        raise TestSkip("needs root")
    os.chmod(ctx.dir, 0o755)  # like /run: nobody may look, not write
    pidfile = os.path.join(daemon_pid_dir(ctx), "coechod.pid")
    r, cfg = start_daemon_mode(ctx, pidfile, extra='user: "nobody"\n')
    check(r.rc == 0, "coechod --daemon as nobody: %s" % r.summary())
    stop_daemon(pidfile_pid(pidfile))
    if os.path.exists(pidfile):
        with open(pidfile) as f:
            left = f.read()
        check(left == "", "after SIGTERM the pid file still holds %r" % left)

    with open(pidfile, "w") as f:
        f.write("%d\n" % os.getpid())
    r, cfg = start_daemon_mode(ctx, pidfile, extra='user: "nobody"\n', name="second.yaml")
    check(r.rc == 0, "start over a stale pid file naming pid %d: %s" % (os.getpid(), r.summary()))
    pid = pidfile_pid(pidfile)
    check(pid != os.getpid(), "the pid file still names the test's pid")
    stop_daemon(pid)


def main(argv):
    return run_suite(argv, TESTS, "coechod-integration", [("daemon", COECHOD, "COECHOD")],
                     __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
