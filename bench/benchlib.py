"""Helpers shared by bench/echo and bench/memory (Python standard library).

Finds the source and build directories, raises the descriptor limit, builds
and starts the echo servers under comparison on 127.0.0.1, waits for them to
accept, and stops every process it started (also on an exception or signal).
"""
import atexit
import datetime
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Order of the tables and charts; coechod first, the others compared to it.
# "baseline" is another coechod binary, $COECHOD_BASELINE (say, the build
# before a refactor), measured side by side with this one; "metrics" is this
# coechod with its metrics endpoint on, scraped every 100 ms during each run
# (what a scrape costs the echo path). Both only on request.
SERVERS = ["coechod", "libev", "go", "node", "asyncio"]
OPTIONAL_SERVERS = ["baseline", "metrics"]
SCRAPE_EVERY_S = 0.1
LABELS = {
    "coechod": "coechod",
    "baseline": "coechod (baseline)",
    "metrics": "coechod (metrics scraped /100ms)",
    "libev": "libev-echo",
    "go": "go-echo",
    "node": "node-echo",
    "asyncio": "asyncio-echo",
}
# coechod's max_connections in the benchmarks' configuration: bench/echo
# refuses points with more connections than this.
COECHOD_MAX_CONNECTIONS = 20000
TOOLCHAIN = {"go": ("go", "golang-go"), "node": ("node", "nodejs"),
             "asyncio": ("python3", "python3")}


def note(msg):
    print(msg, file=sys.stderr, flush=True)


def builddir():
    """The build tree: $BUILDDIR, else the current directory (as automake
    runs us), else the source tree (an in-tree build)."""
    for d in (os.environ.get("BUILDDIR"), os.getcwd(), SRCDIR):
        if d and os.path.exists(os.path.join(d, "src", "server", "coechod")):
            return os.path.abspath(d)
    sys.exit("bench: no built src/server/coechod in $BUILDDIR, the current "
             "directory or " + SRCDIR + ": run make first (or set BUILDDIR)")


def parse_duration(text):
    """'5s', '500ms', '2m', '1h' or plain seconds -> seconds (float)."""
    t = text.strip().lower()
    for unit, mult in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if t.endswith(unit):
            try:
                v = float(t[: -len(unit)]) * mult
            except ValueError:
                break
            if v > 0:
                return v
            break
    else:
        try:
            v = float(t)
            if v > 0:
                return v
        except ValueError:
            pass
    raise ValueError("bad duration %r (use e.g. 5s, 500ms, 1m)" % text)


def raise_nofile(want=None):
    """Raise the soft RLIMIT_NOFILE as far as the hard limit allows (children
    inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if want is None or hard == resource.RLIM_INFINITY else min(hard, want)
    if hard == resource.RLIM_INFINITY and want is not None:
        target = want
    if target != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine_line():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d CPUs (nproc), %s, %s %s, %s" % (
        os.cpu_count() or 0, model, platform.system(), platform.release(),
        datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))


def loadavg_note(before):
    """'load average ... before the run, ... after' (1, 5 and 15 minutes),
    before being os.getloadavg() at the start."""
    return "load average (1, 5, 15 min) %s before the run, %s after" % tuple(
        "/".join("%.2f" % x for x in la) for la in (before, os.getloadavg()))


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# ---- processes ---------------------------------------------------------------
_live = set()  # Popen objects started here and not yet reaped


def _kill_all():
    for p in list(_live):
        kill_tree(p)


def _on_signal(signum, frame):
    _kill_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(_kill_all)
for _s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_s, _on_signal)


def spawn(argv, **kw):
    """Popen in its own session (process group), remembered for cleanup."""
    p = subprocess.Popen(argv, start_new_session=True, **kw)
    _live.add(p)
    return p


def kill_tree(p, grace=5.0):
    """SIGTERM the process group that spawn() made, SIGKILL after grace
    seconds, and reap."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # stragglers in the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        note("bench: process %d did not exit after SIGKILL" % p.pid)
    _live.discard(p)


