"""test_syn_flood.py: the syn-flood lab end to end: a raw-socket flood against a listener in
the run's namespaces, the queues from sock_diag, the TcpExt counters, the client's connects,
SYN cookies, and nothing left behind on any exit path.

Outcomes are decided by the parameters, not by timing: the legitimate client starts once the
kernel shows the half-open queue full, and a request socket cannot leave that queue before its
first SYN-ACK retransmission (1 s), so its first connect (timeout 500 ms) meets a full queue."""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import wait_for  # noqa: E402
from netlib import holders, host_links, lease_names, lease_of, net_inodes, root  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")
FAST = ["connect_timeout_ms=500", "connect_every_ms=300"]


def flood(*params, pcap=None):
    root()
    args = [BIN, "run", "syn-flood", "--json"]
    if pcap:
        args += ["--pcap", pcap]
    for p in list(params) + FAST:
        args += ["-p", p]
    r = subprocess.run(args, capture_output=True, text=True, timeout=90)
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        check(bad not in r.stderr, f"sanitizer report: {r.stderr[-800:]}")
    eq(r.returncode, 0, f"exit of {params}: {r.stderr[-400:]}")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    eq([e["seq"] for e in events], list(range(len(events))), "gap-free seq")
    eq(events[-1]["type"], "run.end", "last event")
    return events, events[-1]["summary"]


def of(events, t):
    return [e for e in events if e["type"] == t]


@test
def backlog_n_without_accept_holds_n_plus_one():
    ev, s = flood("attack=none", "accept=false", "backlog=1", "duration_ms=1500")
    conns = of(ev, "connect")
    eq([c["ok"] for c in conns[:2]], [True, True], "the first two connects complete")
    check(len(conns) >= 4, f"{len(conns)} connects")
    eq({c["errno"] for c in conns[2:]}, {"ETIMEDOUT"}, "every later connect times out")
    eq(s["queues"]["accept_limit"], 1, "the listener's limit (sock_diag)")
    eq(s["queues"]["accept_queue_peak"], 2, "backlog + 1 queued (sock_diag)")
    check(s["counters"]["ListenOverflows"] >= len(conns) - 2,
          f"ListenOverflows {s['counters']['ListenOverflows']} for {len(conns) - 2} refused")
    eq(s["counters"]["TCPReqQFullDrop"], 0, "no half-open drops without an attack")
    eq(s["wire"]["synack_out"], 2, "SYN-ACKs only to the two admitted connections (capture)")
    keys = [n["key"] for n in of(ev, "note")]
    check("synflood.accept_queue_full" in keys, f"the accept queue note: {keys}")


@test
def spoofed_flood_without_cookies_fills_the_half_open_queue_and_the_client_fails():
    ev, s = flood("attack=spoofed", "syncookies=0", "backlog=8", "rate=500", "duration_ms=1500")
    eq(s["client"]["started_after"], "kernel", "the client started on the kernel's evidence")
    conns = of(ev, "connect")
    eq(conns[0]["errno"], "ETIMEDOUT", "the first connect, against a full queue")
    eq(s["queues"]["half_open_peak"], 9, "SYN_RECV request sockets: backlog + 1 (sock_diag)")
    c = s["counters"]
    check(c["TCPReqQFullDrop"] > 0, f"TCPReqQFullDrop {c['TCPReqQFullDrop']}")
    eq(c["ListenDrops"], c["TCPReqQFullDrop"], "every ListenDrop is a full-queue drop (no ICMP from the client host)")
    eq(c["SyncookiesSent"], 0, "no cookies with tcp_syncookies=0")
    eq(s["attack"]["send_errors"], 0, "every SYN left")
    check(s["wire"]["synack_retrans"] > 0, "unanswered SYN-ACKs are retransmitted on the wire")
    eq(s["wire"]["rst_in"], 0, "spoofed sources never answer")
    sys_ = {e["name"]: e["value"] for e in of(ev, "sysctl")}
    eq(sys_["net.ipv4.ip_forward"], 0, "the client host does not forward (so it sends no ICMP)")
    eq(sys_["net.ipv4.tcp_syncookies"], 0, "set in the server namespace")
    check("synflood.half_open" in [n["key"] for n in of(ev, "note")], "the half-open note")


