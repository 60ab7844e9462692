"""test_udp_ping.py: the udp-ping lab end to end: real UDP sockets, real namespaces, the real relay.

Timing is never asserted exactly: only lower bounds the wire guarantees (a
delay D each way makes every RTT at least 2D) and exact counts the wire
reports itself. Loss rates are checked against a binomial 6-sigma interval.
"""
import asyncio
import json
import math
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, check_stream, events_until_end, free_port_range, start_run  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")


def sl(*args, timeout=90):
    r = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)
    for bad in ("AddressSanitizer", "runtime error:", "LeakSanitizer"):
        check(bad not in r.stderr, f"sanitizer report from {args}: {r.stderr[-800:]}")
    return r


def ping(*params, extra=()):
    args = ["run", "udp-ping", "--json", *extra]
    for p in params:
        args += ["-p", p]
    r = sl(*args)
    eq(r.returncode, 0, f"exit status of {params} (stderr {r.stderr[-400:]})")
    events = [json.loads(line) for line in r.stdout.splitlines()]
    check_stream(events)
    eq(events[-1]["status"], "ok", "status")
    return events


def of(events, typ, **kv):
    return [e for e in events if e["type"] == typ and all(e.get(k) == v for k, v in kv.items())]


def summary(events):
    return events[-1]["summary"]


def check_binomial(got, n, p, what):
    """got ~ Binomial(n, p): within 6 standard deviations of n*p (false alarm < 2e-9)."""
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    check(abs(got - mean) <= 6 * sd,
          f"{what}: {got} of {n}, expected {mean:.1f} +- {6 * sd:.1f} (6 sigma)")


@test
def unimpaired_loopback_answers_every_probe():
    events = ping("count=20", "interval_ms=10")
    s = summary(events)
    eq((s["sent"], s["received"], s["lost"], s["late"], s["duplicates"]), (20, 20, 0, 0, 0), "counts")
    eq(s["loss_pct"], 0.0, "loss")
    check(0 < s["rtt_min_us"] <= s["rtt_avg_us"] <= s["rtt_max_us"], f"min <= avg <= max: {s}")
    replies = of(events, "probe", status="reply")
    eq([e["probe"] for e in replies], list(range(1, 21)), "one reply per probe, in order")
    check(all(e["ok"] and e["bytes"] == 64 for e in replies), "replies are the upper-cased probes")
    eq(events[0]["network"]["kind"], "loopback", "network")
    sends = of(events, "syscall", who="client", call="sendto")
    eq(len(sends), 20, "sendto calls")
    check(sends[0]["data"].startswith("seq=1 abc"), sends[0]["data"])
    recvs = of(events, "syscall", who="client", call="recvfrom")
    check(all(r["data"].startswith("SEQ=") for r in recvs), "client got upper-cased replies")
    eq(recvs[0]["from"]["addr"], "127.0.0.1", "reply source")


@test
def unimpaired_two_hosts_over_veth():
    events = ping("count=10", "interval_ms=10", "network=two-hosts")
    net = events[0]["network"]
    eq((net["kind"], net["wire"], net["mtu"]), ("two-hosts", "veth", 1500), "network")
    for side, last in (("client", 1), ("server", 2)):
        a = [int(x) for x in net[side]["addr"].split(".")]
        check(a[0] == 198 and a[1] in (18, 19), f"{side} address {net[side]['addr']} not in 198.18.0.0/15")
        eq(a[3] % 4, last, f"{side} is .{last} of its /30")
        check(net[side]["mac"].startswith("02:73:6c:") and net[side]["mac"].endswith(f":0{last}"),
              net[side]["mac"])
    s = summary(events)
    eq((s["received"], s["lost"]), (10, 0), "replies")
    check(s["rtt_min_us"] <= s["rtt_avg_us"] <= s["rtt_max_us"], "min <= avg <= max")
    eq(s["server"], net["server"]["addr"], "the server is the server host")
    eq(of(events, "wire"), [], "a veth reports no frames")
    check("wire" not in s, "no relay counters for a veth")
    peers = {e["from"]["addr"] for e in of(events, "syscall", who="server", call="recvfrom")}
    eq(peers, {net["client"]["addr"]}, "the server saw the client host's address")


