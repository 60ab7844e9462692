"""test_handshake.py: the handshake lab end to end: real connections, captured segments, kernel states, pcap, replay."""
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from tap import Skip, check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")
TRACEFS = "/sys/kernel/tracing/instances"
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps", "-all"]
TMP = tempfile.mkdtemp(prefix="socklab-hs-")
os.chmod(TMP, 0o755)  # a replay test reads files from here as nobody


def root():
    if os.geteuid() != 0:
        raise Skip("needs root (a raw socket, namespaces and the tracepoint)")


def sanitizer_clean(stderr, what):
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        check(bad not in stderr, f"sanitizer report from {what}: {stderr[-800:]}")


def hs(*params, extra=(), prefix=(), timeout=60, env=None):
    """Run the lab with --json; return (process result, events)."""
    args = [*prefix, BIN, "run", "handshake", "--json", *extra]
    for p in params:
        args += ["-p", p]
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    sanitizer_clean(r.stderr, args)
    events = [json.loads(line) for line in r.stdout.splitlines()]
    if events:
        eq([e["seq"] for e in events], list(range(len(events))), "gap-free seq")
        eq(events[0]["type"], "run.start", "first event")
        eq(events[-1]["type"], "run.end", "last event")
    return r, events


def segs(events):
    return [e for e in events if e["type"] == "segment"]


def flagseq(events):
    """"C:S S:S. C:." style: who sent it, tcpdump's flags, (len) when data."""
    out = []
    for s in segs(events):
        f = ("C:" if s["dir"] == "c2s" else "S:") + s["flags_short"]
        out.append(f + (f"({s['len']})" if s["len"] else ""))
    return out


KERNEL_SOURCES = {"tracepoint", "sock_diag", "tcp_info"}
ALL_SOURCES = KERNEL_SOURCES | {"rfc-model"}


def kstates(events, who):
    """A side's kernel-reported changes, "FROM>TO": only the tracepoint reports
    transitions (samples are observations, see seen())."""
    out = []
    for e in events:
        if e["type"] == "state" and e["who"] == who and e["source"] != "rfc-model":
            eq((e["source"], e["kind"]), ("tracepoint", "transition"), f"a kernel transition's source {e}")
            out.append(f"{e['from']}>{e['to']}")
    return out


def istates(events, who):
    return [f"{e['from']}>{e['to']}" for e in events if e["type"] == "state"
            and e["who"] == who and e["source"] == "rfc-model"]


def seen(events, who, source=None):
    """A side's observations (samples): the state seen, or "gone" when
    sock_diag no longer lists it."""
    return [e for e in events if e["type"] == "observation" and e["who"] == who
            and (source is None or e["source"] == source)]


def in_order(have, want, what):
    """Every item of want appears in have, in that order."""
    i = 0
    for x in have:
        if i < len(want) and x == want[i]:
            i += 1
    check(i == len(want), f"{what}: {want} not in order in {have}")


HANDSHAKE = ["C:S", "S:S.", "C:."]
CLIENT_OPEN = ["CLOSED>SYN_SENT", "SYN_SENT>ESTABLISHED"]
SERVER_OPEN = ["LISTEN>SYN_RECV", "SYN_RECV>ESTABLISHED"]
ACTIVE = ["ESTABLISHED>FIN_WAIT_1", "FIN_WAIT_1>FIN_WAIT_2", "FIN_WAIT_2>CLOSED"]
PASSIVE = ["ESTABLISHED>CLOSE_WAIT", "CLOSE_WAIT>LAST_ACK", "LAST_ACK>CLOSED"]


def close_of(events, active):
    """The close's segments after the data: 3 (ACK with FIN) or 4."""
    a, p = ("C", "S") if active == "client" else ("S", "C")
    f = flagseq(events)
    three = [f"{a}:F.", f"{p}:F.", f"{a}:."]
    four = [f"{a}:F.", f"{p}:.", f"{p}:F.", f"{a}:."]
    if f[-3:] == three:
        return 3
    check(f[-4:] == four, f"close segments {f[-4:]} are neither {three} nor {four}")
    return 4


def check_time_wait(events, who):
    """TIME_WAIT, which the tracepoint never shows, is an observation by
    sock_diag with the kernel's own timer, never a transition; the socket is
    still listed at the end and the summary says so, by source."""
    tw = [e for e in seen(events, who, "sock_diag") if e["state"] == "TIME_WAIT"]
    eq(len(tw), 1, f"{who}: TIME_WAIT seen once by sock_diag")
    eq((tw[0]["kind"], tw[0]["listed"], tw[0]["timer"]), ("sample", True, "time_wait"), "its timer")
    check(0 < tw[0]["timer_ms"] <= 60000, f"TIME_WAIT timer {tw[0]['timer_ms']} ms")
    check(not any(e["type"] == "state" and e["who"] == who and e["source"] != "rfc-model"
                  and e["to"] == "TIME_WAIT" for e in events), "no transition into TIME_WAIT from the kernel")
    kernel = events[-1]["summary"][f"{who}_state"]["kernel"]
    eq((kernel["state"], kernel["source"], kernel["listed_at_end"]), ("TIME_WAIT", "sock_diag", True),
       f"{who}: the kernel's last word, with its source")


@test
def labs_lists_handshake_schema():
    r = subprocess.run([BIN, "labs", "--json"], capture_output=True, text=True, timeout=30)
    lab = [x for x in json.loads(r.stdout) if x["name"] == "handshake"][0]
    eq(lab["captures"], True, "captures")
    p = {x["name"]: x for x in lab["params"]}
    eq(p["scenario"]["choices"], ["client-closes", "server-closes", "simultaneous",
                                  "half-close", "refused", "abort", "data-close"], "scenarios")
    eq((p["data"]["min"], p["data"]["max"]), (0, 65536), "data range")
    eq(p["replay"]["server_assigned"], True, "a browser may not name a replay file")
    eq((p["network"]["choices"], p["network"]["default"]), (["loopback", "two-hosts"], "two-hosts"),
       "two hosts with a small delay by default")
    eq((p["c2s_delay_ms"]["default"], p["s2c_delay_ms"]["default"]), (10, 10), "default delay")


NETWORKS = ("two-hosts", "loopback")


@test
def client_closes_first():
    root()
    for net in NETWORKS:
        client_closes_first_on(net)


