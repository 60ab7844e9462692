"""test_admission.py: the admission queue over real WebSockets: a burst of 200 Runs all served, fair order, cancel and disconnect, bound and deadline."""
import asyncio
import atexit
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, check_stream, send, wait_for  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

LONG = {"messages": 1000, "interval_ms": 5000}  # a run that only ends when stopped
BURST = 200
SECRET = "correct-horse-battery"


def arun(coro):
    return asyncio.run(coro)


async def next_msg(ws, timeout=120):
    """The next message; a JSON array (class messages batched for a reader
    that fell behind) is taken apart."""
    flat = ws.__dict__.setdefault("socklab_flat", [])
    if not flat:
        m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        flat.extend(m if isinstance(m, list) else [m])
    m = flat.pop(0)
    check(isinstance(m, dict), f"a message object: {m!r}")
    return m


async def until(ws, pred, what, timeout=120):
    """Messages up to and including the first for which pred is true."""
    got = []
    while True:
        try:
            m = await next_msg(ws, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {timeout}s (got {got[-3:]})")
        got.append(m)
        if pred(m):
            return got


def queue_of(s):
    return s.get_json("/api/health")["counters"]["queue"]


async def hold_slot(s):
    """A connection running a run that only ends when cancelled."""
    ws = await s.connect()
    await send(ws, {"op": "run", "lab": "tcp-echo", "params": LONG, "tag": "hold"})
    acc = (await until(ws, lambda m: m.get("tag") == "hold", "reply to the long run"))[-1]
    eq(acc["type"], "run.accepted", f"the long run starts at once: {acc}")
    return ws, acc["run"]


async def release(ws, run_id, s=None):
    await send(ws, {"op": "cancel", "run": run_id})
    await until(ws, lambda m: m.get("type") == "run.end" and m.get("run") == run_id,
                "run.end of the cancelled run", 60)
    if s is not None:
        # run.end reaches clients as the lab writes it; its slot is free once
        # the lab's process has exited (after tearing its sandbox down).
        wait_for(lambda: s.get_json("/api/health")["runs_active"] == 0, 60,
                 "the cancelled run's slot to be free")


@test
def burst_of_200_runs_is_served_in_order_with_none_refused():
    limit = 4
    s = Server("--max-runs", str(limit), "--max-conns-per-addr", str(BURST + 10))
    atexit.register(s.cleanup)

    async def student(ws, i):
        await send(ws, {"op": "run", "lab": "tcp-echo", "params": {"messages": 2},
                        "tag": f"s{i}"})
        msgs = await until(ws, lambda m: m.get("type") in ("run.end", "error"),
                           f"run.end for student {i}", 240)
        return msgs

    async def go():
        conns = await asyncio.gather(*(s.connect() for _ in range(BURST)))
        results = await asyncio.gather(*(student(ws, i) for i, ws in enumerate(conns)))
        for ws in conns:
            await ws.close()
        return results

    try:
        results = arun(go())
        waited = 0
        for i, msgs in enumerate(results):
            errors = [m for m in msgs if m.get("type") == "error"]
            eq(errors, [], f"student {i}: refusals")
            queued = [m for m in msgs if m.get("type") == "run.queued"]
            acc = [m for m in msgs if m.get("type") == "run.accepted"]
            eq(len(acc), 1, f"student {i}: one run.accepted")
            run_id = acc[0]["run"]
            events = [m for m in msgs if "seq" in m]
            check_stream(events)
            eq(events[0]["run"], run_id, f"student {i}: the events are of the accepted run")
            eq(events[-1]["status"], "ok", f"student {i}: run.end status")
            # Told before it started, never after.
            if queued:
                waited += 1
                check(msgs.index(queued[-1]) < msgs.index(acc[0]),
                      f"student {i}: run.queued before run.accepted")
                check("waited_ms" in acc[0], f"student {i}: run.accepted says its wait")
            positions = [q["position"] for q in queued]
            for q in queued:
                eq(q["run"], run_id, f"student {i}: run.queued names the run it becomes")
                eq(q["tag"], f"s{i}", f"student {i}: run.queued carries the tag")
                eq(q["ahead"], q["position"] - 1, f"student {i}: ahead")
                check(1 <= q["position"] <= q["waiting"] <= BURST,
                      f"student {i}: 1 <= position <= waiting <= {BURST}: {q}")
                check(q["running"] <= limit, f"student {i}: running within the limit: {q}")
                eq(q["max_runs"], limit, f"student {i}: max_runs")
            check(all(a > b for a, b in zip(positions, positions[1:])),
                  f"student {i}: positions strictly decrease: {positions}")
            # Slots free at most `limit` at a time, so a run starts from
            # within the first `limit` places.
            if positions:
                check(positions[-1] <= limit,
                      f"student {i}: last place before starting {positions[-1]} > {limit}")
        # With 200 at once and 4 slots, most had to wait.
        check(waited >= BURST - limit, f"{waited} of {BURST} runs waited in the queue")
        q = wait_for(lambda: (lambda q: q if q["waiting"] == 0 else None)(queue_of(s)), 30,
                     "an empty queue")
        eq(q["admitted"], waited, "health: runs admitted from the queue")
        eq((q["refused_full"], q["expired"]), (0, 0), "health: none refused")
        check(q["wait_ms_max"] >= q["wait_ms_mean"] >= 0, f"health: waits {q}")
        eq(s.get_json("/api/health")["counters"]["runs_started"], BURST, "runs started")
        s.stop()
    finally:
        s.cleanup()


@test
def first_runs_go_ahead_of_second_ones_and_class_runs_ahead_of_all():
    s = Server("--max-runs", "1", "--instructor-secret", SECRET)
    atexit.register(s.cleanup)

    async def go():
        holder, hold_id = await hold_slot(s)
        x = await s.connect()
        y = await s.connect()
        await send(x, {"op": "run", "lab": "tcp-echo", "params": {}, "tag": "x1"})
        x1 = (await until(x, lambda m: m.get("tag") == "x1", "x1's reply"))[-1]
        await send(x, {"op": "run", "lab": "tcp-echo", "params": {}, "tag": "x2"})
        x2 = (await until(x, lambda m: m.get("tag") == "x2", "x2's reply"))[-1]
        eq((x1["type"], x1["position"]), ("run.queued", 1), "x's first run")
        eq((x2["type"], x2["position"]), ("run.queued", 2), "x's second run")
        # y's first run goes ahead of x's second; x is told it moved back.
        await send(y, {"op": "run", "lab": "tcp-echo", "params": {}, "tag": "y1"})
        y1 = (await until(y, lambda m: m.get("tag") == "y1", "y1's reply"))[-1]
        eq((y1["type"], y1["position"]), ("run.queued", 2), "y's first run, ahead of x's second")
        moved = (await until(x, lambda m: m.get("type") == "run.queued" and m["tag"] == "x2",
                             "x2's new place"))[-1]
        eq(moved["position"], 3, "x's second run moved back")
        # An instructor's class run goes ahead of everyone.
        t = await s.connect()
        await send(t, {"op": "signin", "secret": SECRET, "tag": "si"})
        await until(t, lambda m: m.get("tag") == "si", "sign-in")
        await send(t, {"op": "class.open", "tag": "co"})
        opened = (await until(t, lambda m: m.get("tag") == "co", "class.open"))[-1]
        eq(opened["type"], "class.opened", "class opened")
        await send(t, {"op": "class.run", "lab": "tcp-echo", "params": {}, "tag": "c1"})
        c1 = (await until(t, lambda m: m.get("tag") == "c1", "class run's reply"))[-1]
        eq((c1["type"], c1["position"]), ("run.queued", 1), "the class run goes first")
        # Free the slot: the class run starts, then x1, y1, x2 in that order.
        await release(holder, hold_id)
        acc = (await until(t, lambda m: m.get("type") == "run.accepted", "class run start"))[-1]
        eq(acc["run"], c1["run"], "the class run keeps its id")
        eq(acc.get("class"), opened["class"], "run.accepted names the class")
        await until(t, lambda m: m.get("type") == "run.end", "the class run's end")
        order = []
        for ws, tag in ((x, "x1"), (y, "y1"), (x, "x2")):
            msgs = await until(ws, lambda m, tag=tag: m.get("type") == "run.end"
                               and m["run"] == {"x1": x1, "y1": y1, "x2": x2}[tag]["run"],
                               f"{tag}'s run.end")
            start = next(m for m in msgs if m.get("type") == "run.start")
            order.append((s.get_json(f"/api/runs/{start['run']}")["created"], tag))
        eq([tag for _, tag in sorted(order)], ["x1", "y1", "x2"], "start order")
        for ws in (holder, x, y, t):
            await ws.close()

    try:
        arun(go())
        s.stop()
    finally:
        s.cleanup()


@test
def cancel_or_disconnect_while_queued_leaves_no_trace():
    s = Server("--max-runs", "1")
    atexit.register(s.cleanup)

    async def go():
        holder, hold_id = await hold_slot(s)
        a = await s.connect()
        await send(a, {"op": "run", "lab": "tcp-echo", "params": {}, "tag": "a"})
        qa = (await until(a, lambda m: m.get("tag") == "a", "a's reply"))[-1]
        eq((qa["type"], qa["position"]), ("run.queued", 1), "a waits")
        b = await s.connect()
        await send(b, {"op": "run", "lab": "tcp-echo", "params": {}, "tag": "b"})
        qb = (await until(b, lambda m: m.get("tag") == "b", "b's reply"))[-1]
        eq((qb["type"], qb["position"]), ("run.queued", 2), "b waits behind a")
        eq(queue_of(s)["waiting"], 2, "health: two waiting")
        # a goes away; b moves up.
        await a.close()
        moved = (await until(b, lambda m: m.get("type") == "run.queued", "b's new place"))[-1]
        eq(moved["position"], 1, "b moved up when a left")
        eq(queue_of(s)["waiting"], 1, "health: one waiting")
        # b cancels: it leaves the line and never ran.
        await send(b, {"op": "cancel", "run": qb["run"], "tag": "cb"})
        cb = (await until(b, lambda m: m.get("tag") == "cb", "cancel reply"))[-1]
        eq((cb["type"], cb["queued"]), ("cancel.accepted", True), "cancel of a waiting run")
        eq(queue_of(s)["waiting"], 0, "health: none waiting")
        for rid in (qa["run"], qb["run"]):
            eq(s.get(f"/api/runs/{rid}").status, 404, f"no bundle for {rid}")
            check(not os.path.exists(os.path.join(s.data, "runs", rid)), f"no directory {rid}")
        # Cancelling it again: it is gone.
        await send(b, {"op": "cancel", "run": qb["run"], "tag": "cb2"})
        again = (await until(b, lambda m: m.get("tag") == "cb2", "second cancel"))[-1]
        eq((again["type"], again["code"]), ("error", "unknown_run"), "a left run is unknown")
        await release(holder, hold_id, s)
        # The freed slot serves a newcomer at once: nobody is left in line.
        c = await s.connect()
        await send(c, {"op": "run", "lab": "tcp-echo", "params": {}, "tag": "c"})
        rc = (await until(c, lambda m: m.get("tag") == "c", "c's reply"))[-1]
        eq(rc["type"], "run.accepted", "a run after the queue emptied starts at once")
        await until(c, lambda m: m.get("type") == "run.end", "c's run.end")
        eq(s.get_json("/api/health")["counters"]["runs_started"], 2, "only two runs ever ran")
        for ws in (holder, b, c):
            await ws.close()

    try:
        arun(go())
        s.wait_no_children()
        s.stop()
    finally:
        s.cleanup()


@test
def a_full_queue_and_a_passed_deadline_refuse_clearly():
    s = Server("--max-runs", "1", "--queue-max", "2", "--queue-wait", "2")
    atexit.register(s.cleanup)

    async def go():
        holder, hold_id = await hold_slot(s)
        ws = [await s.connect() for _ in range(3)]
        replies = []
        for i, w in enumerate(ws):
            await send(w, {"op": "run", "lab": "tcp-echo", "params": {}, "tag": f"t{i}"})
            replies.append((await until(w, lambda m, i=i: m.get("tag") == f"t{i}", "reply"))[-1])
        eq([r["type"] for r in replies], ["run.queued", "run.queued", "error"], "two wait")
        full = replies[2]
        eq(full["code"], "limit", "past the bound: limit")
        for part in ("--max-runs 1", "--queue-max 2", "2 more are waiting"):
            check(part in full["message"], f"the refusal names {part!r}: {full['message']}")
        eq(queue_of(s)["refused_full"], 1, "health: one refused for a full queue")
        # Nobody frees the slot: each waiting run is refused at its deadline.
        for i in (0, 1):
            err = (await until(ws[i], lambda m: m.get("type") == "error", "deadline", 60))[-1]
            eq((err["code"], err["run"], err["tag"]), ("limit", replies[i]["run"], f"t{i}"),
               "the deadline refusal names the run")
            check("--queue-wait 2" in err["message"] and "--max-runs" in err["message"],
                  f"the deadline refusal names its limits: {err['message']}")
        q = queue_of(s)
        eq((q["waiting"], q["expired"], q["admitted"]), (0, 2, 0), f"health: {q}")
        await release(holder, hold_id)
        for w in ws + [holder]:
            await w.close()

    try:
        arun(go())
        s.stop()
    finally:
        s.cleanup()


if __name__ == "__main__":
    sys.exit(run(timeout=400))
