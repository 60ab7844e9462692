"""test_net.py: the lab network's lifetime and tcp-echo over two hosts.

A two-hosts run holds two anonymous namespaces (three when the relay's ports
are packet sockets: the wire has a namespace of its own), a veth pair per host
(or two TAP devices, the relay's fallback without CAP_NET_RAW) and an address
lease, all by file descriptors of its process. After a
normal end, a cancel (SIGTERM) and a SIGKILL, nothing may be left: no process,
no namespace any process holds, nothing named in `ip netns`, no interface of
ours in the host namespace, no lease. While the run goes on, the test checks
that those things really existed (so the "gone" checks cannot pass vacuously).
"""
import glob
import json
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import wait_for  # noqa: E402
from netlib import host_links, lease_names, lease_of  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

BIN = os.environ.get("SOCKLAB_ASAN") or os.environ.get("SOCKLAB", "build/socklab")
if not os.path.exists(BIN):
    BIN = os.environ.get("SOCKLAB", "build/socklab")


def net_inodes_of(pid):
    """Network namespace inodes the threads of pid are in, and those its fds hold."""
    found = set()
    for link in glob.glob(f"/proc/{pid}/task/*/ns/net") + glob.glob(f"/proc/{pid}/fd/*"):
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("net:["):
            found.add(target)
    return found


def held_namespaces():
    """Every network namespace any thread or fd of any process refers to."""
    held = set()
    for link in glob.glob("/proc/[0-9]*/task/*/ns/net") + glob.glob("/proc/[0-9]*/fd/*"):
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target.startswith("net:["):
            held.add(target)
    return held


def netns_names():
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    # Lines look like "NAME (id: 0)"; only the name matters.
    return {line.split()[0] for line in r.stdout.splitlines() if line.strip()}


def links_in(path):
    """`ip -d -o link` inside the namespace that path (an nsfs file) refers to."""
    r = subprocess.run(["nsenter", f"--net={path}", "ip", "-d", "-o", "link"], capture_output=True,
                       text=True, timeout=10)
    return r.stdout


PR_CAPBSET_DROP, CAP_NET_RAW = 24, 13


def without_net_raw():
    """A preexec_fn: the child (root) runs without CAP_NET_RAW, which a root
    exec keeps only while it is in the bounding set."""
    import ctypes
    if ctypes.CDLL(None, use_errno=True).prctl(PR_CAPBSET_DROP, CAP_NET_RAW, 0, 0, 0) != 0:
        os._exit(121)


def start(params, timeout=60, preexec_fn=None):
    args = [BIN, "run", "udp-ping", "--json", "--timeout", str(timeout)]
    for p in params:
        args += ["-p", p]
    # Unbuffered, so that readline() takes one line and communicate() the rest.
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                         preexec_fn=preexec_fn)
    first = json.loads(p.stdout.readline())
    eq(first["type"], "run.start", "first event")
    return p, first


def check_alive_topology(p, first):
    """While the run goes on: its namespaces exist with eth0 of the right kind."""
    ports = first["network"].get("relay_ports")
    want = 3 if ports == "packet" else 2
    inodes = wait_for(lambda: len(net_inodes_of(p.pid)) >= want and net_inodes_of(p.pid), 10,
                      f"the run's {want} namespaces")
    check(len(inodes) == want, f"the run holds {inodes}, expected {want} namespaces")
    # The process holds each namespace by an fd: one has the client's eth0,
    # the other the server's, of the wire's kind.
    links = ""
    for fd in glob.glob(f"/proc/{p.pid}/fd/*"):
        try:
            if os.readlink(fd).startswith("net:["):
                links += links_in(fd)
        except OSError:
            continue
    for side in ("client", "server"):
        check(first["network"][side]["mac"] in links, f"{side} eth0 missing: {links}")
    kind = "tun type tap" if ports == "tap" else "veth"
    check(kind in links, f"eth0 is not {kind}: {links}")
    if ports == "packet":
        for end in ("wire-c", "wire-s"):
            check(f": {end}@" in links, f"the wire's end {end} missing: {links}")
    lease = lease_of(first)
    check(lease in lease_names(), f"no address lease {lease} while running")
    return inodes, lease


def check_gone(p, inodes, lease):
    wait_for(lambda: p.poll() is not None, 10, "the run's process to end")
    check(not os.path.exists(f"/proc/{p.pid}"), f"process {p.pid} still exists")
    left = held_namespaces() & inodes
    check(not left, f"namespaces {left} still held after the run")
    links = host_links()
    check("02:73:6c:" not in links, f"an interface of ours in the host namespace: {links}")
    eq(netns_names() - NETNS_BEFORE, set(), "new named namespaces")
    with open("/proc/mounts") as f:
        mounts = f.read()
    check(not any(i[5:-1] in mounts for i in inodes), "a namespace is bind-mounted")
    check(lease not in lease_names(), f"the run's address lease {lease} is left")


