#!/usr/bin/env python3
"""Integration tests for coechod under systemd's protocols, without systemd
running: the test plays the service manager.

- notify: the test owns a datagram socket (abstract or path), starts the
  real daemon with NOTIFY_SOCKET and WATCHDOG_USEC, and reads READY=1,
  STATUS=, WATCHDOG=1, RELOADING=1 (after SIGHUP) and STOPPING=1 (after
  SIGTERM);
- socket activation: systemd-socket-activate binds the sockets and execs
  coechod with LISTEN_FDS; bad LISTEN_* values are refused;
- units: the service and socket units, filled in for this build, pass
  `systemd-analyze verify`, and the service's `systemd-analyze security
  --offline=true` exposure is at most 2.0.

    test_systemd.py [NAME...] [--list]

Environment as for harness.py (BUILDDIR, SRCDIR, COECHOD). Tests whose
tool (systemd-socket-activate, systemd-analyze) is missing are skipped.
Python 3 standard library only.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, TestSkip, check, echo_ok, yaml_config  # noqa: E402
from test_udp import client, echo_datagram, udp_port  # noqa: E402

COECHOD = harness.COECHOD
SRCDIR = harness.SRCDIR
BUILDDIR = harness.BUILDDIR
TEST_DEADLINE = 40.0
MAX_EXPOSURE = 2.0
STATUS_EVERY = 2.0  # seconds between STATUS= updates (supervisor.c)

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------------------
# the service manager's side of sd_notify

class Notify:
    """A datagram socket coechod notifies; messages() returns what came,
    each as a dict of its KEY=VALUE lines plus the arrival time."""

    def __init__(self, ctx, abstract=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ctx.socks.append(self.sock)
        if abstract:
            name = "coecho-test-%d-%s" % (os.getpid(), ctx.name)
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            path = os.path.join(ctx.dir, "notify.sock")
            self.sock.bind(path)
            self.env_value = path
        self.got = []

    def env(self, **extra):
        return dict({"NOTIFY_SOCKET": self.env_value}, **extra)

    def _receive(self, timeout):
        """The next datagram, waiting up to timeout (None: do not wait)."""
        self.sock.settimeout(0.0 if timeout is None else max(0.001, timeout))
        try:
            data = self.sock.recv(4096)
        except (socket.timeout, BlockingIOError):
            return None
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        fields["_at"] = time.monotonic()
        fields["_raw"] = data.decode()
        self.got.append(fields)
        return fields

    def wait_for(self, pred, timeout, what):
        """Returns the first message (already received or new) for which
        pred holds."""
        for m in self.got:
            if not m.get("_used") and pred(m):
                m["_used"] = True
                return m
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = self._receive(deadline - time.monotonic())
            if m is not None and pred(m):
                m["_used"] = True
                return m
        raise TestFailure("no %s notification within %.1f s; got %r"
                          % (what, timeout, [m["_raw"] for m in self.got][-8:]))

    def collect(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._receive(deadline - time.monotonic())
        return self.got

    def drain(self):
        """Receives what is queued, without waiting; returns the time the
        queue was found empty: whatever was sent before then is in got."""
        while self._receive(None) is not None:
            pass
        return time.monotonic()


def wait_stopped(pid, timeout):
    """Waits until every thread of pid is stopped (SIGSTOP delivered): from
    then on it sends nothing."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
        except OSError:
            pass  # a thread came or went: look again
        if states and all(st in "Tt" for st in states):
            return
        if time.monotonic() > deadline:
            raise TestFailure("pid %d not stopped %.1f s after SIGSTOP (states %r)"
                              % (pid, timeout, states))
        time.sleep(0.01)


def has(key, value=None):
    return lambda m: key in m and (value is None or m[key] == value)


def udp_echoed_in_status(ctx, n, d, count, timeout):
    """Echoes count datagrams through d's UDP listener, then waits for a
    STATUS= from n that names them."""
    port = udp_port(d)
    s = client(ctx)
    for i in range(count):
        echo_datagram(s, port, b"datagram %d" % i)
    want = "udp: %d datagrams echoed, 0 dropped" % count
    return n.wait_for(lambda m: want in m.get("STATUS", ""), timeout,
                      "STATUS= naming the %d datagrams echoed" % count)


