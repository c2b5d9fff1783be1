#!/usr/bin/env python3
"""Integration tests for listeners with proxy_protocol: true (the PROXY
protocol, v1 and v2), with raw sockets and behind a real HAProxy.

Raw sockets send v1 and v2 headers, then echo data (echoed byte for byte,
the header never), no header, a header too slow, a v2 LOCAL health check;
the access list, the per-IP limit and the connection log follow the
header's address.
Behind HAProxy (mode tcp, send-proxy-v2, skipped with the reason when
haproxy is not installed), clients bound to 127.0.0.2 and 127.0.0.3 reach
the per-IP limit each on its own and are named in the connection log, and
coecho-load gets a byte-exact echo through the balancer in front of two
coechod instances. Everything listens on loopback ports picked at run
time; haproxy runs in the foreground with a config in the test's
directory. The access list is matched against the header's client (a
LOCAL health check is served whatever the list says); behind HAProxy a
client bound to 127.0.0.4 is refused by it. Tests wait for conditions,
never a fixed time.

    test_proxy.py              run every test
    test_proxy.py NAME...      run only the named tests
    test_proxy.py --list       list the test names

Environment as for test_coechod.py: COECHOD, BUILDDIR, SRCDIR,
COECHOD_IT_VERBOSE; COECHO_LOAD (default BUILDDIR/src/load/coecho-load),
HAPROXY (default: haproxy on PATH). Exit status: 0 if every test passed, 1
if any failed, 77 (automake SKIP) if the binary is missing, 2 on a usage
error.
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, SCRIPT_DIR)
from harness import (BUILDDIR, COECHOD, Ctx, TestFailure, TestSkip, check,  # noqa: E402
                     echo_ok, free_port, kill_pid, recv_exact, recv_until_eof, run_suite,
                     wait_accepting, wait_closed, wait_for)

COECHO_LOAD = os.path.abspath(os.environ.get("COECHO_LOAD")
                              or os.path.join(BUILDDIR, "src", "load", "coecho-load"))
HAPROXY = os.environ.get("HAPROXY") or shutil.which("haproxy") or "/usr/sbin/haproxy"
HEADER_TIMEOUT_S = 3.0  # PROXYCONN_HEADER_TIMEOUT_MS

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


class ProxyCtx(Ctx):
    """A test's context, plus the haproxy processes it started."""

    def __init__(self, name):
        super().__init__(name)
        self.procs = []

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                kill_pid(p.pid)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        super().cleanup()


def proxy_config(limits=None, log=True, access=None, port=0, proxy=True):
    own = ", access: %s" % json.dumps(access) if access is not None else ""
    lines = ["listen:", '  - { address: "127.0.0.1", port: %d, proxy_protocol: %s%s }'
             % (port, "true" if proxy else "false", own)]
    if limits:
        lines.append("limits:")
        lines += ["  %s: %s" % kv for kv in limits.items()]
    if log:
        lines.append("log: { connections: true }")
    return "\n".join(lines) + "\n"


def v1(src, sport, dst=None, dport=7007):
    proto = "TCP6" if ":" in src else "TCP4"
    dst = dst or ("::1" if ":" in src else "127.0.0.1")
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(src=None, sport=0, dst=None, dport=7007, local=False, tlv=b""):
    if local:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    dst = dst or ("::1" if fam == socket.AF_INET6 else "127.0.0.1")
    body = (socket.inet_pton(fam, src) + socket.inet_pton(fam, dst)
            + struct.pack("!HH", sport, dport) + tlv)
    return V2_SIG + bytes([0x21, 0x21 if fam == socket.AF_INET6 else 0x11]) \
        + struct.pack("!H", len(body)) + body


def stat(d, name):
    """A field of a fresh statistics line (SIGUSR1)."""
    d.barrier()
    m = re.search(r"\b%s=(\d+)" % name, d.lines[-1])
    check(m is not None, "no %s= in %r" % (name, d.lines[-1]))
    return int(m.group(1))


def close_line(d, peer, timeout=10.0):
    m = d.wait_log(r"close peer=%s .*reason=(\w+)" % re.escape(peer), timeout,
                   what="a close line for %s" % peer)
    return m.group(1)


