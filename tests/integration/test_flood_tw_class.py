"""test_flood_tw_class.py: syn-flood and time-wait as class runs over real WebSockets, and their replays.

The instructor runs each lab for a class; every student must get every event
of the run, in order, exactly as the run's bundle holds them (its verdicts,
notes and summary included); a later watch replays the same events from the
first; the run's pcap, read by tshark, holds the segments the lab reported.
"""
import asyncio
import atexit
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, check_stream, send  # noqa: E402
from harness import recv as harness_recv  # noqa: E402
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


_tags = iter(range(1, 1 << 30))


async def recv(ws, timeout=90):
    """The next message; a JSON array (several messages in one frame) comes
    apart item by item; replies ask() held back come first."""
    flat = ws.__dict__.setdefault("socklab_flat", [])
    pending = ws.__dict__.setdefault("socklab_pending", [])
    while pending:
        m = pending.pop(0)
        flat.extend(m if isinstance(m, list) else [m])
    if not flat:
        m = await harness_recv(ws, timeout)
        flat.extend(m if isinstance(m, list) else [m])
    return flat.pop(0)


async def ask(ws, obj, timeout=30):
    tag = f"q{next(_tags)}"
    await send(ws, {**obj, "tag": tag})
    held = ws.__dict__.setdefault("socklab_pending", [])
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if isinstance(m, dict) and m.get("tag") == tag:
            return m
        held.append(m)


async def until_end(ws, run_id):
    got = []
    while True:
        m = await recv(ws)
        got.append(m)
        if m.get("run") == run_id and m.get("type") == "run.end" and "seq" in m:
            return got


def events_of(msgs, run_id):
    return [m for m in msgs if "seq" in m and m.get("run") == run_id]


def bundle_events(s, run_id):
    r = s.get(f"/api/runs/{run_id}/events")
    eq(r.status, 200, "bundle status")
    return [json.loads(x) for x in r.body.decode().splitlines() if x.strip()]


def class_run(lab, params):
    """One class run of lab: the instructor's and every student's events are
    the bundle's. Returns (run id, bundle events)."""
    s = srv()

    async def go():
        teacher = await s.connect()
        eq((await ask(teacher, {"op": "signin", "secret": SECRET}))["type"], "signin.accepted", "sign-in")
        opened = await ask(teacher, {"op": "class.open"})
        eq(opened["type"], "class.opened", f"class.open {opened}")
        students = []
        try:
            for i in range(STUDENTS):
                ws = await s.connect()
                students.append(ws)
                r = await ask(ws, {"op": "class.join", "class": opened["class"], "name": f"s{i}"})
                eq(r.get("type"), "class.joined", f"join {r}")
            acc = await ask(teacher, {"op": "class.run", "lab": lab, "params": params})
            eq(acc.get("type"), "run.accepted", f"class.run {acc}")
            run_id = acc["run"]
            mine = await until_end(teacher, run_id)
            theirs = await asyncio.gather(*(until_end(w, run_id) for w in students))
            bundle = bundle_events(s, run_id)
            check_stream(bundle)
            eq(bundle[-1]["status"], "ok", f"run status {bundle[-1]}")
            eq(events_of(mine, run_id), bundle, "the instructor's events")
            for i, msgs in enumerate(theirs):
                notice = [m for m in msgs if m.get("type") == "class.run"]
                eq([(n["lab"], n["params"]) for n in notice], [(lab, params)], f"student {i} notice")
                eq(events_of(msgs, run_id), bundle, f"student {i}: every event in order")
            return run_id, bundle
        finally:
            await teacher.close()
            for w in students:
                await w.close()

    return asyncio.run(go())


def replay(run_id):
    s = srv()

    async def go():
        ws = await s.connect()
        try:
            await send(ws, {"op": "watch", "run": run_id, "tag": "w"})
            return events_of(await until_end(ws, run_id), run_id)
        finally:
            await ws.close()

    return asyncio.run(go())


def tshark(s, run_id, *fields):
    r = s.get(f"/api/runs/{run_id}/capture.pcap")
    eq(r.status, 200, "pcap status")
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(r.body)
        f.flush()
        args = ["tshark", "-r", f.name, "-T", "fields"]
        for x in fields:
            args += ["-e", x]
        out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    eq(out.returncode, 0, f"tshark: {out.stderr[-300:]}")
    return [ln.split("\t") for ln in out.stdout.splitlines() if ln.strip()]


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
