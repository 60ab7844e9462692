"""test_flood_tw_class.py: syn-flood and time-wait as class runs over real WebSockets, and their replays.

The instructor runs each lab for a class; every student must get every event
of the run, in order, exactly as the run's bundle holds them (its verdicts,
notes and summary included); a later watch replays the same events from the
first; the run's pcap, read by tshark, holds the segments the lab reported.
"""
import atexit
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import classlib  # noqa: E402
from classlib import tshark  # noqa: E402
from harness import Server  # noqa: E402
from tap import Skip, check, eq, run, test  # noqa: E402

SECRET = "flood-tw-class-secret"
STUDENTS = 3
FLOOD = {"attack": "spoofed", "syncookies": 1, "backlog": 8, "rate": 300, "duration_ms": 1000,
         "connect_timeout_ms": 500, "connect_every_ms": 300}
PORTS = {"scenario": "ports", "conns": 8, "observe_ms": 0}
WHO = {"scenario": "who-closes", "closer": "server", "observe_ms": 0}

_srv = None


def srv():
    global _srv
    if os.geteuid() != 0:
        raise Skip("needs root (namespaces, raw sockets, the capture)")
    if _srv is None:
        _srv = Server("--instructor-secret", SECRET)
        atexit.register(_srv.cleanup)
    return _srv


def class_run(lab, params):
    return classlib.class_run(srv(), SECRET, lab, params, STUDENTS)


def replay(run_id):
    return classlib.replay(srv(), run_id)


def notes(events):
    return [e["key"] for e in events if e["type"] == "note"]


@test
def a_syn_flood_class_run_reaches_every_student_and_replays():
    run_id, bundle = class_run("syn-flood", FLOOD)
    s = bundle[-1]["summary"]
    check(s["counters"]["SyncookiesSent"] > 0, f"cookies sent: {s['counters']}")
    conns = [e for e in bundle if e["type"] == "connect"]
    check(conns and all(c["ok"] for c in conns), f"every connect succeeds: {conns[:2]}")
    check("synflood.cookies" in notes(bundle), f"the cookie verdict: {notes(bundle)}")
    eq(replay(run_id), bundle, "watch replays the same events, verdicts and summary")
    # The pcap the class downloads: tshark counts the lab's SYN-ACKs.
    rows = tshark(srv(), run_id, "tcp.flags")
    eq(len([r for r in rows if int(r[0], 16) & 0x12 == 0x12]), s["wire"]["synack_out"], "tshark's SYN-ACKs")


@test
def a_time_wait_ports_class_run_reaches_every_student_and_replays():
    run_id, bundle = class_run("time-wait", PORTS)
    p = bundle[-1]["summary"]["ports"]
    eq(sum(p["reuseport"]["accepts"]), 8, "eight accepts")
    eq(p["busy_bind"], {"plain": "EADDRINUSE", "so_reuseaddr": "EADDRINUSE"}, "the busy port")
    check("timewait.ports_busy" in notes(bundle), f"notes {notes(bundle)}")
    eq(replay(run_id), bundle, "watch replays the same events, verdicts and summary")
    segs = [e for e in bundle if e["type"] == "segment"]
    rows = tshark(srv(), run_id, "tcp.flags", "tcp.seq_raw", "tcp.ack_raw")
    eq(rows, [[f"0x{x['flags_raw']:04x}", str(x["seq_raw"]), str(x["ack_raw"])] for x in segs],
       "tshark's segments == the segment events")


@test
def a_time_wait_who_closes_class_run_reaches_every_student_and_replays():
    run_id, bundle = class_run("time-wait", WHO)
    s = bundle[-1]["summary"]
    eq((s["time_wait"]["server_peak"], s["time_wait"]["client_peak"]), (1, 0), "TIME_WAIT on the server")
    who = [e for e in bundle if e["type"] == "note" and e["key"] == "timewait.who"]
    eq([(w["params"]["closer"], w["params"]["closer_key"]) for w in who], [("server", "role.server")],
       "the closer named with its message id")
    eq(replay(run_id), bundle, "watch replays the same events, verdicts and summary")


if __name__ == "__main__":
    run(timeout=300)
