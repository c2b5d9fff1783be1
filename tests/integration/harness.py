"""The coechod test harness, shared by every Python suite: test_coechod.py,
test_load.py, test_systemd.py, test_manpages.py, test_workers.py and
tests/fault/test_fault.py.

    Daemon, run_coechod      coechod in the foreground (its log lines read as
                             they come) or run to completion
    Ctx                      a test's context: daemons, sockets and a private
                             directory, all cleaned up after the test
    TestFailure, TestSkip,   outcomes; check(cond, message) fails a test
    check
    recv_exact, echo_ok, wait_closed, pump, Stream, ...
                             socket helpers
    wait_for, wait_steady    wait for a condition, or for a value to settle
    yaml_config              a configuration file's text
    child_pids, descendants, rss_kib, cpu_seconds, process_gone, kill_pid, ...
                             processes, from /proc
    run_one, run_suite       the runner: one test under its deadline; a
                             suite's command line, one "ok NAME" or "FAIL
                             NAME: reason" line a test and the closing
                             "LABEL: N passed, M failed" line (CI reads it)

Environment: COECHOD (the binary; default BUILDDIR/src/server/coechod),
BUILDDIR (default: the current directory), SRCDIR (the source tree, for
tests/configs/ and conf/; default: two levels above this file),
COECHOD_IT_VERBOSE=1 (print measurements and timings).

Python 3 standard library only. A suite imports it from its own directory
(tests/integration) after setting sys.dont_write_bytecode, so that no
__pycache__ appears in the source tree.
"""

import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.environ.get("SRCDIR")
                         or os.path.join(SCRIPT_DIR, os.pardir, os.pardir))
BUILDDIR = os.path.abspath(os.environ.get("BUILDDIR") or os.getcwd())
COECHOD = os.path.abspath(os.environ.get("COECHOD")
                          or os.path.join(BUILDDIR, "src", "server", "coechod"))

TEST_DEADLINE = 30.0  # seconds per test, enforced by the runner
VERBOSE = bool(os.environ.get("COECHOD_IT_VERBOSE"))
KiB = 1024
MiB = 1024 * 1024

# The daemon logs exactly "listening on ADDR:PORT" (IPv6 as [ADDR]:PORT).
LISTEN_RE = re.compile(
    r"listening on (\[[0-9A-Fa-f:.]+\]|\d{1,3}(?:\.\d{1,3}){3}):(\d+)")


# ---------------------------------------------------------------------------
# outcomes

class TestFailure(Exception):
    pass


class TestSkip(Exception):
    pass


def check(cond, message):
    if not cond:
        raise TestFailure(message)


# ---------------------------------------------------------------------------
# processes

# The daemon must not talk to a service manager the test runner happens to
# run under (sd_notify, socket activation) nor log in journal format.
SYSTEMD_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
               "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM")


def daemon_env():
    return {k: v for k, v in os.environ.items() if k not in SYSTEMD_ENV}


def child_pids(pid):
    """Direct children of pid (from /proc), for workers the daemon forks."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            kids.append(int(entry))
    return kids


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        for kid in child_pids(todo.pop()):
            out.append(kid)
            todo.append(kid)
    return out


def rss_kib(pid):
    """VmRSS of pid in KiB, 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid):
    return rss_kib(pid) + sum(rss_kib(k) for k in descendants(pid))


