"""test_reclaim.py: the instructor can come back: sign-in lockout with the time left, and a class that survives its instructor's reload for --class-grace."""
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


async def teacher(s):
    t = await s.connect()
    eq((await ask(t, {"op": "signin", "secret": SECRET}))["type"], "signin.accepted", "sign-in")
    opened = await ask(t, {"op": "class.open"})
    eq(opened["type"], "class.opened", f"class.open: {opened}")
    check(isinstance(opened["reclaim"], str) and len(opened["reclaim"]) >= 32,
          f"class.opened carries a reclaim token: {opened}")
    return t, opened


@test
def lockout_says_the_time_left_and_then_lets_the_right_secret_in():
    s = Server("--instructor-secret", SECRET, "--signin-lockout", "2")
    atexit.register(s.cleanup)

    async def go():
        ws = await s.connect()
        for i in range(5):
            r = await ask(ws, {"op": "signin", "secret": f"wrong-{i}"})
            eq((r["type"], r["code"]), ("error", "forbidden"), f"wrong secret {i}")
        # Locked: even the right secret is refused, with the time left.
        r = await ask(ws, {"op": "signin", "secret": SECRET})
        eq((r["type"], r["code"], r["param"]), ("error", "limit", "secret"), "locked out")
        check(1 <= r["retry_after_s"] <= 2, f"retry_after_s within the lockout: {r}")
        check(f"try again in {r['retry_after_s']} s" in r["message"], f"message: {r['message']}")
        # A wrong one meanwhile is refused the same way (no hint about it).
        r = await ask(ws, {"op": "signin", "secret": "still-wrong"})
        eq(r["code"], "limit", "a wrong secret while locked out")
        # Once the lockout has passed, the right secret gets in on the same
        # connection (poll the real outcome; every refusal says the wait).
        deadline = time.monotonic() + 30
        while True:
            r = await ask(ws, {"op": "signin", "secret": SECRET})
            if r["type"] == "signin.accepted":
                break
            eq(r["code"], "limit", f"refused only for the lockout: {r}")
            check(r["retry_after_s"] <= 2, f"the wait never grows: {r}")
            check(time.monotonic() < deadline, "the lockout never ended")
            await asyncio.sleep(0.2)
        eq(r["role"], "instructor", "signed in")
        await ws.close()

    try:
        arun(go())
        s.stop()
    finally:
        s.cleanup()


@test
def a_reloaded_instructor_page_takes_its_class_back():
    s = Server("--instructor-secret", SECRET, "--class-grace", "120")
    atexit.register(s.cleanup)

    async def go():
        t, opened = await teacher(s)
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


if __name__ == "__main__":
    sys.exit(run(timeout=120))
