#!/usr/bin/env python3
"""Integration tests for coechod's metrics endpoint (metrics: { address,
port }): HTTP GET /metrics in the Prometheus text format, checked by the
real tools where they are installed (promtool, prometheus: the Debian
package prometheus), the totals of a service with workers, and the
endpoint's answers to requests it does not serve.

    test_metrics.py [NAME...] [--list]

Tests that need promtool or prometheus are skipped, saying so, when they
are not installed. Environment as for harness.py (BUILDDIR, SRCDIR,
COECHOD). Python 3 standard library only.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, TestSkip, check, echo_ok, yaml_config  # noqa: E402

COECHOD = harness.COECHOD
TEST_DEADLINE = 120.0  # the Prometheus test waits up to 60 s for its first answers
PROMETHEUS_WAIT = 60.0
TESTS = []

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$")


def test(fn):
    TESTS.append(fn)
    return fn


def metrics_config(workers=1, extra=""):
    return yaml_config(extra="workers: %d\nmetrics: { address: 127.0.0.1, port: 0 }\n%s"
                       % (workers, extra))


def metrics_port(d, timeout=10.0):
    m = d.wait_log(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", timeout)
    return int(m.group(1))


def start(ctx, workers=1, extra=""):
    """A daemon with metrics: (daemon, echo port, metrics port)."""
    d = ctx.daemon([], config=metrics_config(workers, extra))
    port = d.port()
    mport = metrics_port(d)
    if workers > 1:
        d.wait_log(r"\b%d workers ready" % workers, 20.0)
    return d, port, mport


def http(port, request, timeout=10.0):
    """Sends raw request bytes; the whole response until the server closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(request)
        return harness.recv_until_eof(s, timeout, "metrics response")
    finally:
        s.close()


