#!/usr/bin/env python3
"""Integration tests for UDP echo (RFC 862): listen entries with
protocol: udp, the source-port guard, the per-address rate limit, the
counters in the USR1 statistics line and the metrics, and config errors.

Every test starts the real daemon on 127.0.0.1 port 0 (the port read from
its "listening on udp://..." line), talks to it with Python sockets on
loopback, waits for conditions (never a fixed sleep) and always kills and
reaps what it started.

    test_udp.py              run every test
    test_udp.py NAME...      run only the named tests
    test_udp.py --list       list the test names

Environment as for test_coechod.py: COECHOD, BUILDDIR, SRCDIR,
COECHOD_IT_VERBOSE. Exit status: 0 if every test passed, 1 if any failed,
77 (automake SKIP) if the binary is missing, 2 on a usage error.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, SCRIPT_DIR)
from harness import (COECHOD, TestSkip, check, echo_ok, free_port,  # noqa: E402
                     have_ipv6_loopback, run_coechod, run_suite, usr1_stats, wait_closed,
                     wait_for)

TESTS = []
COECHO_LOAD = os.path.abspath(os.environ.get("COECHO_LOAD")
                              or os.path.join(os.environ.get("BUILDDIR", "."),
                                              "src", "load", "coecho-load"))
UDP_RE = re.compile(r"listening on udp://(\d{1,3}(?:\.\d{1,3}){3}):(\d+)")


def test(fn):
    TESTS.append(fn)
    return fn


def udp_config(limits="", tcp=True):
    text = "listen:\n"
    if tcp:
        text += '  - { address: "127.0.0.1", port: 0 }\n'
    text += '  - { address: "127.0.0.1", port: 0, protocol: udp }\n'
    if limits:
        text += "limits: { %s }\n" % limits
    return text


def udp_port(d):
    return int(d.wait_log(UDP_RE, 10.0, what="'listening on udp://ADDR:PORT'").group(2))


stats = usr1_stats


def client(ctx, bind=("127.0.0.1", 0)):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctx.socks.append(s)
    s.bind(bind)
    s.settimeout(3.0)
    return s


def echo_datagram(s, port, payload):
    s.sendto(payload, ("127.0.0.1", port))
    data, src = s.recvfrom(70000)
    check(src == ("127.0.0.1", port), "reply from %r" % (src,))
    check(data == payload, "echo of %d bytes differs (got %d)" % (len(payload), len(data)))


@test
def datagrams_are_echoed(ctx):
    """Each datagram comes back whole to its sender, up to the largest
    IPv4 UDP payload; the TCP listener beside it still echoes."""
    d = ctx.daemon([], config=udp_config())
    port = udp_port(d)
    s = client(ctx)
    for size in (0, 1, 2, 1400, 9000, 65507):
        echo_datagram(s, port, os.urandom(size))
    tcp_port = d.port()
    echo_ok(ctx.connect(tcp_port))
    st = stats(d)
    check(st["udp_in"] == 6 and st["udp_out"] == 6, "udp_in/out: %r" % st)
    total = 1 + 2 + 1400 + 9000 + 65507
    check(st["udp_bytes_in"] == total and st["udp_bytes_out"] == total, "bytes: %r" % st)


@test
def ipv6_datagrams_are_echoed(ctx):
    """[::1] over UDP: the echo goes back to the IPv6 sender."""
    if not have_ipv6_loopback():
        raise TestSkip("no IPv6 loopback")
    d = ctx.daemon(["-l", "udp://[::1]:0"], config="")
    port = int(d.wait_log(r"listening on udp://\[::1\]:(\d+)", 10.0).group(1))
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    ctx.socks.append(s)
    s.settimeout(3.0)
    s.sendto(b"six", ("::1", port))
    data, src = s.recvfrom(100)
    check(data == b"six" and src[1] == port, "reply %r from %r" % (data, src))


@test
def command_line_listener(ctx):
    """-l udp://ADDR:PORT opens a UDP listener."""
    d = ctx.daemon(["-l", "udp://127.0.0.1:0", "-l", "127.0.0.1:0"], config="")
    echo_datagram(client(ctx), udp_port(d), b"hi\n")