NETNS_BEFORE = netns_names()


@test
def normal_end_leaves_nothing():
    # 50 probes 20 ms apart: a second for check_alive_topology to look while
    # the run goes on (5 probes, about 0.1 s, ended first in a suite run at
    # load average 20).
    p, first = start(["count=50", "interval_ms=20", "network=two-hosts", "c2s_loss_pct=10"])
    inodes, lease = check_alive_topology(p, first)
    out, err = (x.decode() for x in p.communicate(timeout=60))
    eq(p.returncode, 0, f"exit ({err[-300:]})")
    eq(json.loads(out.splitlines()[-1])["status"], "ok", "status")
    check_gone(p, inodes, lease)


@test
def relay_needs_no_tun_device_and_falls_back_to_tap_without_net_raw():
    """The relay's ports are packet sockets on veth ends (no /dev/net/tun,
    which container hosts often deny); without CAP_NET_RAW the run falls back
    to TAP devices. Both carry the same impaired traffic to the same end."""
    for preexec, ports in ((None, "packet"), (without_net_raw, "tap")):
        p, first = start(["count=50", "interval_ms=20", "network=two-hosts", "c2s_loss_pct=10",
                          "seed=5"], preexec_fn=preexec)
        eq(first["network"]["wire"], "relay", "wire")
        eq(first["network"]["relay_ports"], ports, "the relay's ports")
        inodes, lease = check_alive_topology(p, first)
        out, err = (x.decode() for x in p.communicate(timeout=60))
        eq(p.returncode, 0, f"exit ({err[-300:]})")
        events = [json.loads(line) for line in out.splitlines()]
        end = events[-1]
        eq(end["status"], "ok", "status")
        wire = end["summary"]["wire"]
        dropped = wire["c2s"]["dropped"]
        # The seed decides the drops: the same ones whichever ports carry them.
        eq(end["summary"]["lost"], dropped, f"probes lost = frames the wire dropped ({ports})")
        eq(wire["c2s"]["delivered"] + dropped, wire["c2s"]["frames"], f"c2s frames ({ports})")
        check(wire.get("read_errors", 0) == 0 and wire.get("write_errors", 0) == 0,
              f"wire errors ({ports}): {wire}")
        check_gone(p, inodes, lease)


@test
def cancel_with_sigterm_leaves_nothing():
    p, first = start(["count=1000", "interval_ms=20", "network=two-hosts", "s2c_delay_ms=5"])
    inodes, lease = check_alive_topology(p, first)
    p.send_signal(signal.SIGTERM)
    out, err = (x.decode() for x in p.communicate(timeout=30))
    last = json.loads(out.splitlines()[-1])
    eq((last["type"], last["status"]), ("run.end", "cancelled"), "last event")
    check("wire" in last["summary"], "the relay's counters are reported on cancel")
    eq(p.returncode, 1, "exit status of a cancelled run")
    check_gone(p, inodes, lease)


@test
def sigkill_leaves_nothing():
    for extra in (["c2s_loss_pct=10"], []):  # the relay and the veth
        p, first = start(["count=1000", "interval_ms=20", "network=two-hosts", *extra])
        inodes, lease = check_alive_topology(p, first)
        p.kill()
        p.communicate(timeout=30)
        eq(p.returncode, -signal.SIGKILL, "killed")
        check_gone(p, inodes, lease)


@test
def concurrent_runs_get_different_addresses():
    runs = [start(["count=200", "interval_ms=20", "network=two-hosts"]) for _ in range(3)]
    try:
        subnets = [first["network"]["subnet"] for _, first in runs]
        eq(len(set(subnets)), 3, f"subnets {subnets}")
        addrs = [first["network"][side]["addr"] for _, first in runs for side in ("client", "server")]
        eq(len(set(addrs)), 6, f"addresses {addrs}")
    finally:
        for p, _ in runs:
            p.kill()
            p.communicate(timeout=30)