@test
def the_first_probe_waits_for_arp_and_the_lab_says_so():
    """Over a 30 ms wire each way probe 1 pays an ARP round trip (60 ms):
    the note names the evidence, the missing neighbour entry and the ARP
    frames the relay carried; a loopback run, with no neighbours, says nothing."""
    events = ping("count=3", "interval_ms=100", "network=two-hosts", "c2s_delay_ms=30",
                  "s2c_delay_ms=30")
    notes = [e for e in events if e["type"] == "note" and e["key"] == "ping.first_arp_wire"]
    eq(len(notes), 1, "one ARP note")
    p = notes[0]["params"]
    eq((p["before"], p["after"]), ("NONE", "REACHABLE"), "the neighbour entry before and after")
    check(p["arp_out"] >= 1 and p["arp_back"] >= 1, f"ARP frames each way on the wire: {p}")
    arp = [e for e in of(events, "wire") if "ARP" in e.get("summary", "") or e.get("proto") == "ARP"]
    check(len(arp) >= 2, f"the relay reported the ARP frames: {[e for e in of(events, 'wire')][:3]}")
    rtts = {e["probe"]: e["rtt_us"] for e in of(events, "probe", status="reply")}
    eq(max(rtts, key=rtts.get), 1, f"probe 1 is the slowest: {rtts}")
    eq(notes[0]["text"].count("Probe 1 took"), 1, "English text filled")
    eq([e for e in ping("count=3", "interval_ms=10") if e["type"] == "note" and
        e["key"].startswith("ping.first_arp")], [], "no ARP note on loopback")


@test
def losses_equal_the_wire_drops_and_the_rate_fits():
    n = 300
    events = ping(f"count={n}", "interval_ms=10", "timeout_ms=1000", "network=two-hosts",
                  "c2s_loss_pct=20", "s2c_loss_pct=10", "seed=1234")
    s = summary(events)
    drops = of(events, "wire", action="drop")
    check(all("probe" in d for d in drops), "a dropped frame that is not a probe")
    # A reply slower than the timeout (a stalled machine) is late, not lost.
    late = {e["probe"] for e in of(events, "probe", status="late")}
    lost = {e["probe"]: e for e in of(events, "probe", status="lost") if e["probe"] not in late}
    dropped = {}
    for d in drops:
        dropped.setdefault(d["probe"], d["dir"])
    eq(sorted(lost), sorted(dropped), "lost probes vs probes the wire dropped")
    for p, e in lost.items():
        eq(e["lost_by"], dropped[p], f"probe {p} lost_by")
        eq(e["wire"][dropped[p]]["action"], "drop", f"probe {p} wire record")
    eq(s["lost"], len(dropped), "summary lost")
    eq(s["lost_c2s"], sum(1 for d in dropped.values() if d == "c2s"), "lost c2s")
    eq(s["lost_s2c"], sum(1 for d in dropped.values() if d == "s2c"), "lost s2c")
    eq(s["wire"]["c2s"]["dropped"] + s["wire"]["s2c"]["dropped"], len(drops), "wire counters")
    eq(s["received"] + s["lost"] + s["late"], n, "every probe accounted for")
    check(not late & set(dropped), "a probe the wire dropped came back late")
    # c2s: Binomial(n, 0.2); s2c only sees the probes that got through.
    c2s = s["lost_c2s"]
    check_binomial(c2s, n, 0.20, "c2s drops")
    check_binomial(s["lost_s2c"], n - c2s, 0.10, "s2c drops")
    eq(round(s["loss_pct"], 6), round(100.0 * s["lost"] / n, 6), "loss %")


def drop_pattern(seed):
    events = ping("count=60", "interval_ms=10", "timeout_ms=200", "network=two-hosts",
                  "c2s_loss_pct=30", "s2c_loss_pct=30", f"seed={seed}")
    eq(events[0]["network"]["seed"], seed, "seed as applied")
    # Each direction draws from its own seeded stream, so each direction's
    # drops are reproducible; how the two interleave in time is not.
    return sorted((e["dir"], e["probe"]) for e in of(events, "wire", action="drop"))


@test
def the_same_seed_drops_the_same_probes():
    a, b, c = drop_pattern(77), drop_pattern(77), drop_pattern(78)
    check(a, "seed 77 dropped nothing")
    eq(a, b, "drops with the same seed")
    check(a != c, "seeds 77 and 78 dropped the same probes")