@test
def cookies_let_the_client_through_without_a_queue_entry():
    d = tempfile.mkdtemp()
    try:
        pcap = os.path.join(d, "f.pcap")
        ev, s = flood("attack=spoofed", "syncookies=1", "backlog=8", "rate=500",
                      "duration_ms=1500", pcap=pcap)
        conns = of(ev, "connect")
        check(conns and all(c["ok"] for c in conns), f"every connect succeeds: {conns[:3]}")
        c = s["counters"]
        check(c["SyncookiesSent"] > 0, f"SyncookiesSent {c['SyncookiesSent']}")
        check(c["TCPReqQFullDoCookies"] > 0, "cookies because the queue was full")
        check(c["SyncookiesRecv"] >= 1, f"the client's ACK carried a cookie back: {c}")
        eq(c["TCPReqQFullDrop"], 0, "no SYN dropped")
        eq(c["ListenDrops"], 0, "no request dropped")
        eq(s["queues"]["half_open_peak"], 9, "the queue still holds backlog + 1 (sock_diag)")
        check(s["wire"]["peers_answered_once"] > 0, "cookie SYN-ACKs are sent once")
        keys = [n["key"] for n in of(ev, "note")]
        check("synflood.cookies" in keys, f"the cookie note: {keys}")
        if shutil.which("tshark") and s["wire"]["capture_drops"] == 0:
            out = subprocess.run(["tshark", "-r", pcap, "-Y",
                                  "tcp.flags.syn==1 && tcp.flags.ack==1", "-T", "fields",
                                  "-e", "frame.number"], capture_output=True, text=True,
                                 timeout=60).stdout.split()
            eq(len(out), s["wire"]["synack_out"], "tshark counts the same SYN-ACKs")
    finally:
        shutil.rmtree(d)


@test
def cookies_always_keep_no_half_open_entry():
    ev, s = flood("attack=spoofed", "syncookies=2", "rate=300", "duration_ms=800")
    eq(s["queues"]["half_open_peak"], 0, "no SYN_RECV request socket (sock_diag)")
    check(s["counters"]["SyncookiesSent"] >= s["attack"]["sent"], "a cookie for every SYN")
    eq(s["wire"]["synack_retrans"], 0, "nothing retransmitted: nothing remembered")
    check(all(c["ok"] for c in of(ev, "connect")), "every connect succeeds")


@test
def real_source_answers_with_rst():
    ev, s = flood("attack=real", "syncookies=0", "rate=300", "duration_ms=800")
    eq(s["counters"]["EmbryonicRsts"], s["attack"]["sent"], "every request reset by an RST")
    if s["wire"]["capture_drops"] == 0:
        check(s["wire"]["rst_in"] >= s["attack"]["sent"], f"the RSTs on the wire: {s['wire']}")
    check(all(c["ok"] for c in of(ev, "connect")), "every connect succeeds")


def marks(s):
    return s["wire"]["synack_marks"]


def client_synacks(events):
    """The legitimate client's SYN-ACKs (segment events), each with its SYN's options."""
    syns = {}
    out = []
    for e in of(events, "segment"):
        if e["flags_short"] == "S":
            syns[e["src"]["port"]] = e
        elif e["flags_short"] == "S.":
            out.append((e, syns.get(e["dst"]["port"])))
    return out


def syn_code(syn):
    """The options a cookie encodes for this SYN (window scale or 0xf, SACK in bit 4)."""
    opts = {o["name"]: o.get("value") for o in syn["options"]}
    ws = min(opts["wscale"], 14) if "wscale" in opts else 15
    return ws | (16 if "sack_perm" in opts else 0)