def echo_after_header(ctx, port, header, payload):
    """Sends header and payload in one write; the echo is exactly payload."""
    c = ctx.connect(port)
    c.sendall(header + payload)
    got = recv_exact(c, len(payload))
    check(got == payload, "echo differs: %r" % got[:64])
    c.shutdown(socket.SHUT_WR)
    rest = recv_until_eof(c)
    check(rest == b"", "bytes after the echo: %r" % rest[:64])
    return c


@test
def v1_header_then_echo(ctx):
    """A v1 header and data in one segment: the data is echoed, the header
    not; the close line names the header's client."""
    d = ctx.daemon([], config=proxy_config())
    port = d.port()
    echo_after_header(ctx, port, v1("192.0.2.7", 56324), b"PROXY not again\r\n" * 5)
    check(close_line(d, "192.0.2.7:56324") == "eof", "reason not eof")
    echo_after_header(ctx, port, v1("2001:db8::5", 4000), b"x")
    close_line(d, r"[2001:db8::5]:4000")


@test
def v2_header_then_echo(ctx):
    """v2 headers (IPv4 with a TLV, IPv6), sent whole with data and byte by
    byte, then data: echoed byte for byte."""
    d = ctx.daemon([], config=proxy_config())
    port = d.port()
    payload = bytes(range(256)) * 40
    echo_after_header(ctx, port, v2("198.51.100.9", 1234, tlv=b"\x04\x00\x02ab"), payload)
    close_line(d, "198.51.100.9:1234")
    c = ctx.connect(port)
    for b in v2("2001:db8::9", 4321):
        c.sendall(bytes([b]))
    echo_ok(c, b"after a slow header")
    c.close()
    close_line(d, r"[2001:db8::9]:4321")


@test
def missing_header_closed_and_counted(ctx):
    """Plain data where the header belongs: closed at once, nothing echoed,
    counted in the stats line and as reason proxy_header."""
    d = ctx.daemon([], config=proxy_config())
    port = d.port()
    c = ctx.connect(port)
    c.sendall(b"hello, no header here\r\n")
    wait_closed(c, HEADER_TIMEOUT_S - 0.5, "connection without a header")
    check(close_line(d, "127.0.0.1:%d" % c.getsockname()[1]) == "proxy_header",
          "reason not proxy_header")
    check(stat(d, "rejected_proxy_header") == 1, "rejected_proxy_header not 1")
    bad = ctx.connect(port)
    bad.sendall(V2_SIG + b"\x21\x11\xff\xff")  # oversized v2
    wait_closed(bad, HEADER_TIMEOUT_S - 0.5, "connection with an oversized header")
    wait_for(lambda: stat(d, "rejected_proxy_header") == 2, 5.0, "the second rejection")
    check(stat(d, "accepted") == 2 and stat(d, "connections") == 0, "slots not released")


@test
def slow_header_closed_after_deadline(ctx):
    """Half a header and then nothing: closed after the header deadline,
    not before."""
    d = ctx.daemon([], config=proxy_config())
    port = d.port()
    c = ctx.connect(port)
    started = time.monotonic()
    c.sendall(b"PROXY TCP4 192.0.2")
    wait_closed(c, HEADER_TIMEOUT_S + 5.0, "connection with half a header")
    took = time.monotonic() - started
    ctx.note("closed after %.2f s" % took)
    check(took >= HEADER_TIMEOUT_S - 0.2, "closed after %.2f s, before the deadline" % took)
    check(close_line(d, "127.0.0.1:%d" % c.getsockname()[1]) == "proxy_header",
          "reason not proxy_header")


@test
def v2_local_uses_socket_peer(ctx):
    """A v2 LOCAL header (a balancer's health check) is accepted: the
    connection echoes and is logged under its socket's peer."""
    d = ctx.daemon([], config=proxy_config())
    port = d.port()
    c = ctx.connect(port)
    c.sendall(v2(local=True))
    echo_ok(c, b"health")
    peer = "127.0.0.1:%d" % c.getsockname()[1]
    c.close()
    check(close_line(d, peer) == "eof", "reason not eof")