@test
def service_source_port_is_dropped(ctx):
    """A datagram from port 7 (another echo service) is not answered, so
    two echo services cannot bounce one datagram forever."""
    if os.geteuid() != 0:
        raise TestSkip("binding source port 7 needs root")
    d = ctx.daemon([], config=udp_config())
    port = udp_port(d)
    s = client(ctx, ("127.0.0.1", 7))
    s.sendto(b"loop?", ("127.0.0.1", port))
    st = wait_for(lambda: (lambda st: st if st["udp_in"] >= 1 else None)(stats(d)), 10.0,
                  "the datagram from port 7 counted")
    check(st["udp_dropped_source_port"] == 1 and st["udp_out"] == 0, "counters: %r" % st)
    echo_datagram(client(ctx), port, b"still answers others")


@test
def flood_is_cut_by_the_rate_limit(ctx):
    """100 datagrams at once from one address with udp_rate_limit 10: about
    10 are answered, the rest dropped and counted. (100 small datagrams fit
    the daemon's default receive buffer even if it falls behind.)"""
    d = ctx.daemon([], config=udp_config("udp_rate_limit: 10"))
    port = udp_port(d)
    s = client(ctx)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sent = 100
    for i in range(sent):
        s.sendto(b"%d" % i, ("127.0.0.1", port))
    st = wait_for(lambda: (lambda st: st if st["udp_in"] >= sent else None)(stats(d)), 10.0,
                  "all %d datagrams counted" % sent)
    dropped, out = st["udp_dropped_rate_limit"], st["udp_out"]
    ctx.note("answered %d, dropped %d" % (out, dropped))
    check(out + dropped == sent, "answered %d + dropped %d != %d" % (out, dropped, sent))
    check(10 <= out <= 40, "answered %d with a limit of 10/s" % out)
    got = 0
    s.settimeout(1.0)
    try:
        while True:
            s.recvfrom(100)
            got += 1
    except socket.timeout:
        pass
    check(got == out, "received %d replies, daemon sent %d" % (got, out))


@test
def rate_limit_zero_is_off(ctx):
    d = ctx.daemon([], config=udp_config("udp_rate_limit: 0"))
    port = udp_port(d)
    s = client(ctx)
    for i in range(100):
        echo_datagram(s, port, b"%d" % i)
    check(stats(d)["udp_dropped_rate_limit"] == 0, "drops with the limit off")


@test
def access_list_drops_datagrams(ctx):
    """A UDP listener's own access list (deny 127.0.0.3) drops that
    source's datagrams unanswered, counted and logged, and answers
    127.0.0.2, which the top-level list (for the TCP listener beside it,
    on the same port number) refuses."""
    tcp_port = free_port()
    d = ctx.daemon([], config='listen:\n'
                   '  - { address: "127.0.0.1", port: %d }\n'
                   '  - { address: "127.0.0.1", port: %d, protocol: udp, '
                   'access: [ "deny 127.0.0.3" ] }\n'
                   'access: [ "deny 127.0.0.2" ]\n' % (tcp_port, tcp_port))
    port = udp_port(d)
    client(ctx, ("127.0.0.3", 0)).sendto(b"refused", ("127.0.0.1", port))
    st = wait_for(lambda: (lambda st: st if st["udp_in"] >= 1 else None)(stats(d)), 10.0,
                  "the datagram from 127.0.0.3 counted")
    check(st["udp_dropped_access"] == 1 and st["udp_out"] == 0, "counters: %r" % st)
    d.wait_log(r"refused a datagram from 127\.0\.0\.3: denied by the access list", 5.0)
    echo_datagram(client(ctx, ("127.0.0.2", 0)), port, b"allowed here")
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ctx.socks.append(tcp)
    tcp.bind(("127.0.0.2", 0))
    tcp.connect(("127.0.0.1", tcp_port))
    wait_closed(tcp, 10.0, "TCP connection from 127.0.0.2")
    check(stats(d)["rejected_access"] == 1, "the TCP refusal not counted")


