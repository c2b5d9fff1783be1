#!/usr/bin/env python3
"""Integration tests for coechod with workers > 1: the main process binds
the listeners, forks the workers and supervises them.

    test_workers.py [NAME...] [--list]

Environment as for harness.py (BUILDDIR, SRCDIR, COECHOD).
Python 3 standard library only.
"""

import os
import re
import signal
import socket
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, echo_ok, yaml_config  # noqa: E402
from test_systemd import Notify, has, udp_echoed_in_status  # noqa: E402

COECHOD = harness.COECHOD
TEST_DEADLINE = 60.0
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def workers_config(n=2, reuse_port=True, extra=""):
    return yaml_config(extra="workers: %s\nreuse_port: %s\n%s"
                       % (n, "true" if reuse_port else "false", extra))


def wait_workers(d, n, timeout=20.0):
    """Waits for "N workers ready"; returns the worker pids."""
    d.wait_log(r"\b%d workers ready" % n, timeout)
    pids = harness.child_pids(d.pid)
    check(len(pids) == n, "expected %d worker processes, found %r" % (n, pids))
    return sorted(pids)


def socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            m = re.match(r"socket:\[(\d+)\]", target)
            if m:
                inodes.add(m.group(1))
    except OSError:
        pass
    return inodes


def tcp_peer_ports_by_inode():
    """inode -> remote port of every IPv4 TCP socket, from /proc/net/tcp."""
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            out[fields[9]] = int(fields[2].split(":")[1], 16)
    return out


def owners(conns, worker_pids):
    """For each client socket, the worker pid serving it (or None)."""
    peer = tcp_peer_ports_by_inode()
    by_port = {}
    for pid in worker_pids:
        for inode in socket_inodes(pid):
            if inode in peer:
                by_port.setdefault(peer[inode], pid)
    return [by_port.get(s.getsockname()[1]) for s in conns]


def open_conns(ctx, port, n, timeout=3.0):
    conns = []
    for i in range(n):
        s = ctx.connect(port)
        echo_ok(s, b"hello %d\n" % i, timeout=timeout)
        conns.append(s)
    return conns


def worker_slot_pid(d, slot, start=0):
    """The pid of the latest "worker SLOT started (pid P)" line from start on."""
    rx = re.compile(r"coechod\[%d\] \w+: worker %d started \(pid (\d+)\)" % (d.pid, slot))
    with d.cond:
        lines = list(d.lines[start:])
    pids = [int(m.group(1)) for m in map(rx.search, lines) if m]
    return pids[-1] if pids else None


def wait_worker_running(d, pid, timeout=15.0):
    """SIGUSR1 to worker pid alone; waits for its stats line, logged from
    its own event loop (a signal that arrives before the worker watches
    it stays pending): the worker is up and serving. Workers log it at
    debug level: the daemon needs --log-level debug."""
    mark = d.mark()
    os.kill(pid, signal.SIGUSR1)
    return d.wait_log(r"coechod\[%d\] \w+: worker \d+: stats: (.*)" % pid, timeout, mark,
                      what="'stats:' from worker pid %d after SIGUSR1" % pid)


