"""test_layers_class.py: a layers run as a class run over real WebSockets, and its replays.

The instructor runs layers in a class (A's link through socklab's relay, so
the wire's events travel too); every student must get every event of the run,
in order, exactly as the run's bundle holds them; a later watch replays the
same events from the first; the run's pcap holds one packet per frame event
and tshark reads the same addresses in the same order.
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
from tap import check, eq, run, test  # noqa: E402

SECRET = "layers-class-secret"
STUDENTS = 3
PARAMS = {"scenario": "other-subnet", "a_delay_ms": 5, "a_loss_pct": 0, "seed": 5}

_srv = None


def srv():
    global _srv
    if _srv is None:
        _srv = Server("--instructor-secret", SECRET)
        atexit.register(_srv.cleanup)
    return _srv


_tags = iter(range(1, 1 << 30))


async def recv(ws, timeout=60):
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


_state = {}


@test
def a_layers_class_run_reaches_every_student_event_for_event():
    s = srv()

    async def go():
        teacher = await s.connect()
        eq((await ask(teacher, {"op": "signin", "secret": SECRET}))["type"], "signin.accepted", "sign-in")
        opened = await ask(teacher, {"op": "class.open"})
        eq(opened["type"], "class.opened", f"class.open {opened}")
        students = []
        for i in range(STUDENTS):
            ws = await s.connect()
            r = await ask(ws, {"op": "class.join", "class": opened["class"], "name": f"s{i}"})
            eq(r.get("type"), "class.joined", f"join {r}")
            students.append(ws)
        try:
            acc = await ask(teacher, {"op": "class.run", "lab": "layers", "params": PARAMS})
            eq(acc.get("type"), "run.accepted", f"class.run {acc}")
            run_id = acc["run"]
            mine = await until_end(teacher, run_id)
            theirs = await asyncio.gather(*(until_end(w, run_id) for w in students))
            bundle = bundle_events(s, run_id)
            check_stream(bundle)
            eq(bundle[-1]["status"], "ok", "run status")
            types = {e["type"] for e in bundle}
            check({"topology", "frame", "hop", "wire", "neigh"} <= types, f"event types {sorted(types)}")
            eq(events_of(mine, run_id), bundle, "the instructor's events")
            for i, msgs in enumerate(theirs):
                notice = [m for m in msgs if m.get("type") == "class.run"]
                eq([(n["lab"], n["params"]) for n in notice], [("layers", PARAMS)], f"student {i} notice")
                eq(events_of(msgs, run_id), bundle, f"student {i}: every event in order")
            _state["run"] = run_id
            _state["bundle"] = bundle
        finally:
            await teacher.close()
            for w in students:
                await w.close()

    asyncio.run(go())


@test
def a_finished_layers_run_replays_from_its_bundle():
    s = srv()
    run_id, bundle = _state["run"], _state["bundle"]

    async def go():
        ws = await s.connect()
        try:
            await send(ws, {"op": "watch", "run": run_id, "tag": "w"})
            got = events_of(await until_end(ws, run_id), run_id)
        finally:
            await ws.close()
        return got

    eq(asyncio.run(go()), bundle, "watch replays the same events")
    meta = s.get_json(f"/api/runs/{run_id}")
    eq(meta.get("lab"), "layers", f"run meta {meta}")
    # The pcap: one packet per frame event, in the same order and addresses.
    r = s.get(f"/api/runs/{run_id}/capture.pcap")
    eq(r.status, 200, "pcap status")
    frames = [e for e in bundle if e["type"] == "frame"]
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(r.body)
        f.flush()
        out = subprocess.run(["tshark", "-r", f.name, "-T", "fields", "-e", "eth.src", "-e", "eth.dst"],
                             capture_output=True, text=True, timeout=60)
    rows = [tuple(x.split("\t")) for x in out.stdout.splitlines() if x.strip()]
    eq(rows, [(e["eth"]["src"], e["eth"]["dst"]) for e in frames], "tshark's frames vs the frame events")
    check(len(frames) > 10, f"frames {len(frames)}")


if __name__ == "__main__":
    run(timeout=180)