def client_closes_first_on(net):
    r, ev = hs("scenario=client-closes", "observe_ms=300", f"network={net}")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    f = flagseq(ev)
    eq(f[:3], HANDSHAKE, "three-way handshake")
    eq(f[3:7], ["C:P.(12)", "S:.", "S:P.(12)", "C:."], "data and reply, each ACKed")
    n = close_of(ev, "client")
    eq(ev[-1]["summary"]["close"], f"{'three' if n == 3 else 'four'} segments", "summary close")
    notes = {e["key"] for e in ev if e["type"] == "note"}
    eq("handshake.close_three" in notes, n == 3, "the three-segment note iff three segments")
    eq(kstates(ev, "client"), CLIENT_OPEN + ACTIVE, "client's kernel states (TIME_WAIT: sock_diag)")
    eq(kstates(ev, "server"), SERVER_OPEN + PASSIVE, "server's kernel states")
    eq(kstates(ev, "listener"), ["CLOSED>LISTEN", "LISTEN>CLOSED"], "listener")
    eq(istates(ev, "client")[-1], "FIN_WAIT_2>TIME_WAIT", "RFC 9293: the active closer waits")
    check_time_wait(ev, "client")
    timers = [e for e in ev if e["type"] == "timer" and e["who"] == "client"]
    check(timers and all(0 < t["ms_left"] <= 60000 for t in timers), f"TIME_WAIT countdown {timers}")
    # The comparison explains the tracepoint's CLOSED where RFC says TIME_WAIT.
    cmp = {e["who"]: e for e in ev if e["type"] == "state.compare"}
    rows = {(x.get("kernel") or x.get("inferred"))["to"]: x for x in cmp["client"]["rows"]
            if "observed" not in x}
    obs_rows = [x for x in cmp["client"]["rows"] if "observed" in x]
    check(any(x["observed"]["state"] == "TIME_WAIT" and x["match"] == "consistent" for x in obs_rows),
          f"sock_diag's TIME_WAIT agrees with the model's state at that instant: {obs_rows}")
    summ = ev[-1]["summary"]
    eq(summ["client_state"]["rfc_model"], {"state": "TIME_WAIT", "source": "rfc-model"}, "model's final state")
    eq(summ["kernel_transitions"], "tracepoint", "summary names the transitions' source")
    # The tracepoint's lane is whole: nothing overwritten in the slot's
    # ring, nothing unreadable, nothing refused.
    tp = summ["tracepoint"]
    eq((tp["available"], tp["lost"], tp["overrun"], tp["dropped"], tp["unreadable"], tp["refused"],
        tp["complete"], tp["ring_stats"]), (True, 0, 0, 0, 0, 0, True, True), f"tracepoint {tp}")
    shown = [e for e in ev if e["type"] == "state" and e["source"] == "tracepoint"]
    check(tp["events"] >= len(shown) > 0, f"events read {tp['events']}, shown {len(shown)}")
    check("tracepoint.incomplete" not in notes, "no incomplete note")
    eq(rows["CLOSED"]["match"], "kernel_only", "tracepoint's FIN_WAIT_2 > CLOSED")
    eq(rows["CLOSED"]["key"], "handshake.diff.time_wait", "explained")
    check("handshake.diff.time_wait" in notes, "the TIME_WAIT note")
    syn_recv = [x for x in cmp["server"]["rows"] if x.get("inferred", {}).get("to") == "SYN_RECV"][0]
    eq((syn_recv["match"], syn_recv["inferred"]["seg"], syn_recv["kernel"]["after_seg"]),
       ("different_packet", 1, 3), "Linux's SYN_RECV comes with the third segment")
    # Relative numbers start at 0 on each side; absolute ones are the wire's.
    s = segs(ev)
    eq([(x["rel_seq"], x["rel_ack"]) for x in s[:3]], [(0, None), (0, 1), (1, 1)], "relative seq/ack")
    eq(s[1]["ack_raw"], (s[0]["seq_raw"] + 1) % 2**32, "SYN-ACK acks the ISN + 1")
    names = [o["name"] for o in s[0]["options"]]
    for want in ("mss", "sack_perm", "timestamp", "nop", "wscale"):
        check(want in names, f"SYN option {want} in {names}")
    layers = [x["layer"] for x in s[3]["layers"]]
    eq(layers, ["ethernet", "ipv4", "tcp", "payload"], "layers of a data segment")
    mss = [o["value"] for o in s[0]["options"] if o["name"] == "mss"][0]
    eq(mss, 1460 if net == "two-hosts" else 65495, "MSS from the interface's MTU")
    arrivals = [e for e in ev if e["type"] == "arrival"]
    if net == "loopback":
        eq(arrivals, [], "on loopback a segment arrives as it leaves")
        return
    # Two hosts: every segment leaves one host and reaches the other once,
    # after the wire's 10 ms.
    eq(sorted(a["n"] for a in arrivals), [x["n"] for x in s], "one arrival per segment")
    for a in arrivals:
        seg = s[a["n"] - 1]
        eq(a["who"], seg["to"], f"#{a['n']} arrives at its receiver")
        check(10000 <= a["wire_us"] < 200000, f"#{a['n']} {a['wire_us']} us on the wire")
        eq(a["duplicate"], False, "no duplicates")


@test
def four_segment_close_after_a_delay():
    root()
    # 300 ms is longer than Linux's longest delayed ACK (200 ms): the ACK of
    # the FIN goes out on its own first.
    for net in NETWORKS:
        r, ev = hs("scenario=client-closes", "close_delay_ms=300", "observe_ms=0", f"network={net}")
        eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
        eq(close_of(ev, "client"), 4, f"four segments on {net}")
        check(any(e["type"] == "note" and e["key"] == "handshake.close_four" for e in ev), "note")


@test
def server_closes_first():
    root()
    r, ev = hs("scenario=server-closes", "observe_ms=200")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    eq(flagseq(ev)[:3], HANDSHAKE, "handshake")
    close_of(ev, "server")
    eq(kstates(ev, "server"), SERVER_OPEN + ACTIVE, "server: FIN_WAIT_1, FIN_WAIT_2, TIME_WAIT")
    eq(kstates(ev, "client"), CLIENT_OPEN + PASSIVE, "client: CLOSE_WAIT then LAST_ACK")
    check_time_wait(ev, "server")


