"""test_time_wait.py: the time-wait lab end to end: TIME_WAIT on the side that closes first
with the kernel's 60 s timer (sock_diag), a restarted server's bind() with and without
SO_REUSEADDR, a client reusing its port, an ephemeral range spent by TIME_WAIT and lifted by
tcp_tw_reuse, bad parameters, and nothing left behind."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import wait_for  # noqa: E402
from netlib import holders, lease_names, lease_of, net_inodes, root  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")


def tw(*params, pcap=None):
    root()
    args = [BIN, "run", "time-wait", "--json"] + (["--pcap", pcap] if pcap else [])
    for p in list(params):
        args += ["-p", p]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        check(bad not in r.stderr, f"sanitizer report: {r.stderr[-800:]}")
    eq(r.returncode, 0, f"exit of {params}: {r.stderr[-400:]}")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    eq([e["seq"] for e in events], list(range(len(events))), "gap-free seq")
    return events, events[-1]["summary"]


def calls(events, call, who=None):
    return [e for e in events if e["type"] == "call" and e["call"] == call and (who is None or e["who"] == who)]


def notes(events):
    return [e["key"] for e in events if e["type"] == "note"]


@test
def the_client_closes_first_and_holds_time_wait_for_sixty_seconds():
    ev, s = tw("scenario=who-closes", "closer=client", "observe_ms=1200")
    eq(s["time_wait"]["client_peak"], 1, "TIME_WAIT on the client host (sock_diag)")
    eq(s["time_wait"]["server_peak"], 0, "none on the server host")
    ft = s["first_timer"]
    eq(ft["who"], "client", "the timer is the client's")
    # The timer the kernel set is 60 s; the first sample sees it a little after the close.
    check(59000 <= ft["ms_left"] <= 60000, f"ms left {ft['ms_left']}")
    # The timer cannot have started before the last FIN, and never exceeds 60 s.
    check(ft["ms_left"] + ft["ms_after_fin"] >= 60000 - 50, f"60 s in all: {ft}")
    timers = [e for e in ev if e["type"] == "timer" and e["who"] == "client"]
    check(len(timers) >= 1, "timer events from the observer")
    left = [e["ms_left"] for e in timers]
    eq(left, sorted(left, reverse=True), "the countdown only goes down")
    check("timewait.sixty" in notes(ev) and "timewait.who" in notes(ev), f"notes {notes(ev)}")
    # The client's port reuse without SO_REUSEADDR: EADDRINUSE.
    eq(s["second_bind"]["errno"], "EADDRINUSE", "the second bind of the client's port")


@test
def the_server_closes_first_and_holds_time_wait():
    ev, s = tw("scenario=who-closes", "closer=server", "observe_ms=0")
    eq(s["time_wait"]["server_peak"], 1, "TIME_WAIT on the server host (sock_diag)")
    eq(s["time_wait"]["client_peak"], 0, "none on the client host")
    eq(s["first_timer"]["who"], "server", "the timer is the server's")


@test
def restart_without_so_reuseaddr_fails_with_eaddrinuse():
    ev, s = tw("scenario=restart", "reuseaddr=false", "observe_ms=0")
    binds = calls(ev, "bind", "server")
    eq([b["errno"] for b in binds], [None, "EADDRINUSE"], "first bind ok, the restart's refused")
    eq(s["time_wait"]["server_peak"], 1, "the server's old connection in TIME_WAIT")
    check("timewait.restart_inuse" in notes(ev), "the EADDRINUSE note")


@test
def restart_with_so_reuseaddr_binds_and_listens():
    ev, s = tw("scenario=restart", "reuseaddr=true", "observe_ms=0")
    binds = calls(ev, "bind", "server")
    eq([b["errno"] for b in binds], [None, None], "both binds succeed")
    eq([c["errno"] for c in calls(ev, "listen", "server")], [None, None], "and both listen")
    eq(s["time_wait"]["server_peak"], 1, "although TIME_WAIT holds the port")
    check("timewait.restart_reuse" in notes(ev), "the SO_REUSEADDR note")


@test
def a_client_reusing_its_port_with_so_reuseaddr_takes_over_the_time_wait():
    ev, s = tw("scenario=who-closes", "closer=client", "reuseaddr=true", "observe_ms=0")
    eq(s["second_bind"]["errno"], None, "the bind succeeds")
    eq(s["second_bind"]["connect_errno"], None, "the connect of the same 4-tuple succeeds")
    eq(s["connects_ok"], 2, "two connections")
    # sock_diag: the lab waits until its own dump lists the client's socket in
    # TIME_WAIT before the second connect (the observer's 100 ms samples may
    # miss that window on a loaded machine, so they are not the evidence).
    second = calls(ev, "connect", "client")[1]
    listed = [e for e in ev if e["type"] == "tw_list" and e["host"] == "client" and e["count"] > 0
          and e["seq"] < second["seq"]]
    check(listed, "sock_diag listed the client's TIME_WAIT before the second connect")
    eq(s["time_wait"]["client_at_end"], 0, "no TIME_WAIT left on the client host")


@test
def the_range_is_spent_after_exactly_its_size():
    ev, s = tw("scenario=exhaust", "ports=6", "extra=3", "gap_ms=20", "tw_reuse=0", "observe_ms=0")
    conns = calls(ev, "connect", "client")
    eq([c["errno"] for c in conns], [None] * 6 + ["EADDRNOTAVAIL"] * 3, "6 ok, then EADDRNOTAVAIL")
    eq(s["time_wait"]["client_peak"], 6, "six TIME_WAIT sockets on the client host")
    ports = {int(c["detail"].split()[2]) for c in conns[:6]}
    eq(ports, set(range(40000, 40006)), "every port of the range used once")


@test
def tcp_tw_reuse_lifts_the_exhaustion():
    # gap 250 ms: by the 7th connect the oldest TIME_WAIT is more than a second old.
    ev, s = tw("scenario=exhaust", "ports=6", "extra=3", "gap_ms=250", "tw_reuse=1", "observe_ms=0")
    conns = calls(ev, "connect", "client")
    eq([c["errno"] for c in conns], [None] * 9, "every connect succeeds")
    eq(s["errors"]["EADDRNOTAVAIL"], 0, "no EADDRNOTAVAIL")


@test
def ports_port_zero_a_busy_port_and_two_reuseport_listeners():
    n = 32
    ev, s = tw("scenario=ports", f"conns={n}", "observe_ms=0")
    p = s["ports"]
    rng = [e for e in ev if e["type"] == "port_range"]
    eq(len(rng), 1, "the range is read once")
    eq(rng[0]["host"], "server", "in the server's namespace")
    lo, hi = rng[0]["low"], rng[0]["high"]
    eq((p["range"]["low"], p["range"]["high"]), (lo, hi), "the summary's range is the event's")
    # A fresh network namespace's own range, read independently of the lab.
    fresh = subprocess.run(["unshare", "-n", "cat", "/proc/sys/net/ipv4/ip_local_port_range"],
                           capture_output=True, text=True, timeout=20, check=True).stdout.split()
    eq([lo, hi], [int(x) for x in fresh], "the range of a fresh namespace")
    # Port 0: getsockname's port, inside the range.
    got = [c for c in calls(ev, "getsockname") if c.get("step") == "port0"]
    eq(len(got), 1, "one getsockname")
    eq(got[0]["errno"], None, "getsockname succeeds")
    port0 = got[0]["port"]
    eq(p["port0"], port0, "the summary's port is getsockname's")
    check(lo <= port0 <= hi, f"port {port0} inside {lo}-{hi}")
    eq(p["port0_in_range"], True, "in range")
    eq(got[0]["detail"].split(":")[-1], str(port0), "the call shows the port")
    # The busy port: EADDRINUSE without and with SO_REUSEADDR.
    busy = [c for c in calls(ev, "bind") if c.get("step") == "busy"]
    eq([(c["port"], c["errno"], c["errno_value"]) for c in busy],
       [(port0, "EADDRINUSE", 98)] * 2, "both second binds of the listening port")
    eq([c["detail"].endswith("SO_REUSEADDR") for c in busy], [False, True], "plain, then SO_REUSEADDR")
    opts = [c for c in calls(ev, "setsockopt") if c.get("step") == "busy"]
    eq([(c["detail"], c["errno"]) for c in opts], [("SO_REUSEADDR=1", None)], "SO_REUSEADDR set before the second")
    eq(p["busy_bind"], {"plain": "EADDRINUSE", "so_reuseaddr": "EADDRINUSE"}, "summary")
    # SO_REUSEPORT: both listeners bind the same port and listen.
    rp = [c for c in calls(ev, "setsockopt") if c.get("step") == "reuseport"]
    eq([(c["listener"], c["detail"], c["errno"]) for c in rp],
       [(1, "SO_REUSEPORT=1", None), (2, "SO_REUSEPORT=1", None)], "SO_REUSEPORT on each")
    binds = [c for c in calls(ev, "bind") if c.get("step") == "reuseport"]
    eq([(c["listener"], c["port"], c["errno"]) for c in binds], [(1, s["ports"]["reuseport"]["port"], None),
                                                                  (2, s["ports"]["reuseport"]["port"], None)],
       "both bind the shared port")
    eq([c["errno"] for c in calls(ev, "listen") if c.get("step") == "reuseport"], [None, None], "both listen")
    # Every connection accepted by exactly one listener; both got some.
    conns = calls(ev, "connect", "client")
    eq([c["errno"] for c in conns], [None] * n, f"{n} connects succeed")
    acc = [c for c in calls(ev, "accept") if c.get("step") == "reuseport"]
    per = [len([a for a in acc if a["listener"] == i]) for i in (1, 2)]
    eq(sum(per), n, "every connection accepted once")
    check(per[0] >= 1 and per[1] >= 1, f"both listeners accepted (1: {per[0]}, 2: {per[1]})")
    eq(p["reuseport"]["accepts"], per, "the summary counts the accept calls")
    eq(sorted(a["peer_port"] for a in acc), sorted(int(c["detail"].split()[2]) for c in conns),
       "the accepted peers are the client's connects, port for port")
    keys = notes(ev)
    for k in ("timewait.ports_ephemeral", "timewait.ports_busy", "timewait.ports_reuseport"):
        check(k in keys, f"{k} in {keys}")
    check("timewait.who" not in keys, "no who-closes note")
    # The segments are the connections' (capture): one SYN per connect.
    syns = [e for e in ev if e["type"] == "segment" and e["flags_short"] == "S"]
    eq(sorted(x["src"]["port"] for x in syns), sorted(a["peer_port"] for a in acc), "a SYN per connection")


@test
def ports_note_names_the_range_and_roles_read_in_chinese():
    root()
    r = subprocess.run([BIN, "run", "time-wait", "-p", "scenario=ports", "-p", "conns=4", "-p", "observe_ms=0"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "LANG": "zh_CN.UTF-8", "LC_ALL": ""})
    eq(r.returncode, 0, f"exit: {r.stderr[-300:]}")
    check("服务器主机上 bind() 到端口 0 得到了端口" in r.stdout, f"the Chinese port 0 note: {r.stdout[-600:]}")
    check("server L1  bind(" in r.stdout and "server L2  bind(" in r.stdout, "each listener's calls named")
    r = subprocess.run([BIN, "run", "time-wait", "-p", "closer=server", "-p", "observe_ms=0"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "LANG": "zh_CN.UTF-8", "LC_ALL": ""})
    eq(r.returncode, 0, f"exit: {r.stderr[-300:]}")
    who = [ln for ln in r.stdout.splitlines() if "先调用 close() 的是" in ln]
    eq(len(who), 1, "the who note")
    check("先调用 close() 的是服务器" in who[0] and "server" not in who[0], f"the role in Chinese: {who[0]}")


@test
def tshark_agrees_with_the_capture():
    root()
    if not shutil.which("tshark"):
        raise Skip("tshark is not installed (make test-deps installs it)")
    d = tempfile.mkdtemp()
    try:
        for sc in (("scenario=who-closes", "closer=client"), ("scenario=restart",),
                   ("scenario=ports", "conns=6")):
            pcap = os.path.join(d, "t.pcap")
            ev, s = tw(*sc, "observe_ms=0", pcap=pcap)
            out = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "tcp.srcport", "-e",
                                  "tcp.dstport", "-e", "tcp.flags", "-e", "tcp.seq_raw", "-e",
                                  "tcp.ack_raw", "-e", "tcp.len", "-e", "tcp.window_size_value"],
                                 capture_output=True, text=True, timeout=60)
            eq(out.returncode, 0, f"tshark: {out.stderr[-300:]}")
            rows = [ln.split("\t") for ln in out.stdout.splitlines() if ln.strip()]
            mine = [[str(x["src"]["port"]), str(x["dst"]["port"]), f"0x{x['flags_raw']:04x}",
                     str(x["seq_raw"]), str(x["ack_raw"]), str(x["len"]), str(x["win"])]
                    for x in ev if x["type"] == "segment"]
            check(len(mine) >= 7, f"{sc}: segments {len(mine)}")
            eq(rows, mine, f"{sc}: tshark's ports, flags, seq, ack, len, win == the segment events")
            fins = [r for r in rows if int(r[2], 16) & 1]
            eq(len(fins), 2 * max(1, s["connects_ok"] if sc[0] == "scenario=ports" else 1),
               f"{sc}: two FINs per connection")
            os.unlink(pcap)
    finally:
        shutil.rmtree(d)


@test
def bad_parameters_are_named_with_their_range():
    root()
    for p, want in (("ports=1", "parameter 'ports': must be an integer from 2 to 100"),
                    ("observe_ms=70000", "parameter 'observe_ms': must be an integer from 0 to 65000"),
                    ("tw_reuse=3", "parameter 'tw_reuse': must be an integer from 0 to 2"),
                    ("conns=65", "parameter 'conns': must be an integer from 2 to 64"),
                    ("scenario=port", "parameter 'scenario'"),
                    ("network=loopback", "parameter 'network': time-wait needs two-hosts")):
        r = subprocess.run([BIN, "run", "time-wait", "-p", p], capture_output=True, text=True, timeout=20)
        eq(r.returncode, 2, f"exit for {p}")
        check(want in r.stderr, f"{p}: {r.stderr}")


def killed(sig, scenario="who-closes"):
    """Kill a run once it holds something (TIME_WAIT listed; for ports, once a
    listener accepted) and check nothing of it is left."""
    root()
    p = subprocess.Popen([BIN, "run", "time-wait", "--json", "-p", "observe_ms=30000", "-p",
                          f"scenario={scenario}", "-p", "conns=64"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = json.loads(p.stdout.readline())
    lease = lease_of(first)
    while True:
        line = p.stdout.readline()
        check(line, "the run ended before it held anything")
        e = json.loads(line)
        if e["type"] == "tw_list" and e["count"] > 0:
            break
        if scenario == "ports" and e["type"] == "call" and e["call"] == "accept":
            break
    inodes = net_inodes(f"/proc/{p.pid}/task/*/ns/net") | net_inodes(f"/proc/{p.pid}/fd/*")
    check(len(inodes) >= 2, f"the run's namespaces {inodes}")
    p.send_signal(sig)
    p.communicate(timeout=30)
    wait_for(lambda: p.poll() is not None, 10, "the run's process to end")
    check(not ((net_inodes("/proc/[0-9]*/task/*/ns/net") | net_inodes("/proc/[0-9]*/fd/*")) & inodes),
          f"namespaces still held: {holders(inodes)}")
    check(lease not in lease_names(), "the lease is left")
    return p.returncode


@test
def sigterm_and_sigkill_leave_nothing():
    check(killed(signal.SIGTERM) != 0, "a cancelled run fails")
    eq(killed(signal.SIGKILL), -signal.SIGKILL, "killed")


@test
def ports_sigterm_and_sigkill_leave_nothing():
    check(killed(signal.SIGTERM, "ports") != 0, "a cancelled ports run fails")
    eq(killed(signal.SIGKILL, "ports"), -signal.SIGKILL, "killed")


if __name__ == "__main__":
    run(timeout=400)