def status_connections(m):
    n = re.match(r"(?:stopping: )?(\d+) connection", m.get("STATUS", ""))
    return int(n.group(1)) if n else None


@test
def notify_ready_status_watchdog(ctx):
    n = Notify(ctx, abstract=True)
    d = ctx.daemon([], config=yaml_config(), env=n.env(WATCHDOG_USEC="200000"))
    port = d.port()
    ready = n.wait_for(has("READY", "1"), 5, "READY=1")
    check(status_connections(ready) == 0,
          "READY=1 should carry STATUS= with 0 connections: %r" % ready["_raw"])
    s = ctx.connect(port)
    echo_ok(s)
    # WATCHDOG_USEC=200000: WATCHDOG=1 every 100 ms. Count what was sent
    # between two moments the queue was empty, over the time between them:
    # pings queued while this process was busy are neither counted in nor
    # lost, they only lengthen the window.
    t0 = n.drain()
    first = len(n.got)
    n.collect(1.0)
    window = n.drain() - t0
    dogs = [m for m in n.got[first:] if m.get("WATCHDOG") == "1"]
    ctx.note("%d WATCHDOG=1 in %.3f s" % (len(dogs), window))
    check(4 * window <= len(dogs) <= 16 * window,
          "expected about %.0f WATCHDOG=1 in %.2f s at WATCHDOG_USEC=200000 (one every "
          "100 ms), got %d" % (10 * window, window, len(dogs)))
    st = n.wait_for(lambda m: "STATUS" in m and "READY" not in m and status_connections(m) == 1,
                    STATUS_EVERY * 2 + 1, "periodic STATUS= showing the open connection")
    ctx.note("status: %s" % st["STATUS"])
    check("accepted" in st["STATUS"], "STATUS= lacks counters: %r" % st["STATUS"])
    check("udp" not in st["STATUS"], "STATUS= of a TCP-only service names UDP: %r"
          % st["STATUS"])


@test
def notify_status_counts_udp(ctx):
    """With a UDP listener, STATUS= names the datagrams echoed and dropped,
    from READY=1 on."""
    n = Notify(ctx)
    d = ctx.daemon(["-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0"], config="", env=n.env())
    ready = n.wait_for(has("READY", "1"), 5, "READY=1")
    check(ready["STATUS"].endswith("; udp: 0 datagrams echoed, 0 dropped"),
          "READY=1's STATUS= lacks the UDP figures: %r" % ready["STATUS"])
    udp_echoed_in_status(ctx, n, d, 3, STATUS_EVERY * 2 + 1)


@test
def notify_reload_and_stopping(ctx):
    n = Notify(ctx, abstract=False)  # a path this time
    path = ctx.write_config(yaml_config())
    d = ctx.daemon(["-c", path], env=n.env())
    d.port()
    n.wait_for(has("READY", "1"), 5, "READY=1")
    before = time.clock_gettime(time.CLOCK_MONOTONIC)
    d.send_signal(signal.SIGHUP)
    m = n.wait_for(has("RELOADING", "1"), 5, "RELOADING=1 after SIGHUP")
    after = time.clock_gettime(time.CLOCK_MONOTONIC)
    check("MONOTONIC_USEC" in m, "RELOADING=1 without MONOTONIC_USEC: %r" % m["_raw"])
    usec = int(m["MONOTONIC_USEC"]) / 1e6
    check(before - 0.01 <= usec <= after + 0.01,
          "MONOTONIC_USEC %.3f s is not the CLOCK_MONOTONIC time of the reload (%.3f-%.3f)"
          % (usec, before, after))
    n.wait_for(has("READY", "1"), 5, "READY=1 after the reload")
    d.wait_log(r"reloaded", 5)
    d.send_signal(signal.SIGTERM)
    n.wait_for(has("STOPPING", "1"), 5, "STOPPING=1 after SIGTERM")
    check(d.wait_exit(10) == 0, "daemon did not exit 0 after SIGTERM")