@test
def simultaneous_close_over_the_wire():
    root()
    # Each FIN is 10 ms on the wire: both leave before either arrives, and
    # both sides pass CLOSING, by the kernel and by RFC 9293 alike.
    r, ev = hs("scenario=simultaneous", "observe_ms=200")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    both = ["ESTABLISHED>FIN_WAIT_1", "FIN_WAIT_1>CLOSING", "CLOSING>CLOSED"]
    eq(kstates(ev, "client"), CLIENT_OPEN + both, "client's kernel states")
    eq(kstates(ev, "server"), SERVER_OPEN + both, "server's kernel states")
    for who in ("client", "server"):
        in_order(istates(ev, who), ["ESTABLISHED>FIN_WAIT_1", "FIN_WAIT_1>CLOSING",
                                    "CLOSING>TIME_WAIT"], f"{who}: RFC 9293")
        check_time_wait(ev, who)
    s = segs(ev)
    fins = [x for x in s if "FIN" in x["flags"]]
    eq(len(fins), 2, "two FINs")
    arr = {a["n"]: a for a in ev if a["type"] == "arrival"}
    check(fins[1]["t_kernel_us"] < arr[fins[0]["n"]]["t_kernel_us"],
          "the second FIN left before the first one arrived: they crossed")
    eq(ev[-1]["summary"]["close"], "simultaneous", "summary")


@test
def simultaneous_close_on_loopback_holds_a_fin_back():
    root()
    r, ev = hs("scenario=simultaneous", "observe_ms=200", "network=loopback")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    k = kstates(ev, "client")
    in_order(k, ["ESTABLISHED>FIN_WAIT_1", "FIN_WAIT_1>CLOSING", "CLOSING>CLOSED"],
             "client passes CLOSING")
    in_order(kstates(ev, "server"), ["ESTABLISHED>FIN_WAIT_1", "FIN_WAIT_1>FIN_WAIT_2",
                                     "FIN_WAIT_2>CLOSED"], "server")
    check_time_wait(ev, "client")
    check_time_wait(ev, "server")
    f = flagseq(ev)
    # The server's FIN left while the client's FIN still waited behind data.
    sfin = f.index("S:F.")
    cfin = [i for i, x in enumerate(f) if x.startswith("C:F")][0]
    check(sfin < cfin, f"server's FIN first on the wire: {f}")
    check(f[cfin].startswith("C:FP.("), f"the client's FIN rides on its last data: {f[cfin]}")
    unsent = [e for e in ev if e["type"] == "metric" and e["name"] == "unsent_bytes"]
    check(unsent and unsent[0]["value"] > 0, f"data was waiting when the client closed: {unsent}")
    notes = {e["key"] for e in ev if e["type"] == "note"}
    check("handshake.diff.unsent_fin" in notes, "the disagreement is explained")


@test
def half_close_keeps_the_other_direction():
    root()
    r, ev = hs("scenario=half-close", "reply=100", "observe_ms=200")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    f = flagseq(ev)
    cfin = f.index("C:F.")
    check(any(x == "S:P.(100)" for x in f[cfin + 1:]), f"the server sends after the client's FIN: {f}")
    eq(kstates(ev, "client"), CLIENT_OPEN + ACTIVE, "client")
    eq(kstates(ev, "server"), SERVER_OPEN + PASSIVE, "server")
    calls = [(e["who"], e["call"], e["ret"]) for e in ev if e["type"] == "syscall"]
    i = calls.index(("client", "shutdown", 0))
    check(("client", "recv", 100) in calls[i:], "the client still receives after shutdown(SHUT_WR)")


@test
def refused_connection_is_reset():
    root()
    for net in NETWORKS:
        refused_on(net)


def refused_on(net):
    r, ev = hs("scenario=refused", f"network={net}")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    eq(flagseq(ev), ["C:S", "S:R."], "SYN answered by RST")
    eq(kstates(ev, "client"), ["CLOSED>SYN_SENT", "SYN_SENT>CLOSED"], "client: no FIN, no TIME_WAIT")
    eq(istates(ev, "client"), ["CLOSED>SYN_SENT", "SYN_SENT>CLOSED"], "RFC agrees")
    conn = [e for e in ev if e["type"] == "syscall" and e["call"] == "connect"][0]
    eq(conn["errno_name"], "ECONNREFUSED", "connect fails")
    eq(kstates(ev, "server"), [], "nobody listens")


@test
def abort_sends_rst_not_fin():
    root()
    for net in NETWORKS:
        abort_on(net)


def abort_on(net):
    r, ev = hs("scenario=abort", f"network={net}")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    f = flagseq(ev)
    eq(f[-1], "C:R.", "close() with SO_LINGER 0 sends RST")
    check(not any("F" in x.split(":")[1] for x in f), f"no FIN: {f}")
    eq(kstates(ev, "client"), CLIENT_OPEN + ["ESTABLISHED>CLOSED"], "client closes at once")
    eq(kstates(ev, "server"), SERVER_OPEN + ["ESTABLISHED>CLOSED"], "server too")
    recv = [e for e in ev if e["type"] == "syscall" and e["who"] == "server" and e["call"] == "recv"]
    eq(recv[-1]["errno_name"], "ECONNRESET", "server's recv after the RST")
    linger = [e for e in ev if e["type"] == "syscall" and e["call"] == "setsockopt"
              and e["args"]["name"] == "SO_LINGER"][0]
    eq(linger["args"]["value"], {"l_onoff": 1, "l_linger": 0}, "SO_LINGER {1, 0}")


@test
def data_and_fin_in_one_segment():
    root()
    for net in NETWORKS:
        data_close_on(net)


def data_close_on(net):
    r, ev = hs("scenario=data-close", "data=300", "observe_ms=0", f"network={net}")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    f = flagseq(ev)
    eq(f[:3], HANDSHAKE, "handshake")
    eq(f[3], "C:FP.(300)", "the FIN rides on the data segment")
    got = [e["ret"] for e in ev if e["type"] == "syscall" and e["who"] == "server" and e["call"] == "recv"]
    eq((sum(got[:-1]), got[-1]), (300, 0), "every byte read, then end of stream")


@test
def bad_parameters_name_the_field():
    for params, name in ((["scenario=data-close", "data=0"], "data"),
                         (["scenario=half-close", "reply=0"], "reply"),
                         (["scenario=nope"], "scenario"),
                         (["replay=/nonexistent/x.pcap"], "replay"),
                         (["network=loopback", "c2s_delay_ms=5"], "c2s_delay_ms")):
        r = subprocess.run([BIN, "run", "handshake", *sum((["-p", p] for p in params), [])],
                           capture_output=True, text=True, timeout=30)
        eq(r.returncode, 2, f"exit for {params}")
        check(f"parameter '{name}'" in r.stderr, f"message names {name}: {r.stderr!r}")
    pcap = os.path.join(TMP, "empty.pcap")
    with open(pcap, "wb"):
        pass
    r = subprocess.run([BIN, "run", "handshake", "-p", f"replay={pcap}", "-p", "scenario=abort"],
                       capture_output=True, text=True, timeout=30)
    eq(r.returncode, 2, "replay with a live-only parameter")
    check("parameter 'scenario'" in r.stderr, r.stderr)