@test
def random_seed_is_stated_and_reproduces():
    events = ping("count=30", "interval_ms=10", "timeout_ms=200", "network=two-hosts",
                  "c2s_loss_pct=30")
    net = events[0]["network"]
    check(net["seed_chosen"] and net["seed"] > 0, f"seed {net['seed']}")
    again = ping("count=30", "interval_ms=10", "timeout_ms=200", "network=two-hosts",
                 "c2s_loss_pct=30", f"seed={net['seed']}")
    eq([e["probe"] for e in of(again, "wire", action="drop")],
       [e["probe"] for e in of(events, "wire", action="drop")], "drops replayed from the stated seed")


@test
def delay_each_way_bounds_every_rtt():
    events = ping("count=10", "interval_ms=20", "network=two-hosts", "c2s_delay_ms=15",
                  "s2c_delay_ms=25", "c2s_jitter_ms=5")
    s = summary(events)
    eq(s["received"], 10, "replies")
    rtts = [e["rtt_us"] for e in of(events, "probe", status="reply")]
    check(min(rtts) >= (15 - 5 + 25) * 1000, f"an RTT below the wire's minimum delay: {min(rtts)} us")
    eq(s["rtt_min_us"], min(rtts), "summary min")
    for w in of(events, "wire", dir="s2c"):
        check(w["action"] == "delay" and w["delay_us"] >= 25000, f"s2c frame not delayed 25 ms: {w}")
    for w in of(events, "wire", dir="c2s"):
        check(10000 <= w["delay_us"] <= 20000, f"c2s delay outside 15 +- 5 ms: {w}")
    eq(events[0]["network"]["impair"]["s2c"]["delay_ms"], 25, "applied delay")


@test
def symmetric_delay_d_makes_rtt_at_least_2d():
    events = ping("count=8", "interval_ms=20", "network=two-hosts", "c2s_delay_ms=20",
                  "s2c_delay_ms=20")
    rtts = [e["rtt_us"] for e in of(events, "probe", status="reply")]
    eq(len(rtts), 8, "replies")
    check(min(rtts) >= 40000, f"RTT {min(rtts)} us below 2 x 20 ms")


@test
def duplicates_are_counted_not_taken_as_replies():
    n = 12
    events = ping(f"count={n}", "interval_ms=15", "network=two-hosts", "c2s_dup_pct=100")
    s = summary(events)
    eq((s["received"], s["duplicates"], s["lost"]), (n, n, 0), "c2s duplication: replies, dups")
    eq(s["server_datagrams"], 2 * n, "the server answered both copies")
    eq(len(of(events, "probe", status="dup")), n, "dup events")
    eq(s["wire"]["c2s"]["duplicated"], n, "wire duplicated")
    events = ping(f"count={n}", "interval_ms=15", "network=two-hosts", "s2c_dup_pct=100")
    s = summary(events)
    eq((s["received"], s["duplicates"], s["server_datagrams"]), (n, n, n), "s2c duplication")
    for e in of(events, "probe", status="dup"):
        eq(e["wire"]["s2c"]["action"], "dup", f"probe {e['probe']} wire record")


@test
def reordering_is_detected():
    events = ping("count=40", "interval_ms=10", "network=two-hosts", "s2c_reorder_pct=30",
                  "seed=9")
    s = summary(events)
    held = {w["probe"] for w in of(events, "wire", action="reorder")}
    reordered = [e["probe"] for e in of(events, "probe", status="reply") if e["reordered"]]
    check(held, "the wire held nothing back")
    check(reordered, "no reply was out of order")
    eq(s["reordered"], len(reordered), "summary reordered")
    check(set(reordered) <= held, f"reordered {reordered} but the wire held only {sorted(held)}")
    eq((s["received"], s["lost"]), (40, 0), "reordering loses nothing")
    # A held reply arrives after a later one: it is out of order in the client's recvfrom order.
    order = [int(r["data"].split()[0][4:]) for r in of(events, "syscall", who="client", call="recvfrom")]
    for p in reordered:
        check(any(q > p for q in order[:order.index(p)]), f"probe {p} came before every later one")


@test
def rate_limit_spaces_frames():
    # 1000 bytes of payload: a 1042-byte frame takes 1042 * 8 / 800 = 10.4 ms at 800 kbit/s.
    events = ping("count=10", "interval_ms=30", "size=1000", "network=two-hosts",
                  "c2s_rate_kbit=800")
    rtts = [e["rtt_us"] for e in of(events, "probe", status="reply")]
    eq(len(rtts), 10, "replies")
    check(min(rtts) >= 10420, f"RTT {min(rtts)} us below the line time of one frame")