def split_response(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def scrape(port):
    """(status, headers, body text) of GET /metrics."""
    status, headers, body = split_response(
        http(port, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"))
    return status, headers, body.decode("utf-8")


def samples(text):
    """{"name{labels}": value} of an exposition text."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        check(m, "not a sample line: %r" % line)
        out[m.group(1)] = float(m.group(2))
    return out


def values(port):
    status, _, body = scrape(port)
    check(status == 200, "GET /metrics: status %d" % status)
    return samples(body)


def wait_value(port, name, want, timeout=10.0):
    return harness.wait_for(lambda: values(port).get(name) == want, timeout,
                            "%s == %s" % (name, want), interval=0.1)


def connect_and_close(ctx, port, n):
    for i in range(n):
        s = ctx.connect(port)
        echo_ok(s, b"m%d\n" % i)
        s.close()


def need(tool):
    path = shutil.which(tool)
    if not path:
        raise TestSkip("%s is not installed (Debian package prometheus)" % tool)
    return path


def promtool_check(text):
    r = subprocess.run([need("promtool"), "check", "metrics"], input=text.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = r.stdout.decode("utf-8", "replace").strip()
    check(r.returncode == 0 and not out,
          "promtool check metrics: exit %d:\n%s" % (r.returncode, out))


# ---------------------------------------------------------------------------

@test
def promtool_accepts_a_scrape(ctx):
    need("promtool")
    d, port, mport = start(ctx)
    connect_and_close(ctx, port, 5)
    status, headers, body = scrape(mport)
    check(status == 200, "status %d" % status)
    check(headers.get("content-type") == CONTENT_TYPE,
          "Content-Type %r" % headers.get("content-type"))
    check(int(headers.get("content-length", -1)) == len(body.encode()),
          "Content-Length %r for %d bytes" % (headers.get("content-length"), len(body)))
    promtool_check(body)
    v = samples(body)
    check(v.get('coechod_build_info{version="%s"}' % harness.configured_version()) == 1,
          "no coechod_build_info with the version")
    for name in ("process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds", "coechod_tasks"):
        check(v.get(name, 0) > 0, "%s: %r" % (name, v.get(name)))
    check(not any("worker=" in k for k in v), "per-worker series without workers")


@test
def promtool_accepts_a_scrape_with_workers(ctx):
    need("promtool")
    d, port, mport = start(ctx, workers=2)
    connect_and_close(ctx, port, 20)
    wait_value(mport, "coechod_connections_accepted_total", 20)
    status, _, body = scrape(mport)
    promtool_check(body)
    v = samples(body)
    per_worker = sum(v.get('coechod_worker_connections_accepted_total{worker="%d"}' % w, 0)
                     for w in (1, 2))
    check(per_worker == 20, "per-worker accepted sum to %r, not 20" % per_worker)
    check(v.get("coechod_workers") == 2, "coechod_workers %r" % v.get("coechod_workers"))


@test
def counts_what_happens(ctx):
    d, port, mport = start(ctx, extra="limits:\n  max_connections_per_ip: 2\n")
    held = [ctx.connect(port) for _ in range(2)]
    for s in held:
        echo_ok(s, b"held\n")
    extra = ctx.connect(port)  # over max_connections_per_ip: closed at once
    harness.wait_closed(extra, 5.0, "the connection over the per-IP limit")
    wait_value(mport, 'coechod_connections_rejected_total{reason="per_ip"}', 1)
    v = values(mport)
    check(v["coechod_connections_open"] == 2, "open %r" % v["coechod_connections_open"])
    check(v["coechod_received_bytes_total"] == 10, "bytes in %r"
          % v["coechod_received_bytes_total"])
    for s in held:
        s.close()
    wait_value(mport, "coechod_connections_closed_total", 2)
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"reloaded", 10.0)
    v = values(mport)
    check(v['coechod_reloads_total{result="ok"}'] == 1, "reloads %r"
          % v['coechod_reloads_total{result="ok"}'])
    check(abs(v["coechod_last_reload_timestamp_seconds"] - time.time()) < 60,
          "last reload at %r" % v["coechod_last_reload_timestamp_seconds"])


def worker_pids(d):
    with d.cond:
        lines = list(d.lines)
    pids = {}
    for line in lines:
        m = re.search(r"worker (\d+) started \(pid (\d+)\)", line)
        if m:
            pids[int(m.group(1))] = int(m.group(2))
    return pids


@test
def totals_survive_a_killed_worker(ctx):
    n = 200
    d, port, mport = start(ctx, workers=2)
    connect_and_close(ctx, port, n)
    wait_value(mport, "coechod_connections_accepted_total", n)
    v = values(mport)
    busiest = max((1, 2), key=lambda w: v['coechod_worker_connections_accepted_total'
                                          '{worker="%d"}' % w])
    lost = v['coechod_worker_connections_accepted_total{worker="%d"}' % busiest]
    check(lost > 0, "no worker accepted anything")
    ctx.note("killing worker %d, which accepted %d" % (busiest, lost))
    mark = d.mark()
    os.kill(worker_pids(d)[busiest], signal.SIGKILL)
    d.wait_log(r"worker %d started" % busiest, 15.0, mark)
    # Until the replacement is up, and after: never fewer than n.
    deadline = time.monotonic() + 10.0
    while True:
        v = values(mport)
        total = v["coechod_connections_accepted_total"]
        check(total >= n, "total accepted went down to %r after the kill" % total)
        if v.get("coechod_worker_restarts_total") == 1 and v.get("coechod_workers") == 2:
            break
        check(time.monotonic() < deadline, "the restart never showed in the metrics: %r"
              % {k: x for k, x in v.items() if "restart" in k or k == "coechod_workers"})
        time.sleep(0.1)
    connect_and_close(ctx, port, 10)
    wait_value(mport, "coechod_connections_accepted_total", n + 10)


@test
def usr1_logs_the_totals_with_workers(ctx):
    d, port, mport = start(ctx, workers=2)
    connect_and_close(ctx, port, 12)
    wait_value(mport, "coechod_connections_accepted_total", 12)
    mark = d.mark()
    d.send_signal(signal.SIGUSR1)
    d.wait_log(r"info: stats: connections=0 accepted=12 closed=12 .* workers=2/2", 10.0, mark)


@test
def other_paths_and_methods(ctx):
    d, port, mport = start(ctx)
    status, _, _ = split_response(http(mport, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    check(status == 404, "GET /: %d" % status)
    status, headers, _ = split_response(http(mport, b"POST /metrics HTTP/1.1\r\n"
                                             b"Content-Length: 0\r\n\r\n"))
    check(status == 405, "POST /metrics: %d" % status)
    check(headers.get("allow") == "GET, HEAD", "Allow: %r" % headers.get("allow"))
    status, headers, body = split_response(http(mport, b"HEAD /metrics HTTP/1.0\r\n\r\n"))
    check(status == 200 and body == b"" and int(headers["content-length"]) > 0,
          "HEAD: %d, %d body bytes" % (status, len(body)))
    status, _, _ = split_response(http(mport, b"\x16\x03\x01garbage\r\n\r\n"))
    check(status == 400, "garbage: %d" % status)
    check(values(mport)["coechod_connections_accepted_total"] == 0,
          "scrapes counted as echo connections")


@test
def oversized_request_is_cut_off(ctx):
    d, port, mport = start(ctx)
    s = socket.create_connection(("127.0.0.1", mport), timeout=10)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 9000 + b"\r\n")
        raw = harness.recv_until_eof(s, 10.0, "answer to an oversized head")
    finally:
        s.close()
    status, _, _ = split_response(raw)
    check(status == 431, "oversized: %r" % raw[:60])
    echo_ok(ctx.connect(port), b"still echoing\n")


@test
def slow_request_is_cut_off(ctx):
    d, port, mport = start(ctx)
    s = socket.create_connection(("127.0.0.1", mport), timeout=15)
    started = time.monotonic()
    try:
        s.sendall(b"GET /metr")  # and nothing more
        echo = ctx.connect(port)
        echo_ok(echo, b"echo meanwhile\n")
        raw = harness.recv_until_eof(s, 15.0, "answer to a slow request")
    finally:
        s.close()
    took = time.monotonic() - started
    status, _, _ = split_response(raw)
    check(status == 408, "slow request: %r" % raw[:60])
    check(4.0 <= took <= 10.0, "cut off after %.1f s, expected about 5" % took)


@test
def scrapes_at_once_are_capped(ctx):
    d, port, mport = start(ctx)
    idle = []
    for _ in range(4):  # each holds a scrape task until its deadline
        s = socket.create_connection(("127.0.0.1", mport), timeout=10)
        s.sendall(b"GET")
        idle.append(s)
    ctx.socks.extend(idle)
    # The server has taken all four before the fifth once a scrape answers
    # nothing for them: wait until a new one is turned away.
    def busy():
        # The 503 is sent at once and the connection closed: the rest of
        # the request may make that a reset after the answer.
        s = socket.create_connection(("127.0.0.1", mport), timeout=5)
        raw = b""
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                raw += chunk
        except ConnectionResetError:
            pass
        finally:
            s.close()
        return split_response(raw)[0] == 503
    harness.wait_for(busy, 4.0, "a 503 with 4 scrapes in progress")
    echo_ok(ctx.connect(port), b"still echoing\n")


@test
def config_errors_have_positions(ctx):
    cases = [
        ("metrics: { port: 70000 }\n", r":3:18: metrics\.port: .*65535"),
        ("metrics: { address: localhost, port: 9 }\n", r":3:21: metrics\.address: expected"),
        ("metrics: [1]\n", r":3:10: metrics: expected a mapping"),
        ("metrics: { prot: 9 }\n", r":3:12: metrics\.prot: unknown key"),
    ]
    for text, pattern in cases:
        path = ctx.write_config(yaml_config(extra=text))
        r = harness.run_coechod(["-t", "--no-host-check", "-c", path])
        check(r.rc == 1 and re.search(pattern, r.stderr),
              "%r: exit %s, %r" % (text, r.rc, r.stderr))
    path = ctx.write_config(yaml_config(extra="metrics: { port: 9107 }\n"))
    r = harness.run_coechod(["-t", "--no-host-check", "-c", path])
    check(r.rc == 0 and 'metrics: { address: "127.0.0.1", port: 9107 }' in r.stdout,
          "-t of a good metrics key: %s" % r.summary())
    # -t checks the metrics address against this host
    path = ctx.write_config(yaml_config(extra="metrics: { address: 192.0.2.1, port: 9107 }\n"))
    r = harness.run_coechod(["-t", "-c", path])
    check(r.rc == 1 and re.search(r":\d+:\d+: metrics: 192\.0\.2\.1:9107: cannot bind", r.stderr),
          "-t of a foreign metrics address: %s" % r.summary())


# ---------------------------------------------------------------------------
# a real Prometheus server

def start_prometheus(ctx, target_port):
    binary = need("prometheus")
    web = harness.free_port()
    cfg = os.path.join(ctx.dir, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: coechod\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % target_port)
    log = open(os.path.join(ctx.dir, "prometheus.log"), "wb")
    proc = subprocess.Popen(
        [binary, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(ctx.dir, "tsdb"),
         "--web.listen-address=127.0.0.1:%d" % web, "--log.level=warn"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    return proc, web


def query(web, expr):
    url = "http://127.0.0.1:%d/api/v1/query?%s" % (web, urllib.parse.urlencode({"query": expr}))
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            answer = json.load(r)
    except (OSError, ValueError):
        return None
    result = answer.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if len(result) == 1 else None


@test
def prometheus_scrapes_the_totals(ctx):
    n = 500
    d, port, mport = start(ctx, workers=2)
    proc, web = start_prometheus(ctx, mport)
    try:
        connect_and_close(ctx, port, n)
        got = []

        def seen():
            got[:] = [query(web, "coechod_connections_accepted_total"),
                      query(web, 'sum(coechod_worker_connections_accepted_total)')]
            check(proc.poll() is None, "prometheus exited %s; its log:\n%s"
                  % (proc.returncode, open(os.path.join(ctx.dir, "prometheus.log")).read()[-2000:]))
            return got == [n, n]

        harness.wait_for(seen, PROMETHEUS_WAIT, "Prometheus to report %d accepted (last: %r)"
                         % (n, got), interval=0.5)
        up = query(web, 'up{job="coechod"}')
        check(up == 1, "up = %r" % up)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv):
    return harness.run_suite(argv, TESTS, "coechod-metrics", [("daemon", COECHOD, "COECHOD")],
                             __doc__, deadline=TEST_DEADLINE)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
