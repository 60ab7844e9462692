"""test_echo_capture.py: tcp-echo with capture=on: the segments on the wire against the calls' bytes, seq/ack, the kernel's states, checksums, drops, and tshark reading the pcap."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import binary, check_stream  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

TMP = tempfile.mkdtemp(prefix="socklab-echocap-test-")


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root (a network namespace per run and CAP_NET_RAW)")


def echo(*params, pcap=None, env=None):
    args = [binary(), "run", "tcp-echo", "--json", "--timeout", "60"]
    for p in params:
        args += ["-p", p]
    if pcap:
        args += ["--pcap", pcap]
    r = subprocess.run(args, capture_output=True, text=True, timeout=90, env=env)
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    check_stream(events)
    eq(events[-1]["status"], "ok", "status")
    return events, events[-1]["summary"]


def calls(events, who, call, conn):
    return [e for e in events if e["type"] == "syscall" and e["who"] == who and e["call"] == call
            and e.get("conn") == conn and e.get("ret", -1) >= 0]


def notes(events):
    return [e["key"] for e in events if e["type"] == "note"]


def check_connection(net, events, k):
    """Connection k: one SYN and one SYN-ACK, payload bytes each way equal to
    what that side's send() calls sent, data that covers the stream without a
    gap, FINs at the end of each stream and the last ACK after them."""
    segs = [e for e in events if e["type"] == "segment" and e["conn"] == k]
    up = [g for g in segs if g["dir"] == "c2s"]
    down = [g for g in segs if g["dir"] == "s2c"]
    sent_up = sum(e["bytes"] for e in calls(events, "client", "send", k))
    sent_down = sum(e["bytes"] for e in calls(events, "server", "send", k))
    check(sent_up > 0 and sent_down == sent_up, f"{net} #{k}: the calls sent {sent_up}/{sent_down}")
    for name, side, sent in (("c2s", up, sent_up), ("s2c", down, sent_down)):
        check(not any(g.get("retransmit") for g in side), f"{net} #{k} {name}: no retransmission")
        eq(sum(g["len"] for g in side), sent, f"{net} #{k} {name}: payload bytes == the calls' bytes")
        syn = [g for g in side if "SYN" in g["flags"]]
        eq([g["rel_seq"] for g in syn], [0], f"{net} #{k} {name}: one SYN at relative seq 0")
        data = sorted((g["rel_seq"], g["len"]) for g in side if g["len"])
        end = 1
        for seq, n in data:
            eq(seq, end, f"{net} #{k} {name}: the data continues where it left off")
            end = seq + n
        eq(end, sent + 1, f"{net} #{k} {name}: the data ends at the stream's length + 1")
        fins = [g for g in side if "FIN" in g["flags"]]
        eq([g["rel_seq"] for g in fins], [sent + 1], f"{net} #{k} {name}: one FIN after the data")
    eq([g["rel_ack"] for g in down if "SYN" in g["flags"]], [1], f"{net} #{k}: the SYN-ACK acks the SYN")
    # The client closes first: its last segment acknowledges the server's FIN.
    eq(up[-1]["flags_short"], ".", f"{net} #{k}: the client's last segment is an ACK")
    eq(up[-1]["rel_ack"], sent_down + 2, f"{net} #{k}: ... of the server's FIN")
    for g in up + down:
        if "ACK" in g["flags"] and "SYN" not in g["flags"]:
            other = sent_down if g["dir"] == "c2s" else sent_up
            check(1 <= g["rel_ack"] <= other + 2, f"{net} #{k}: ack {g['rel_ack']} within the stream")
    return len(segs)


@test
def segments_match_the_calls_on_both_networks():
    """Two clients, 3 x 3000 bytes each (several segments a message over two
    hosts, whose MTU is 1500): every connection's segments against its calls,
    the kernel's states of both sockets, checksums, no drops, time order."""
    need_root()
    for net in ("loopback", "two-hosts"):
        events, s = echo("capture=on", f"network={net}", "clients=2", "messages=3", "size=3000")
        segs = [e for e in events if e["type"] == "segment"]
        cap = [e for e in events if e["type"] == "capture"]
        eq(len(cap), 1, f"{net}: one capture event")
        eq(s["capture"]["drops"], 0, f"{net}: drops reported as 0")
        eq(s["capture"]["complete"], True, f"{net}: complete")
        # Loopback: one capture point; two hosts: each segment seen leaving
        # one host and reaching the other.
        eq(s["capture"]["frames"], len(segs) * (2 if net == "two-hosts" else 1), f"{net}: frames")
        eq(s["segments"], len(segs), f"{net}: summary segments == segment events")
        n = check_connection(net, events, 1) + check_connection(net, events, 2)
        eq(n, len(segs), f"{net}: every segment belongs to connection 1 or 2")
        if net == "two-hosts":
            check(any(g["len"] > 1000 and g["len"] < 3000 for g in segs),
                  f"{net}: messages cut into MSS-sized pieces")
            check({g["host"] for g in segs} == {"client", "server"}, f"{net}: each segment once, from its host")
        byconn = {c["conn"]: c for c in s["captured_connections"]}
        eq(sorted(byconn), [1, 2], f"{net}: captured connections")
        for k in (1, 2):
            eq((byconn[k]["c2s_bytes"], byconn[k]["s2c_bytes"]), (9000, 9000), f"{net} #{k}: summary bytes")
        stamps = [g["t_kernel_us"] for g in segs]
        eq(stamps, sorted(stamps), f"{net}: segments in the kernel's time order")
        # Checksums: the IP header's is computed and good; TCP's is either
        # good or, where the kernel left it to offload (loopback, veth), not
        # computed, with that reason.
        for g in segs:
            eq(g["checksums"]["ipv4"]["status"], "good", f"{net}: IPv4 checksum")
            tcp = g["checksums"]["tcp"]
            check(tcp["status"] == "good" or (tcp["status"] == "not_computed" and tcp["reason"] == "offload"),
                  f"{net}: TCP checksum {tcp}")
        # The kernel's states of both sockets, each with its source.
        states = [e for e in events if e["type"] in ("state", "observation")]
        check(all(e["source"] in ("tracepoint", "sock_diag") for e in states), f"{net}: sources")
        if "echo.no_tracepoint" not in notes(events):
            for k in (1, 2):
                tr = [(e["who"], e["from"], e["to"]) for e in states
                      if e["type"] == "state" and e["conn"] == k]
                for want in (("client", "CLOSED", "SYN_SENT"), ("client", "SYN_SENT", "ESTABLISHED"),
                             ("server", "SYN_RECV", "ESTABLISHED"), ("client", "ESTABLISHED", "FIN_WAIT_1"),
                             ("server", "ESTABLISHED", "CLOSE_WAIT"), ("server", "LAST_ACK", "CLOSED")):
                    check(want in tr, f"{net} #{k}: transition {want} in {tr}")
        final = {(e["who"], e["conn"]): e for e in s["kernel_states"]}
        for k in (1, 2):
            eq((final[("client", k)]["state"], final[("client", k)]["source"], final[("client", k)]["listed_at_end"]),
               ("TIME_WAIT", "sock_diag", True), f"{net} #{k}: the client ends in TIME_WAIT (sock_diag)")
        check("echo.capture_cost" in notes(events), f"{net}: the run says what capturing cost")
        if "echo.no_tracepoint" not in notes(events):
            tp = s["tracepoint"]
            eq((tp["lost"], tp["complete"]), (0, True), f"{net}: the tracepoint lost nothing: {tp}")
            check("tracepoint.incomplete" not in notes(events), f"{net}: no incomplete note")
            check(all("complete" not in e for e in s["kernel_states"]), f"{net}: no state marked")