@test
def large_probes_are_sent_as_fragments():
    events = ping("count=4", "interval_ms=20", "size=3000", "fragment=true", "network=two-hosts")
    s = summary(events)
    eq((s["received"], s["lost"]), (4, 0), "replies")
    check(all(e["bytes"] == 3000 and e["ok"] for e in of(events, "probe", status="reply")), "3000-byte replies")
    frags = [w for w in of(events, "wire", dir="c2s") if "IP fragment" in w["summary"]]
    # 3008 bytes of UDP in 1480-byte pieces: 3 fragments per probe, each tagged with its probe.
    eq(len(frags), 12, f"c2s fragments: {[w['summary'] for w in of(events, 'wire')][:6]}")
    eq(sorted({w["probe"] for w in frags}), [1, 2, 3, 4], "fragments matched to probes")
    check(events[0]["network"]["trace_frames"], "fragment=true traces every frame")
    opts = of(events, "syscall", who="client", call="setsockopt")
    eq(opts[0]["args"]["name"], "IP_MTU_DISCOVER", "the client says it allows fragments")


@test
def bad_parameters_name_the_field():
    cases = [
        (["count=-1"], "parameter 'count': must be an integer from 1 to 10000"),
        (["interval_ms=5"], "parameter 'interval_ms': must be an integer from 10"),
        (["c2s_loss_pct=101", "network=two-hosts"], "parameter 'c2s_loss_pct': must be an integer from 0 to 100"),
        (["size=1473", "network=two-hosts"], "parameter 'size': at most 1472 bytes"),
        (["size=65508"], "parameter 'size': must be an integer from 16 to 65507"),
        (["c2s_loss_pct=5"], "parameter 'c2s_loss_pct': impairments need network=two-hosts"),
        (["network=two-hosts", "c2s_delay_ms=5", "c2s_jitter_ms=6"], "parameter 'c2s_jitter_ms'"),
        (["network=two-hosts", "s2c_loss_pct=60", "s2c_dup_pct=50"], "parameter 's2c_loss_pct'"),
        (["fragment=true"], "parameter 'fragment'"),
        (["network=mesh"], "parameter 'network': must be one of loopback or two-hosts"),
    ]
    for params, want in cases:
        args = ["run", "udp-ping"]
        for p in params:
            args += ["-p", p]
        r = sl(*args)
        eq(r.returncode, 2, f"exit for {params}")
        check(want in r.stderr, f"{params}: {r.stderr.strip()!r} lacks {want!r}")
    r = sl("run", "udp-ping", "-p", "network=two-hosts", "--netns", "off")
    eq(r.returncode, 2, "two-hosts with --netns off")
    check("parameter 'network'" in r.stderr, r.stderr)


@test
def cli_prints_ping_lines():
    r = sl("run", "udp-ping", "-p", "count=6", "-p", "interval_ms=10", "-p", "network=two-hosts",
           "-p", "c2s_loss_pct=50", "-p", "seed=5", "-p", "timeout_ms=200")
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    lines = r.stdout.splitlines()
    check(any(l.startswith("PING 198.1") for l in lines), r.stdout)
    replies = [l for l in lines if " bytes from 198.1" in l and "seq=" in l and "time=" in l]
    lost = [l for l in lines if l.startswith("seq=") and "lost (the wire dropped it c2s)" in l]
    check(replies and lost, r.stdout)
    eq(len(replies) + len(lost), 6, "one line per probe")
    check(any(l.startswith("--- ") and "udp-ping statistics" in l for l in lines), r.stdout)
    check(any(l.startswith("rtt min/avg/max/mdev = ") for l in lines), r.stdout)
    check(any(l.startswith("6 probes sent, ") for l in lines), r.stdout)
    check(not any("recvfrom(" in l for l in lines), "syscall lines in ping output")