@test
def per_ip_limit_follows_header(ctx):
    """max_connections_per_ip counts the header's client: two clients (one
    socket address) each get their 2 connections, a third is refused."""
    d = ctx.daemon([], config=proxy_config(limits={"max_connections_per_ip": 2}))
    port = d.port()
    held = []
    for ip in ("192.0.2.1", "192.0.2.2"):
        for k in range(2):
            c = ctx.connect(port)
            c.sendall(v1(ip, 1000 + k))
            echo_ok(c, ip.encode())
            held.append(c)
    over = ctx.connect(port)
    over.sendall(v1("192.0.2.1", 1002) + b"dropped")
    wait_closed(over, 5.0, "third connection of 192.0.2.1")
    check(close_line(d, "192.0.2.1:1002") == "per_ip_limit", "reason not per_ip_limit")
    check(stat(d, "rejected_per_ip") == 1, "rejected_per_ip not 1")
    for c in held:
        echo_ok(c, b"still")
    held[0].close()  # 192.0.2.1 has room again once that one is closed
    close_line(d, "192.0.2.1:1000")
    again = ctx.connect(port)
    again.sendall(v1("192.0.2.1", 1003))
    echo_ok(again, b"room again")


@test
def access_list_follows_header(ctx):
    """The listener's access list is matched against the header's client,
    not the balancer: with [allow 192.0.2.0/24, deny all] the socket's own
    peer (127.0.0.1) would be refused, yet 192.0.2.5 is served, 198.51.100.1
    is closed as access_denied and counted, and a v2 LOCAL health check
    (the balancer itself) is served."""
    d = ctx.daemon([], config=proxy_config(access=["allow 192.0.2.0/24", "deny all"]))
    port = d.port()
    echo_after_header(ctx, port, v1("192.0.2.5", 5000), b"allowed")
    check(close_line(d, "192.0.2.5:5000") == "eof", "reason not eof")
    c = ctx.connect(port)
    c.sendall(v2("198.51.100.1", 5001) + b"refused")
    wait_closed(c, 5.0, "connection from a refused client")
    check(close_line(d, "198.51.100.1:5001") == "access_denied", "reason not access_denied")
    d.wait_log(r"refused a connection from 198\.51\.100\.1: denied by the access list", 5.0)
    check(stat(d, "rejected_access") == 1, "rejected_access not 1")
    check(stat(d, "connections") == 0, "the refused connection kept its slot")
    h = ctx.connect(port)
    h.sendall(v2(local=True))
    echo_ok(h, b"health")


@test
def reload_switches_proxy_protocol(ctx):
    """A reload that turns proxy_protocol on for a listener kept open makes
    new connections start with a header (stripped, its client logged); a
    connection made before goes on echoing plainly. Turned off again, a
    header is just data, echoed byte for byte."""
    port = free_port()
    d = ctx.daemon([], config=proxy_config(port=port, proxy=False))
    check(d.port() == port, "not on the configured port")
    before = ctx.connect(port)
    echo_ok(before, b"plain before")
    header = v1("192.0.2.44", 4444)
    for proxy in (True, False):
        ctx.write_config(proxy_config(port=port, proxy=proxy))
        mark = d.mark()
        d.send_signal(signal.SIGHUP)
        d.wait_log(r"reloaded", 10.0, mark)
        if proxy:
            echo_after_header(ctx, port, header, b"behind a balancer")
            check(close_line(d, "192.0.2.44:4444") == "eof", "reason not eof")
        else:
            echo_after_header(ctx, port, b"", header)
        echo_ok(before, b"still plain")


# ---------------------------------------------------------------------------
# behind HAProxy

# The template of README.md's "Behind HAProxy", with the ports filled in.
HAPROXY_CFG = """\
global
    maxconn 4096

defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m

frontend echo
    bind 127.0.0.1:{port}
    default_backend coechod

backend coechod
    balance roundrobin
{servers}
"""


def need_haproxy():
    if not (os.path.isfile(HAPROXY) and os.access(HAPROXY, os.X_OK)):
        raise TestSkip("haproxy is not installed (apt-get install haproxy)")