@test
def metrics_count_datagrams(ctx):
    """The Prometheus endpoint shows the UDP counters, drops by reason."""
    cfg = udp_config() + "metrics: { port: 0 }\n"
    d = ctx.daemon([], config=cfg)
    port = udp_port(d)
    mport = int(d.wait_log(r"metrics on http://127\.0\.0\.1:(\d+)/", 10.0).group(1))
    echo_datagram(client(ctx), port, b"count me")

    def scraped():
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=3) as r:
            text = r.read().decode()
        return text if re.search(r"^coechod_udp_datagrams_sent_total 1$", text, re.M) else None
    text = wait_for(scraped, 10.0, "coechod_udp_datagrams_sent_total 1")
    for reason in ("source_port", "rate_limit", "send_buffer_full", "send_error", "truncated",
                   "access"):
        check('coechod_udp_datagrams_dropped_total{reason="%s"} 0' % reason in text,
              "no drop series for %s" % reason)


@test
def config_errors_have_positions(ctx):
    path = os.path.join(ctx.dir, "bad.yaml")
    with open(path, "w") as f:
        f.write("listen:\n  - { address: 127.0.0.1, port: 7007, protocol: sctp }\n"
                "limits:\n  udp_rate_limit: -1\n")
    r = run_coechod(["-t", "-c", path])
    check(r.rc != 0, "coechod -t accepted a bad file")
    check('%s:2:49: listen[0].protocol: expected tcp or udp, got "sctp"' % path in r.stderr,
          "protocol error: %s" % r.stderr)
    check("%s:4:19: limits.udp_rate_limit: expected an integer from 0 to 10000000" % path
          in r.stderr, "rate error: %s" % r.stderr)


@test
def tcp_and_udp_share_a_port_number(ctx):
    """A TCP and a UDP listener may take the same address and port."""
    d = ctx.daemon(["-l", "127.0.0.1:0"], config="")
    port = d.port()
    d2 = ctx.daemon(["-l", "udp://127.0.0.1:%d" % port], config="")
    echo_datagram(client(ctx), udp_port(d2), b"same port")
    check(udp_port(d2) == port, "the UDP listener took another port")


@test
def socket_activation_passes_udp(ctx):
    """A UDP socket passed by systemd (ListenDatagram=) is served; here
    systemd-socket-activate --datagram stands for systemd."""
    tool = shutil.which("systemd-socket-activate")
    if not tool:
        raise TestSkip("systemd-socket-activate not installed (package systemd)")
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # a free port now; another process could take it, rarely
    d = ctx.daemon(["-f"], config=udp_config(),
                   prefix=[tool, "--datagram", "-l", "127.0.0.1:%d" % port])
    d.wait_log(r"Listening on 127\.0\.0\.1:%d" % port, 10.0)  # the tool's own line
    s = client(ctx)
    s.sendto(b"activate", ("127.0.0.1", port))  # the first datagram starts coechod
    data, _ = s.recvfrom(100)
    check(data == b"activate", "echo %r" % data)
    d.wait_log(r"listening on udp://127\.0\.0\.1:%d \(socket passed by systemd" % port, 10.0)


@test
def workers_each_serve_udp(ctx):
    """With workers: 2 (SO_REUSEPORT), datagrams from many source ports are
    all echoed, and the main process's USR1 totals count them."""
    d = ctx.daemon([], config=udp_config(tcp=False) + "workers: 2\n")
    port = udp_port(d)
    for i in range(20):
        echo_datagram(client(ctx), port, b"worker %d" % i)

    def counted():
        st = stats(d)
        return st if st.get("udp_out") == 20 else None
    wait_for(counted, 10.0, "udp_out=20 in the main process's totals")


@test
def reload_adds_a_udp_listener(ctx):
    """A SIGHUP that adds a UDP entry opens it; one that drops it closes it."""
    path = ctx.write_config('listen: [ { address: "127.0.0.1", port: 0 } ]\n')
    d = ctx.daemon(["-c", path])
    d.port()
    with open(path, "w") as f:
        f.write(udp_config())
    d.send_signal(signal.SIGHUP)
    port = udp_port(d)
    echo_datagram(client(ctx), port, b"after reload")
    with open(path, "w") as f:
        f.write('listen: [ { address: "127.0.0.1", port: 0 } ]\n')
    mark = d.mark()
    d.send_signal(signal.SIGHUP)
    d.wait_log(r"closed listener udp://127\.0\.0\.1:%d" % port, 10.0, mark)


