"""classlib.py: a lab run for a class over real WebSockets, and its replay.

Shared by the class tests of the labs (test_flood_tw_class.py,
test_layers_class.py): the instructor signs in, opens a class, students join,
the instructor runs a lab for the class; every student must get every event of
the run, in order, exactly as the run's bundle holds them. A later watch
replays the bundle; tshark reads the run's pcap.
"""
import asyncio
import json
import subprocess
import tempfile

from harness import check_stream, send
from harness import recv as harness_recv
from tap import check, eq

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
    """Send obj with a fresh tag and return the reply carrying it; whatever
    arrives before it is held for recv()."""
    tag = f"q{next(_tags)}"
    await send(ws, {**obj, "tag": tag})
    held = ws.__dict__.setdefault("socklab_pending", [])
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if isinstance(m, dict) and m.get("tag") == tag:
            return m
        held.append(m)


async def until(ws, pred, what, timeout=90):
    """Messages until one satisfies pred; returns (that one, all before it).
    The deadline only catches a hang."""
    seen = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        left = end - loop.time()
        check(left > 0, f"{what}: not within {timeout}s; got {[m.get('type') for m in seen][-12:]}")
        m = await recv(ws, left)
        if pred(m):
            return m, seen
        seen.append(m)


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


def class_run(s, secret, lab, params, students=3):
    """One class run of lab on server s (started with --instructor-secret
    secret): the instructor's and every student's events are the bundle's,
    the run ends ok. Returns (run id, bundle events)."""

    async def go():
        teacher = await s.connect()
        eq((await ask(teacher, {"op": "signin", "secret": secret}))["type"], "signin.accepted", "sign-in")
        opened = await ask(teacher, {"op": "class.open"})
        eq(opened["type"], "class.opened", f"class.open {opened}")
        joined = []
        try:
            for i in range(students):
                ws = await s.connect()
                joined.append(ws)
                r = await ask(ws, {"op": "class.join", "class": opened["class"], "name": f"s{i}"})
                eq(r.get("type"), "class.joined", f"join {r}")
            acc = await ask(teacher, {"op": "class.run", "lab": lab, "params": params})
            eq(acc.get("type"), "run.accepted", f"class.run {acc}")
            run_id = acc["run"]
            mine = await until_end(teacher, run_id)
            theirs = await asyncio.gather(*(until_end(w, run_id) for w in joined))
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
            for w in joined:
                await w.close()

    return asyncio.run(go())


def replay(s, run_id):
    """The events a later watch of run_id gets, from the first to run.end."""

    async def go():
        ws = await s.connect()
        try:
            await send(ws, {"op": "watch", "run": run_id, "tag": "w"})
            return events_of(await until_end(ws, run_id), run_id)
        finally:
            await ws.close()

    return asyncio.run(go())


def tshark(s, run_id, *fields):
    """tshark's rows of fields for the run's capture.pcap as the server serves it."""
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
