"""test_own.py: the own lab: a student's Python server and client run sandboxed, every socket call traced.

The programs are written here the way the course's exercises are (an upper-
casing echo server and client), plus programs that try to escape the sandbox.
Each escape must be refused and reported while the run itself ends cleanly.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import wait_for  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")
TMP = tempfile.mkdtemp(prefix="socklab-own-test-")

SERVER = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080))
s.listen(5)
print("listening")
while True:
    conn, addr = s.accept()
    while True:
        data = conn.recv(1024)
        if not data:
            break
        conn.sendall(data.upper())
    conn.close()
"""

CLIENT = """
import socket
c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
c.connect(("server", 8080))
for msg in [b"hello", b"sockets"]:
    c.sendall(msg)
    print(c.recv(1024).decode())
c.close()
"""


def need_tools():
    if os.geteuid() != 0:
        raise Skip("needs root (a network namespace per run)")
    for tool in ("/usr/bin/bwrap", "/usr/bin/python3"):
        if not os.access(tool, os.X_OK):
            raise Skip(f"{tool} is missing (server/tools/install-deps.sh installs it)")


def write(name, src):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(textwrap.dedent(src))
    return path


def own(server=None, client=None, *params, timeout=60, pcap=None, env=None):
    """Run the lab with --json; return (events, summary)."""
    need_tools()
    args = [BIN, "run", "own", "--json"] + (["--pcap", pcap] if pcap else [])
    if server:
        args += ["-p", f"server={write('server.py', server)}"]
    if client:
        args += ["-p", f"client={write('client.py', client)}"]
    for p in params:
        args += ["-p", p]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        check(bad not in r.stderr, f"sanitizer report: {r.stderr[-800:]}")
    eq(r.returncode, 0, f"exit: {r.stderr[-400:]}")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    eq([e["seq"] for e in events], list(range(len(events))), "gap-free seq")
    eq(events[-1]["type"], "run.end", "last event")
    eq(events[-1]["status"], "ok", "status")
    return events, events[-1]["summary"]


def calls(events, who, call=None):
    return [e for e in events if e["type"] == "syscall" and e["who"] == who
            and (call is None or e["call"] == call)]


def output(events, who, stream="stdout"):
    return [e["text"] for e in events if e["type"] == "output" and e["who"] == who
            and e["stream"] == stream]


def notes(events):
    return [e["key"] for e in events if e["type"] == "note"]


def note(events, key):
    found = [e["params"] for e in events if e["type"] == "note" and e["key"] == key]
    eq(len(found), 1, f"one {key} note in {notes(events)}")
    return found[0]


def transitions(events, program, fd):
    """The kernel's transitions (tracepoint) of one program's socket."""
    return [(e["from"], e["to"]) for e in events if e["type"] == "state"
            and e["program"] == program and e["fd"] == fd]