def process_gone(pid):
    """True once pid no longer exists (or is a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return line.split()[1] in ("Z", "X")
    except OSError:
        return True
    return False


def kill_pid(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def configured_version():
    try:
        with open(os.path.join(SRCDIR, "configure.ac")) as f:
            m = re.search(r"AC_INIT\(\[[^\]]*\],\s*\[([^\]]+)\]", f.read())
            return m.group(1) if m else None
    except OSError:
        return None


class Daemon:
    """One coechod process in the foreground, its stdout and stderr
    collected line by line by reader threads."""

    def __init__(self, args, cwd=None, env=None, nofile=None, prefix=()):
        self.args = list(prefix) + [COECHOD] + list(args)  # prefix: a wrapper that execs it
        self.lines = []      # stderr
        self.out_lines = []  # stdout
        self.cond = threading.Condition()
        self.open_streams = 2
        self.proc = subprocess.Popen(
            self.args, cwd=cwd, env=dict(daemon_env(), **(env or {})),
            stdin=subprocess.DEVNULL,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
            if nofile else None,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True)
        self.pid = self.proc.pid
        for stream, sink in ((self.proc.stderr, self.lines),
                             (self.proc.stdout, self.out_lines)):
            threading.Thread(target=self._reader, args=(stream, sink),
                             daemon=True).start()

    def _reader(self, stream, sink):
        try:
            for raw in iter(stream.readline, b""):
                with self.cond:
                    sink.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                    self.cond.notify_all()
        finally:
            with self.cond:
                self.open_streams -= 1
                self.cond.notify_all()

    def mark(self):
        """Index of the next stderr line, for wait_log(start=...)."""
        with self.cond:
            return len(self.lines)

    def wait_log(self, pattern, timeout=5.0, start=0, what=None):
        """Waits for a stderr line (from index start on) matching pattern;
        returns the match. Fails after timeout or once stderr is closed."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if self.open_streams == 0 or left <= 0:
                    state = ("exited with status %s" % self.proc.poll()
                             if self.proc.poll() is not None else "running")
                    raise TestFailure("no log line %s within %.1f s (daemon %s)"
                                      % (what or "matching %r" % rx.pattern,
                                         timeout, state))
                self.cond.wait(min(left, 0.2))

    def wait_listening(self, count=1, timeout=10.0):
        """Waits for count "listening on" lines; returns [(host, port)]."""
        found, start = [], 0
        deadline = time.monotonic() + timeout
        while len(found) < count:
            left = max(0.0, deadline - time.monotonic())
            m = self.wait_log(LISTEN_RE, left, start,
                              what="'listening on ADDR:PORT' #%d" % (len(found) + 1))
            with self.cond:
                start = next(i for i in range(start, len(self.lines))
                             if LISTEN_RE.search(self.lines[i])) + 1
            port = int(m.group(2))
            check(0 < port < 65536, "daemon logged a bad port: %r" % m.group(0))
            found.append((m.group(1), port))
        return found

    def port(self):
        return self.wait_listening(1)[0][1]

    def barrier(self, timeout=10.0):
        """Sends SIGUSR1 and waits for its statistics line. The daemon
        handles signals one after another in its event loop and logs in
        order, so every line it logged before (the listeners opened at
        start, the whole of an earlier reload) has then been read.
        Single-process daemons only (workers log their own stats)."""
        mark = self.mark()
        self.send_signal(signal.SIGUSR1)
        self.wait_log(r"stats: connections=", timeout, mark,
                      what="'stats: connections=...' after SIGUSR1 (log barrier)")

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Exit status, or None if still running after timeout."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            for kid in descendants(self.pid):
                kill_pid(kid)
            self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def tail(self, n=25):
        with self.cond:
            return self.lines[-n:]


class Result:
    def __init__(self, rc, stdout, stderr):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr

    def summary(self):
        err = self.stderr.strip().splitlines()
        return "exit %s, stderr %r" % (self.rc, err[:3])