@test
def notify_failed_reload_still_ready(ctx):
    """systemd waits for READY=1 after RELOADING=1 even when the reload
    fails; coechod keeps serving the old configuration and says so."""
    n = Notify(ctx)
    path = ctx.write_config(yaml_config())
    d = ctx.daemon(["-c", path], env=n.env())
    port = d.port()
    n.wait_for(has("READY", "1"), 5, "READY=1")
    ctx.write_config("limits: {max_connections: -1}\n")
    d.send_signal(signal.SIGHUP)
    n.wait_for(has("RELOADING", "1"), 5, "RELOADING=1")
    n.wait_for(has("READY", "1"), 5, "READY=1 after the failed reload")
    d.wait_log(r"reload of .* failed", 5)
    echo_ok(ctx.connect(port))


@test
def notify_watchdog_pid_elsewhere(ctx):
    """WATCHDOG_PID naming another process: no WATCHDOG=1 from us."""
    n = Notify(ctx)
    d = ctx.daemon([], config=yaml_config(),
                   env=n.env(WATCHDOG_USEC="100000", WATCHDOG_PID="1"))
    d.port()
    n.wait_for(has("READY", "1"), 5, "READY=1")
    n.collect(0.5)
    dogs = [m for m in n.got if "WATCHDOG" in m]
    check(not dogs, "sent WATCHDOG=1 although WATCHDOG_PID is not ours: %d" % len(dogs))


@test
def notify_stuck_loop_stops_watchdog(ctx):
    """The watchdog comes from a task: a stopped process (SIGSTOP, the
    stand-in for a stuck loop) sends none, and it resumes after SIGCONT."""
    n = Notify(ctx)
    d = ctx.daemon([], config=yaml_config(), env=n.env(WATCHDOG_USEC="100000"))
    d.port()
    n.wait_for(has("WATCHDOG", "1"), 5, "a first WATCHDOG=1")
    os.kill(d.pid, signal.SIGSTOP)
    try:
        wait_stopped(d.pid, 5.0)
        t0 = n.drain()  # what it sent before it stopped
        n.collect(0.5)
        stuck = [m for m in n.got if "WATCHDOG" in m and m["_at"] > t0]
    finally:
        os.kill(d.pid, signal.SIGCONT)
    check(not stuck, "WATCHDOG=1 kept coming while the process was stopped")
    t1 = time.monotonic()
    n.wait_for(lambda m: "WATCHDOG" in m and m["_at"] > t1, 3, "WATCHDOG=1 after SIGCONT")


@test
def notify_bad_socket_value(ctx):
    for value, what in (("relative/path", "NOTIFY_SOCKET"), ("@", "NOTIFY_SOCKET")):
        d = ctx.daemon([], config=yaml_config(), env={"NOTIFY_SOCKET": value})
        rc = d.wait_exit(10)
        check(rc == 1, "NOTIFY_SOCKET=%r: expected exit 1, got %s" % (value, rc))
        d.wait_log(what, 1, what="an error naming %s" % what)
    n = Notify(ctx)
    d = ctx.daemon([], config=yaml_config(), env=n.env(WATCHDOG_USEC="soon"))
    check(d.wait_exit(10) == 1, "WATCHDOG_USEC=soon: expected exit 1")
    d.wait_log("WATCHDOG_USEC", 1)


# ---------------------------------------------------------------------------
# socket activation

def socket_activate():
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        raise TestSkip("systemd-socket-activate not installed (package systemd)")
    return tool


def free_port_on(hosts, avoid=()):
    """A port free a moment ago on every one of hosts ("127.0.0.1",
    "::1"), and not one of avoid."""
    for _ in range(50):
        port = harness.free_port(hosts[0])
        if port in avoid:
            continue
        try:
            for host in hosts[1:]:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                with socket.socket(family, socket.SOCK_STREAM) as s:
                    s.bind((host, port))
        except OSError:
            continue
        return port
    raise TestFailure("no port free on %s in 50 tries" % " and ".join(hosts))