CONNECT = [("CLOSED", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED")]


def program_exit(events, who):
    ends = [e for e in events if e["type"] == "program.exit" and e["who"] == who]
    eq(len(ends), 1, f"{who} exit events")
    return ends[0]


def one_program(src, *params):
    """A client-only run of src; returns (events, the client's stdout lines)."""
    events, _ = own(None, src, *params)
    return events, output(events, "client")


@test
def echo_server_and_client_are_traced_call_by_call():
    events, s = own(SERVER, CLIENT)
    srv = [e["call"] for e in calls(events, "server")]
    eq(srv[:4], ["socket", "setsockopt", "bind", "listen"], "the server's set-up calls")
    eq([e["call"] for e in calls(events, "client")],
       ["socket", "connect", "send", "recv", "send", "recv", "close"], "the client's calls")
    bind = calls(events, "server", "bind")[0]
    eq((bind["args"]["addr"], bind["args"]["port"], bind["ret"]), ("0.0.0.0", 8080, 0), "bind")
    opt = calls(events, "server", "setsockopt")[0]["args"]
    eq((opt["level"], opt["name"], opt["value"]), ("SOL_SOCKET", "SO_REUSEADDR", 1), "option")
    conn = calls(events, "client", "connect")[0]
    # On loopback the name "server" is a 127.x.y.z of this run's own.
    check(s["server_host"].startswith("127.") and s["server_host"] != "127.0.0.1",
          f"server_host {s['server_host']}")
    eq((conn["args"]["addr"], conn["args"]["port"], conn["ret"]), (s["server_host"], 8080, 0),
       "connect to the name 'server'")
    acc = calls(events, "server", "accept")[0]
    check(acc["ret"] >= 0 and acc["peer"]["addr"] == "127.0.0.1", f"accept: {acc}")
    # listen() came before the client's connect(), by the call clock.
    check(calls(events, "server", "listen")[0]["t_call_us"] < conn["t_call_us"], "listen first")
    # Bytes: each side's sends are the other's receives, and the replies are
    # the upper-cased requests.
    sent = [e["data"] for e in calls(events, "client", "send")]
    got = [e["data"] for e in calls(events, "client", "recv")]
    eq(sent, ["hello", "sockets"], "the client's data")
    eq(got, ["HELLO", "SOCKETS"], "the replies")
    srv_in = sum(e["bytes"] for e in calls(events, "server", "recv"))
    srv_out = sum(e["bytes"] for e in calls(events, "server", "send"))
    eq((srv_in, srv_out), (12, 12), "server bytes in and out")
    eq(s["programs"]["client"]["bytes_sent"], 12, "summary: client bytes sent")
    eq(s["programs"]["client"]["bytes_received"], 12, "summary: client bytes received")
    eq(output(events, "client"), ["HELLO", "SOCKETS"], "the client's printed output")
    eq(output(events, "server"), ["listening"], "the server's printed output")
    # The server's last recv saw the client's close: 0 bytes, end of stream.
    eof = [e for e in calls(events, "server", "recv") if e["bytes"] == 0]
    check(len(eof) == 1 and eof[0].get("eof"), f"end of stream: {eof}")
    eq(program_exit(events, "client")["code"], 0, "client exit code")
    eq(program_exit(events, "server")["how"], "stopped", "the server is stopped by the lab")
    check("own.server_stopped" in notes(events), "says why the server was stopped")
    eq((s["programs"]["server"]["traced"], s["programs"]["client"]["traced"]), (True, True),
       "both traced")
    # The segments on the wire, merged with the calls: the handshake from the
    # client's own port, and exactly the bytes the calls moved.
    segs = [e for e in events if e["type"] == "segment"]
    port = conn["local"]["port"]
    syn = [g for g in segs if g["flags_short"] == "S" and g["src"]["port"] == port]
    eq(len(syn), 1, "one SYN from the client's port")
    eq(sum(g["len"] for g in segs if g["src"]["port"] == port), 12, "client bytes on the wire")
    eq(sum(g["len"] for g in segs if g["dst"]["port"] == port), 12, "server bytes on the wire")
    eq(s["capture"]["segments"], len(segs), "summary: segments")
    eq((s["capture"]["drops"], s["capture"]["complete"]), (0, True), "summary: nothing dropped")
    for who in ("server", "client"):
        eq(len(calls(events, who)), s["programs"][who]["calls"], f"{who}: every call shown")
    # In time order: the SYN left before connect() returned, and the first
    # data segment after the client's send() began.
    check(syn[0]["seq"] < conn["seq"], "the SYN is shown before connect() returns")
    # Every call carries when it was made and how long it blocked.
    for e in calls(events, "server") + calls(events, "client"):
        check(e["t_call_us"] >= 0 and e["blocked_us"] >= 0 and e["source"] == "shim",
              f"call clock: {e}")


@test
def a_burst_of_calls_is_recorded_whole_and_a_capture_that_misses_frames_says_so():
    """80,000 calls in about a second, more than the observer's queue holds
    (65,536 items, with the segments): the program waits for the lab rather
    than a call, its output or its exit being lost. The segments are another
    matter: frames the capture missed are counted and said, never silent."""
    n = 20000
    events, s = own(None, f"""
        import socket
        l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
        c = socket.create_connection(l.getsockname()); a, _ = l.accept()
        for s in (a, c):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range({n}):
            c.send(b"x"); a.recv(1); a.send(b"y"); c.recv(1)
        print("done", {n})
        """, "time_limit_ms=60000", "cpu_s=30", timeout=120)
    client = calls(events, "client")
    eq(sum(1 for e in client if e["call"] in ("send", "recv")), 4 * n,
       "every send() and recv() of the loop")
    eq(len(client), s["programs"]["client"]["calls"], "every call the shim counted")
    eq(output(events, "client"), ["done %d" % n], "the program's output")
    eq(program_exit(events, "client")["code"], 0, "its exit")
    check("own.records_lost" not in notes(events), f"no record lost: {notes(events)}")
    cap = s["capture"]
    if cap["complete"]:
        eq(cap["drops"], 0, "a complete capture dropped nothing")
    else:
        p = note(events, "capture.incomplete")
        eq((p["missed"], p["frames"]), (cap["drops"], cap["frames"]),
           "the missed frames are said, with the summary's counts")
        check(cap["drops"] > 0, f"an incomplete capture counts its drops: {cap}")


@test
def the_programs_sockets_show_the_kernels_states():
    # The echo client closes first: its socket goes through FIN_WAIT_1 and
    # FIN_WAIT_2 to TIME_WAIT, the server's through CLOSE_WAIT and LAST_ACK.
    events, s = own(SERVER, CLIENT)
    check("own.no_tracepoint" not in notes(events), f"the tracepoint runs: {notes(events)}")
    conn = calls(events, "client", "connect")[0]
    acc = calls(events, "server", "accept")[0]
    cport = conn["local"]["port"]
    eq(transitions(events, "client", conn["fd"]),
       CONNECT + [("ESTABLISHED", "FIN_WAIT_1"), ("FIN_WAIT_1", "FIN_WAIT_2"),
                  ("FIN_WAIT_2", "CLOSED")], "the client socket's transitions")
    eq(transitions(events, "server", acc["ret"]),
       [("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED"), ("ESTABLISHED", "CLOSE_WAIT"),
        ("CLOSE_WAIT", "LAST_ACK"), ("LAST_ACK", "CLOSED")], "the accepted socket's")
    states = [e for e in events if e["type"] == "state"]
    check(all(e["source"] == "tracepoint" and e["kind"] == "transition" for e in states),
          "transitions come from the tracepoint")
    eq({(e["who"], e["port"]) for e in states}, {("client", cport), ("server", 8080)},
       "each names its socket's role and local port")
    # In time order with the segments: SYN_SENT before the SYN left,
    # ESTABLISHED after the SYN-ACK came.
    segs = [e for e in events if e["type"] == "segment"]
    syn = [g for g in segs if g["flags_short"] == "S" and g["src"]["port"] == cport][0]
    synack = [g for g in segs if g["flags_short"] == "S." and g["dst"]["port"] == cport][0]
    cs = [e for e in states if e["program"] == "client"]
    check(cs[0]["seq"] < syn["seq"] < synack["seq"] < cs[1]["seq"],
          f"order: {cs[0]['seq']} < {syn['seq']} < {synack['seq']} < {cs[1]['seq']}")
    # The listener is bound to 0.0.0.0, which every run shares: sock_diag
    # only, as a sample, and said so.
    lst = [e for e in events if e.get("who") == "listener" and e["type"] == "observation"]
    eq((lst[0]["state"], lst[0]["source"], lst[0]["kind"], lst[0]["fd"]),
       ("LISTEN", "sock_diag", "sample", 3), "the listener seen listening")
    eq([e for e in states if e["who"] == "listener"], [], "no listener transitions")
    p = note(events, "own.states_sampled")
    eq((p["program"], p["socket"], p["port"]), ("server", "listener", 8080), "which socket")
    # TIME_WAIT: sock_diag lists the client's timewait socket with its timer,
    # and the run ends with it still waiting.
    tw = [e for e in events if e["type"] == "observation" and e.get("state") == "TIME_WAIT"]
    check(tw and tw[0]["program"] == "client" and tw[0]["fd"] == conn["fd"]
          and tw[0]["timer"] == "time_wait" and 0 < tw[0]["timer_ms"] <= 60000, f"{tw}")
    timers = [e for e in events if e["type"] == "timer" and e["program"] == "client"]
    check(timers and timers[0]["state"] == "TIME_WAIT", f"timer: {timers}")
    p = note(events, "own.time_wait_left")
    eq((p["program"], p["socket"], p["fd"], p["port"], p["source"]),
       ("client", "client", conn["fd"], cport, "sock_diag"), "TIME_WAIT left")
    check(0 < p["ms_left"] <= 60000, f"ms_left {p['ms_left']}")


@test
def a_connection_between_two_loopback_ends_is_sampled_only():
    # 127.0.0.1 at both ends: any run's connection could have these
    # addresses, so the tracepoint is not used, and the lab says so.
    client = CLIENT.replace('("server", 8080)', '("127.0.0.1", 8080)')
    events, _ = own(SERVER, client)
    eq(output(events, "client"), ["HELLO", "SOCKETS"], "the programs ran")
    eq([e for e in events if e["type"] == "state"], [], "no transitions")
    conn = calls(events, "client", "connect")[0]
    seen = [e["state"] for e in events if e["type"] == "observation"
            and e["program"] == "client" and e["fd"] == conn["fd"]]
    eq(seen[-1], "TIME_WAIT", f"the client socket's last sample: {seen}")
    check("own.states_sampled" in notes(events), "said")


@test
def tshark_reads_the_segments_the_lab_reported():
    """The notes-style echo pair's capture.pcap, read by tshark (an
    independent decoder): the same segments, in the same order, with the
    same ports, flags, seq, ack, length and window as the lab's segment
    events, and the bytes the programs' calls moved."""
    need_tools()
    if not shutil.which("tshark"):
        raise Skip("tshark is not installed (server/tools/install-deps.sh test installs it)")
    fields = ("tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
              "tcp.window_size_value")
    for net in ("loopback", "two-hosts"):
        pcap = os.path.join(TMP, f"echo-{net}.pcap")
        if os.path.exists(pcap):
            os.unlink(pcap)
        events, s = own(SERVER, CLIENT, f"network={net}", pcap=pcap)
        args = ["tshark", "-r", pcap, "-T", "fields"]
        for f in fields:
            args += ["-e", f]
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        eq(r.returncode, 0, f"tshark: {r.stderr[-300:]}")
        rows = [line.split("\t") for line in r.stdout.splitlines() if line.strip()]
        segs = [e for e in events if e["type"] == "segment"]
        mine = [[str(g["src"]["port"]), str(g["dst"]["port"]), f"0x{g['flags_raw']:04x}",
                 str(g["seq_raw"]), str(g["ack_raw"]), str(g["len"]), str(g["win"])]
                for g in segs]
        # A handshake, 2 requests and 2 replies with their ACKs, two FINs.
        check(len(mine) >= 10, f"{net}: {len(mine)} segments")
        eq(rows, mine, f"{net}: tshark's ports, flags, seq, ack, len, win == the lab's segments")
        eq(s["capture"]["segments"], len(rows), f"{net}: summary")
        conn = calls(events, "client", "connect")[0]
        cport = str(conn["local"]["port"])
        up = sum(int(row[5]) for row in rows if row[0] == cport)
        down = sum(int(row[5]) for row in rows if row[1] == cport)
        eq((up, down), (sum(e["bytes"] for e in calls(events, "client", "send")),
                        sum(e["bytes"] for e in calls(events, "server", "send"))),
           f"{net}: bytes on the wire == bytes the calls sent")
        eq((up, down), (12, 12), f"{net}: the echo's bytes")
        # Exactly one SYN, one SYN-ACK, and a FIN each way, as tshark reads them.
        flags = [int(row[2], 16) for row in rows]
        eq((sum(1 for f in flags if f & 0x12 == 0x02), sum(1 for f in flags if f & 0x12 == 0x12),
            sum(1 for f in flags if f & 0x01)), (1, 1, 2), f"{net}: SYN, SYN-ACK, FINs")


@test
def without_cap_net_raw_the_calls_are_traced_and_no_capture_is_said():
    need_tools()
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def drop():
        if libc.prctl(24, 13, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_NET_RAW
            os._exit(121)
    r = subprocess.run([BIN, "run", "own", "--json", "-p", f"server={write('server.py', SERVER)}",
                        "-p", f"client={write('client.py', CLIENT)}"], capture_output=True,
                       text=True, timeout=60, preexec_fn=drop)
    eq(r.returncode, 0, f"exit: {r.stderr[-300:]}")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    eq(events[-1]["status"], "ok", "status")
    check("own.no_capture" in notes(events), "says there is no capture")
    eq([e for e in events if e["type"] == "segment"], [], "no segments")
    eq(output(events, "client"), ["HELLO", "SOCKETS"], "the programs still ran, traced")


@test
def the_cli_says_kernel_states_in_the_words_of_every_lab():
    need_tools()
    r = subprocess.run([BIN, "run", "own", "-p", f"server={write('server.py', SERVER)}",
                        "-p", f"client={write('client.py', CLIENT)}"], capture_output=True,
                       text=True, timeout=60)
    eq(r.returncode, 0, f"exit: {r.stderr[-300:]}")
    lines = r.stdout.splitlines()
    # The same text as the handshake's lines (obs_state_text), after the
    # program and its descriptor.
    for want in (r"client +client socket fd \d+: state CLOSED -> SYN_SENT  \(kernel: tracepoint\)$",
                 r"server +server socket fd \d+: state LISTEN -> SYN_RECV  \(kernel: tracepoint\)$",
                 r"server +listener socket fd \d+: seen in LISTEN  \(sock_diag sample\)$"):
        check(any(re.search(want, x) for x in lines), f"a line like {want!r}: {lines}")


@test
def two_hosts_put_the_programs_on_different_hosts():
    events, s = own(SERVER, CLIENT, "network=two-hosts", "c2s_delay_ms=5")
    net = events[0]["network"]
    srv_ip, cli_ip = net["server"]["addr"], net["client"]["addr"]
    eq(s["server_host"], srv_ip, "the name 'server'")
    conn = calls(events, "client", "connect")[0]
    eq((conn["args"]["addr"], conn["ret"]), (srv_ip, 0), "the client connects across the wire")
    eq(calls(events, "server", "accept")[0]["peer"]["addr"], cli_ip, "the server sees the client")
    # One way is 5 ms, so the connect took at least one crossing each way.
    check(conn["blocked_us"] >= 5000, f"connect blocked {conn['blocked_us']} us")
    eq(output(events, "client"), ["HELLO", "SOCKETS"], "replies across two hosts")
    # Each segment once, from the host it left.
    segs = [e for e in events if e["type"] == "segment"]
    check(segs and all(g["host"] == ("client" if g["src"]["addr"] == cli_ip else "server")
                       for g in segs), f"segments by their sending host: {segs[:2]}")


def reports_before(events, program, fd, t_us):
    """The kernel's reports on a program's socket up to time t_us."""
    return [e for e in events if e["type"] in ("state", "observation")
            and e.get("program") == program and e.get("fd") == fd
            and e["t_kernel_us"] <= t_us]


def check_timewait_entry(events, p, bind_us):
    """own.eaddrinuse_held_tw: CLOSED by the tracepoint before the bind(),
    listed by sock_diag after it."""
    eq((p["from"], p["state"]), ("FIN_WAIT_2", "CLOSED"), f"the swap: {p}")
    check(p["listed_state"] in ("FIN_WAIT_2", "TIME_WAIT") and p["listed_source"] == "sock_diag"
          and p["listed_from_us"] > bind_us, f"listed after the bind: {p}")
    seen = [e for e in events if e["type"] == "observation" and e.get("program") == p["program"]
            and e.get("fd") == p["fd"] and e["state"] == p["listed_state"]
            and e["t_from_us"] == p["listed_from_us"]]
    check(seen, f"the sample the note cites is an event: {p}")


@test
def a_restarted_server_without_reuseaddr_gets_eaddrinuse():
    # The server closes first, so its side of the connection waits in
    # TIME_WAIT; binding the port again without SO_REUSEADDR then fails.
    server = """
    import socket
    s = socket.socket()
    s.bind(("0.0.0.0", 8080))
    s.listen(1)
    c, _ = s.accept()
    c.recv(100)
    c.close()
    s.close()
    t = socket.socket()
    try:
        t.bind(("0.0.0.0", 8080))
        print("bound")
    except OSError as e:
        print("bind failed", e.errno)
    """
    client = """
    import socket, time
    c = socket.create_connection(("server", 8080))
    c.sendall(b"bye")
    time.sleep(0.3)
    """
    events, s = own(server, client)
    binds = calls(events, "server", "bind")
    eq([b["ret"] for b in binds], [0, -98], "the second bind fails")
    eq(binds[1]["errno_name"], "EADDRINUSE", "errno")
    eq(output(events, "server"), ["bind failed 98"], "what the program saw")
    check("own.eaddrinuse" in notes(events), f"explained: {notes(events)}")
    # The evidence: the accepted connection's socket, closed by the program
    # but still closing in the kernel when bind() ran (the client had not
    # closed yet, so it cannot be in TIME_WAIT then).
    acc = calls(events, "server", "accept")[0]
    held = [e["key"] for e in events if e["type"] == "note"
            and e["key"].startswith("own.eaddrinuse_held")]
    eq(len(held), 1, f"one note names what held the port: {held}")
    p = note(events, held[0])
    eq((p["who"], p["port"], p["bind_seq"], p["program"], p["socket"], p["fd"]),
       ("server", 8080, binds[1]["seq"], "server", "server", acc["ret"]),
       "which socket held the port")
    eq(transitions(events, "server", acc["ret"])[:3],
       [("LISTEN", "SYN_RECV"), ("SYN_RECV", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT_1")],
       "the accepted socket's transitions")
    # The note cites the last report before the bind() by the bind's own
    # time (a sample only speaks when it differs from what the tracepoint
    # said). Which one that is depends on whether the client's ACK of the
    # FIN beat the bind(): both ways are checked against the events.
    before = reports_before(events, "server", acc["ret"], binds[1]["t_call_us"])
    check(before and before[-1]["t_kernel_us"] == p["t_us"]
          and (before[-1].get("to") or before[-1].get("state")) == p["state"]
          and p["source"] == before[-1]["source"],
          f"the note's state is the last report before the bind: {before[-1:]} {p}")
    if held[0] == "own.eaddrinuse_held":
        check(p["state"] in ("FIN_WAIT_1", "FIN_WAIT_2"), f"its state then: {p}")
    else:
        check_timewait_entry(events, p, binds[1]["t_call_us"])
    # It closed first, so it is the one left in TIME_WAIT.
    p = note(events, "own.time_wait_left")
    eq((p["program"], p["socket"], p["port"]), ("server", "server", 8080), "TIME_WAIT left")
    tp = s["tracepoint"]
    eq((tp["lost"], tp["complete"]), (0, True), f"the tracepoint lost nothing: {tp}")

    # The same run with the slot's ring overwritten before anything was
    # read (the test knob, see test_handshake): the loss is counted and
    # said, and what held the port is not concluded from the transitions.
    events, s = own(server, client, env=dict(os.environ, SOCKLAB_TRACE_TEST_FLOOD_KB="1024"))
    binds = calls(events, "server", "bind")
    eq([b["ret"] for b in binds], [0, -98], "the second bind fails again")
    check("own.eaddrinuse" in notes(events), f"the call's result is still explained: {notes(events)}")
    tp = s["tracepoint"]
    eq(tp["complete"], False, f"tracepoint {tp}")
    check(tp["overrun"] > 1000, f"the kernel counted the overrun: {tp}")
    p = note(events, "tracepoint.incomplete")
    eq(p["lost"], tp["lost"], "the note's count is the summary's")
    eq([k for k in notes(events) if k.startswith("own.eaddrinuse_held")], [],
       "no note names what held the port from a lane with gaps")


@test
def a_port_held_by_the_kernels_timewait_entry_is_named():
    # The server half-closes, waits for the client's answer (which carries
    # the ACK of its FIN: FIN_WAIT_2 for certain), then closes: the kernel
    # swaps the socket for a timewait entry at once (the tracepoint says
    # FIN_WAIT_2 -> CLOSED) and that entry still holds the port at bind().
    server = """
    import socket
    s = socket.socket()
    s.bind(("0.0.0.0", 8080))
    s.listen(1)
    c, _ = s.accept()
    c.shutdown(socket.SHUT_WR)
    c.recv(100)
    c.close()
    s.close()
    t = socket.socket()
    try:
        t.bind(("0.0.0.0", 8080))
        print("bound")
    except OSError as e:
        print("bind failed", e.errno)
    """
    client = """
    import socket, time
    c = socket.create_connection(("server", 8080))
    c.recv(100)
    c.sendall(b"ok")
    time.sleep(0.3)
    """
    events, _ = own(server, client)
    binds = calls(events, "server", "bind")
    eq([b["ret"] for b in binds], [0, -98], "the second bind fails")
    eq(output(events, "server"), ["bind failed 98"], "what the program saw")
    acc = calls(events, "server", "accept")[0]
    tr = transitions(events, "server", acc["ret"])
    # (close() of a FIN_WAIT_2 socket sets FIN_WAIT_2 again before the swap:
    # the tracepoint reports that too.)
    eq((tr[2:4], tr[-1]), ([("ESTABLISHED", "FIN_WAIT_1"), ("FIN_WAIT_1", "FIN_WAIT_2")],
                           ("FIN_WAIT_2", "CLOSED")), f"the accepted socket's transitions: {tr}")
    closed = [e for e in events if e["type"] == "state" and e["program"] == "server"
              and e["fd"] == acc["ret"] and e["to"] == "CLOSED"][0]
    check(closed["t_kernel_us"] <= binds[1]["t_call_us"], f"CLOSED before the bind: {closed}")
    held = [e["key"] for e in events if e["type"] == "note"
            and e["key"].startswith("own.eaddrinuse_held")]
    eq(len(held), 1, f"one note names what held the port: {held}")
    p = note(events, held[0])
    eq((p["who"], p["port"], p["bind_seq"], p["program"], p["socket"], p["fd"]),
       ("server", 8080, binds[1]["seq"], "server", "server", acc["ret"]),
       "which socket held the port, though the tracepoint had said CLOSED")
    before = reports_before(events, "server", acc["ret"], binds[1]["t_call_us"])
    check(before and before[-1]["t_kernel_us"] == p["t_us"],
          f"the note cites the last report before the bind: {before[-1:]} {p}")
    if held[0] == "own.eaddrinuse_held_tw":
        eq(before[-1]["seq"], closed["seq"], "that report is the CLOSED")
        check_timewait_entry(events, p, binds[1]["t_call_us"])
    else:
        # A sock_diag sample that returned between the CLOSED and the bind()
        # listed the connection: that sample is the evidence then.
        eq((before[-1]["type"], before[-1]["source"], p["state"]),
           ("observation", "sock_diag", "FIN_WAIT_2"), f"a sample after the CLOSED: {p}")


@test
def a_refused_connect_is_traced_and_explained():
    events, out = one_program("""
    import socket
    try:
        socket.create_connection(("127.0.0.1", 9))
    except ConnectionRefusedError:
        print("refused")
    """)
    c = calls(events, "client", "connect")
    eq((c[0]["ret"], c[0]["errno_name"]), (-111, "ECONNREFUSED"), "connect")
    eq(out, ["refused"], "output")
    check("own.refused" in notes(events), "explained")
    # To the run's own server address: its socket's SYN_SENT and its end,
    # and the RST on the wire.
    events, out = one_program("""
    import socket
    try:
        socket.create_connection(("server", 9))
    except ConnectionRefusedError:
        print("refused")
    """)
    eq(out, ["refused"], "output")
    c = calls(events, "client", "connect")[0]
    eq(transitions(events, "client", c["fd"]), [("CLOSED", "SYN_SENT"), ("SYN_SENT", "CLOSED")],
       "the refused socket's transitions")
    rst = [g for g in events if g["type"] == "segment" and g["src"]["port"] == 9]
    check(len(rst) == 1 and "RST" in rst[0]["flags"], f"the reset: {rst}")


@test
def a_python_error_shows_its_traceback_with_line_numbers():
    events, _ = one_program("x = 1\nprint(x)\ndef broken(:\n    pass\n")
    err = output(events, "client", "stderr")
    check(any('line 3' in line for line in err), f"line number in {err}")
    check(any("SyntaxError" in line for line in err), f"SyntaxError in {err}")
    check(any(e.get("traceback") for e in events if e["type"] == "output"), "marked")
    eq(program_exit(events, "client")["code"], 1, "exit code")


@test
def a_recv_that_returns_several_sends_is_explained_with_its_evidence():
    # MSG_WAITALL makes the server's first recv() wait for all 16 bytes, so it
    # returns the client's three sends at once whatever the timing.
    server = """
    import socket
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080))
    s.listen(1)
    c, _ = s.accept()
    print(c.recv(16, socket.MSG_WAITALL))
    while c.recv(100):
        pass
    """
    client = """
    import socket
    c = socket.create_connection(("server", 8080))
    for m in [b"first", b"second", b"third"]:
        c.send(m)
    c.close()
    """
    events, s = own(server, client)
    eq(output(events, "server"), ["b'firstsecondthird'"], "what the server read")
    sends = calls(events, "client", "send")
    eq([e["bytes"] for e in sends], [5, 6, 5], "the client's sends")
    recv = calls(events, "server", "recv")[0]
    eq(recv["bytes"], 16, "one recv() got them all")
    conn = calls(events, "client", "connect")[0]
    eq(calls(events, "server", "accept")[0]["peer"], conn["local"], "the two ends paired")
    glued = [e for e in events if e["type"] == "note" and e["key"] == "own.glued"]
    eq(len(glued), 1, "one explanation")
    p = glued[0]["params"]
    eq((p["receiver"], p["sender"], p["bytes"], p["sends"]), ("server", "client", 16, 3), "what")
    eq((p["recv_seq"], p["first_seq"], p["last_seq"]), (recv["seq"], sends[0]["seq"],
                                                        sends[2]["seq"]), "the evidence")
    eq((s["connections_paired"], s["glued_recvs"]), (1, 1), "summary")
    # The echo run keeps its boundaries (one recv per send): nothing to say.
    events, s = own(SERVER, CLIENT)
    check("own.glued" not in notes(events), "no gluing in a lock-step echo")
    eq(s["glued_recvs"], 0, "summary")


# ---- escapes: each refused, reported, and the run still ends cleanly ----

ESCAPES = """
import os, socket, sys
def attempt(name, f):
    try:
        f()
        print(name, "ALLOWED")
    except BaseException as e:
        print(name, "refused", type(e).__name__)
attempt("passwd", lambda: open("/etc/passwd").read())
attempt("root", lambda: os.listdir("/root"))
attempt("proc", lambda: open("/proc/1/environ").read())
attempt("write_usr", lambda: open("/usr/x", "w"))
attempt("write_tmp", lambda: open("/tmp/x", "w"))
attempt("write_work", lambda: open("/work/x", "w").write("ok"))
attempt("fork", lambda: os.fork())
attempt("exec", lambda: os.execv("/usr/bin/python3", ["python3", "-c", "print(1)"]))
def unpreload():
    os.environ.pop("LD_PRELOAD", None)
    os.execve("/usr/bin/python3", ["python3", "-c", "print(1)"], {})
attempt("unpreload_exec", unpreload)
attempt("system", lambda: (_ for _ in ()).throw(OSError()) if os.system("true") != 0 else None)
import subprocess
attempt("subprocess", lambda: subprocess.run(["true"]))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("packet", lambda: socket.socket(17, socket.SOCK_RAW, 0))
attempt("ctypes", lambda: __import__("ctypes"))
def c_extension():
    import glob, shutil
    src = glob.glob("/usr/lib/python3*/lib-dynload/_json.*.so")[0]
    shutil.copy(src, "/work/" + os.path.basename(src).replace("_json", "evil"))
    sys.path.insert(0, "/work")
    __import__("evil")
attempt("c_extension", c_extension)
attempt("outside", lambda: socket.create_connection(("198.51.100.1", 80), timeout=1))
attempt("big_file", lambda: open("/work/big", "wb").write(b"x" * (8 << 20)))
"""


@test
def escape_attempts_are_refused():
    events, out = one_program(ESCAPES)
    got = dict(line.split(" ", 1) for line in out)
    allowed = {k for k, v in got.items() if v.startswith("ALLOWED")}
    eq(allowed, {"write_work"}, f"only writing the working directory works: {got}")
    for k in ("passwd", "root", "proc", "write_usr", "write_tmp", "fork", "exec",
              "unpreload_exec", "system", "subprocess", "raw", "packet", "ctypes",
              "c_extension", "outside", "big_file"):
        check(k in got, f"{k} was not attempted: {got}")
    # The refused socket calls are in the trace like any other.
    raw = [e for e in calls(events, "client", "socket") if e["args"]["type"] == "SOCK_RAW"]
    eq(len(raw), 2, "the raw and packet socket attempts are traced")
    check(all(e["ret"] < 0 for e in raw), f"refused: {raw}")
    eq(program_exit(events, "client")["code"], 0, "the program itself ran to its end")


@test
def memory_and_cpu_bombs_are_stopped_by_limits():
    events, out = one_program("""
    try:
        x = bytearray(2 << 30)
        print("ALLOWED")
    except MemoryError:
        print("memory refused")
    """)
    eq(out, ["memory refused"], "a 2 GiB allocation")
    events, _ = one_program("while True:\n    pass\n", "cpu_s=1", "time_limit_ms=20000")
    end = program_exit(events, "client")
    eq((end["how"], end["signal"]), ("killed", "XCPU"), "the CPU limit ends a busy loop")


@test
def a_program_that_never_ends_is_stopped_at_the_time_limit():
    t0 = time.monotonic()
    events, _ = one_program("import time\ntime.sleep(60)\n", "time_limit_ms=1000")
    check(time.monotonic() - t0 < 30, "the run ended")
    check("own.time_limit" in notes(events), "the time limit is named")
    eq(program_exit(events, "client")["how"], "stopped", "stopped by the lab")


@test
def writing_to_the_record_socket_is_detected():
    # The program hunts for the record socket and writes junk to every
    # descriptor it finds: the tracer's records are then out of sequence.
    events, s = own(None, """
    import os, socket
    c = socket.socket()
    for fd in range(3, 64):
        try:
            os.write(fd, b"x" * 168)
        except OSError:
            pass
    print("done")
    """)
    check(s["programs"]["client"]["bad_records"] >= 1, f"summary: {s['programs']['client']}")
    check("own.tampered" in notes(events), "reported")
    eq(calls(events, "client", "socket")[0]["ret"] >= 0, True, "genuine records still shown")


@test
def host_services_are_out_of_reach():
    need_tools()
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(1)
    port = lst.getsockname()[1]
    try:
        events, out = one_program(f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("reached the host")
        except OSError as e:
            print("refused", e.errno)
        """)
        eq(out, ["refused 111"], "the host's 127.0.0.1 is not the sandbox's")
    finally:
        lst.close()


def sandbox_pids():
    r = subprocess.run(["pgrep", "-u", "65534", "-f", "server.py|client.py|bwrap"],
                       capture_output=True, text=True)
    return set(r.stdout.split())


@test
def nothing_is_left_after_cancel_and_sigkill():
    need_tools()
    before = sandbox_pids()
    srv = write("server.py", SERVER)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        p = subprocess.Popen([BIN, "run", "own", "--json", "-p", f"server={srv}",
                              "-p", "time_limit_ms=30000"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, bufsize=0)
        # Wait until the server program is listening (its listen() record).
        buf = b""
        deadline = time.monotonic() + 20
        while b'"call":"listen"' not in buf and time.monotonic() < deadline:
            chunk = p.stdout.read1(4096) if hasattr(p.stdout, "read1") else p.stdout.read(4096)
            if not chunk:
                break
            buf += chunk
        check(b'"call":"listen"' in buf, "the server started")
        check(sandbox_pids() - before, "the sandbox's processes exist while it runs")
        p.send_signal(sig)
        p.wait(timeout=20)
        wait_for(lambda: not (sandbox_pids() - before), 10,
                 f"the sandbox's processes to go after {sig.name}")


@test
def two_runs_at_once_never_see_each_other():
    need_tools()
    srv = write("server.py", SERVER)
    cli = write("client.py", CLIENT)
    ps = [subprocess.Popen([BIN, "run", "own", "--json", "-p", f"server={srv}",
                            "-p", f"client={cli}"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in ps:
        out, err = p.communicate(timeout=60)
        eq(p.returncode, 0, f"exit: {err[-300:]}")
        events = [json.loads(line) for line in out.splitlines()]
        eq(events[-1]["status"], "ok", "status")
        # Both bound port 8080: each in its own network namespace.
        eq(calls(events, "server", "bind")[0]["ret"], 0, "bind in each run")
        eq(output(events, "client"), ["HELLO", "SOCKETS"], "each run's own replies")
        # The tracepoint sees both runs: each shows exactly its own sockets'
        # transitions (its server address is its own).
        conn = calls(events, "client", "connect")[0]
        eq(transitions(events, "client", conn["fd"])[:2], CONNECT, "this run's connect")
        eq(len([e for e in events if e["type"] == "state"]), 10, "five transitions per end")


# Run argv[1:] as root in a user namespace of its own (ids mapped 1:1, so
# nothing else changes) that may create no nested user namespace: the child
# unshares, the parent (root in the host's namespace) writes its maps.
NO_USERNS = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    if libc.unshare(0x10000000) != 0:
        os._exit(121)
    os.write(w2, b"u")
    os.read(r, 1)
    with open("/proc/sys/user/max_user_namespaces", "w") as f:
        f.write("0")
    os.execv(sys.argv[1], sys.argv[1:])
os.read(r2, 1)
for m in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{m}", "w") as f:
        f.write("0 0 65536")
os.write(w, b"g")
_, st = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(st))
"""


@test
def without_user_namespaces_the_lab_fails_naming_what_is_missing():
    # bubblewrap needs a user namespace; here socklab runs in one of its own
    # whose limit on nested user namespaces is 0 (as a container whose
    # seccomp profile refuses them would), everything else as usual.
    need_tools()
    r = subprocess.run([sys.executable, "-c", NO_USERNS, BIN, "run", "own", "--json", "-p",
                        f"client={write('client.py', CLIENT)}"],
                       capture_output=True, text=True, timeout=60)
    eq(r.returncode, 1, f"the lab failed: {r.stderr[-300:]}")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    errs = [e for e in events if e["type"] == "error"]
    eq([e["code"] for e in errs], ["sandbox_unavailable"], "the error")
    msg = errs[0]["message"]
    check("bubblewrap" in msg and "user namespaces" in msg and "CLONE_NEWUSER" in msg
          and "seccomp" in msg, f"names what is missing: {msg}")
    eq(events[-1]["status"], "error", "status")
    eq([e for e in events if e["type"] == "program.start"], [], "no program started")


@test
def bad_parameters_name_the_field():
    need_tools()
    r = subprocess.run([BIN, "run", "own"], capture_output=True, text=True, timeout=20)
    eq(r.returncode, 2, "no program")
    check("'server'" in r.stderr, f"names the field: {r.stderr}")
    r = subprocess.run([BIN, "run", "own", "-p", "client=/nonexistent/x.py"],
                       capture_output=True, text=True, timeout=20)
    check("'client'" in r.stdout + r.stderr and "cannot open" in r.stdout + r.stderr,
          f"names the field: {r.stdout[-300:]} {r.stderr[-300:]}")
    big = write("big.py", "#" * (70 * 1024))
    r = subprocess.run([BIN, "run", "own", "-p", f"client={big}"], capture_output=True,
                       text=True, timeout=20)
    check("at most 65536 bytes" in r.stdout + r.stderr, f"size limit: {r.stdout[-300:]}")
    r = subprocess.run([BIN, "run", "own", "-p", "client=/tmp/x.py", "-p", "cpu_s=99"],
                       capture_output=True, text=True, timeout=20)
    eq(r.returncode, 2, "cpu_s out of range")
    check("cpu_s" in r.stderr and "30" in r.stderr, f"range named: {r.stderr}")


@test
def a_browser_uploads_its_programs_and_gets_the_same_trace():
    """Over the WebSocket the programs travel as text ("files"); the server
    saves them in the run's bundle (0600) and the run is traced as on the CLI.
    A browser can never name a file on the server, and bad uploads name the
    parameter."""
    need_tools()
    import asyncio
    import websockets  # noqa: F401
    from harness import Server, events_until_end, request, start_run  # noqa: F401
    srv = Server()
    try:
        async def go():
            async with srv.connect() as ws:
                reply = await request(ws, {"op": "run", "lab": "own", "tag": "a",
                                           "files": {"server": textwrap.dedent(SERVER),
                                                     "client": textwrap.dedent(CLIENT)}})
                eq(reply.get("type"), "run.accepted", f"reply: {reply}")
                events = await events_until_end(ws, reply["run"], timeout=60)
                bad = []
                for files, param, text in (
                        ({"pcap": "x"}, "files", "takes no file 'pcap'"),
                        ({"time_limit_ms": "x"}, "files", "takes no file 'time_limit_ms'"),
                        ({"server": 5}, "server", "must be text"),
                        ({"server": "x" * (24 * 1024 + 1)}, "server", "at most 24576"),
                        ({"server": "a\u0000b"}, None, ""),  # jansson refuses NUL in a string
                        ({"server": "", "client": ""}, "server", "give a server or a client"),
                        ("nope", "files", "must be an object")):
                    r = await request(ws, {"op": "run", "lab": "own", "files": files})
                    bad.append((files if isinstance(files, str) else sorted(files), r))
                    eq((r.get("type"), r.get("param")), ("error", param), f"refusal of {files}")
                    check(text in r.get("message", ""), f"{files}: {r}")
                return reply["run"], events
        run_id, events = asyncio.run(go())
        eq(events[-1]["status"], "ok", "status")
        eq(output(events, "client"), ["HELLO", "SOCKETS"], "the uploaded client's output")
        eq([e["call"] for e in calls(events, "client")],
           ["socket", "connect", "send", "recv", "send", "recv", "close"], "traced calls")
        bundle = os.path.join(srv.data, "runs", run_id)
        for name in ("upload-server", "upload-client"):
            st = os.stat(os.path.join(bundle, name))
            eq(oct(st.st_mode & 0o777), "0o600", f"{name} mode")
        with open(os.path.join(bundle, "upload-client")) as f:
            eq(f.read(), textwrap.dedent(CLIENT), "the saved client")
        # The applied parameters name the server's own copies, nothing else.
        applied = events[0]["params"]
        check(applied["server"].endswith("/upload-server"), f"params: {applied}")
    finally:
        srv.stop()


@test
def an_instructor_runs_a_students_program_for_the_class():
    """class.run with "files": the run is traced for everyone, and every
    student (also one who joins later) gets the programs to try."""
    need_tools()
    import asyncio
    from harness import Server
    srv = Server("--instructor-secret", "own-lab-secret")
    files = {"server": textwrap.dedent(SERVER), "client": textwrap.dedent(CLIENT)}
    try:
        held = {}

        async def request(ws, obj):
            """Send obj with a tag; its reply (others are kept for later)."""
            tag = f"t{len(held) + 1}"
            held[tag] = True
            await ws.send(json.dumps({**obj, "tag": tag}))
            while True:
                m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                for item in (m if isinstance(m, list) else [m]):
                    if item.get("tag") == tag and "seq" not in item:
                        return item

        async def go():
            async with srv.connect() as teacher, srv.connect() as student:
                r = await request(teacher, {"op": "signin", "secret": "own-lab-secret"})
                check(r.get("type") != "error", f"signin: {r}")
                opened = await request(teacher, {"op": "class.open"})
                eq(opened.get("type"), "class.opened", f"open: {opened}")
                joined = await request(student, {"op": "class.join", "class": opened["class"],
                                                 "name": "Ada"})
                eq(joined.get("type"), "class.joined", f"join: {joined}")
                r = await request(teacher, {"op": "class.run", "lab": "own", "files": files,
                                            "tag": "c"})
                eq(r.get("type"), "run.accepted", f"class.run: {r}")
                run_id = r["run"]
                # The student is told of the run, with the programs.
                notice = None
                for _ in range(50):
                    m = json.loads(await asyncio.wait_for(student.recv(), 30))
                    for item in (m if isinstance(m, list) else [m]):
                        if item.get("type") == "class.run":
                            notice = item
                    if notice:
                        break
                check(notice is not None, "the student got class.run")
                eq(notice["files"], files, "the programs travel with the class run")
                events = []
                while not events or events[-1]["type"] != "run.end":
                    m = json.loads(await asyncio.wait_for(teacher.recv(), 60))
                    for item in (m if isinstance(m, list) else [m]):
                        if item.get("run") == run_id and "seq" in item:
                            events.append(item)
                async with srv.connect() as late:
                    j = await request(late, {"op": "class.join", "class": opened["class"],
                                             "name": "Late"})
                    eq(j["run_info"]["files"], files, "a late joiner gets them too")
                return events
        events = asyncio.run(go())
        eq(events[-1]["status"], "ok", "status")
        eq(output(events, "client"), ["HELLO", "SOCKETS"], "the class run's output")
    finally:
        srv.stop()


if __name__ == "__main__":
    try:
        run(90)
    finally:
        subprocess.run(["rm", "-rf", TMP])