def run_bounded(argv, timeout, **kw):
    """Run to completion within timeout seconds; returns (rc, stdout, stderr),
    rc None on timeout (the process group is killed and reaped)."""
    p = spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        kill_tree(p, grace=1.0)
        out, err = p.communicate()
        rc = None
    _live.discard(p)
    return rc, out, err


def cpu_sets(server_cpus=1):
    """(server CPUs, client CPUs), sorted lists: the first server_cpus of the
    CPUs this process may use (sched_getaffinity) for the server, all the
    others for the client. server CPUs is None (nothing pinned, the client
    may use every CPU) when there are not more CPUs than that or no taskset."""
    allowed = sorted(os.sched_getaffinity(0))
    if not shutil.which("taskset") or len(allowed) <= server_cpus:
        return None, allowed
    return allowed[:server_cpus], allowed[server_cpus:]


def cpu_list(cpus):
    """[0, 2, 3, 4] -> '0,2-4' (taskset -c syntax)."""
    out, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else "%d-%d" % (cpus[i], cpus[j]))
        i = j + 1
    return ",".join(out)


def pinning():
    """(server prefix, client prefix): taskset, the server to the first CPU
    this process may use and the client to all the others (cpu_sets), when
    there are two CPUs to pin to and taskset exists."""
    srv, cli = cpu_sets()
    if srv is not None:
        return ["taskset", "-c", cpu_list(srv)], ["taskset", "-c", cpu_list(cli)]
    note("bench: fewer than 2 CPUs or no taskset: server and client not pinned")
    return [], []