def worker_stats(d, pid, timeout=15.0):
    """The counters of worker pid's stats line, as a dict of ints."""
    m = wait_worker_running(d, pid, timeout)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def wait_stopped(pid, timeout=10.0):
    """Waits until pid is in state T (stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
        except OSError:
            break
        if stat[stat.rfind(")") + 2:].split()[0] in ("T", "t"):
            return
        time.sleep(0.01)
    raise TestFailure("worker %d did not stop after SIGSTOP" % pid)


def echo_or_closed(s, payload, timeout=10.0, what="connection"):
    """Sends payload: "echo" if it all comes back, "closed" if the daemon
    closes the connection (EOF or reset) instead. Fails on a timeout."""
    try:
        s.settimeout(timeout)
        s.sendall(payload)
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
        return "closed"
    except OSError as e:
        raise TestFailure("%s: send failed: %s" % (what, e))
    deadline = time.monotonic() + timeout
    buf = b""
    while len(buf) < len(payload):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestFailure("%s: neither echoed nor closed within %.1f s (%d of %d bytes)"
                              % (what, timeout, len(buf), len(payload)))
        s.settimeout(left)
        try:
            chunk = s.recv(len(payload) - len(buf))
        except socket.timeout:
            continue
        except (ConnectionResetError, ConnectionAbortedError):
            return "closed"
        if not chunk:
            return "closed"
        buf += chunk
    check(buf == payload, "%s: wrong bytes back: %r for %r" % (what, buf, payload))
    return "echo"


def two_workers_with_clients(ctx, n, extra=""):
    """coechod with 2 workers and n echoing clients: (daemon, port, worker
    pids, client sockets, the worker pid serving each client)."""
    d = ctx.daemon([], config=workers_config(2, extra=extra))
    port = d.port()
    pids = wait_workers(d, 2)
    conns = open_conns(ctx, port, n)
    return d, port, pids, conns, owners(conns, pids)


@test
def workers_serve_and_balance(ctx):
    d, port, pids, conns, who = two_workers_with_clients(ctx, 60)
    check(None not in who, "some connections are served by no worker: %r" % who)
    counts = {pid: who.count(pid) for pid in pids}
    ctx.note("connections per worker: %r" % counts)
    check(all(c > 0 for c in counts.values()),
          "SO_REUSEPORT should spread 60 connections over both workers: %r" % counts)


@test
def workers_shared_socket(ctx):
    d = ctx.daemon([], config=workers_config(2, reuse_port=False))
    port = d.port()
    wait_workers(d, 2)
    d.wait_log("shared", 1)
    for s in open_conns(ctx, port, 20):
        echo_ok(s, b"again\n")


@test
def workers_auto(ctx):
    d = ctx.daemon([], config=workers_config("auto"))
    d.port()
    n = len(os.sched_getaffinity(0))
    if n == 1:
        d.wait_log(r"listening on", 5)  # one CPU: a single process
        return
    wait_workers(d, n)


@test
def worker_killed_is_replaced_others_untouched(ctx):
    d, port, pids, conns, who = two_workers_with_clients(ctx, 40)
    victim, survivor = pids[0], pids[1]
    check(who.count(victim) and who.count(survivor),
          "need connections on both workers: %r" % {p: who.count(p) for p in pids})
    mark = d.mark()
    os.kill(victim, signal.SIGKILL)
    d.wait_log(r"worker \d died \(killed by Killed\); restarting", 10, mark)
    d.wait_log(r"worker \d started", 10, mark)
    for s, owner in zip(conns, who):
        if owner == survivor:
            echo_ok(s, b"still here\n")
        else:  # closed by the kernel when its worker died (EOF or reset)
            harness.wait_closed(s, 5.0, "a connection of the killed worker")
    new = sorted(harness.child_pids(d.pid))
    check(len(new) == 2 and victim not in new and survivor in new,
          "expected the killed worker replaced: before %r after %r" % (pids, new))
    # The replacement serves its share of new connections. "started" is
    # logged at its fork: the first echo it serves may wait for its start.
    fresh = open_conns(ctx, port, 40, timeout=10.0)
    who = owners(fresh, new)
    replacement = [p for p in new if p != survivor][0]
    check(who.count(replacement) > 0, "the replacement worker got no new connection")


@test
def workers_sigterm_drains_all(ctx):
    d, port, pids, conns, who = two_workers_with_clients(ctx, 30, "shutdown_grace: 20s\n")
    check(len(set(who)) == 2, "need connections on both workers")
    d.send_signal(signal.SIGTERM)
    d.wait_log(r"stopping 2 worker", 10)
    for p in pids:  # each worker closes its listeners (its own line: its pid)...
        d.wait_log(r"coechod\[%d\] \w+: worker \d+: .*stopping; listeners closed" % p, 10,
                   what="'worker N: ...stopping; listeners closed' from worker pid %d" % p)
    harness.wait_refused(port, 10)
    for s in conns:  # ...and keeps echoing for the connected clients
        echo_ok(s, b"draining\n")
    check(d.alive(), "the main process exited with connections open")
    for s in conns:
        s.shutdown(socket.SHUT_WR)
        harness.recv_until_eof(s)
    check(d.wait_exit(10) == 0, "did not exit 0 once the connections closed")
    for p in pids:
        check(harness.process_gone(p), "worker %d still there" % p)


@test
def workers_sighup_reaches_all(ctx):
    path = ctx.write_config(workers_config(2))
    d = ctx.daemon(["-c", path])
    port = d.port()
    wait_workers(d, 2)
    conns = open_conns(ctx, port, 10)
    mark = d.mark()
    ctx.write_config(workers_config(2, extra="limits: {idle_timeout: 1h}\n"))
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"worker 1: reloaded", 10, mark)
    d.wait_log(r"worker 2: reloaded", 10, mark)
    for s in conns:
        echo_ok(s, b"after reload\n")
    # A broken file: the main process says so once, the workers keep going.
    mark = d.mark()
    ctx.write_config("workers: 2\nlimits: {max_connections: zero}\n")
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"reload of .* failed", 10, mark)
    echo_ok(ctx.connect(port), b"still serving\n")


@test
def workers_crash_loop_gives_up(ctx):
    d = ctx.daemon([], config=workers_config(2))
    d.port()
    wait_workers(d, 2)
    deadline = time.monotonic() + 30
    killed = set()
    while d.alive() and time.monotonic() < deadline:
        # Workers by their "started" lines, not every child: under ASan the
        # leak check at exit runs in a child process of its own.
        with d.cond:
            started = [int(m.group(1)) for m in
                       (re.search(r"worker \d+ started \(pid (\d+)\)", line) for line in d.lines)
                       if m]
        for pid in started:
            if pid not in killed:
                killed.add(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:  # gone since we listed it: the giving up
                    pass
        time.sleep(0.02)
    check(not d.alive(), "still running after %d worker kills" % len(killed))
    d.wait_log(r"giving up", 5)
    check(d.wait_exit(5) == 1, "expected exit 1 after a crash loop")


@test
def workers_stuck_worker_killed(ctx):
    """A worker that sends no heartbeat (stopped: the stand-in for a stuck
    loop) is killed after 3 missed heartbeats (1 s each), not 10 s, and
    replaced; connections made while it was stopped, queued on its socket,
    are all echoed once the replacement runs."""
    d = ctx.daemon([], config=workers_config(2))
    port = d.port()
    pids = wait_workers(d, 2)
    mark = d.mark()
    os.kill(pids[0], signal.SIGSTOP)
    wait_stopped(pids[0])
    conns = []
    for i in range(20):  # about half queue on the stopped worker's socket
        s = ctx.connect(port)
        s.sendall(b"while stopped %d\n" % i)
        conns.append(s)
    sent_at = time.monotonic()
    m = d.wait_log(r"worker (\d+) \(pid (\d+)\) sent no heartbeat for (\d+) ms: killing it",
                   25, mark)
    check(int(m.group(2)) == pids[0], "killed pid %s as stuck, but the stopped worker is %d"
          % (m.group(2), pids[0]))
    silent = int(m.group(3))
    ctx.note("stopped worker killed after %d ms without a heartbeat" % silent)
    check(3000 <= silent < 9000, "stopped worker killed after %d ms without a heartbeat; "
          "expected 3 missed 1 s heartbeats (3000 ms, well under 9000)" % silent)
    d.wait_log(r"worker %s started" % m.group(1), 10, mark,
               what="'worker %s started' (the replacement)" % m.group(1))
    new = sorted(harness.child_pids(d.pid))
    check(len(new) == 2 and pids[0] not in new and pids[1] in new,
          "expected the stuck worker replaced: before %r after %r" % (pids, new))
    for i, s in enumerate(conns):
        payload = b"while stopped %d\n" % i
        got = harness.recv_exact(s, len(payload), max(0.1, sent_at + 20.0 - time.monotonic()),
                            "echo of connection %d made while the worker was stopped" % i)
        check(got == payload, "connection %d: wrong bytes back %r" % (i, got))
    who = owners(conns, new)
    replacement = [p for p in new if p != pids[1]][0]
    ctx.note("connections per worker: %r" % {p: who.count(p) for p in new})
    check(who.count(replacement) > 0, "no connection made while the worker was stopped "
          "was served by its replacement %d: %r" % (replacement, who))


@test
def workers_restarted_worker_runs_reloaded_config(ctx):
    """A worker restarted after a crash runs the configuration in force,
    the last reload's, not the start-up one: max_connections_per_ip 1 and
    idle_timeout 2s, reloaded before the crash, hold in the replacement."""
    path = ctx.write_config(workers_config(
        2, extra="limits: {max_connections_per_ip: 0, idle_timeout: 1h}\n"))
    d = ctx.daemon(["-c", path, "--log-level", "debug"])
    port = d.port()  # the port-0 entry keeps this listener across reloads
    pids = wait_workers(d, 2)
    for s in open_conns(ctx, port, 6):  # no per-IP limit at start
        s.close()
    mark = d.mark()
    ctx.write_config(workers_config(
        2, extra="limits: {max_connections_per_ip: 1, idle_timeout: 2s}\n"))
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"worker 1: reloaded", 10, mark)
    d.wait_log(r"worker 2: reloaded", 10, mark)
    victim, survivor = pids
    mark = d.mark()
    os.kill(victim, signal.SIGKILL)
    m = d.wait_log(r"worker (\d+) died \(killed by Killed\)", 10, mark)
    slot = int(m.group(1))
    d.wait_log(r"worker %d started \(pid \d+\)" % slot, 10, mark,
               what="'worker %d started (pid P)' (the replacement)" % slot)
    replacement = worker_slot_pid(d, slot, mark)
    now = sorted(harness.child_pids(d.pid))
    check(now == sorted([replacement, survivor]),
          "expected workers %r after the restart, found %r" % ([replacement, survivor], now))
    wait_worker_running(d, replacement)

    # Per-IP limit 1 in each worker: of 10 simultaneous connections from
    # 127.0.0.1 at most 2 (one per worker) are served, the others closed at
    # once. Rounds until the replacement itself has turned one away.
    rounds, rejected = 0, 0
    while rejected == 0:
        check(rounds < 10, "in %d rounds of 10 connections the replacement worker %d "
              "turned none away: it does not run the reloaded max_connections_per_ip 1"
              % (rounds, replacement))
        batch = [ctx.connect(port) for _ in range(10)]  # all accepted (or not) at once
        got = [echo_or_closed(s, b"round %d connection %d\n" % (rounds, i), 10.0,
                              "round %d connection %d" % (rounds, i))
               for i, s in enumerate(batch)]
        ctx.note("round %d: %d of 10 echoed" % (rounds, got.count("echo")))
        check(got.count("echo") <= 2, "round %d: %d of 10 connections from 127.0.0.1 served "
              "by 2 workers under max_connections_per_ip 1" % (rounds, got.count("echo")))
        for s in batch:
            s.close()
        rejected = worker_stats(d, replacement)["rejected_per_ip"]
        rounds += 1

    # idle_timeout 2s: an idle connection served by the replacement is
    # closed no sooner than 2 s after its echo (its last activity).
    deadline = time.monotonic() + 20.0
    idle, i = None, 0
    while idle is None:
        check(time.monotonic() < deadline,
              "no connection served by the replacement worker %d within 20 s" % replacement)
        s = ctx.connect(port)
        t0 = time.monotonic()
        if echo_or_closed(s, b"then idle %d\n" % i, 10.0, "connection %d" % i) == "echo":
            if owners([s], [replacement, survivor])[0] == replacement:
                idle = s
                break
        else:  # a slot of an earlier connection, not released yet
            time.sleep(0.05)
        s.close()
        i += 1
    how = harness.wait_closed(idle, 15.0, "idle connection on the replacement worker "
                         "(reloaded idle_timeout 2s; 1h at start)")
    idle_for = time.monotonic() - t0
    ctx.note("idle connection closed (%s) %.2f s after its echo" % (how, idle_for))
    check(idle_for >= 1.9, "idle connection closed %.2f s after its echo, before the "
          "reloaded idle_timeout 2s" % idle_for)


@test
def workers_sigterm_to_one_worker_is_no_crash(ctx):
    """A worker that exits 0 after a SIGTERM sent to it alone is started
    again and does not count as a crash: 7 in a row (over the crash-loop
    limit of 5 in 60 s) leave the service running."""
    d = ctx.daemon(["--log-level", "debug"], config=workers_config(2))
    port = d.port()
    wait_workers(d, 2)
    for rnd in range(7):
        slot = rnd % 2 + 1
        pid = worker_slot_pid(d, slot)
        check(pid in harness.child_pids(d.pid), "round %d: worker %d (pid %s) is not a child of "
              "the main process: %r" % (rnd, slot, pid, harness.child_pids(d.pid)))
        mark = d.mark()
        os.kill(pid, signal.SIGTERM)
        m = d.wait_log(r"worker %d started \(pid (\d+)\)|giving up" % slot, 15, mark,
                       what="'worker %d started (pid P)' after SIGTERM #%d to pid %d"
                       % (slot, rnd + 1, pid))
        check("giving up" not in m.group(0), "SIGTERM #%d to one worker taken for a crash: %r"
              % (rnd + 1, m.group(0)))
        new = int(m.group(1))
        check(new != pid and harness.process_gone(pid),
              "round %d: worker %d pid %d still there (new pid %d)" % (rnd, slot, pid, new))
        wait_worker_running(d, new)
    check(d.alive(), "the main process exited")
    kids = harness.child_pids(d.pid)
    check(len(kids) == 2, "expected 2 workers, found %r" % kids)
    for s in open_conns(ctx, port, 20, timeout=10.0):
        echo_ok(s, b"after 7 SIGTERMs\n")
    with d.cond:
        bad = [l for l in d.lines if "giving up" in l or " died " in l]
    check(not bad, "a worker's clean exit after SIGTERM was taken for a death: %r" % bad)


@test
def workers_notify_summed(ctx):
    n = Notify(ctx)
    d = ctx.daemon([], config=workers_config(2), env=n.env(WATCHDOG_USEC="400000"))
    port = d.port()
    ready = n.wait_for(has("READY", "1"), 10, "READY=1")
    check(ready["STATUS"].startswith("2/2 workers"), "STATUS: %r" % ready["STATUS"])
    conns = open_conns(ctx, port, 6)
    n.wait_for(lambda m: "STATUS" in m and "6 connection(s)" in m["STATUS"], 15,
               "STATUS= summing both workers' 6 connections")
    n.wait_for(has("WATCHDOG", "1"), 5, "WATCHDOG=1 from the main process")
    d.send_signal(signal.SIGHUP)
    n.wait_for(has("RELOADING", "1"), 10, "RELOADING=1")
    n.wait_for(has("READY", "1"), 15, "READY=1 after the workers reloaded")
    for s in conns:
        s.close()
    d.send_signal(signal.SIGTERM)
    n.wait_for(has("STOPPING", "1"), 10, "STOPPING=1")
    check(d.wait_exit(15) == 0, "did not exit 0")
    # Workers never talk to systemd directly (NotifyAccess=main).
    for m in n.got:
        check("X_COECHO_STATS" not in m, "a worker's message reached systemd: %r" % m["_raw"])


def stats_keys(line):
    """The keys of a stats line, in order."""
    return re.findall(r"(\w+)=", line)


@test
def workers_stats_line_like_single_process(ctx):
    """USR1: the main process's totals, a worker's own line and a single
    process's line have the same keys in the same order (one formatter,
    src/server/statline.c); with a UDP listener, the main process's
    STATUS= names the datagrams."""
    single = ctx.daemon(["-l", "127.0.0.1:0"], config="")
    single.port()
    mark = single.mark()
    single.send_signal(signal.SIGUSR1)
    one = single.wait_log(r"info: stats: (.*)", 10.0, mark, what="a single process's stats")
    n = Notify(ctx)
    d = ctx.daemon(["--log-level", "debug", "-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0"],
                   config=workers_config(2), env=n.env(WATCHDOG_USEC="400000"))
    pids = wait_workers(d, 2)
    mark = d.mark()
    d.send_signal(signal.SIGUSR1)
    main = d.wait_log(r"coechod\[%d\] info: stats: (.*)" % d.pid, 10.0, mark,
                      what="the main process's stats")
    worker = wait_worker_running(d, pids[0])
    keys = stats_keys(one.group(1))
    check(stats_keys(main.group(1)) == keys, "main process's keys %r, single process's %r"
          % (stats_keys(main.group(1)), keys))
    check(stats_keys(worker.group(1)) == keys, "a worker's keys %r, single process's %r"
          % (stats_keys(worker.group(1)), keys))
    check("workers=2/2 " in main.group(1), "main process's line: %r" % main.group(1))
    udp_echoed_in_status(ctx, n, d, 4, 15)


@test
def workers_daemon_mode(ctx):
    pidfile = os.path.join(ctx.dir, "coechod.pid")
    path = ctx.write_config(workers_config(2, extra="pid_file: %s\n" % pidfile))
    # Port 0: this test never connects, and a probed free port could be
    # taken by a parallel suite before the daemon binds it.
    r = harness.run_coechod(["-d", "-c", path, "-l", "127.0.0.1:0"], timeout=30.0,
                            env=ctx.syslog_env())
    check(r.rc == 0, "coechod -d with 2 workers: %s" % r.summary())
    with open(pidfile) as f:
        main_pid = int(f.read())
    try:
        check(len(harness.child_pids(main_pid)) == 2, "expected 2 workers under %d" % main_pid)
    finally:
        os.kill(main_pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not harness.process_gone(main_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    check(harness.process_gone(main_pid), "daemon did not stop")


@test
def workers_log_file(ctx):
    """workers: 2 with log.file: the main process and both workers append
    whole lines to the one file. Moved away (logrotate), the file is made
    again at the next SIGHUP and every process writes there, also when the
    reload itself fails."""
    log = os.path.join(ctx.dir, "coechod.log")
    # debug: each worker's own USR1 statistics (the main process logs the totals)
    logcfg = "log: { file: %s, level: debug }\n" % log
    path = ctx.write_config(workers_config(2, extra=logcfg))
    d = ctx.daemon(["-c", path])
    harness.wait_file_line(log, r"info: 2 workers ready", 20.0)
    m, _ = harness.wait_file_line(log, r"info: listening on 127\.0\.0\.1:(\d+)$", 5.0)
    conns = open_conns(ctx, int(m.group(1)), 4)
    for cycle, text in enumerate((workers_config(2, extra=logcfg),
                                  "workers: 2\nlimits: {max_connections: zero}\n")):
        os.rename(log, "%s.%d" % (log, cycle + 1))
        ctx.write_config(text)
        d.send_signal(signal.SIGHUP)
        harness.wait_file_line(log, r"coechod\[%d\] info: log\.file \S+: opened" % d.pid, 10.0,
                               what="the main process's line in the new file (cycle %d)" % cycle)
        d.send_signal(signal.SIGUSR1)
        for w in (1, 2):
            harness.wait_file_line(log, r"debug: worker %d: stats: connections=" % w, 10.0,
                                   what="worker %d's stats in the new file (cycle %d)"
                                   % (w, cycle))
    harness.wait_file_line(log, r"error: reload of .* failed", 1.0)
    for s in conns:
        echo_ok(s, b"after the reloads\n")
        s.close()
    d.send_signal(signal.SIGTERM)
    check(d.wait_exit(15) == 0, "did not exit 0")
    for f in (log, log + ".1", log + ".2"):
        bad = [l for l in harness.file_lines(f) if not re.match(harness.STAMP_RE, l)]
        check(not bad, "%s: %d line(s) not in the log format, e.g. %r" % (f, len(bad), bad[:2]))


@test
def workers_refuse_a_port_in_use(ctx):
    """SO_REUSEPORT must not let a second coechod silently share the port."""
    first = ctx.daemon([], config=workers_config(2))
    port = first.port()
    wait_workers(first, 2)
    second = ctx.daemon([], config=yaml_config(listen=(("127.0.0.1", port),),
                                                extra="workers: 2\n"))
    check(second.wait_exit(10) == 1, "a second coechod on port %d did not exit 1" % port)
    second.wait_log(r"cannot listen on 127\.0\.0\.1:%d: bind: Address already in use" % port, 5)


@test
def workers_ctrl_c_is_graceful(ctx):
    """SIGINT to the whole process group (a terminal's Ctrl-C) drains
    gracefully: workers ignore it and act on the main process's TERM."""
    d = ctx.daemon([], config=workers_config(2, extra="shutdown_grace: 20s\n"))
    port = d.port()
    wait_workers(d, 2)
    conns = open_conns(ctx, port, 10)
    os.killpg(d.pid, signal.SIGINT)  # the daemon runs in its own session
    d.wait_log(r"stopping 2 worker", 10)
    for s in conns:
        echo_ok(s, b"still echoing\n")
    for s in conns:
        s.close()
    check(d.wait_exit(10) == 0, "did not exit 0")
    with d.cond:
        forced = [l for l in d.lines if "closing every connection now" in l]
    check(not forced, "a worker took Ctrl-C as a second stop signal: %r" % forced)


def main(argv):
    return harness.run_suite(argv, TESTS, "coechod-workers", [("daemon", COECHOD, "COECHOD")],
                        __doc__, deadline=TEST_DEADLINE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