@test
def a_tracepoint_that_lost_events_says_so():
    """The test knob overwrites the slot's ring before the run's
    transitions are read (see test_handshake): the summary counts the loss,
    the note says no conclusion is drawn from the transitions, and a final
    state the tracepoint gave is marked as from a lane with gaps."""
    need_root()
    env = dict(os.environ, SOCKLAB_TRACE_TEST_FLOOD_KB="1024")
    events, s = echo("capture=on", "clients=2", env=env)
    if "echo.no_tracepoint" in notes(events):
        raise Skip("no tracepoint here")
    tp = s["tracepoint"]
    eq((tp["complete"], tp["counted"]), (False, True), f"tracepoint {tp}")
    check(tp["overrun"] > 1000, f"the kernel counted the overrun: {tp}")
    inc = [e for e in events if e["type"] == "note" and e["key"] == "tracepoint.incomplete"]
    eq(len(inc), 1, "one tracepoint.incomplete note")
    eq(inc[0]["params"]["lost"], tp["lost"], "the note's count is the summary's")
    check("No conclusion is drawn from this run's transitions" in inc[0]["text"], inc[0]["text"])
    for e in s["kernel_states"]:
        eq(e.get("complete", True), e["source"] != "tracepoint", f"marked iff the tracepoint's: {e}")
    eq(s["capture"]["complete"], True, "the capture's lane is whole")