def echo(*params):
    args = [BIN, "run", "tcp-echo", "--json"]
    for p in params:
        args += ["-p", p]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    check("AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-500:])
    eq(r.returncode, 0, f"exit ({r.stderr[-300:]})")
    return [json.loads(x) for x in r.stdout.splitlines()]


@test
def tcp_echo_default_is_loopback():
    events = echo("messages=2")
    eq(events[0]["network"]["kind"], "loopback", "network")
    eq(events[0]["params"]["network"], "loopback", "param")
    check(not [e for e in events if e["type"] == "wire"], "wire events on loopback")
    lst = [e for e in events if e["type"] == "listening"][0]
    eq(lst["addr"], "127.0.0.1", "listening address")


@test
def tcp_echo_says_connect_waited_for_arp_only_with_the_evidence():
    """Over a 30 ms wire the first connect() pays an ARP round trip before
    its SYN: the note names the empty neighbour entry and the ARP frames the
    relay carried, which the run's wire events show; over a veth pair (no
    relay, no ARP frames seen) and on loopback it says nothing."""
    events = echo("network=two-hosts", "c2s_delay_ms=30", "s2c_delay_ms=30", "messages=2")
    notes = [e for e in events if e["type"] == "note" and e["key"] == "echo.connect_arp"]
    eq(len(notes), 1, "one ARP note")
    p = notes[0]["params"]
    eq((p["before"], p["after"]), ("NONE", "REACHABLE"), "the neighbour entry before and after")
    wire = [e for e in events if e["type"] == "wire"]
    arp = [e for e in wire if e.get("proto") == "ARP"]
    eq((p["arp_out"], p["arp_back"]),
       (len([e for e in arp if e["dir"] == "c2s"]), len([e for e in arp if e["dir"] == "s2c"])),
       "the note's ARP frames are the wire's")
    syn = [e for e in wire if e.get("proto") == "TCP" and "[S]" in e.get("summary", "")]
    check(syn and arp and arp[0]["seq"] < syn[0]["seq"], "the ARP exchange came before the SYN")
    for extra in (("network=two-hosts",), ()):
        eq([e for e in echo("messages=2", *extra) if e["type"] == "note" and e["key"] == "echo.connect_arp"],
           [], f"no ARP note with {extra}")


@test
def tcp_echo_over_a_lossy_wire_delivers_every_byte():
    events = echo("network=two-hosts", "messages=30", "size=3000", "c2s_loss_pct=15",
                  "s2c_loss_pct=15", "seed=2024")
    s = events[-1]["summary"]
    eq(events[-1]["status"], "ok", "status")
    eq(s["replies_ok"], 30, "every reply correct")
    eq(s["client_bytes_received"], 30 * 3000, "bytes the client got back")
    eq(s["server_bytes_in"], 30 * 3000, "bytes the server got")
    drops = [e for e in events if e["type"] == "wire" and e["action"] == "drop"]
    check(drops, "the wire dropped nothing")
    eq({d["proto"] for d in drops}, {"TCP"}, "only TCP segments are dropped (ARP never is)")
    data_drops = [d for d in drops if not d["summary"].endswith(" len 0")]
    check(data_drops, "no data segment was dropped")
    # The kernel's own count of retransmitted segments (TCP_INFO) on both sides.
    retrans = sum(e["value"] for e in events if e["type"] == "metric" and e["name"] == "tcp_retransmits")
    check(retrans >= 1, f"no retransmission reported for {len(data_drops)} dropped data segments")
    eq(s["client_retransmits"] + s["server_retransmits"], retrans, "summary retransmits")
    # Every dropped data segment's bytes went through later: its sequence number passed again.
    eq(s["wire"]["c2s"]["dropped"] + s["wire"]["s2c"]["dropped"], len(drops), "wire counters")


@test
def tcp_echo_over_veth_sees_mss_sized_segments():
    events = echo("network=two-hosts", "messages=2", "size=4000", "wire_trace=true")
    segs = [e for e in events if e["type"] == "wire" and e["proto"] == "TCP" and e["dir"] == "c2s"]
    lens = [int(e["summary"].rsplit(" len ", 1)[1]) for e in segs]
    check(max(lens) <= 1448, f"a segment larger than the 1500-byte MTU allows: {max(lens)}")
    check(max(lens) >= 1400, f"no MSS-sized segment: {sorted(lens)}")
    eq(events[0]["network"]["wire"], "relay", "wire_trace uses the relay")
    check(any("[S]" in e["summary"] for e in segs), "the SYN crossed the wire")
    check(any(e["proto"] == "ARP" for e in events if e["type"] == "wire"), "ARP crossed the wire")


@test
def tcp_echo_refuses_two_hosts_for_byo_and_bind():
    for params, field in ((["mode=server", "network=two-hosts"], "network"),
                          (["network=two-hosts", "bind=127.0.0.1"], "bind"),
                          (["s2c_delay_ms=5"], "s2c_delay_ms")):
        args = [BIN, "run", "tcp-echo"]
        for p in params:
            args += ["-p", p]
        r = subprocess.run(args, capture_output=True, text=True, timeout=30)
        eq(r.returncode, 2, f"exit for {params}")
        check(f"parameter '{field}'" in r.stderr, f"{params}: {r.stderr!r}")


if __name__ == "__main__":
    run(timeout=120)