def run_coechod(args, cwd=None, timeout=10.0, env=None):
    """Runs coechod to completion (for -t, -V, bad flags, --daemon).
    Output goes to files, not pipes, so a forked child cannot hold us."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([COECHOD] + list(args), cwd=cwd,
                                env=dict(daemon_env(), **(env or {})),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            for kid in descendants(proc.pid):
                kill_pid(kid)
            proc.kill()
            proc.wait(5)
            raise TestFailure("coechod %s did not exit within %.0f s"
                              % (" ".join(args), timeout))
        out.seek(0)
        err.seek(0)
        return Result(rc, out.read().decode("utf-8", "replace"),
                      err.read().decode("utf-8", "replace"))


# ---------------------------------------------------------------------------
# per-test context: everything started here is cleaned up by the runner

class Ctx:
    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.TemporaryDirectory(prefix="coechod-it-%s-" % name)
        self.dir = self.tmp.name
        self.daemons = []
        self.socks = []
        self.lock = threading.Lock()
        self.notes = []

    def note(self, text):
        """A measurement shown with COECHOD_IT_VERBOSE=1 and on failure."""
        self.notes.append(text)

    def daemon(self, args, config=None, cwd=None, env=None, nofile=None, prefix=()):
        """Starts coechod in the foreground; config text is written to a
        file passed with -c. (Tests always pass one, so that a system-wide
        /etc/coechod/coechod.yaml cannot change what they measure.)"""
        args = list(args)
        if config is not None:
            args = ["-c", self.write_config(config)] + args
        d = Daemon(args, cwd=cwd, env=env, nofile=nofile, prefix=prefix)
        with self.lock:
            self.daemons.append(d)
        return d

    def syslog_env(self):
        """The environment for a --daemon without log.file: a datagram
        socket bound in the test's directory stands for /dev/log (which
        the machine may lack) in coechod's check that syslog can be
        reached. What the daemon logs to syslog still goes to /dev/log."""
        path = os.path.join(self.dir, "syslog.sock")
        if not os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            with self.lock:
                self.socks.append(s)
            s.bind(path)
        return {"COECHOD_SYSLOG_SOCKET": path}

    def write_config(self, text, name="coechod.yaml"):
        """Writes (atomically replaces) a config file in the test's dir."""
        path = os.path.join(self.dir, name)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        return path

    def connect(self, port, host="127.0.0.1", timeout=3.0, rcvbuf=None,
                sndbuf=None):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        with self.lock:
            self.socks.append(s)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.settimeout(timeout)
        try:
            s.connect((host, port))
        except OSError as e:
            s.close()
            raise TestFailure("connect to %s port %d: %s" % (host, port, e))
        return s

    def cleanup(self):
        with self.lock:
            socks, daemons = list(self.socks), list(self.daemons)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass
        for d in daemons:
            d.kill()
        # Anything still running with our private directory on its command
        # line was started by this test (e.g. a --daemon): kill it by pid.
        for pid in pids_with_arg(self.dir):
            kill_pid(pid)
        try:
            self.tmp.cleanup()
        except OSError:
            pass

    def diagnostics(self):
        out = []
        with self.lock:
            daemons = list(self.daemons)
        for i, d in enumerate(daemons):
            status = d.proc.poll()
            out.append("daemon #%d (%s) %s; stderr tail:" % (
                i + 1, " ".join(d.args[1:]),
                "running" if status is None else "exit status %s" % status))
            out.extend("    " + line for line in d.tail())
        return out


def pids_with_arg(text):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmd and not process_gone(int(entry)):
            pids.append(int(entry))
    return pids


# ---------------------------------------------------------------------------
# socket helpers

def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (for fixed-port listeners)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def recv_exact(s, n, timeout=3.0, what="echo"):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestFailure("%s: got %d of %d bytes within %.1f s"
                              % (what, len(buf), n, timeout))
        s.settimeout(left)
        try:
            chunk = s.recv(n - len(buf))
        except socket.timeout:
            continue
        except OSError as e:
            raise TestFailure("%s: %s after %d of %d bytes" % (what, e, len(buf), n))
        if not chunk:
            raise TestFailure("%s: connection closed after %d of %d bytes"
                              % (what, len(buf), n))
        buf += chunk
    return bytes(buf)


def echo_ok(s, payload=b"ping\n", timeout=3.0, what="echo"):
    try:
        s.settimeout(timeout)
        s.sendall(payload)
    except OSError as e:
        raise TestFailure("%s: send failed: %s" % (what, e))
    got = recv_exact(s, len(payload), timeout, what)
    check(got == payload, "%s: wrong bytes back (%r... for %r...)"
          % (what, got[:16], payload[:16]))