def activate(ctx, tool, hosts, args, config=None, avoid=(), extra=()):
    """coechod (args, config) under systemd-socket-activate listening on
    every one of hosts at one free port not in avoid; if the port is taken
    between the probe and the tool's bind, again with another. Returns the
    daemon (still the tool: it execs coechod at the first connection) and
    the port."""
    for _ in range(5):
        port = free_port_on(hosts, avoid)
        listen = []
        for host in hosts:
            listen += ["-l", ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)]
        d = ctx.daemon(args, config=config, prefix=[tool] + listen + list(extra))
        last = hosts[-1]
        try:
            d.wait_log(r"Listening on %s:%d" % (re.escape("[%s]" % last if ":" in last else last),
                                                port), 10)
            return d, port
        except TestFailure:
            if d.wait_exit(5) is None or not any("Address already in use" in l
                                                 for l in d.tail()):
                raise
    raise TestFailure("%s: the port was taken every time (5 tries)" % tool)


@test
def socket_activation_replaces_listeners(ctx):
    tool = socket_activate()
    # The configured port, held by a bound socket that never listens: connects
    # to it are refused and no other process's port 0 lands on it, but
    # coechod (SO_REUSEADDR, as this socket) could still open a listener there.
    hold = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctx.socks.append(hold)
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.bind(("127.0.0.1", 0))
    configured = hold.getsockname()[1]
    path = ctx.write_config(yaml_config(listen=(("127.0.0.1", configured),)))
    d, port = activate(ctx, tool, ["127.0.0.1"], ["-f", "-c", path], avoid=(configured,),
                       extra=["--fdname=echo"])
    # systemd-socket-activate execs coechod at the first connection: the
    # first echo waits for coechod to start.
    s = ctx.connect(port, timeout=10.0)
    echo_ok(s, b"activated\n", timeout=10.0)
    d.wait_log(r"listening on 127\.0\.0\.1:%d \(socket passed by systemd, echo\)" % port, 10)
    d.wait_log(r"replace the 1 configured listener", 2)
    check(harness.connect_refused(configured),
          "the configured listener was opened although systemd passed a socket")
    # A reload keeps the passed sockets (systemd owns them).
    mark = d.mark()
    d.send_signal(signal.SIGHUP)
    d.wait_log("kept the sockets passed by systemd", 5, mark)
    s2 = ctx.connect(port)
    echo_ok(s2, b"after reload\n")
    echo_ok(s, b"old connection\n")
    s.close()
    s2.close()
    d.send_signal(signal.SIGTERM)
    check(d.wait_exit(10) == 0, "daemon did not exit 0 after SIGTERM")


@test
def socket_activation_ipv4_and_ipv6(ctx):
    tool = socket_activate()
    if not harness.have_ipv6_loopback():
        raise TestSkip("no IPv6 loopback")
    d, port = activate(ctx, tool, ["127.0.0.1", "::1"], ["-f"], config=yaml_config())
    echo_ok(ctx.connect(port, "127.0.0.1", timeout=10.0), b"v4\n", timeout=10.0)
    d.wait_log(r"2 socket\(s\) from systemd", 10)
    echo_ok(ctx.connect(port, "::1"), b"v6\n")


@test
def socket_activation_not_for_us(ctx):
    """LISTEN_PID of another process: the variables are a parent's
    leftovers, and the configured listeners open as usual."""
    d = ctx.daemon([], config=yaml_config(),
                   env={"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"})
    echo_ok(ctx.connect(d.port()))


def run_with_listen_env(ctx, fds, redirect, pass_fds=()):
    """Runs coechod through sh so that LISTEN_PID is its own pid."""
    cmd = "LISTEN_PID=$$ LISTEN_FDS=%s exec \"$0\" -f -c \"$1\" %s" % (fds, redirect)
    args = ["sh", "-c", cmd, COECHOD, ctx.write_config(yaml_config())]
    proc = subprocess.run(args, env=harness.daemon_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=10, pass_fds=pass_fds)
    return proc.returncode, proc.stderr.decode()