def start_haproxy(ctx, backend_ports):
    need_haproxy()
    port = free_port()
    servers = "\n".join("    server coechod%d 127.0.0.1:%d send-proxy-v2" % (i + 1, p)
                        for i, p in enumerate(backend_ports))
    path = ctx.write_config(HAPROXY_CFG.format(port=port, servers=servers), "haproxy.cfg")
    log = open(os.path.join(ctx.dir, "haproxy.log"), "wb")
    p = subprocess.Popen([HAPROXY, "-f", path, "-db"], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    ctx.procs.append(p)
    try:
        wait_accepting(port, 10.0)
    except TestFailure:
        with open(os.path.join(ctx.dir, "haproxy.log"), "rb") as f:
            raise TestFailure("haproxy did not start: %r" % f.read()[-600:])
    return port


def connect_from(ctx, ip, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with ctx.lock:
        ctx.socks.append(s)
    s.settimeout(5.0)
    s.bind((ip, 0))
    s.connect(("127.0.0.1", port))
    return s


def expect_closed_as(ctx, d, ip, port, reason):
    """A client bound to ip, through the balancer at port, is closed; the
    close line names it, with reason."""
    c = connect_from(ctx, ip, port)
    c_port = c.getsockname()[1]
    c.sendall(b"dropped")
    wait_closed(c, 10.0, "a connection of %s" % ip)
    check(close_line(d, "%s:%d" % (ip, c_port)) == reason, "reason not %s" % reason)


@test
def haproxy_per_ip_limit_access_and_log(ctx):
    """Through HAProxy (send-proxy-v2), one coechod with
    max_connections_per_ip 2 and the access list [deny 127.0.0.4, allow
    all]: 127.0.0.4 is refused (access_denied), 127.0.0.2 and 127.0.0.3 get
    2 connections each, a third from 127.0.0.2 is closed; the log names
    every client. (One backend: with several, the limit holds per coechod
    instance.)"""
    d = ctx.daemon([], config=proxy_config(limits={"max_connections_per_ip": 2},
                                           access=["deny 127.0.0.4", "allow all"]))
    port = start_haproxy(ctx, [d.port()])
    expect_closed_as(ctx, d, "127.0.0.4", port, "access_denied")
    check(stat(d, "rejected_access") == 1, "rejected_access not 1")
    held = []
    for ip in ("127.0.0.2", "127.0.0.3"):
        for _ in range(2):
            c = connect_from(ctx, ip, port)
            echo_ok(c, ip.encode(), timeout=5.0)
            held.append(c)
    expect_closed_as(ctx, d, "127.0.0.2", port, "per_ip_limit")
    for c in held:
        echo_ok(c, b"still", timeout=5.0)
    for c in held:
        peer = "%s:%d" % c.getsockname()
        c.close()
        check(close_line(d, peer) == "eof", "close of %s not eof" % peer)


@test
def haproxy_roundrobin_load(ctx):
    """coecho-load -c 50 -d 3s through HAProxy in front of two coechod
    instances: exit 0, no mismatch, and both instances served."""
    if not os.access(COECHO_LOAD, os.X_OK):
        raise TestSkip("no coecho-load at %s" % COECHO_LOAD)
    need_haproxy()
    backends = [ctx.daemon([], config=proxy_config(log=False)) for _ in range(2)]
    port = start_haproxy(ctx, [d.port() for d in backends])
    r = subprocess.run([COECHO_LOAD, "-c", "50", "-d", "3s", "--json", "-q",
                        "127.0.0.1:%d" % port], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30, cwd=ctx.dir)
    out = r.stdout.decode("utf-8", "replace")
    ctx.note("coecho-load: %s" % out.strip())
    check(r.returncode == 0, "coecho-load exit %d: %s %s"
          % (r.returncode, out[-400:], r.stderr.decode("utf-8", "replace")[-400:]))
    obj = json.loads(out.strip().splitlines()[-1])
    check(obj["mismatches"] == 0 and obj["messages"] > 0,
          "mismatches %r, messages %r" % (obj["mismatches"], obj["messages"]))
    for d in backends:
        check(stat(d, "accepted") >= 25, "a backend accepted under 25 connections")
        check(stat(d, "rejected_proxy_header") == 0, "a backend rejected a header")


def main(argv):
    return run_suite(argv, TESTS, "coechod-proxy", [("daemon", COECHOD, "COECHOD")], __doc__,
                     make_ctx=ProxyCtx)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