@test
def tshark_reads_the_same_segments():
    """The pcap, read by tshark: the same segments in the same order, with
    the same ports, flags, seq, ack, length, window and checksums."""
    need_root()
    if not shutil.which("tshark"):
        raise Skip("tshark is not installed (server/tools/install-deps.sh test installs it)")
    fields = ("tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
              "tcp.window_size_value", "ip.checksum", "tcp.checksum")
    for net in ("loopback", "two-hosts"):
        pcap = os.path.join(TMP, f"echo-{net}.pcap")
        events, s = echo("capture=on", f"network={net}", "messages=2", "size=2000", pcap=pcap)
        args = ["tshark", "-r", pcap, "-T", "fields"]
        for f in fields:
            args += ["-e", f]
        r = subprocess.run(args, capture_output=True, text=True, timeout=60)
        eq(r.returncode, 0, f"tshark: {r.stderr[-300:]}")
        rows = [line.split("\t") for line in r.stdout.splitlines() if line.strip()]
        segs = [e for e in events if e["type"] == "segment"]
        mine = [[str(g["src"]["port"]), str(g["dst"]["port"]), f"0x{g['flags_raw']:04x}",
                 str(g["seq_raw"]), str(g["ack_raw"]), str(g["len"]), str(g["win"]),
                 f"0x{g['checksums']['ipv4']['value']:04x}", f"0x{g['checksums']['tcp']['value']:04x}"]
                for g in segs]
        check(len(mine) >= 10, f"{net}: {len(mine)} segments")
        eq(rows, mine, f"{net}: tshark's fields == the lab's segments")


@test
def capture_is_off_by_default_and_bounded():
    p = subprocess.run([binary(), "run", "tcp-echo", "--json"], capture_output=True, text=True, timeout=60)
    eq(p.returncode, 0, "exit")
    types = {json.loads(line)["type"] for line in p.stdout.splitlines()}
    check("segment" not in types and "capture" not in types, "no capture without capture=on")
    for params, what in ((["capture=on", "mode=server"], "mode=server"),
                         (["capture=on", "messages=1000", "size=5000"], "at most 4194304 bytes")):
        args = [binary(), "run", "tcp-echo"]
        for x in params:
            args += ["-p", x]
        p = subprocess.run(args, capture_output=True, text=True, timeout=30)
        eq(p.returncode, 2, f"{params}: bad usage")
        check("parameter 'capture'" in p.stderr and what in p.stderr, f"{params}: {p.stderr}")


@test
def the_cli_says_kernel_states_in_the_words_of_every_lab():
    need_root()
    p = subprocess.run([binary(), "run", "tcp-echo", "-p", "capture=on", "-p", "messages=1"],
                       capture_output=True, text=True, timeout=60)
    eq(p.returncode, 0, f"exit: {p.stderr[-300:]}")
    lines = p.stdout.splitlines()
    for want in (r"client#1 +state CLOSED -> SYN_SENT  \(kernel: tracepoint\)$",
                 r"server#1 +state LISTEN -> SYN_RECV  \(kernel: tracepoint\)$"):
        check(any(re.search(want, x) for x in lines), f"a line like {want!r}: {lines}")


@test
def without_cap_net_raw_capture_on_fails_naming_the_parameter():
    need_root()
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)

    def drop():
        if libc.prctl(24, 13, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_NET_RAW
            os._exit(121)
    r = subprocess.run([binary(), "run", "tcp-echo", "--json", "-p", "capture=on"], capture_output=True,
                       text=True, timeout=60, preexec_fn=drop)
    eq(r.returncode, 1, f"exit: {r.stderr[-300:]}")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    err = [e for e in events if e["type"] == "error"]
    eq([(e["code"], e.get("param")) for e in err], [("no_capture_privilege", "capture")], "the error")
    check("CAP_NET_RAW" in err[0]["message"] and "capture=off" in err[0]["message"], err[0]["message"])
    eq(events[-1]["status"], "error", "status")
    r = subprocess.run([binary(), "run", "tcp-echo", "--json"], capture_output=True, text=True,
                       timeout=60, preexec_fn=drop)
    eq(r.returncode, 0, "capture=off still runs without CAP_NET_RAW")


if __name__ == "__main__":
    run(timeout=240)