@test
def socket_activation_bad_values(ctx):
    cases = [("1", "3</dev/null", r"descriptor 3 is not a socket"),
             ("2", "", r"descriptor 3"),  # nothing open at 3 and 4
             ("many", "", r"LISTEN_FDS: expected a number"),
             ("-1", "", r"LISTEN_FDS: expected a number")]
    for fds, redirect, expect in cases:
        rc, err = run_with_listen_env(ctx, fds, redirect)
        check(rc == 1, "LISTEN_FDS=%s %s: expected exit 1, got %s: %r" % (fds, redirect, rc,
                                                                         err[-300:]))
        check(re.search(expect, err), "LISTEN_FDS=%s %s: no error matching %r in %r"
              % (fds, redirect, expect, err[-300:]))
    # A Unix datagram socket at fd 3 is neither TCP nor UDP (UDP sockets are
    # served: test_udp.py).
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ctx.socks.append(unix)
    rc, err = run_with_listen_env(ctx, "1", "3<&%d" % unix.fileno(), (unix.fileno(),))
    check(rc == 1 and "neither a listening TCP socket nor a UDP one" in err,
          "a Unix datagram socket passed as fd 3: exit %s, %r" % (rc, err[-300:]))


# ---------------------------------------------------------------------------
# the unit files

def analyze():
    tool = shutil.which("systemd-analyze")
    if not tool:
        raise TestSkip("systemd-analyze not installed (package systemd)")
    return tool


def units_for_this_build(ctx):
    """The units as `make` fills them in, but naming this build's binary
    and a config file that exists, so that verify can check them."""
    etc = os.path.join(ctx.dir, "etc")
    os.makedirs(os.path.join(etc, "coechod"))
    shutil.copy(os.path.join(SRCDIR, "conf", "coechod.yaml"), os.path.join(etc, "coechod"))
    with open(os.path.join(SRCDIR, "systemd", "coechod.service.in")) as f:
        text = f.read()
    text = text.replace("@sbindir@", os.path.dirname(COECHOD)).replace("@sysconfdir@", etc)
    left = re.findall(r"@[a-z_]+@", text)
    check(not left, "unsubstituted placeholders in coechod.service.in: %r" % left)
    units = os.path.join(ctx.dir, "units")
    os.makedirs(units)
    with open(os.path.join(units, "coechod.service"), "w") as f:
        f.write(text)
    shutil.copy(os.path.join(SRCDIR, "systemd", "coechod.socket"), units)
    return [os.path.join(units, u) for u in ("coechod.service", "coechod.socket")]


@test
def units_verify(ctx):
    tool = analyze()
    units = units_for_this_build(ctx)
    p = subprocess.run([tool, "verify", "--man=no"] + units, capture_output=True, text=True,
                       timeout=60)
    out = (p.stdout + p.stderr).strip()
    check(p.returncode == 0 and not out,
          "systemd-analyze verify: exit %d:\n%s" % (p.returncode, out))
    built = os.path.join(BUILDDIR, "systemd", "coechod.service")
    if os.path.exists(built):  # the one `make` generated names installed paths
        with open(built) as f:
            text = f.read()
        check(re.search(r"^ExecStart=/\S+/coechod -f -c /\S+/coechod/coechod\.yaml$", text,
                        re.M), "generated %s has no proper ExecStart=" % built)


@test
def units_security_exposure(ctx):
    tool = analyze()
    service = units_for_this_build(ctx)[0]
    p = subprocess.run([tool, "security", "--offline=true", "--no-pager", service],
                       capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    if not m and "--offline" in out:
        raise TestSkip("this systemd-analyze has no --offline")
    check(m, "no exposure level in systemd-analyze security output:\n%s" % out[-1500:])
    score = float(m.group(1))
    ctx.note("exposure %.1f" % score)
    print("# systemd-analyze security --offline=true: exposure %.1f" % score)
    check(score <= MAX_EXPOSURE, "exposure %.1f > %.1f:\n%s" % (
        score, MAX_EXPOSURE, "\n".join(l for l in out.splitlines() if l.startswith("✗"))))


def main(argv):
    return harness.run_suite(argv, TESTS, "coechod-systemd", [("daemon", COECHOD, "COECHOD")],
                        __doc__, deadline=TEST_DEADLINE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
