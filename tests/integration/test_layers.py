"""test_layers.py: the layers lab on real frames, and its topology's lifetime.

Each scenario's assertions are about frames captured on the bridge ports
(ARP opcodes, MACs, TTL, ICMP type and code, fragment offsets and MF) and
about the kernel's own neighbour reports; tshark decodes the run's pcap
independently and must agree. The topology (five namespaces, two bridges,
five veth pairs, two address leases) must be gone after a normal end,
SIGTERM and SIGKILL, and two runs at once must share nothing.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import wait_for  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")


def layers(*params, pcap=None):
    args = [BIN, "run", "layers", "--json", "--timeout", "60"]
    for p in params:
        args += ["-p", p]
    if pcap:
        args += ["--pcap", pcap]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    check("AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-500:])
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    events = [json.loads(x) for x in r.stdout.splitlines()]
    eq(events[-1]["status"], "ok", "status")
    return events


def topo(events):
    t = [e for e in events if e["type"] == "topology"][0]
    hosts = {h["name"]: h for h in t["hosts"]}
    return {n: h["ifs"] for n, h in hosts.items()}


def frames(events, scenario=None, port=None, direction=None):
    return [e for e in events if e["type"] == "frame"
            and (scenario is None or e["scenario"] == scenario)
            and (port is None or e["port"] == port)
            and (direction is None or e["dir"] == direction)]


def scenario_end(events, n):
    return [e for e in events if e["type"] == "scenario" and e["n"] == n and e["phase"] == "end"][0]


def neigh(events, host, ip, scenario):
    return [e["to"] for e in events if e["type"] == "neigh" and e["host"] == host and e["ip"] == ip
            and e["scenario"] == scenario]


BCAST = "ff:ff:ff:ff:ff:ff"


@test
def same_subnet_one_broadcast_request_one_reply_then_b_mac():
    ev = layers("scenario=same-subnet")
    t = topo(ev)
    a, b, r = t["A"][0], t["B"][0], t["R"][0]
    arp = [f for f in frames(ev, 1) if "arp" in f]
    reqs = [f for f in arp if f["arp"]["op"] == 1]
    reps = [f for f in arp if f["arp"]["op"] == 2]
    # Sent once by A, delivered to every other port of the segment, none of the other.
    eq([(f["port"], f["dir"]) for f in reqs if f["dir"] == "from_host"], [("a-eth0", "from_host")], "request sent")
    eq(sorted(f["port"] for f in reqs if f["dir"] == "to_host"), ["b-eth0", "r-eth0"], "request delivered to")
    check(all(f["eth"]["dst"] == BCAST and f["arp"]["tpa"] == b["addr"] and f["arp"]["spa"] == a["addr"]
              for f in reqs), f"requests {reqs}")
    eq(frames(ev, 1, "c-eth0") + frames(ev, 1, "r-eth1"), [], "frames on the other segment")
    # One reply, B's, unicast to A only.
    eq([(f["port"], f["dir"]) for f in reps], [("b-eth0", "from_host"), ("a-eth0", "to_host")], "reply path")
    check(all(f["arp"]["sha"] == b["mac"] and f["eth"]["dst"] == a["mac"] for f in reps), f"replies {reps}")
    data = [f for f in frames(ev, 1, "a-eth0", "from_host") if "udp" in f]
    eq(len(data), 1, "data frames A sent")
    eq((data[0]["eth"]["dst"], data[0]["ip"]["dst"]), (b["mac"], b["addr"]), "first data frame's addresses")
    check(data[0]["n"] > max(f["n"] for f in reps), "the data frame left after the reply")
    # The kernel's reports: A's entry REACHABLE (no INCOMPLETE report), B learned A as STALE.
    # (A later STALE is the reachable time running out on a slow machine.)
    eq(neigh(ev, "A", b["addr"], 1)[:1], ["REACHABLE"], "A's entry for B: the kernel's first report")
    eq(neigh(ev, "B", a["addr"], 1)[:1], ["STALE"], "B's entry for A")
    eq(neigh(ev, "R", a["addr"], 1), [], "R learned nothing from a request not for it")
    f = scenario_end(ev, 1)["findings"]
    eq((f["first_data_dst"], f["first_data_after_reply"], f["delivered"]), (b["mac"], True, True), "findings")
    route = [e for e in ev if e["type"] == "route" and e["host"] == "A"][0]
    eq((route["via"], route["prefix_len"], route["dev"]), ("direct", 29, "eth0"), "A's route to B")


@test
def other_subnet_arps_for_the_gateway_and_the_router_rewrites():
    with tempfile.TemporaryDirectory() as d:
        pcap = os.path.join(d, "l.pcap")
        ev = layers("scenario=other-subnet", pcap=pcap)
        t = topo(ev)
        a, c, r0, r1 = t["A"][0], t["C"][0], t["R"][0], t["R"][1]
        route = [e for e in ev if e["type"] == "route" and e["host"] == "A"][0]
        eq((route["matched"], route["gateway"], route["dev"]), ("0.0.0.0/0", r0["addr"], "eth0"), "A's route")
        asked = [f["arp"]["tpa"] for f in frames(ev, 2, "a-eth0", "from_host") if "arp" in f and f["arp"]["op"] == 1]
        eq(asked, [r0["addr"]], "A asked only for the gateway")
        r_asked = [f["arp"]["tpa"] for f in frames(ev, 2, "r-eth1", "from_host") if "arp" in f and f["arp"]["op"] == 1]
        eq(r_asked, [c["addr"]], "R asked for C on its other side")
        sent = [f for f in frames(ev, 2, "a-eth0", "from_host") if "udp" in f][0]
        eq((sent["eth"]["dst"], sent["ip"]["dst"]), (r0["mac"], c["addr"]), "A's frame: R's MAC, C's IP")
        inn = [f for f in frames(ev, 2, "r-eth0", "to_host") if "udp" in f][0]
        out = [f for f in frames(ev, 2, "r-eth1", "from_host") if "udp" in f][0]
        eq(out["ip"]["id"], inn["ip"]["id"], "the same packet")
        eq(out["ip"]["ttl"], inn["ip"]["ttl"] - 1, "TTL one lower")
        check(out["ip"]["checksum"] != inn["ip"]["checksum"], "checksum recomputed")
        eq((out["eth"]["src"], out["eth"]["dst"]), (r1["mac"], c["mac"]), "new MACs")
        hop = [e for e in ev if e["type"] == "hop"][0]
        eq(sorted(x["field"] for x in hop["changes"]),
           ["destination MAC", "header checksum", "source MAC", "ttl"], "what changed")
        eq(hop["other_changed_offsets"], [], "nothing else changed")
        eq((hop["checksum_ok_in"], hop["checksum_ok_out"]), (True, True), "both checksums valid")
        tshark_agrees(pcap, ev)


def tshark_agrees(pcap, ev):
    """tshark reads the same frames from the pcap: every frame's MACs, and the
    TTL, header checksum, fragment offset, MF flag, ARP opcode and ICMP type
    and code where present, agree with the events, in order."""
    fields = ["eth.src", "eth.dst", "ip.ttl", "ip.checksum", "ip.frag_offset", "ip.flags.mf",
              "arp.opcode", "icmp.type", "icmp.code"]
    args = ["tshark", "-r", pcap, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    tsh = subprocess.run(args, capture_output=True, text=True, timeout=60)
    eq(tsh.returncode, 0, tsh.stderr[-300:])
    # An ICMP error quotes an IP header: tshark lists both values, the outer first.
    rows = [[c.split(",")[0] for c in line.split("\t")] for line in tsh.stdout.splitlines()]
    fr = frames(ev)
    eq(len(rows), len(fr), "frames in the pcap")
    for row, f in zip(rows, fr):
        r = dict(zip(fields, row))
        eq((r["eth.src"], r["eth.dst"]), (f["eth"]["src"], f["eth"]["dst"]), f"MACs of frame {f['n']}")
        if "ip" in f:
            eq(int(r["ip.ttl"]), f["ip"]["ttl"], f"TTL of frame {f['n']}")
            eq(int(r["ip.checksum"], 16), f["ip"]["checksum"], f"checksum of frame {f['n']}")
            # tshark 4.0 gives the offset in 8-byte units, as the header holds it.
            eq(int(r["ip.frag_offset"]) * 8, f["ip"]["frag_off"], f"fragment offset of frame {f['n']}")
            eq(r["ip.flags.mf"] in ("1", "True"), f["ip"]["mf"], f"MF of frame {f['n']}")
        if "arp" in f:
            eq(int(r["arp.opcode"]), f["arp"]["op"], f"ARP opcode of frame {f['n']}")
        if "icmp" in f:
            eq((int(r["icmp.type"]), int(r["icmp.code"])), (f["icmp"]["type"], f["icmp"]["code"]),
               f"ICMP of frame {f['n']}")


@test
def ttl_one_dies_at_the_router_with_time_exceeded():
    with tempfile.TemporaryDirectory() as d:
        pcap = os.path.join(d, "l.pcap")
        ev = layers("scenario=ttl", "ttl=1", pcap=pcap)
        tshark_agrees(pcap, ev)
    t = topo(ev)
    a, r0 = t["A"][0], t["R"][0]
    eq(frames(ev, 3, "r-eth1") + frames(ev, 3, "c-eth0"), [], "nothing forwarded")
    sent = [f for f in frames(ev, 3, "a-eth0", "from_host") if "udp" in f]
    eq([f["ip"]["ttl"] for f in sent], [1], "TTL A sent")
    icmp = [f for f in frames(ev, 3, "a-eth0", "to_host") if "icmp" in f]
    eq([(f["ip"]["src"], f["icmp"]["type"], f["icmp"]["code"]) for f in icmp], [(r0["addr"], 11, 0)], "ICMP")
    err = [e for e in ev if e["type"] == "syscall" and e.get("icmp_error")][0]["icmp_error"]
    eq((err["type"], err["code"], err["offender"]), (11, 0, r0["addr"]), "A's error queue")


@test
def ttl_two_reaches_c():
    ev = layers("scenario=ttl", "ttl=2")
    f = scenario_end(ev, 3)["findings"]
    eq(f.get("delivered"), True, "delivered")
    eq([x["ip"]["ttl"] for x in frames(ev, 3, "c-eth0", "to_host") if "udp" in x], [1], "TTL at C")


@test
def fragments_have_one_id_offsets_mf_and_reassemble():
    with tempfile.TemporaryDirectory() as d:
        pcap = os.path.join(d, "l.pcap")
        ev = layers("scenario=fragment", "frag_size=3000", "mtu2=1000", pcap=pcap)
        tshark_agrees(pcap, ev)
    f = scenario_end(ev, 4)["findings"]
    sent, got = f["sent_by_a"], f["received_by_c"]
    eq([(x["offset"], x["mf"]) for x in sent], [(0, True), (1480, True), (2960, False)], "A's fragments")
    eq(len({x["id"] for x in sent + got}), 1, "one IP ID")
    eq(f["ip_payload_a"], 3008, "UDP header + payload across A's fragments")
    eq(f["ip_payload_c"], 3008, "the same bytes reached C")
    check(len(got) > len(sent), f"the router fragmented again for the 1000-byte MTU: {got}")
    check(all(x["frame_len"] <= 1014 for x in got), f"a frame above C's MTU: {got}")
    check(all(x["offset"] % 8 == 0 for x in got), "offsets are multiples of 8")
    eq([x["mf"] for x in got].count(False), 1, "one last fragment")
    eq(f["c_recvfrom"], 3000, "C's recvfrom() got the whole datagram")
    # Checksums: the IPv4 header's always good; a first fragment's UDP
    # checksum covers the whole datagram (cannot be checked from one frame);
    # none is ever bad.
    frames = [e for e in ev if e["type"] == "frame" and e.get("ip")]
    check(frames and all(e["checksums"]["ipv4"]["status"] == "good" for e in frames),
          "every IPv4 header checksum good")
    firsts = [e for e in frames if e["ip"]["mf"] and e["ip"]["frag_off"] == 0 and "udp" in e["checksums"]]
    check(firsts and all(e["checksums"]["udp"]["reason"] == "fragment" for e in firsts),
          f"first fragments' UDP checksums: {[e['checksums'] for e in firsts][:2]}")
    check(not any(k["status"] == "bad" for e in frames for k in e["checksums"].values()), "none bad")


@test
def ageing_reachable_stale_probe_reachable():
    ev = layers("scenario=ageing", "reachable_ms=1000", "delay_probe_ms=300")
    t = topo(ev)
    a, b = t["A"][0], t["B"][0]
    timers = [e for e in ev if e["type"] == "neigh.timers"][0]
    eq((timers["base_reachable_ms"], timers["delay_probe_ms"]), (1000, 300), "timers in force")
    states = [s for s in neigh(ev, "A", b["addr"], 5)]
    # The lab removed the old entry first; from then on the kernel reports these.
    check(states[-4:] == ["REACHABLE", "STALE", "PROBE", "REACHABLE"], f"A's entry: {states}")
    sample = [e for e in ev if e["type"] == "neigh.sample" and "STALE" in e["when"]][0]
    eq(sample["state"], "DELAY", "sampled right after using the stale entry")
    f = scenario_end(ev, 5)["findings"]
    eq(f["probe_dst"], b["mac"], "the probe is unicast to the known MAC")
    check(len(f["reply_frames"]) >= 1, "B answered the probe")


HOST_NS = os.readlink("/proc/self/ns/net")


def net_fds(pid):
    """The namespaces the run's fds and threads refer to, other than the host's
    (where the run started and where a helper thread such as the event
    writer may stay)."""
    out = set()
    for fd in glob.glob(f"/proc/{pid}/fd/*") + glob.glob(f"/proc/{pid}/task/*/ns/net"):
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        if t.startswith("net:[") and t != HOST_NS:
            out.add(t)
    return out


def held():
    out = set()
    for fd in glob.glob("/proc/[0-9]*/fd/*") + glob.glob("/proc/[0-9]*/task/*/ns/net"):
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        if t.startswith("net:["):
            out.add(t)
    return out


def leases():
    with open("/proc/net/unix") as f:
        return {line.split()[-1] for line in f if "@socklab-net-" in line}


def leases_of(topo_ev):
    """The lease names a run holds: two /30 blocks per segment's /29."""
    names = set()
    for s in topo_ev["segments"]:
        a, b, c, d = (int(x) for x in s["subnet"].split("."))
        idx = (((a << 24) | (b << 16) | (c << 8) | d) - 0xC6120000) // 4
        names |= {f"@socklab-net-{idx}", f"@socklab-net-{idx + 1}"}
    return names