def recv_until_eof(s, timeout=5.0, what="read"):
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestFailure("%s: no EOF within %.1f s (%d bytes read)"
                              % (what, timeout, len(buf)))
        s.settimeout(left)
        try:
            chunk = s.recv(256 * KiB)
        except socket.timeout:
            continue
        except OSError as e:
            raise TestFailure("%s: %s after %d bytes" % (what, e, len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk


def wait_closed(s, timeout, what="connection"):
    """Waits until the peer closes s without sending anything; returns
    "EOF" or "reset". Fails on data or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestFailure("%s was not closed within %.1f s" % (what, timeout))
        s.settimeout(left)
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        except (ConnectionResetError, ConnectionAbortedError):
            return "reset"
        except OSError as e:
            raise TestFailure("%s: unexpected error %s" % (what, e))
        if not chunk:
            return "EOF"
        raise TestFailure("%s: expected to be closed, got data %r" % (what, chunk[:32]))


def expect_silence(s, seconds, what):
    """Fails if anything (data or close) arrives on s within seconds."""
    s.settimeout(seconds)
    try:
        chunk = s.recv(4096)
    except socket.timeout:
        return
    except OSError as e:
        raise TestFailure("%s: connection failed: %s" % (what, e))
    if chunk:
        raise TestFailure("%s: got %d bytes back, expected none yet" % (what, len(chunk)))
    raise TestFailure("%s: connection closed, expected it to wait" % what)


def connect_refused(port, host="127.0.0.1"):
    """True if a connect to host:port is refused right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(2.0)
        try:
            s.connect((host, port))
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
        return False


def wait_refused(port, timeout, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while not connect_refused(port, host):
        if time.monotonic() > deadline:
            raise TestFailure("connections to port %d still accepted %.1f s later"
                              % (port, timeout))
        time.sleep(0.05)


def wait_accepting(port, timeout, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while connect_refused(port, host):
        if time.monotonic() > deadline:
            raise TestFailure("nothing listening on port %d within %.1f s" % (port, timeout))
        time.sleep(0.05)


def usr1_stats(d, timeout=10.0):
    """The counters of a fresh SIGUSR1 statistics line of daemon d, as a
    dict of ints."""
    mark = d.mark()
    d.send_signal(signal.SIGUSR1)
    m = d.wait_log(r"stats: connections=\d+.*", timeout, mark, what="SIGUSR1 statistics")
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(0))}


def wait_for(probe, timeout, what, interval=0.05):
    """Polls probe() until it returns something true; returns that. Fails
    after timeout, naming what."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TestFailure("%s: not reached within %.1f s" % (what, timeout))
        time.sleep(interval)


# A log line as on stderr and in log.file, up to the message.
STAMP_RE = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} coechod\[\d+\] (?:error|warn|info|debug): "


def file_lines(path):
    """The complete lines of a file (a line still being written is left
    out); [] if there is no file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().split("\n")[:-1]
    except FileNotFoundError:
        return []


def wait_file_line(path, pattern, timeout, start=0, what=None):
    """Waits for a line of the file at path (from line index start on)
    matching pattern, e.g. one a daemon logs to its log.file; returns
    (match, index). Fails after timeout, naming what."""
    rx = re.compile(pattern)

    def probe():
        lines = file_lines(path)
        for i in range(start, len(lines)):
            m = rx.search(lines[i])
            if m:
                return m, i
        return None

    return wait_for(probe, timeout, what or "a line matching %r in %s" % (pattern, path))


def wait_steady(read, timeout, what, reads=3, interval=0.05):
    """Polls read() until it returns the same value reads times in a row
    (interval apart), e.g. a process's VmRSS once it has settled; returns
    that value. Fails after timeout, naming what and the last values."""
    deadline = time.monotonic() + timeout
    seen = [read()]
    while len(seen) < reads or len(set(seen[-reads:])) > 1:
        if time.monotonic() > deadline:
            raise TestFailure("%s still changing after %.1f s: last values %r"
                              % (what, timeout, seen[-reads:]))
        time.sleep(interval)
        seen.append(read())
    return seen[-1]


class Stream:
    """One client of pump(): data to send, checked as it comes back."""

    def __init__(self, sock, data, name, half_close=True):
        sock.setblocking(False)
        self.sock = sock
        self.data = data if isinstance(data, memoryview) else memoryview(data)
        self.name = name
        self.half_close = half_close
        self.sent = 0
        self.recvd = 0
        self.eof = False
        self.shut = False

    def status(self):
        return "%s: sent %d, received %d of %d%s" % (
            self.name, self.sent, self.recvd, len(self.data),
            ", EOF" if self.eof else "")


def send_without_reading(streams, limit, timeout, fail_on_timeout=False):
    """Sends each stream's data (up to limit bytes, on non-blocking sockets)
    without reading, until every send would block (three quiet rounds 0.1 s
    apart) or everything is sent; after timeout seconds it stops, or fails
    with fail_on_timeout. Returns the seconds it took."""
    started = time.monotonic()
    quiet = 0
    while quiet < 3:
        if time.monotonic() > started + timeout:
            check(not fail_on_timeout, "clients could still send after %.0f s" % timeout)
            break
        progress = 0
        for st in streams:
            while st.sent < limit:
                try:
                    n = st.sock.send(st.data[st.sent:st.sent + 64 * KiB])
                except BlockingIOError:
                    break
                except OSError as e:
                    raise TestFailure("%s: send: %s" % (st.name, e))
                st.sent += n
                progress += n
        if all(st.sent >= limit for st in streams):
            break
        quiet = 0 if progress else quiet + 1
        time.sleep(0.1)
    return time.monotonic() - started


def first_difference(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))


def pump(streams, timeout, send_limit=None, recv_goal=None, chunk=256 * KiB):
    """Sends every stream's data (or its first send_limit bytes) while
    checking what comes back, byte for byte. With recv_goal, returns once
    each stream has received that much; else each stream half-closes once
    all is sent and pump returns once every stream saw EOF after exactly
    its data."""
    sel = selectors.DefaultSelector()
    registered = {}
    deadline = time.monotonic() + timeout

    def limit(s):
        return len(s.data) if send_limit is None else min(send_limit, len(s.data))

    def done(s):
        if recv_goal is None:
            return s.eof
        return s.recvd >= min(recv_goal, len(s.data))

    try:
        while True:
            active = False
            for s in streams:
                if (s.sent == len(s.data) and s.half_close and not s.shut
                        and recv_goal is None):
                    try:
                        s.sock.shutdown(socket.SHUT_WR)
                    except OSError as e:
                        raise TestFailure("%s: shutdown: %s" % (s.name, e))
                    s.shut = True
                ev = 0
                if s.sent < limit(s):
                    ev |= selectors.EVENT_WRITE
                if not s.eof and not done(s):
                    ev |= selectors.EVENT_READ
                if ev:
                    active = True
                old = registered.get(s, 0)
                if ev != old:
                    if old and ev:
                        sel.modify(s.sock, ev, s)
                    elif ev:
                        sel.register(s.sock, ev, s)
                    else:
                        sel.unregister(s.sock)
                    registered[s] = ev
            if not active:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                pending = [s.status() for s in streams if not done(s)]
                raise TestFailure("streams unfinished after %.0f s: %d, e.g. %s"
                                  % (timeout, len(pending), "; ".join(pending[:3])))
            for key, mask in sel.select(min(left, 0.5)):
                s = key.data
                if mask & selectors.EVENT_READ:
                    try:
                        got = s.sock.recv(chunk)
                    except BlockingIOError:
                        got = None
                    except OSError as e:
                        raise TestFailure("%s: recv: %s (%s)" % (s.name, e, s.status()))
                    if got is not None:
                        if not got:
                            s.eof = True
                            if s.recvd != len(s.data) or s.sent != len(s.data):
                                raise TestFailure("%s: early EOF (%s)" % (s.name, s.status()))
                        else:
                            end = s.recvd + len(got)
                            if end > s.sent:
                                raise TestFailure("%s: received %d bytes but sent only %d"
                                                  % (s.name, end, s.sent))
                            want = s.data[s.recvd:end]
                            if want != got:
                                at = s.recvd + first_difference(want, got)
                                raise TestFailure("%s: echoed data differs at byte %d of %d"
                                                  % (s.name, at, len(s.data)))
                            s.recvd = end
                if mask & selectors.EVENT_WRITE and s.sent < limit(s):
                    try:
                        n = s.sock.send(s.data[s.sent:min(s.sent + chunk, limit(s))])
                    except BlockingIOError:
                        n = 0
                    except OSError as e:
                        raise TestFailure("%s: send: %s (%s)" % (s.name, e, s.status()))
                    s.sent += n
    finally:
        sel.close()


def yaml_config(listen=(("127.0.0.1", 0),), limits=None, extra=""):
    lines = ["listen:"]
    for host, port in listen:
        lines.append('  - { address: "%s", port: %d }' % (host, port))
    if limits:
        lines.append("limits:")
        for k, v in limits.items():
            lines.append("  %s: %s" % (k, v))
    text = "\n".join(lines) + "\n"
    if extra:
        text += extra.rstrip("\n") + "\n"
    return text


# ---------------------------------------------------------------------------
# runner

def run_one(fn, make_ctx=None, deadline=TEST_DEADLINE):
    """Runs one test under the deadline; returns (status, reason, details)."""
    ctx = (make_ctx or Ctx)(fn.__name__)
    outcome = {}

    def body():
        try:
            fn(ctx)
            outcome["status"] = "ok"
        except TestSkip as e:
            outcome["status"], outcome["reason"] = "skip", str(e)
        except TestFailure as e:
            outcome["status"], outcome["reason"] = "fail", str(e)
        except Exception as e:  # a bug in the test itself shows as a failure
            outcome["status"] = "fail"
            outcome["reason"] = "%s: %s" % (type(e).__name__, e)

    worker = threading.Thread(target=body, daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        outcome = {"status": "fail",
                   "reason": "test exceeded its %.0f s deadline" % deadline}
    details = ["note: " + n for n in ctx.notes]
    if outcome["status"] == "fail":
        details += ctx.diagnostics()
    ctx.cleanup()
    worker.join(5.0)
    return outcome["status"], outcome.get("reason", ""), details


def run_suite(argv, tests, label, binaries, doc, make_ctx=None, verbose=VERBOSE,
              deadline=TEST_DEADLINE):
    """The command line of a suite: no arguments runs every test, names run
    those, --list lists them. binaries: (what, path, env var) that must
    exist, else exit 77 (automake's SKIP). Ends with "LABEL: N passed, M
    failed"; exit 0 only if none failed."""
    names = argv[1:]
    by_name = {fn.__name__: fn for fn in tests}
    if names and names[0] in ("-h", "--help"):
        print(doc.strip())
        return 0
    if names == ["--list"]:
        print("\n".join(by_name))
        return 0
    unknown = [n for n in names if n not in by_name]
    if unknown:
        sys.stderr.write("unknown test(s): %s\nknown: %s\n"
                         % (" ".join(unknown), " ".join(by_name)))
        return 2
    for what, path, var in binaries:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            print("%s: SKIP: no %s binary at %s (set %s or BUILDDIR)" % (label, what, path, var))
            return 77
    selected = [by_name[n] for n in names] if names else tests
    passed = failed = 0
    for fn in selected:
        started = time.monotonic()
        status, reason, details = run_one(fn, make_ctx, deadline)
        if verbose:
            details.append("took %.2f s" % (time.monotonic() - started))
        if status == "fail":
            failed += 1
            lines = reason.splitlines() or [""]
            print("FAIL %s: %s" % (fn.__name__, lines[0]))
            for line in lines[1:] + details:
                print("#   %s" % line)
        else:
            passed += 1
            print("ok   %s%s" % (fn.__name__,
                                 " (skipped: %s)" % reason if status == "skip" else ""))
            if verbose:
                for line in details:
                    print("#   %s" % line)
        sys.stdout.flush()
    print("%s: %d passed, %d failed" % (label, passed, failed))
    sys.stdout.flush()
    return 0 if failed == 0 else 1