# ---- servers -----------------------------------------------------------------
class Servers:
    """Knows how to start each server; build() checks toolchains and builds
    the Go peer. available lists the servers that can run, skipped maps the
    others to the reason."""

    def __init__(self, build, wanted=None):
        self.build = build
        self.tmp = tempfile.mkdtemp(prefix="coecho-bench-")
        atexit.register(shutil.rmtree, self.tmp, True)
        self.available, self.skipped = [], {}
        self.go_bin = os.path.join(build, "bench", "peers", "go-echo-bin")
        for name in wanted or SERVERS:
            why = self._prepare(name)
            if why:
                self.skipped[name] = why
                note("bench: skipping %s: %s" % (LABELS[name], why))
            else:
                self.available.append(name)

    def _prepare(self, name):
        if name in TOOLCHAIN:
            tool, pkg = TOOLCHAIN[name]
            if not shutil.which(tool):
                return "no %s (Debian package %s)" % (tool, pkg)
        if name == "baseline":
            exe = os.environ.get("COECHOD_BASELINE", "")
            if not os.access(exe, os.X_OK):
                return "COECHOD_BASELINE=%r is no executable coechod" % exe
            name = "coechod"
        if name in ("coechod", "metrics"):
            self.conf = os.path.join(self.tmp, "coechod.yaml")
            with open(self.conf, "w") as f:
                f.write(self.COECHOD_CONF)
            return None
        if name == "libev":
            exe = os.path.join(self.build, "bench", "peers", "libev-echo")
            return None if os.access(exe, os.X_OK) else "%s not built (make bench-programs)" % exe
        if name == "go":
            return self._build_go()
        return None

    COECHOD_CONF = ("limits:\n  max_connections: %d\n  idle_timeout: 0\n"
                    "  backlog: 4096\nshutdown_grace: 1s\nlog: { level: error }\n"
                    % COECHOD_MAX_CONNECTIONS)

    def _metrics_conf(self):
        """A configuration with the metrics endpoint on a port free now:
        (path, port)."""
        port = free_port()
        path = os.path.join(self.tmp, "coechod-metrics.yaml")
        with open(path, "w") as f:
            f.write(self.COECHOD_CONF + "metrics: { address: 127.0.0.1, port: %d }\n" % port)
        return path, port

    def _build_go(self):
        src = os.path.join(SRCDIR, "bench", "peers", "go-echo", "main.go")
        if (os.path.exists(self.go_bin)
                and os.path.getmtime(self.go_bin) >= os.path.getmtime(src)):
            return None
        cache = os.path.join(self.build, "bench", "peers", ".gobuild")
        env = dict(os.environ, GO111MODULE="off", GOFLAGS="", GOPROXY="off",
                   GOCACHE=os.path.join(cache, "cache"),
                   GOPATH=os.path.join(cache, "path"))
        os.makedirs(os.path.dirname(self.go_bin), exist_ok=True)
        rc, out, err = run_bounded(["go", "build", "-o", self.go_bin, src], 300,
                                   env=env, cwd=os.path.dirname(src))
        if rc != 0:
            return "go build failed: " + (err or out or "timeout").strip()[-500:]
        return None

    def argv(self, name, port):
        b = self.build
        if name in ("coechod", "baseline", "metrics"):
            exe = (os.environ["COECHOD_BASELINE"] if name == "baseline"
                   else os.path.join(b, "src", "server", "coechod"))
            conf = self.conf
            if name == "metrics":
                conf, self.metrics_port = self._metrics_conf()
            return [exe, "-c", conf,
                    "-l", "127.0.0.1:%d" % port, "--log-level", "error"]
        if name == "libev":
            return [os.path.join(b, "bench", "peers", "libev-echo"), str(port)]
        if name == "go":
            return [self.go_bin, str(port)]
        if name == "node":
            return ["node", os.path.join(SRCDIR, "bench", "peers", "node-echo.js"),
                    str(port)]
        if name == "asyncio":
            return [sys.executable if os.path.basename(sys.executable).startswith("python3")
                    else "python3",
                    os.path.join(SRCDIR, "bench", "peers", "asyncio-echo.py"), str(port)]
        raise KeyError(name)

    def start(self, name, prefix=(), timeout=15.0):
        """Starts name on a free port and waits until it accepts. Returns a
        Server; raises RuntimeError (with the server's stderr) on failure."""
        port = free_port()
        errf = tempfile.TemporaryFile(mode="w+", dir=self.tmp)
        p = spawn(list(prefix) + self.argv(name, port), stdin=subprocess.DEVNULL,
                  stdout=errf, stderr=errf)
        srv = Server(name, port, p, errf)
        if name == "metrics":
            srv.metrics_port = self.metrics_port
        deadline = time.monotonic() + timeout
        while True:
            if p.poll() is not None:
                srv.stop()
                raise RuntimeError("%s exited (status %s) at start: %s"
                                   % (LABELS[name], p.returncode, srv.stderr_text()))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
                    s.sendall(b"ping\n")  # an echo round trip proves it serves
                    s.settimeout(2.0)
                    got = b""
                    while len(got) < 5:
                        chunk = s.recv(16)
                        if not chunk:
                            break
                        got += chunk
                    if got == b"ping\n":
                        return srv
            except OSError:
                pass
            if time.monotonic() > deadline:
                srv.stop()
                raise RuntimeError("%s did not accept on port %d within %.0f s: %s"
                                   % (LABELS[name], port, timeout, srv.stderr_text()))
            time.sleep(0.05)


class Server:
    def __init__(self, name, port, proc, errf):
        self.name, self.port, self.proc, self.errf = name, port, proc, errf
        self.metrics_port = None

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stderr_text(self, limit=800):
        try:
            self.errf.flush()
            self.errf.seek(0)
            text = self.errf.read().strip()
        except (OSError, ValueError):
            return ""
        return text[-limit:] if text else "(no output)"

    def stop(self):
        kill_tree(self.proc)

    def close(self):
        self.stop()
        try:
            self.errf.close()
        except OSError:
            pass