def start_ageing():
    args = [BIN, "run", "layers", "--json", "--timeout", "60", "-p", "scenario=ageing",
            "-p", "reachable_ms=30000", "-p", "delay_probe_ms=300"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    first = json.loads(p.stdout.readline())
    eq(first["type"], "run.start", "first event")
    topo_ev = json.loads(p.stdout.readline())
    eq(topo_ev["type"], "topology", "second event")
    # The switch and four hosts: five namespaces held by the run's fds.
    inodes = wait_for(lambda: len(net_fds(p.pid)) >= 5 and net_fds(p.pid), 10, "the namespaces")
    mine = leases_of(topo_ev)
    eq(mine - leases(), set(), "the run's leases while it runs")
    return p, inodes, topo_ev


def check_gone(p, inodes, mine):
    wait_for(lambda: p.poll() is not None, 30, "the run to end")
    left = held() & inodes
    check(not left, f"namespaces still held: {left}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    check("02:73:6c:" not in links, "an interface of ours in the host namespace")
    eq(leases() & mine, set(), "leases left")


@test
def sigterm_and_sigkill_and_normal_end_leave_nothing():
    for how in ("term", "kill"):
        p, inodes, topo_ev = start_ageing()
        if how == "term":
            p.send_signal(signal.SIGTERM)
        else:
            p.kill()
        out, _ = p.communicate(timeout=30)
        if how == "term":
            last = json.loads(out.decode().splitlines()[-1])
            eq((last["type"], last["status"]), ("run.end", "cancelled"), "cancelled")
        else:
            eq(p.returncode, -signal.SIGKILL, "killed")
        check_gone(p, inodes, leases_of(topo_ev))
    args = [BIN, "run", "layers", "--json", "-p", "scenario=same-subnet"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    inodes = wait_for(lambda: len(net_fds(p.pid)) >= 5 and net_fds(p.pid), 10, "the namespaces")
    out, _ = p.communicate(timeout=60)
    eq(p.returncode, 0, "normal end")
    topo_ev = [json.loads(x) for x in out.decode().splitlines() if '"topology"' in x][0]
    check_gone(p, inodes, leases_of(topo_ev))


@test
def two_runs_at_once_share_nothing():
    runs = [start_ageing() for _ in range(2)]
    try:
        (p1, i1, t1), (p2, i2, t2) = runs
        eq(i1 & i2, set(), "shared namespaces")
        s1 = {s["subnet"] for s in t1["segments"]}
        s2 = {s["subnet"] for s in t2["segments"]}
        eq(s1 & s2, set(), "shared subnets")
        m1 = {i["mac"] for h in t1["hosts"] for i in h["ifs"]}
        m2 = {i["mac"] for h in t2["hosts"] for i in h["ifs"]}
        eq(m1 & m2, set(), "shared MACs")
    finally:
        for p, _, _ in runs:
            p.kill()
            p.communicate(timeout=30)


def ip_key(f):
    return (f["ip"]["src"], f["ip"]["dst"], f["ip"]["id"], f["ip"]["frag_off"])


def lost_on_a_link(ev, port):
    """The IPv4 frames the host of port sent that the wire dropped, as their
    index among the host's IPv4 frames; checked against the capture: a frame
    the wire dropped reached no other port, every other one did."""
    wire = [e for e in ev if e["type"] == "wire" and e["port"] == port]
    counters = ev[-1]["summary"]["wire"][port]
    sent = frames(ev, port=port, direction="from_host")
    # The relay reads what the port's capture sees, in the same order.
    eq(len(sent), counters["c2s"]["frames"], f"{port}: frames captured vs the wire's count")
    dropped = {e["frame"] for e in wire if e["dir"] == "c2s" and e["action"] == "drop"}
    eq(len(dropped), counters["c2s"]["dropped"], f"{port}: drop events vs the counter")
    elsewhere = {ip_key(f) for f in frames(ev) if f["port"] != port and "ip" in f}
    lost = []
    ip_n = 0
    for k, f in enumerate(sent, 1):
        if "ip" not in f:
            check(k not in dropped, f"{port}: a non-IP frame {k} was dropped")
            continue
        ip_n += 1
        if k in dropped:
            lost.append(ip_n)
            check(ip_key(f) not in elsewhere, f"{port}: dropped frame {k} reached another port")
        else:
            check(ip_key(f) in elsewhere, f"{port}: frame {k} passed but reached no other port")
    # What reached the host is what the wire delivered towards it.
    eq(len(frames(ev, port=port, direction="to_host")), counters["s2c"]["delivered"],
       f"{port}: frames delivered to the host")
    return lost


@test
def a_seeded_lossy_link_drops_the_same_frames_and_capture_agrees():
    params = ("scenario=other-subnet", "a_loss_pct=50", "r2_loss_pct=30", "a_delay_ms=20", "seed=11")
    runs = [layers(*params) for _ in range(2)]
    lost = []
    for ev in runs:
        t = [e for e in ev if e["type"] == "topology"][0]
        eq(t["seed"], 11, "the seed in the topology event")
        ifs = {i["port"]: i for h in t["hosts"] for i in h["ifs"]}
        eq(ifs["a-eth0"]["wire"]["sent"]["loss_pct"], 50, "A's link: loss")
        eq(ifs["r-eth1"]["wire"]["received"]["loss_pct"], 30, "R's second link: loss")
        check("wire" not in ifs["b-eth0"], "B's link is a plain bridge port")
        lost.append((lost_on_a_link(ev, "a-eth0"), lost_on_a_link(ev, "r-eth1")))
        delayed = [e for e in ev if e["type"] == "wire" and e["action"] == "delay"]
        check(delayed and all(e["port"] == "a-eth0" and e["delay_us"] == 20000 for e in delayed),
              f"delays {delayed[:3]}")
    eq(lost[0], lost[1], "same seed, same drops")
    check(sum(len(x) for x in lost[0]) > 0, f"seed 11 drops something: {lost[0]}")


@test
def an_impaired_topology_leaves_nothing_after_sigkill():
    args = [BIN, "run", "layers", "--json", "--timeout", "60", "-p", "scenario=ageing",
            "-p", "reachable_ms=30000", "-p", "a_loss_pct=10", "-p", "r2_delay_ms=5"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    eq(json.loads(p.stdout.readline())["type"], "run.start", "first event")
    topo_ev = json.loads(p.stdout.readline())
    eq(topo_ev["type"], "topology", "second event")
    inodes = wait_for(lambda: len(net_fds(p.pid)) >= 5 and net_fds(p.pid), 10, "the namespaces")
    p.kill()
    p.communicate(timeout=30)
    check_gone(p, inodes, leases_of(topo_ev))


@test
def without_privileges_the_error_names_the_capability():
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", BIN, "run", "layers",
                        "--json"], capture_output=True, text=True, timeout=60)
    eq(r.returncode, 1, f"exit ({r.stderr[-300:]})")
    events = [json.loads(x) for x in r.stdout.splitlines()]
    err = [e for e in events if e["type"] == "error"]
    eq([e["code"] for e in err], ["network_unavailable"], "error code")
    check("CAP_SYS_ADMIN" in err[0]["message"], err[0]["message"])
    eq(events[-1]["status"], "error", "status")


@test
def bad_parameters_are_refused_by_name():
    for params, field in ((["delay_probe_ms=600", "reachable_ms=1000"], "delay_probe_ms"),
                          (["mtu2=100"], "mtu2"), (["scenario=nope"], "scenario"),
                          (["a_delay_ms=501"], "a_delay_ms"), (["r2_loss_pct=101"], "r2_loss_pct"),
                          (["seed=-1"], "seed")):
        args = [BIN, "run", "layers"]
        for p in params:
            args += ["-p", p]
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        eq(r.returncode, 2, f"exit for {params}")
        check(f"'{field}'" in r.stderr, f"{params}: {r.stderr!r}")


if __name__ == "__main__":
    run(timeout=120)