TSHARK_CSUM = ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-o",
               "udp.check_checksum:TRUE"]
# tshark's checksum.status: 0 bad, 1 good, 2 unverified.
CSUM_FIELDS = ["ip.checksum.status", "ip.checksum_calculated", "tcp.checksum.status",
               "tcp.checksum_calculated"]


def tshark_rows(pcap, fields=("tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
                              "tcp.window_size_value")):
    args = ["tshark", "-r", pcap, *TSHARK_CSUM, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    eq(r.returncode, 0, f"tshark: {r.stderr[-300:]}")
    return [line.split("\t") for line in r.stdout.splitlines() if line.strip()]


def csum_rows(events):
    """The lab's checksum verdicts in tshark's terms: status (1 good, 0 bad or
    not computed: tshark calls a partial sum bad) and the calculated value."""
    out = []
    for s in segs(events):
        row = []
        for layer in ("ipv4", "tcp"):
            k = s["checksums"][layer]
            row.append({"good": "1", "bad": "0", "not_computed": "0"}.get(k["status"], k["status"]))
            row.append(f"0x{k.get('expected', k['value']):04x}")
        out.append(row)
    return out


@test
def tshark_reads_the_same_segments():
    root()
    if not shutil.which("tshark"):
        raise Skip("tshark is not installed (make test-deps installs it)")
    for sc, net in (("client-closes", "two-hosts"), ("simultaneous", "two-hosts"),
                    ("abort", "two-hosts"), ("client-closes", "loopback"),
                    ("simultaneous", "loopback")):
        pcap = os.path.join(TMP, f"{sc}-{net}.pcap")
        r, ev = hs(f"scenario={sc}", f"network={net}", "observe_ms=0", extra=("--pcap", pcap))
        eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
        eq(ev[-1]["summary"]["pcap"], pcap, "summary names the file")
        rows = tshark_rows(pcap)
        mine = [[f"0x{s['flags_raw']:04x}", str(s["seq_raw"]), str(s["ack_raw"]), str(s["len"]),
                 str(s["win"])] for s in segs(ev)]
        check(len(mine) >= 8, f"{sc}: segments {len(mine)}")
        eq(rows, mine, f"{sc} on {net}: tshark's flags, seq, ack, len, win == the lab's segment events")
        eq(tshark_rows(pcap, CSUM_FIELDS), csum_rows(ev),
           f"{sc} on {net}: tshark's checksum status and calculated value == the lab's")


def csum_statuses(events, where):
    """{(layer, status, source)} over every segment; fails on any bad one."""
    seen = set()
    for s in segs(events):
        for layer, k in s["checksums"].items():
            check(k["status"] != "bad", f"{where}: segment #{s['n']} {layer} checksum bad: {k}")
            seen.add((layer, k["status"], k["source"]))
    return seen


@test
def offload_is_not_computed_never_bad():
    """On loopback and veth the kernel leaves TCP checksums as partial sums
    and flags them (TP_STATUS_CSUMNOTREADY): the lab says not computed, on
    the kernel's word; behind the relay offload is switched off: good. A
    replay of the same frames has no flag: not computed, inferred."""
    root()
    pcap = os.path.join(TMP, "csum-lo.pcap")
    runs = (("loopback", ("network=loopback",)),
            ("veth", ("network=two-hosts", "c2s_delay_ms=0", "s2c_delay_ms=0")),
            ("relay", ("network=two-hosts", "c2s_delay_ms=1", "s2c_delay_ms=1")))
    for name, params in runs:
        extra = ("--pcap", pcap) if name == "loopback" else ()
        r, ev = hs("observe_ms=0", "data=3000", *params, extra=extra)
        eq(r.returncode, 0, f"{name}: exit ({r.stderr[-300:]})")
        seen = csum_statuses(ev, name)
        check(("ipv4", "good", "computed") in seen and not any(
            la == "ipv4" and st != "good" for la, st, _ in seen), f"{name}: IPv4 all good: {seen}")
        tcp = {(st, src) for la, st, src in seen if la == "tcp"}
        if name == "relay":
            eq(tcp, {("good", "computed")}, f"{name}: without offload the kernel completes them")
        else:
            check(tcp <= {("not_computed", "kernel"), ("good", "computed")} and
                  ("not_computed", "kernel") in tcp, f"{name}: TCP not computed (kernel): {tcp}")
        if name == "veth":
            arr = [e for e in ev if e["type"] == "arrival"]
            check(arr and all(e["checksums"]["tcp"]["status"] != "bad" for e in arr),
                  "veth: the receiver's copies are never bad")
    r, ev = hs(f"replay={pcap}")
    eq(r.returncode, 0, f"replay: exit ({r.stderr[-300:]})")
    tcp = {(st, src) for la, st, src in csum_statuses(ev, "replay") if la == "tcp"}
    check(tcp <= {("not_computed", "inferred"), ("good", "computed")} and
          ("not_computed", "inferred") in tcp, f"replay: TCP not computed (inferred): {tcp}")
    r = subprocess.run([BIN, "run", "handshake", "-p", f"replay={pcap}"], capture_output=True,
                       text=True, timeout=60)
    check(re.search(r"Flags \[S\].*\[tcp checksum 0x[0-9a-f]{4} not computed \(offload, inferred",
                    r.stdout), f"the CLI names it: {r.stdout[:800]}")
    # Damage the handshake's last ACK: the server's kernel would discard it,
    # so the RFC 9293 model must not see it arrive; the next segment (the
    # client's data, which carries the same ACK) completes the handshake.
    with open(pcap, "rb") as f:
        raw = bytearray(f.read())
    off, n = 24, 0
    while off < len(raw):
        caplen = int.from_bytes(raw[off + 8:off + 12], "little")
        n += 1
        if n == 3:
            raw[off + 16 + 14 + 20 + 16] ^= 0x12  # the TCP checksum's first byte
        off += 16 + caplen
    damaged = os.path.join(TMP, "csum-damaged.pcap")
    with open(damaged, "wb") as f:
        f.write(raw)
    r, ev = hs(f"replay={damaged}")
    eq(r.returncode, 0, f"damaged replay: exit ({r.stderr[-300:]})")
    eq(segs(ev)[2]["checksums"]["tcp"]["status"], "bad", "segment #3's checksum")
    eq([e["params"]["seg"] for e in ev if e["type"] == "note" and e["key"] == "handshake.csum_dropped"],
       [3], "one note names the discarded segment")
    est = [e["seg"] for e in ev if e["type"] == "state" and e["source"] == "rfc-model"
           and e["who"] == "server" and e["to"] == "ESTABLISHED"]
    eq(est, [4], "the server's model is completed by segment #4, not the discarded #3")


@test
def human_trace_is_in_time_order():
    root()
    pcap = os.path.join(TMP, "human.pcap")
    r = subprocess.run([BIN, "run", "handshake", "-p", "scenario=client-closes", "-p", "observe_ms=0",
                        "--pcap", pcap], capture_output=True, text=True, timeout=60)
    sanitizer_clean(r.stderr, "human trace")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    out = r.stdout.splitlines()

    def line_of(text):
        for i, line in enumerate(out):
            if text in line:
                return i
        raise AssertionError(f"{text!r} not in the trace:\n" + "\n".join(out[:60]))

    syn = line_of("#1 client > server  Flags [S], seq 0")
    synack = line_of("#2 server > client  Flags [S.], seq 0, ack 1")
    connect = line_of("connect(")
    check(syn < synack < connect, "SYN, SYN-ACK, then connect() returns")
    check(line_of("state CLOSED -> SYN_SENT  (kernel: tracepoint)") < syn, "SYN_SENT before the SYN")
    check(line_of("client     seen in TIME_WAIT  (sock_diag sample, timer time_wait") > line_of("Flags [F.]"),
          "TIME_WAIT, seen by sock_diag, after the FINs")
    check(re.search(r"options \[mss 1460,sackOK,TS val \d+ ecr 0,nop,wscale \d+\]", out[syn]), out[syn])
    # The wire delays by 10 ms: the arrival comes at least that much later
    # (more on a loaded machine; the relay's own time is on top).
    arrival = line_of("#1 reached the server after ")
    check(arrival > syn, "the SYN's arrival after its departure")
    m = re.search(r"after (\d+\.\d+) ms on the wire", out[arrival])
    check(m and float(m.group(1)) >= 10.0, f"at least the wire's 10 ms: {out[arrival]}")
    check(os.path.getsize(pcap) > 24, "the pcap has packets")


def run_json_popen(*params, extra=(), env=None):
    args = [BIN, "run", "handshake", "--json", *extra]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def own_only(ev):
    summ = ev[-1]["summary"]
    me = {(summ["client"]["addr"], summ["client"]["port"]), (summ["server"]["addr"], summ["server"]["port"])}
    for s in segs(ev):
        check((s["src"]["addr"], s["src"]["port"]) in me and (s["dst"]["addr"], s["dst"]["port"]) in me,
              f"a segment of another connection: {s['src']} > {s['dst']}")
    return me


@test
def two_runs_at_once_see_only_their_own():
    root()
    # In private namespaces, and on the host's shared loopback (--netns off),
    # where the capture and the tracepoint really see both runs' traffic.
    for net, extra in (("two-hosts", ()), ("loopback", ()), ("loopback", ("--netns", "off"))):
        procs = [run_json_popen("scenario=client-closes", "observe_ms=700", f"network={net}", extra=extra),
                 run_json_popen("scenario=server-closes", "observe_ms=700", f"network={net}", extra=extra)]
        results = []
        for p in procs:
            out, err = p.communicate(timeout=60)
            sanitizer_clean(err, "concurrent run")
            eq(p.returncode, 0, f"exit ({err[-300:]})")
            results.append([json.loads(line) for line in out.splitlines()])
        a, b = results
        check(own_only(a).isdisjoint(own_only(b)), "different addresses and ports")
        eq(kstates(a, "client"), CLIENT_OPEN + ACTIVE, f"run A client states {extra}")
        eq(kstates(a, "server"), SERVER_OPEN + PASSIVE, f"run A server states {extra}")
        eq(kstates(b, "server"), SERVER_OPEN + ACTIVE, f"run B server states {extra}")
        eq(kstates(b, "client"), CLIENT_OPEN + PASSIVE, f"run B client states {extra}")
        for ev in results:
            check(len(segs(ev)) in (10, 11), f"segment count {len(segs(ev))}")


def flock_holders():
    """{inode: pid} of every flock the kernel holds now (/proc/locks)."""
    out = {}
    with open("/proc/locks") as f:
        for line in f:
            # "1: FLOCK  ADVISORY  WRITE 1234 00:0e:9512174 0 EOF" ("->" marks a waiter)
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK":
                out[int(parts[5].split(":")[2])] = int(parts[4])
    return out


def slot_holder(path):
    """The pid holding slot path's lock, or None (free)."""
    return flock_holders().get(os.stat(path).st_ino)


FLOOD = "SOCKLAB_TRACE_TEST_FLOOD_KB"


@test
def a_tracepoint_that_lost_events_says_so_and_compares_nothing():
    """The test knob holds the reader back and then overwrites the slot's
    ring (128 KiB per CPU) with 1 MiB of trace_marker text on every CPU: a
    real overrun, which the kernel's counters report. The run says how many
    events were lost and draws no conclusion from the transitions; the
    segments' lane is whole and still speaks. The next run in the same slot
    (whose counters carry the overrun) reports 0 lost."""
    root()
    pool = f"socklab-slot-hsloss{os.getpid()}-"
    slot = os.path.join(TRACEFS, pool + "0")
    env = dict(os.environ, SOCKLAB_TRACE_POOL=pool)
    try:
        r, ev = hs("network=loopback", "observe_ms=0", env=dict(env, **{FLOOD: "1024"}))
        eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
        s = ev[-1]["summary"]
        tp = s["tracepoint"]
        eq((tp["available"], tp["complete"], tp["counted"], tp["ring_stats"]), (True, False, True, True),
           f"tracepoint {tp}")
        # 1 MiB of markers over a ring of 131 KiB per CPU: thousands overwritten.
        check(tp["overrun"] > 1000, f"the kernel counted the overrun: {tp}")
        eq(tp["lost"], tp["overrun"] + tp["dropped"] + tp["unreadable"] + tp["refused"], "lost")
        shown = [e for e in ev if e["type"] == "state" and e["source"] == "tracepoint"]
        check(len(shown) <= tp["events"], f"shown {len(shown)}, read {tp['events']}")
        inc = [e for e in ev if e["type"] == "note" and e["key"] == "tracepoint.incomplete"]
        eq(len(inc), 1, "one tracepoint.incomplete note")
        eq(inc[0]["params"]["lost"], tp["lost"], "the note's count is the summary's")
        check(f"{tp['lost']} of the tracepoint's events were lost" in inc[0]["text"], inc[0]["text"])
        check("No conclusion is drawn from this run's transitions" in inc[0]["text"], inc[0]["text"])
        # Withheld: the comparison with the RFC model and its explanations.
        eq([e for e in ev if e["type"] == "state.compare"], [], "comparisons drawn from transitions")
        eq(s["disagreements"], None, "disagreements")
        keys = [e["key"] for e in ev if e["type"] == "note"]
        eq([k for k in keys if k.startswith("handshake.diff.")], [], "disagreement notes")
        # The capture lost nothing: what the segments show still stands.
        eq(s["capture"]["complete"], True, "capture complete")
        check(s["close"] in ("three segments", "four segments"), f"close pattern {s['close']}")
        k = s["client_state"]["kernel"]
        if k and k["source"] == "tracepoint":
            eq(k.get("complete"), False, f"the tracepoint's last word is marked: {k}")

        r, ev = hs("network=loopback", "observe_ms=0", env=env)
        eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
        tp = ev[-1]["summary"]["tracepoint"]
        eq((tp["lost"], tp["overrun"], tp["complete"]), (0, 0, True), f"the next run in the slot: {tp}")
        check(any(e["type"] == "state.compare" for e in ev), "the next run compares")
    finally:
        if os.path.isdir(slot):
            os.rmdir(slot)


@test
def a_bad_flood_knob_is_named():
    root()
    r, ev = hs("network=loopback", "observe_ms=0", env=dict(os.environ, **{FLOOD: "0"}))
    eq(r.returncode, 0, f"the run goes on without the tracepoint ({r.stderr[-300:]})")
    p = [e["params"] for e in ev if e["type"] == "note" and e["key"] == "handshake.no_tracepoint"]
    eq(len(p), 1, "the no-tracepoint note")
    check(FLOOD in p[0]["reason"] and "from 1 to 65536" in p[0]["reason"], p[0]["reason"])
    eq(ev[-1]["summary"]["tracepoint"]["available"], False, "summary")
    eq(ev[-1]["summary"]["tracepoint"]["complete"], None, "no completeness without the lane")


@test
def tracefs_slots_are_given_back_on_every_exit_path():
    """The tracepoint's tracefs instances are a pool of slots reused run after
    run; a slot is a run's while it holds the flock on its directory. A pool
    of this test's own (SOCKLAB_TRACE_POOL), so that no other run on the
    machine takes or makes its slots."""
    from harness import Server, events_until_end, start_run
    root()
    if not os.path.isdir(TRACEFS):
        raise Skip("tracefs is not mounted")
    pool = f"socklab-slot-hs{os.getpid()}-"
    env = dict(os.environ, SOCKLAB_TRACE_POOL=pool)
    slot0 = os.path.join(TRACEFS, pool + "0")

    def mine():
        return sorted(d for d in os.listdir(TRACEFS) if d.startswith(pool))

    def refused(what):
        r, ev = hs("scenario=refused", env=env)
        eq(r.returncode, 0, f"{what} ({r.stderr[-300:]})")
        eq(kstates(ev, "client"), ["CLOSED>SYN_SENT", "SYN_SENT>CLOSED"], f"{what}: its own states")
        eq(kstates(ev, "server"), [], f"{what}: nobody listens")

    srv = None
    try:
        refused("the first run")
        eq(mine(), [pool + "0"], "one slot, made by the first run and kept")
        eq(slot_holder(slot0), None, "a run that ended gave its slot back")

        # SIGKILL while it holds the slot: the kernel drops the lock with the process.
        p = run_json_popen("observe_ms=20000", env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            check(line, "the run ended early")
            ev = json.loads(line)
            if ev["type"] == "state" and ev.get("to") == "TIME_WAIT":
                break
        eq(slot_holder(slot0), p.pid, "the running lab holds slot 0")
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
        eq(mine(), [pool + "0"], "the killed run's slot is still there")
        eq(slot_holder(slot0), None, "and free")
        refused("the run after the killed one")
        eq(mine(), [pool + "0"], "it reused the slot (the killed run's events were not its)")

        r = subprocess.run([BIN, "cleanup"], capture_output=True, text=True, timeout=60)
        sanitizer_clean(r.stderr, "socklab cleanup")
        eq(r.returncode, 0, f"socklab cleanup ({r.stderr})")
        check(re.match(r"socklab cleanup: removed [1-9][0-9]* idle tracefs instance", r.stdout),
              f"cleanup says how many it removed: {r.stdout!r}")
        eq(mine(), [], "socklab cleanup removed the idle slot")

        # The server: its runs' slots are kept while it serves, removed when it exits.
        srv = Server(env=env)

        async def one_run():
            async with srv.connect() as ws:
                run_id = await start_run(ws, {"scenario": "refused"}, lab="handshake")
                return await events_until_end(ws, run_id)
        ev = asyncio.run(one_run())
        eq(ev[-1]["status"], "ok", "the server's run")
        eq(mine(), [pool + "0"], "kept while the server serves")
        srv.stop()
        eq(mine(), [], "socklab serve removed its idle slots at exit")
    finally:
        if srv:
            srv.cleanup()
        for d in mine():
            try:
                os.rmdir(os.path.join(TRACEFS, d))
            except OSError:
                pass


@test
def without_cap_net_raw_the_lab_says_how_to_grant_it():
    root()
    # As root without CAP_NET_RAW (a container without NET_RAW), and as an
    # unprivileged user.
    for prefix, net in ((["setpriv", "--bounding-set", "-net_raw", "--inh-caps", "-net_raw"], "two-hosts"),
                        (NOBODY, "loopback")):
        r, ev = hs(f"network={net}", prefix=prefix)
        eq(r.returncode, 1, f"exit status with {prefix[:3]}")
        err = [e for e in ev if e["type"] == "error"]
        eq(err[0]["code"], "no_capture_privilege", "error code")
        check("CAP_NET_RAW" in err[0]["message"] and "--cap-add NET_RAW" in err[0]["message"],
              f"message names the capability and how to grant it: {err[0]['message']}")
        eq(ev[-1]["status"], "error", "run status")


@test
def replay_needs_no_privileges():
    root()
    pcap = os.path.join(TMP, "replay.pcap")
    r, live = hs("scenario=half-close", "observe_ms=0", extra=("--pcap", pcap))
    eq(r.returncode, 0, "live run")
    os.chmod(pcap, 0o644)
    r, ev = hs(f"replay={pcap}", prefix=NOBODY)
    eq(r.returncode, 0, f"replay as nobody ({r.stderr[-300:]})")
    strip = ("seq_raw", "ack_raw", "rel_seq", "rel_ack", "flags_raw", "len", "win", "dir", "bytes",
             "layers", "options")
    eq([{k: s[k] for k in strip} for s in segs(ev)], [{k: s[k] for k in strip} for s in segs(live)],
       "the replay decodes the same segments")
    for who in ("client", "server"):
        eq(istates(ev, who), istates(live, who), f"{who}: the same inferred states")
    eq(kstates(ev, "client"), [], "a file holds no kernel states")
    eq(ev[-1]["summary"]["scenario"], "replay", "summary")
    # Damaged and foreign files are reported, not crashed on.
    junk = os.path.join(TMP, "junk.pcap")
    with open(junk, "wb") as f:
        f.write(b"this is not a capture file at all")
    os.chmod(junk, 0o644)
    r, ev = hs(f"replay={junk}", prefix=NOBODY)
    eq(r.returncode, 1, "a file that is not a capture")
    err = [e for e in ev if e["type"] == "error"][0]
    eq((err["code"], err["param"]), ("replay_failed", "replay"), "error names the parameter")
    with open(pcap, "rb") as f:
        data = f.read()
    cut = os.path.join(TMP, "cut.pcap")
    with open(cut, "wb") as f:
        f.write(data[:len(data) - 7])
    os.chmod(cut, 0o644)
    r, ev = hs(f"replay={cut}", prefix=NOBODY)
    eq(r.returncode, 1, "a capture cut short")
    check(len(segs(ev)) == len(segs(live)) - 1, "every whole frame before the cut is decoded")


@test
def a_duplicate_rst_ends_time_wait_and_the_lab_says_why():
    root()
    # The wire duplicates every frame the client sends, so a copy of its
    # last ACK reaches the server after that ACK closed the server's socket;
    # the server answers RST, and the RST kills the client's timewait socket
    # (Linux's default, net.ipv4.tcp_rfc1337 = 0). 100 ms each way: the
    # client's TIME_WAIT lasts 200 ms before the RST comes back, so sock_diag
    # (every 100 ms, and at once when a FIN arrives) lists it first.
    r, ev = hs("c2s_dup_pct=100", "c2s_delay_ms=100", "s2c_delay_ms=100", "observe_ms=500")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    s = segs(ev)
    rsts = [x for x in s if "RST" in x["flags"]]
    check(rsts and all(x["dir"] == "s2c" for x in rsts), f"the server answers with RST: {rsts}")
    gone = [e for e in seen(ev, "client", "sock_diag") if not e["listed"]]
    eq(len(gone), 1, "sock_diag stops listing the client's socket once")
    g = gone[0]
    eq((g["reason"], g["state"], g["kind"]), ("rst", None, "sample"), "gone, because of an RST")
    check(g["last_state"] in ("TIME_WAIT", "FIN_WAIT_2"), f"a timewait socket: {g}")
    rst = s[g["evidence_seg"] - 1]
    check("RST" in rst["flags"] and rst["dir"] == "s2c", f"the evidence is an RST to the client: {rst}")
    eq(g["evidence"]["seq_raw"], rst["seq_raw"], "the RST's sequence number")
    check(g["evidence"]["t_kernel_us"] <= g["t_kernel_us"], "the RST came before the socket was gone")
    # The countdown comes from the kernel's timer and stops with its reason.
    timers = [e for e in ev if e["type"] == "timer" and e["who"] == "client"]
    check(timers and timers[-1].get("stopped") is True, f"the countdown stops: {timers[-1:]}")
    eq(timers[-1]["reason"], "rst", "and says why")
    for t in timers[:-1]:
        check(t["t_kernel_us"] <= g["t_kernel_us"] and 0 < t["ms_left"] <= 60000,
              f"every countdown value was read while the socket existed: {t}")
    # The run does not end in TIME_WAIT, by any account.
    notes = {e["key"]: e for e in ev if e["type"] == "note"}
    check(not any(n["key"] == "handshake.time_wait_left" and n["params"]["who"] == "client"
                  for n in ev if n["type"] == "note"), "no 'still in TIME_WAIT' note for the client")
    ended = notes["handshake.time_wait_ended.rst"]["params"]
    eq((ended["who"], ended["seg"], ended["seq_raw"]), ("client", g["evidence_seg"], rst["seq_raw"]),
       "the note names the RST")
    summ = ev[-1]["summary"]
    eq({k: summ["client_state"]["kernel"][k] for k in ("state", "source", "listed_at_end", "reason")},
       {"state": "CLOSED", "source": "sock_diag", "listed_at_end": False, "reason": "rst"},
       "the kernel's final word on the client, with its source")
    eq(summ["client_state"]["rfc_model"], {"state": "CLOSED", "source": "rfc-model"},
       "RFC 9293 (TIME-WAIT: an RST closes it) agrees")
    check("client_time_wait_ms_left" not in summ, "no TIME_WAIT time left is claimed")
    check(["TIME_WAIT>CLOSED"] == [x for x in istates(ev, "client") if x.startswith("TIME_WAIT")],
          "the model leaves TIME_WAIT on the RST")


@test
def every_state_names_its_source():
    root()
    r, ev = hs("scenario=client-closes", "observe_ms=200", "network=loopback")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    for e in ev:
        if e["type"] in ("state", "observation", "timer"):
            check(e.get("source") in ALL_SOURCES, f"an event without its source: {e}")
        if e["type"] == "state":
            eq(e["kind"], "model" if e["source"] == "rfc-model" else "transition", f"kind of {e}")
    summ = ev[-1]["summary"]
    for who in ("client", "server"):
        st = summ[f"{who}_state"]
        check(st["kernel"]["source"] in KERNEL_SOURCES, f"{who}: kernel state's source {st}")
        eq(st["rfc_model"]["source"], "rfc-model", f"{who}: the model's state is labelled")
    eq(summ["client_state"]["kernel"]["state"], "TIME_WAIT", "the kernel's client ends in TIME_WAIT")
    eq((summ["server_state"]["kernel"]["state"], summ["server_state"]["kernel"]["source"]),
       ("CLOSED", "tracepoint"), "the server's end, reported by the tracepoint")
    eq(summ["server_state"]["rfc_model"]["state"], "CLOSED", "the model's server")


def no_tracepoint_lab(tmp):
    """A copy of socklab with file capabilities, run as nobody: captures and
    namespaces work, the tracepoint (tracefs, root's) does not, as in the
    container."""
    import struct
    path = os.path.join(tmp, "socklab-caps")
    shutil.copy(os.environ.get("SOCKLAB") or "build/socklab", path)
    os.chmod(path, 0o755)
    mask = (1 << 12) | (1 << 13) | (1 << 21)  # NET_ADMIN, NET_RAW, SYS_ADMIN
    os.setxattr(path, "security.capability", struct.pack("<IIIII", 0x02000001, mask, 0, 0, 0))
    return path


@test
def without_the_tracepoint_no_transition_is_invented():
    root()
    lab = no_tracepoint_lab(TMP)
    args = [*NOBODY[:-2], lab, "run", "handshake", "--json", "-p", "network=loopback",
            "-p", "observe_ms=300"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    ev = [json.loads(line) for line in r.stdout.splitlines()]
    notes = {e["key"] for e in ev if e["type"] == "note"}
    check("handshake.no_tracepoint" in notes, "the run says the tracepoint is missing")
    for who in ("client", "server", "listener"):
        eq(kstates(ev, who), [], f"{who}: no kernel transition without a source of transitions")
    # What the samples saw, as observations with their source.
    obs = seen(ev, "client") + seen(ev, "server")
    check(any(o["state"] == "ESTABLISHED" for o in obs), f"a sample saw ESTABLISHED: {obs}")
    check({o["source"] for o in obs} <= {"sock_diag", "tcp_info"}, f"samples' sources: {obs}")
    check(any(o["source"] == "sock_diag" and o["state"] == "TIME_WAIT" for o in seen(ev, "client")),
          "sock_diag saw the client's TIME_WAIT")
    for o in obs:
        check("from" not in o and "to" not in o, f"an observation is no transition: {o}")
        eq(o["kind"], "sample", "an observation is a sample")
    check("handshake.diff.other" not in notes, "no 'the kernel reported a change' note")
    check("handshake.samples_only" in notes, "the samples are explained")
    cmp = {e["who"]: e for e in ev if e["type"] == "state.compare"}
    for who in ("client", "server"):
        eq(cmp[who]["kernel_source"], "none", f"{who}: no transitions to compare")
        for row in cmp[who]["rows"]:
            check("kernel" not in row, f"no kernel transition in the comparison: {row}")
            if "inferred" in row:
                eq(row["match"], "unobserved", f"a model change without a kernel counterpart: {row}")
    summ = ev[-1]["summary"]
    eq((summ["kernel_transitions"], summ["kernel_samples"]), ("none", ["sock_diag", "tcp_info"]), "summary")
    eq((summ["client_state"]["kernel"]["state"], summ["client_state"]["kernel"]["source"]),
       ("TIME_WAIT", "sock_diag"), "the client's last kernel state, by sock_diag")


# ---- through the server ----

async def _ws_run(s, msg, timeout=60):
    from harness import events_until_end, request
    async with s.connect() as ws:
        reply = await request(ws, msg)
        if reply.get("type") != "run.accepted":
            return reply, None
        return reply, await events_until_end(ws, reply["run"], timeout=timeout)


@test
def server_serves_the_capture_and_replays_uploads():
    root()
    from harness import Server
    s = Server()
    try:
        reply, ev = asyncio.run(_ws_run(s, {"op": "run", "lab": "handshake",
                                            "params": {"observe_ms": 0}}))
        eq(reply["type"], "run.accepted", f"reply {reply}")
        run_id = reply["run"]
        eq(ev[-1]["status"], "ok", "run status")
        s.wait_run_status(run_id)
        r = s.get(f"/api/runs/{run_id}/capture.pcap")
        eq(r.status, 200, "capture.pcap")
        eq(r.headers["Content-Type"], "application/vnd.tcpdump.pcap", "type")
        check(f"socklab-{run_id}.pcap" in r.headers["Content-Disposition"], "attachment name")
        pcap = os.path.join(TMP, "served.pcap")
        with open(pcap, "wb") as f:
            f.write(r.body)
        if shutil.which("tshark"):
            eq(len(tshark_rows(pcap)), len(segs(ev)), "every segment is in the served file")
        # A browser cannot name a file to replay...
        reply, _ = asyncio.run(_ws_run(s, {"op": "run", "lab": "handshake",
                                           "params": {"replay": "/etc/passwd"}}))
        eq((reply["type"], reply["code"], reply["param"]), ("error", "bad_param", "replay"), "refused")
        # ...but it can upload one, which the server keeps in the run's bundle.
        b64 = base64.b64encode(r.body).decode()
        reply, ev2 = asyncio.run(_ws_run(s, {"op": "run", "lab": "handshake", "params": {}, "pcap": b64}))
        eq(reply["type"], "run.accepted", f"upload {reply}")
        eq(ev2[-1]["status"], "ok", "replay status")
        eq([x["flags_short"] for x in segs(ev2)], [x["flags_short"] for x in segs(ev)], "same segments")
        meta = s.wait_run_status(reply["run"])
        check(meta["params"]["replay"].endswith(f"/runs/{reply['run']}/upload.pcap"),
              f"the replayed file is the bundle's: {meta['params']['replay']}")
        for msg, code, what in (
                ({"pcap": base64.b64encode(b"\0" * (47 * 1024 + 1)).decode()}, "limit", "too large"),
                ({"pcap": "not base64!"}, "bad_request", "bad base64"),
                ({"pcap": 7}, "bad_request", "not a string"),
                ({"pcap": b64, "params": {"scenario": "abort"}}, "bad_param", "live parameter with a replay"),
                ({"pcap": b64, "lab": "tcp-echo"}, "bad_request", "a lab without replay")):
            m = {"op": "run", "lab": "handshake", "params": {}}
            m.update(msg)
            reply, _ = asyncio.run(_ws_run(s, m))
            eq((reply["type"], reply["code"], reply.get("param")), ("error", code, "pcap"), what)
        s.wait_no_children()
        runs = [x["id"] for x in s.get_json("/api/runs")]
        eq(len(runs), 2, "refused requests leave no bundle")
    finally:
        s.stop()
        s.cleanup()


try:
    run(timeout=120)
finally:
    shutil.rmtree(TMP, ignore_errors=True)