@test
def every_synack_says_whether_it_carries_a_cookie():
    # syncookies=2: every SYN-ACK a cookie's, each marked or (1 in 32) undecided.
    ev, s = flood("attack=spoofed", "syncookies=2", "rate=300", "duration_ms=800")
    m, c = marks(s), s["counters"]
    eq((m["not_cookie"], m["unreadable"]), (0, 0), f"no SYN-ACK without the mark: {m}")
    eq(m["cookie"] + m["undecided"], s["wire"]["synack_out"], f"every SYN-ACK marked or undecided: {m}")
    check(m["cookie"] > m["undecided"], f"most are told for certain: {m}")
    if s["wire"]["capture_drops"] == 0:
        eq(m["cookie"] + m["undecided"], c["SyncookiesSent"], "the marks count what the kernel counted")
    eq([e["value"] for e in of(ev, "sysctl") if e["name"] == "net.ipv4.tcp_timestamps"], [2],
       "timestamps without a random offset, in the server namespace")
    pairs = client_synacks(ev)
    check(pairs, "the client's SYN-ACKs")
    for sa, syn in pairs:
        mk = sa["cookie_mark"]
        check(mk["mark"] in ("cookie", "undecided"), f"the client's SYN-ACK: {mk}")
        eq(mk["syn_options"], syn_code(syn), "the SYN's options, as the lab read them")
        eq(mk["tsval_low6"], syn_code(syn), "TSval's low bits carry them")
        tsval = [o["value"]["val"] for o in sa["options"] if o["name"] == "timestamp"][0]
        eq(tsval & 63, mk["tsval_low6"], "the low bits of the segment's own TSval")
    check("synflood.cookie_marks" in [n["key"] for n in of(ev, "note")], "the marks note")
    # Without cookies no SYN-ACK has a cookie's mark (an ordinary one carries the clock).
    ev, s = flood("attack=spoofed", "syncookies=0", "rate=300", "duration_ms=800")
    eq(marks(s)["cookie"], 0, f"no cookie marks: {marks(s)}")
    eq(s["counters"]["SyncookiesSent"], 0, "no cookies")
    # The queue's SYN-ACKs: each without the mark, or (one in 64) with matching bits
    # within a millisecond of the stamp: undecided, never a cookie.
    check(marks(s)["not_cookie"] + marks(s)["undecided"] >= s["queues"]["half_open_peak"],
          f"the queue's SYN-ACKs: {marks(s)}")
    eq(marks(s)["unreadable"], 0, "every SYN-ACK readable")
    # With Linux's default random offsets nothing can be read.
    ev, s = flood("attack=spoofed", "syncookies=2", "rate=300", "duration_ms=500", "timestamps=1")
    eq(marks(s)["unreadable"], s["wire"]["synack_out"], f"all unreadable: {marks(s)}")
    check("synflood.cookie_marks_off" in [n["key"] for n in of(ev, "note")], "the note says why")