def run_load(args, timeout=30):
    proc = subprocess.run([COECHO_LOAD] + args, stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=timeout)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@test
def load_client_sees_no_loss(ctx):
    """coecho-load --udp: every datagram comes back verified, 0 loss."""
    d = ctx.daemon([], config=udp_config("udp_rate_limit: 0", tcp=False))
    port = udp_port(d)
    rc, out, err = run_load(["--udp", "-c", "4", "-p", "2", "-s", "1200", "-n", "2000",
                             "--json", "127.0.0.1:%d" % port])
    check(rc == 0, "coecho-load exit %d: %s %s" % (rc, out, err))
    r = json.loads(out)
    check(r["messages"] == 2000 and r["mismatches"] == 0, "summary: %r" % r)
    check(r["udp"] == {"sent": 2000, "received": 2000, "lost": 0, "loss_pct": 0.0, "late": 0},
          "udp: %r" % r["udp"])
    st = stats(d)
    check(st["udp_bytes_out"] == 2000 * 1200, "daemon sent %d bytes" % st["udp_bytes_out"])


@test
def load_client_reports_loss(ctx):
    """Against a socket that never answers, every datagram is lost after
    --timeout and the run is not clean."""
    sink = client(ctx)
    port = sink.getsockname()[1]
    rc, out, err = run_load(["--udp", "-c", "2", "-n", "6", "--timeout", "200ms", "-s", "32",
                             "127.0.0.1:%d" % port])
    check(rc == 1, "exit %d: %s %s" % (rc, out, err))
    check(re.search(r"datagrams +6 sent, 0 received, 6 lost \(100\.00%\), 0 late", out),
          "text summary: %r" % out)


@test
def load_client_paces_with_rate(ctx):
    """coecho-load --udp -r 1000 -c 4 -d 2s: each flow paced as the TCP
    open loop is, so about 2000 datagrams in 2 s, all echoed; the progress
    line shows the datagrams sent, received and lost so far."""
    d = ctx.daemon([], config=udp_config("udp_rate_limit: 0", tcp=False))
    port = udp_port(d)
    rc, out, err = run_load(["--udp", "-r", "1000", "-c", "4", "-d", "2s", "--progress",
                             "--json", "127.0.0.1:%d" % port])
    check(rc == 0, "coecho-load exit %d: %s %s" % (rc, out, err))
    r = json.loads(out)
    # Load only lowers the count (a late flow claims nothing after -d);
    # above +20% the client sends faster than asked.
    check(1600 <= r["udp"]["sent"] <= 2400, "sent %r at 1000/s for 2 s" % r["udp"])
    check(r["udp"]["lost"] == 0 and r["messages"] == r["udp"]["sent"], "udp: %r" % r["udp"])
    progress = re.findall(r"\| (\d+) sent, (\d+) received, (\d+) lost \((\d+\.\d\d)%\)$",
                          err, re.M)
    check(progress, "no UDP figures in the progress lines: %r" % err)
    sent, received, lost, pct = progress[-1]
    check(int(sent) >= int(received) and lost == "0" and pct == "0.00",
          "last progress line: %r" % (progress[-1],))


@test
def progress_line_shows_loss(ctx):
    """Against a socket that never answers, the progress line counts the
    datagrams lost so far once --timeout has passed."""
    sink = client(ctx)
    rc, out, err = run_load(["--udp", "-c", "1", "-r", "20", "-d", "2500ms", "--timeout",
                             "200ms", "--progress", "127.0.0.1:%d" % sink.getsockname()[1]])
    check(rc == 1, "exit %d: %s %s" % (rc, out, err))
    # Those sent in the last --timeout are in flight, not lost yet.
    lines = re.findall(r"\| (\d+) sent, 0 received, (\d+) lost \((\d+\.\d\d)%\)$", err, re.M)
    check(any(0 < int(lost) <= int(sent) and float(pct) > 0 for sent, lost, pct in lines),
          "no progress line with loss: %r" % err)


def main(argv):
    return run_suite(argv, TESTS, "coechod-udp", [("daemon", COECHOD, "COECHOD"), ("client", COECHO_LOAD, "COECHO_LOAD")], __doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