class Coechod:
    """coechod run with the YAML configuration text conf (written to tmp),
    awaited until its log says it listens on 127.0.0.1 and its workers are
    ready (conf has workers: N, N >= 2). port is the one it listens on
    (conf may give port 0); raises RuntimeError with the log's end when it
    does not start within 15 s."""

    def __init__(self, coechod, conf, tmp):
        path = os.path.join(tmp, "coechod.yaml")
        with open(path, "w") as f:
            f.write(conf)
        self.conf = path
        self.log = os.path.join(tmp, "log")
        self.argv = [coechod, "-c", path]
        self.proc = spawn(self.argv, stderr=open(self.log, "w+"))
        self.port = None
        text = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with open(self.log) as f:
                text = f.read()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", text)
            if m and "workers ready" in text:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.port is None:
            kill_tree(self.proc)
            raise RuntimeError("coechod did not start: " + text[-500:])

    def close(self):
        kill_tree(self.proc)


class Scraper:
    """GET /metrics on 127.0.0.1:port every SCRAPE_EVERY_S seconds in a
    thread, from start() to stop(); counts the scrapes that got a 200 and
    the ones that did not."""

    def __init__(self, port):
        self.url = "http://127.0.0.1:%d/metrics" % port
        self.ok = self.failed = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    r.read()
                    self.ok += r.status == 200
            except OSError as e:
                self.failed += 1
                self.last_error = str(e)
            self._stop.wait(SCRAPE_EVERY_S)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)


# ---- a quiet machine ---------------------------------------------------------
def _cpu_times():
    """{cpu: (busy, total)} jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                out[line.split()[0]] = (sum(v[:8]) - idle, sum(v[:8]))
    return out


def cpu_seconds(pid):
    """User + system CPU seconds of one process so far, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    """User + system CPU seconds of our reaped children so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cpu_busy(interval=0.3):
    """Highest per-CPU busy fraction over interval seconds."""
    a = _cpu_times()
    time.sleep(interval)
    b = _cpu_times()
    worst = 0.0
    for cpu, (busy, total) in b.items():
        if cpu in a and total > a[cpu][1]:
            worst = max(worst, (busy - a[cpu][0]) / (total - a[cpu][1]))
    return worst


def wait_quiet(max_wait=30.0, threshold=0.10):
    """Waits (up to max_wait seconds) until no CPU is more than threshold
    busy, since other work on a 2-CPU machine skews every figure. Returns
    the last busy fraction seen (<= threshold when it got quiet)."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = cpu_busy()
        if busy <= threshold or time.monotonic() > deadline:
            return busy


class ForeignCpu:
    """CPU time spent by processes other than our children (and us) while a
    measurement runs: busy time from /proc/stat (softirq left out: loopback
    traffic lands there) minus the rusage of the children reaped meanwhile.
    stop() returns it as a fraction of one CPU over the wall time."""

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK")
        self.t0 = time.monotonic()
        self.sys0 = self._system()
        self.mine0 = self._mine()

    def _system(self):
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal
        return (v[0] + v[1] + v[2] + v[5]) / self.hz

    @staticmethod
    def _mine():
        c, s = resource.getrusage(resource.RUSAGE_CHILDREN), \
            resource.getrusage(resource.RUSAGE_SELF)
        return c.ru_utime + c.ru_stime + s.ru_utime + s.ru_stime

    def stop(self):
        wall = time.monotonic() - self.t0
        foreign = (self._system() - self.sys0) - (self._mine() - self.mine0)
        return max(0.0, foreign) / wall if wall > 0 else 0.0


# ---- memory ------------------------------------------------------------------
def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def vmrss_kib(pid, tree=True):
    """VmRSS of pid (plus its descendants when tree) in KiB."""
    pids, kids = [pid], _children_map() if tree else {}
    total, i = 0, 0
    while i < len(pids):
        pids.extend(kids.get(pids[i], []))
        try:
            with open("/proc/%d/status" % pids[i]) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
        i += 1
    return total


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return float("nan")
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