def byo_run(extra, talk):
    """Start a mode=server run on a free loopback port, call talk(port), return its events."""
    lo, _ = free_port_range(1)
    args = [BIN, "run", "udp-ping", "--json", "-p", "mode=server", "-p", f"port={lo}",
            "-p", "idle_timeout=1", *extra]
    # Unbuffered: readline() then takes exactly one line, and communicate()
    # gets everything after it.
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        events = []
        while not events or events[-1]["type"] != "listening":
            line = p.stdout.readline()
            if not line:
                break
            events.append(json.loads(line))
        eq(events[-1]["type"], "listening", "listening event")
        eq(events[-1]["port"], lo, "port")
        talk(lo)
        out, err = (x.decode() for x in p.communicate(timeout=30))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    events += [json.loads(line) for line in out.splitlines()]
    check_stream(events)
    check("AddressSanitizer" not in err and "runtime error" not in err, err[-500:])
    eq(p.returncode, 0, f"exit ({err[-300:]})")
    return events


@test
def byo_server_answers_a_python_client():
    def talk(port):
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(10)
        c.bind(("127.0.0.1", 0))
        for msg in (b"hello", b"second datagram"):
            c.sendto(msg, ("127.0.0.1", port))
            data, src = c.recvfrom(2048)
            eq(data, msg.upper(), "echo")
            eq(src, ("127.0.0.1", port), "reply source")
        talk.me = c.getsockname()
        c.close()

    events = byo_run([], talk)
    recvs = of(events, "syscall", who="server", call="recvfrom")
    eq([(r["bytes"], r["from"]["addr"], r["from"]["port"]) for r in recvs],
       [(5, "127.0.0.1", talk.me[1]), (15, "127.0.0.1", talk.me[1])], "one recvfrom per datagram")
    s = summary(events)
    eq((s["datagrams"], s["bytes"], s["replies"], s["idle_stop"]), (2, 20, 2, True), "summary")
    check(of(events, "note", key="ping.idle_stop"), "idle stop note")
    check("network" not in events[0], "a host-network run has no lab network")


@test
def byo_server_answers_netcat():
    def talk(port):
        r = subprocess.run(["nc", "-u", "-w", "1", "127.0.0.1", str(port)], input="ping me\n",
                           capture_output=True, text=True, timeout=20)
        eq(r.stdout, "PING ME\n", f"nc output (stderr {r.stderr!r})")

    events = byo_run(["-p", "transform=upper"], talk)
    recvs = of(events, "syscall", who="server", call="recvfrom")
    eq([r["bytes"] for r in recvs], [8], "the datagram nc sent")


@test
def server_runs_udp_ping_over_websocket():
    lo, hi = free_port_range(2)
    s = Server("--byo-ports", f"{lo}-{hi}")
    try:
        async def go():
            async with s.connect() as ws:
                rid = await start_run(ws, {"count": 20, "interval_ms": 10, "network": "two-hosts",
                                           "c2s_loss_pct": 25, "seed": 31, "timeout_ms": 300},
                                      lab="udp-ping")
                events = await events_until_end(ws, rid, timeout=90)
                check_stream(events)
                eq(events[-1]["status"], "ok", "status")
                lost = sorted(e["probe"] for e in of(events, "probe", status="lost"))
                eq(lost, sorted(w["probe"] for w in of(events, "wire", action="drop")), "lost = dropped")
                eq(events[0]["network"]["seed"], 31, "seed")
                # The saved bundle has the same events.
                saved = s.get(f"/api/runs/{rid}/events").body.decode().splitlines()
                eq([json.loads(x)["seq"] for x in saved], [e["seq"] for e in events], "bundle")

                # Bring your own client over the WebSocket: the port comes from the pool.
                rid = await start_run(ws, {"mode": "server", "idle_timeout": 1}, lab="udp-ping")
                got = await events_until_end(ws, rid, until=lambda e: e["type"] == "listening")
                port = got[-1]["port"]
                check(lo <= port <= hi, f"port {port} outside the pool")
                c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                c.settimeout(10)
                c.sendto(b"ws byo", ("127.0.0.1", port))
                eq(c.recvfrom(100)[0], b"WS BYO", "echo")
                c.close()
                got += await events_until_end(ws, rid, timeout=30)
                check_stream(got)
                eq(got[-1]["summary"]["datagrams"], 1, "datagrams")

                # The server refuses what the lab refuses, naming the field.
                rid = await ws.send(json.dumps({"op": "run", "lab": "udp-ping",
                                                "params": {"network": "two-hosts", "size": 2000}}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 30))
                eq((reply["type"], reply["code"], reply["param"]), ("error", "bad_param", "size"), str(reply))
        asyncio.run(go())
        s.wait_no_children()
    finally:
        s.stop()


if __name__ == "__main__":
    run(timeout=120)