@test
def tshark_agrees_with_the_capture():
    if not shutil.which("tshark"):
        raise Skip("tshark is not installed (make test-deps installs it)")
    d = tempfile.mkdtemp()
    try:
        pcap = os.path.join(d, "f.pcap")
        ev, s = flood("attack=spoofed", "syncookies=1", "backlog=8", "rate=500", "duration_ms=1500",
                      pcap=pcap)
        out = subprocess.run(["tshark", "-r", pcap, "-T", "fields", "-e", "ip.src", "-e", "ip.dst",
                              "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "tcp.flags", "-e",
                              "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.options.timestamp.tsval",
                              "-e", "tcp.options.wscale.shift", "-e", "tcp.options.sack_perm"],
                             capture_output=True, text=True, timeout=120)
        eq(out.returncode, 0, f"tshark: {out.stderr[-300:]}")
        rows = [ln.split("\t") for ln in out.stdout.splitlines() if ln.strip()]
    finally:
        shutil.rmtree(d)
    srv = [e for e in of(ev, "attack") if e["phase"] == "start"][0]["to"]
    syn_in = synack = retrans = rst = matched = 0
    last_isn, code = {}, {}
    for src, dst, sp, dp, fl, seq, _ack, tsval, ws, sack in rows:
        fl = int(fl, 16)
        if dst == srv and fl & 0x12 == 0x02:
            syn_in += 1
            code[(src, sp)] = (min(int(ws), 14) if ws else 15) | (16 if sack else 0)
        if dst == srv and fl & 0x04:
            rst += 1
        if src == srv and fl & 0x12 == 0x12:
            synack += 1
            k = (dst, dp)
            retrans += last_isn.get(k) == seq
            last_isn[k] = seq
            matched += bool(tsval) and k in code and int(tsval) & 63 == code[k]
    w = s["wire"]
    eq((syn_in, synack, retrans, rst), (w["syn_in"], w["synack_out"], w["synack_retrans"], w["rst_in"]),
       "tshark's SYNs in, SYN-ACKs out, retransmissions, RSTs in == the lab's")
    eq(matched, marks(s)["cookie"] + marks(s)["undecided"],
       "SYN-ACKs whose TSval low bits carry their SYN's options (tshark) == marked or undecided (lab)")
    check(marks(s)["cookie"] > 0, f"cookies marked: {marks(s)}")
    legit = [[f"0x{e['flags_raw']:04x}", str(e["seq_raw"]), str(e["ack_raw"])] for e in of(ev, "segment")]
    cli = [r for r in rows if (r[1] == srv and int(r[2]) >= 32768) or (r[0] == srv and int(r[3]) >= 32768)]
    eq([[r[4], r[5], r[6]] for r in cli], legit, "the legitimate client's segments: flags, seq, ack")
    check(len(legit) >= 6, f"client segments {len(legit)}")


@test
def bad_parameters_are_named_with_their_range():
    root()
    for p, want in (("rate=0", "parameter 'rate': must be an integer from 1 to 2000"),
                    ("duration_ms=60000", "parameter 'duration_ms': must be an integer from 100 to 15000"),
                    ("syncookies=3", "parameter 'syncookies': must be an integer from 0 to 2"),
                    ("network=loopback", "parameter 'network': syn-flood needs two-hosts")):
        r = subprocess.run([BIN, "run", "syn-flood", "-p", p], capture_output=True, text=True,
                           timeout=20)
        eq(r.returncode, 2, f"exit for {p}")
        check(want in r.stderr, f"{p}: {r.stderr}")


def killed(sig):
    root()
    p = subprocess.Popen([BIN, "run", "syn-flood", "--json", "-p", "duration_ms=15000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = json.loads(p.stdout.readline())
    eq(first["type"], "run.start", "first event")
    lease = lease_of(first)
    while True:
        line = p.stdout.readline()
        check(line, "the run ended before the attack began")
        if json.loads(line)["type"] == "attack":
            break
    inodes = net_inodes(f"/proc/{p.pid}/task/*/ns/net") | net_inodes(f"/proc/{p.pid}/fd/*")
    check(len(inodes) >= 2, f"the run's namespaces {inodes}")
    p.send_signal(sig)
    p.communicate(timeout=30)
    wait_for(lambda: p.poll() is not None, 10, "the run's process to end")
    check(not ((net_inodes("/proc/[0-9]*/task/*/ns/net") | net_inodes("/proc/[0-9]*/fd/*")) & inodes),
          f"namespaces still held: {holders(inodes)}")
    check(lease not in lease_names(), "the lease is left")
    check("02:73:6c:" not in host_links(), "an interface of ours in the host")
    return p.returncode


@test
def sigterm_ends_the_run_and_leaves_nothing():
    rc = killed(signal.SIGTERM)
    check(rc != 0, f"a cancelled run's exit {rc}")


@test
def sigkill_leaves_nothing():
    eq(killed(signal.SIGKILL), -signal.SIGKILL, "killed")


if __name__ == "__main__":
    run(timeout=400)
