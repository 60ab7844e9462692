"""test_reclaim.py: the instructor can come back: sign-in lockout with the time left, and a class that survives its instructor's reload for --class-grace; a student can come back too, right after the last event it had (class.join "after")."""
import asyncio
import atexit
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, send  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

SECRET = "correct-horse-battery"
LONG = {"messages": 1000, "interval_ms": 5000}  # a run that only ends when stopped
_tags = iter(range(1, 1 << 30))


def arun(coro):
    return asyncio.run(coro)


async def next_msg(ws, timeout=60):
    flat = ws.__dict__.setdefault("socklab_flat", [])
    if not flat:
        m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        flat.extend(m if isinstance(m, list) else [m])
    return flat.pop(0)


async def until(ws, pred, what, timeout=60):
    while True:
        try:
            m = await next_msg(ws, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {timeout}s")
        if pred(m):
            return m


async def ask(ws, obj):
    tag = f"r{next(_tags)}"
    await send(ws, {**obj, "tag": tag})
    return await until(ws, lambda m: m.get("tag") == tag, f"the reply to {obj.get('op')}")


async def teacher(s, name=None):
    t = await s.connect()
    eq((await ask(t, {"op": "signin", "secret": SECRET}))["type"], "signin.accepted", "sign-in")
    opened = await ask(t, {"op": "class.open", **({"name": name} if name else {})})
    eq(opened["type"], "class.opened", f"class.open: {opened}")
    check(isinstance(opened["reclaim"], str) and len(opened["reclaim"]) >= 32,
          f"class.opened carries a reclaim token: {opened}")
    return t, opened


@test
def lockout_says_the_time_left_and_then_lets_the_right_secret_in():
    # What this checks depends on when the server handled each attempt, not
    # on how fast this machine is: the lockout starts when the server handles
    # the fifth wrong secret, which is after `t5` (taken before it was sent),
    # so a reply that arrives before t5 + LOCKOUT was decided while locked
    # out. A machine too slow for that (a reply after t5 + LOCKOUT, which may
    # rightly be either answer) repeats the sequence on a new connection with
    # a server whose lockout is twice as long, instead of guessing.
    lockout = 2
    while True:
        s = Server("--instructor-secret", SECRET, "--signin-lockout", str(lockout))
        atexit.register(s.cleanup)
        try:
            decided = arun(lockout_sequence(s, lockout))
            s.stop()
        finally:
            s.cleanup()
        if decided:
            return
        check(lockout < 64, f"every reply came after a {lockout} s lockout had passed: "
              f"this machine is too slow for the test")
        print(f"# the replies came after the {lockout} s lockout had passed: again with "
              f"{lockout * 2} s")
        lockout *= 2


async def lockout_sequence(s, lockout):
    """The lockout as one connection sees it; False when the machine was too
    slow to tell (the replies came after the lockout could have passed)."""
    ws = await s.connect()
    for i in range(4):
        r = await ask(ws, {"op": "signin", "secret": f"wrong-{i}"})
        eq((r["type"], r["code"]), ("error", "forbidden"), f"wrong secret {i}")
    t5 = time.monotonic()
    r = await ask(ws, {"op": "signin", "secret": "wrong-4"})
    eq((r["type"], r["code"]), ("error", "forbidden"), "wrong secret 4")
    # Locked: even the right secret is refused, with the time left.
    locked = await ask(ws, {"op": "signin", "secret": SECRET})
    # A wrong one meanwhile is refused the same way (no hint about it).
    still = await ask(ws, {"op": "signin", "secret": "still-wrong"})
    if time.monotonic() >= t5 + lockout:
        await ws.close()
        return False
    eq((locked["type"], locked["code"], locked["param"]), ("error", "limit", "secret"),
       f"locked out: {locked}")
    check(1 <= locked["retry_after_s"] <= lockout, f"retry_after_s within the lockout: {locked}")
    check(f"try again in {locked['retry_after_s']} s" in locked["message"],
          f"message: {locked['message']}")
    eq(still["code"], "limit", "a wrong secret while locked out")
    # Once the lockout has passed, the right secret gets in on the same
    # connection: asked again when the wait the server named is over (every
    # refusal names it; none may be longer than the lockout).
    deadline = time.monotonic() + 30 + lockout
    r = locked
    while True:
        check(r["retry_after_s"] <= lockout, f"the wait never grows: {r}")
        check(time.monotonic() < deadline, "the lockout never ended")
        await asyncio.sleep(r["retry_after_s"])
        r = await ask(ws, {"op": "signin", "secret": SECRET})
        if r["type"] == "signin.accepted":
            break
        eq(r["code"], "limit", f"refused only for the lockout: {r}")
    eq(r["role"], "instructor", "signed in")
    await ws.close()
    return True


@test
def a_reloaded_instructor_page_takes_its_class_back():
    s = Server("--instructor-secret", SECRET, "--class-grace", "120")
    atexit.register(s.cleanup)

    async def go():
        t, opened = await teacher(s, "Dr. Wu")
        code = opened["class"]
        st = await s.connect()
        eq((await ask(st, {"op": "class.join", "class": code, "name": "ana"}))["type"],
           "class.joined", "student joins")
        acc = await ask(t, {"op": "class.run", "lab": "tcp-echo", "params": LONG})
        eq(acc["type"], "run.accepted", f"class run: {acc}")
        run_id = acc["run"]
        await until(st, lambda m: m.get("run") == run_id and m.get("type") == "run.start",
                    "the class run's first event")
        # The page reloads: its connection closes.
        await t.close()
        m = await until(st, lambda m: m.get("type") in ("class.instructor", "class.ended"),
                        "news of the instructor")
        eq((m["type"], m["state"], m["grace_s"]), ("class.instructor", "reconnecting", 120),
           "students are told the instructor is reconnecting")
        # A wrong token is refused and counted like a wrong secret.
        t2 = await s.connect()
        r = await ask(t2, {"op": "class.reclaim", "class": code, "reclaim": "x" * 32})
        eq((r["type"], r["code"], r["param"]), ("error", "forbidden", "reclaim"), "wrong token")
        r = await ask(t2, {"op": "class.reclaim", "class": code, "reclaim": opened["reclaim"]})
        eq(r["type"], "class.reclaimed", f"reclaim: {r}")
        eq((r["class"], r["run"], r["live"]), (code, run_id, True), "the class and its live run")
        eq(r["instructor"], "Dr. Wu", "the instructor's name comes back with the class")
        m = await until(st, lambda m: m.get("type") == "class.instructor", "the instructor back")
        eq(m["state"], "back", "students see the instructor back")
        # The run went on and is the new page's: it can stop it.
        r = await ask(t2, {"op": "cancel", "run": run_id})
        eq(r["type"], "cancel.accepted", f"the reclaimed page cancels the class run: {r}")
        end = await until(st, lambda m: m.get("run") == run_id and m.get("type") == "run.end",
                          "the class run's end")
        eq(end["status"], "cancelled", "the run ended as cancelled")
        # It teaches again: a new class run, and ending the class, work.
        r = await ask(t2, {"op": "class.run", "lab": "tcp-echo", "params": {}})
        eq(r["type"], "run.accepted", f"a new class run after the reclaim: {r}")
        r = await ask(t2, {"op": "class.end"})
        eq(r["type"], "class.ended", "class.end")
        m = await until(st, lambda m: m.get("type") == "class.ended", "class.ended")
        eq(m["reason"], "ended by the instructor", "the student is told")
        await st.close()
        await t2.close()

    try:
        arun(go())
        s.wait_no_children()
        s.stop()
    finally:
        s.cleanup()


@test
def a_class_ends_when_its_instructor_does_not_return_in_time():
    s = Server("--instructor-secret", SECRET, "--class-grace", "1")
    atexit.register(s.cleanup)

    async def go():
        t, opened = await teacher(s)
        st = await s.connect()
        await ask(st, {"op": "class.join", "class": opened["class"], "name": "bo"})
        acc = await ask(t, {"op": "class.run", "lab": "tcp-echo", "params": LONG})
        run_id = acc["run"]
        await t.close()
        m = await until(st, lambda m: m.get("type") == "class.instructor", "reconnecting")
        eq(m["state"], "reconnecting", "told")
        m = await until(st, lambda m: m.get("type") == "class.ended", "the class's end", 60)
        eq(m["reason"], "the instructor did not come back within 1 s", "why it ended")
        # Too late: the token no longer opens anything.
        t2 = await s.connect()
        r = await ask(t2, {"op": "class.reclaim", "class": opened["class"],
                           "reclaim": opened["reclaim"]})
        eq((r["type"], r["code"]), ("error", "forbidden"), "reclaim after the grace period")
        await st.close()
        await t2.close()
        return run_id

    try:
        run_id = arun(go())
        # Its run ended with the class, cancelled; nothing is left running.
        eq(s.wait_run_status(run_id)["status"], "cancelled", "the orphaned class run")
        s.wait_no_children()
        eq(s.get_json("/api/health")["counters"]["classes_open"], 0, "no class open")
        s.stop()
    finally:
        s.cleanup()


async def seqs_to_end(ws, run_id, what):
    """The seq of every event of run_id from here to its run.end."""
    got = []
    while True:
        m = await until(ws, lambda m: m.get("run") == run_id and "seq" in m, what)
        got.append(m["seq"])
        if m["type"] == "run.end":
            return got


@test
def a_student_that_rejoins_after_its_last_event_misses_none_and_gets_none_twice():
    s = Server("--instructor-secret", SECRET)
    small = Server("--instructor-secret", SECRET, "--class-buffer", "16")
    atexit.register(s.cleanup)
    atexit.register(small.cleanup)
    params = {"messages": 40, "interval_ms": 20}

    async def join(srv, code, name, **extra):
        ws = await srv.connect()
        r = await ask(ws, {"op": "class.join", "class": code, "name": name, **extra})
        return ws, r

    async def go():
        t, opened = await teacher(s)
        code = opened["class"]
        ana, joined = await join(s, code, "ana")
        eq(("resumed" in joined, "replica" in joined), (False, False),
           f"a plain join (no --nats) says neither: {joined}")
        member = joined["member"]
        acc = await ask(t, {"op": "class.run", "lab": "tcp-echo", "params": params})
        run_id = acc["run"]
        # Ana's page goes away mid-run, with events up to seq 10.
        had = []
        while not had or had[-1] < 10:
            m = await until(ana, lambda m: m.get("run") == run_id and "seq" in m, "events")
            had.append(m["seq"])
        await ana.close()
        ana, joined = await join(s, code, "ana", member=member,
                                 after={"run": run_id, "seq": had[-1]})
        eq((joined["type"], joined["member"], joined["resumed"]),
           ("class.joined", member, True), f"the rejoin: {joined}")
        rest = await seqs_to_end(ana, run_id, "the rest of the run")
        bundle1 = [json.loads(x) for x in s.get(f"/api/runs/{run_id}/events").body.splitlines()]
        eq(had + rest, [e["seq"] for e in bundle1], "what ana had and what came after the rejoin")
        # Ahead of the ring (a replica behind the one the page came from):
        # events up to the page's seq are passed over, live.
        acc = await ask(t, {"op": "class.run", "lab": "tcp-echo", "params": params})
        run2 = acc["run"]
        await until(ana, lambda m: m.get("run") == run2 and m.get("seq") == 0, "the next run")
        bo, joined = await join(s, code, "bo", after={"run": run2, "seq": 60})
        eq(joined.get("resumed"), True, f"resumed ahead of the ring: {joined}")
        rest = await seqs_to_end(bo, run2, "bo's events")
        await seqs_to_end(ana, run2, "ana's events")
        bundle = [json.loads(x) for x in s.get(f"/api/runs/{run2}/events").body.splitlines()]
        eq(rest, [e["seq"] for e in bundle][61:], "events after seq 60 only")
        # After the run: an earlier run's events, from the ring, then the newer run's.
        cy, joined = await join(s, code, "cy", after={"run": run_id, "seq": 5})
        eq(joined.get("resumed"), True, f"an ended run: {joined}")
        first = await seqs_to_end(cy, run_id, "cy's events of the first run")
        eq(first, [e["seq"] for e in bundle1][6:], "the first run after seq 5")
        # A run the class never had in its ring: not resumed (the page reads the bundle).
        dee, joined = await join(s, code, "dee", after={"run": "0" * 16, "seq": 3})
        eq(joined.get("resumed"), False, f"an unknown run: {joined}")
        for bad in ({"run": run_id}, {"run": "xyz", "seq": 1}, {"run": run_id, "seq": -1},
                    {"run": run_id, "seq": 100000001}, [run_id, 1], "x"):
            ws, r = await join(s, code, "eve", after=bad)
            eq((r["type"], r.get("code"), r.get("param")), ("error", "bad_param", "after"),
               f"after={bad!r}: {r}")
            check("0 to 100000000" in r["message"], f"the message names the range: {r}")
            await ws.close()
        for ws in (t, ana, bo, cy, dee):
            await ws.close()

        # A ring that no longer holds what follows: not resumed.
        t, opened = await teacher(small)
        fay, joined = await join(small, opened["class"], "fay")
        acc = await ask(t, {"op": "class.run", "lab": "tcp-echo", "params": params})
        await seqs_to_end(fay, acc["run"], "fay's events")
        await fay.close()
        fay, joined = await join(small, opened["class"], "fay", member=joined["member"],
                                 after={"run": acc["run"], "seq": 2})
        eq(joined.get("resumed"), False, f"fell off a 16-message ring: {joined}")
        for ws in (t, fay):
            await ws.close()

    try:
        arun(go())
        for srv in (s, small):
            srv.wait_no_children()
            srv.stop()
    finally:
        s.cleanup()
        small.cleanup()


if __name__ == "__main__":
    sys.exit(run(timeout=120))
