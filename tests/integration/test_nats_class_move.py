"""test_nats_class_move.py: --nats: a class moves between replicas, survives its home, and loses no answer.

Real socklab replicas and a real nats-server -js (no mocks). The
instructor's page reconnects through a balancer to another replica and
reclaims its class there with its token: the class's home moves (the
bucket's entry, revision-checked), the old home follows it for its own
students, and answers, steps and class runs go on. The home SIGKILLed: the
students elsewhere stay joined, are told the instructor is away, and the
instructor reclaims the class on a surviving replica and continues. NATS
frozen (SIGSTOP) and then killed and restarted while a student's answer and
a reveal are in flight: the answer is counted once and its reply reaches
the student; the reveal's result too. Every wait polls a real condition
with a deadline that only catches hangs.
"""
import asyncio
import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
from classlib import ask, events_of, until, until_end  # noqa: E402
from harness import check_stream, send, wait_for  # noqa: E402
from tap import check, eq, run, test  # noqa: E402
from natslib import Nats, bundle_bytes, done, nats_health, server  # noqa: E402
from natslib import READER  # noqa: E402
import subprocess  # noqa: E402

SECRET = "correct-horse-battery"
LONG = {"messages": 1000, "interval_ms": 100}  # a class run still going when its home dies


def replica(n, *extra):
    # Every replica of a deployment shares the instructor secret.
    return server("--nats", n.url, "--instructor-secret", SECRET, *extra)


def classes(s):
    return nats_health(s)["classes"]


def knows(s, n=1):
    return classes(s)["state"] == "ok" and classes(s)["classes_known"] >= n


async def until_all(ws, preds, what, timeout=90):
    """Messages until each of preds has matched one, in any order; the
    first match of each."""
    got = [None] * len(preds)
    while None in got:
        m, _ = await until(ws, lambda m: any(g is None and p(m) for g, p in zip(got, preds)),
                           f"{what} ({sum(g is not None for g in got)} of {len(preds)})",
                           timeout)
        got[next(i for i, p in enumerate(preds) if got[i] is None and p(m))] = m
    return got


async def poll(pred, timeout, what):
    """wait_for off the event loop (the pages' connections keep answering
    pings meanwhile)."""
    return await asyncio.to_thread(wait_for, pred, timeout, what)


def freeze(n):
    """SIGSTOP nats-server and wait until the kernel says it is stopped, so
    that nothing sent from now on is read."""
    n.proc.send_signal(signal.SIGSTOP)

    def stopped():
        with open(f"/proc/{n.proc.pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    wait_for(stopped, 30, "nats-server to be stopped")


def is_type(t, **kw):
    return lambda m: m.get("type") == t and all(m.get(k) == v for k, v in kw.items())


async def open_class(s):
    ws = await s.connect()
    eq((await ask(ws, {"op": "signin", "secret": SECRET}))["type"], "signin.accepted", "sign-in")
    opened = await ask(ws, {"op": "class.open", "name": "Dr. Wu"})
    eq(opened["type"], "class.opened", f"class.open {opened}")
    return ws, opened


async def join(s, code, name):
    ws = await s.connect()
    r = await ask(ws, {"op": "class.join", "class": code, "name": name})
    eq(r.get("type"), "class.joined", f"{name} joins on {s.base}: {r}")
    return ws


async def reclaim(s, opened):
    """The instructor's page, reconnected to s, takes its class back."""
    ws = await s.connect()
    try:
        r = await ask(ws, {"op": "class.reclaim", "class": opened["class"],
                           "reclaim": opened["reclaim"]})
    except asyncio.TimeoutError:
        raise AssertionError(f"no reply to class.reclaim on {s.base}: {classes(s)}")
    eq(r.get("type"), "class.reclaimed", f"reclaim on {s.base}: {r}")
    eq((r["class"], r["instructor"]), (opened["class"], "Dr. Wu"), "the class and its instructor")
    return ws, r


async def question(teacher, students):
    q = await ask(teacher, {"op": "class.quiz", "action": "open",
                            "question": {"kind": "choice", "text": "Which?",
                                         "choices": ["one", "two", "three"]}})
    eq(q.get("type"), "class.quiz.done", f"open {q}")
    for i, w in enumerate(students):
        await until(w, is_type("class.quiz", id=q["id"]), f"student {i}: the question")
    return q["id"]


async def tally(teacher, answered):
    t, _ = await until(teacher, lambda m: m.get("type") == "class.quiz.tally"
                       and m["answered"] == answered, f"a tally of {answered} answers")
    return t


async def class_run(teacher, students, home, params):
    acc = await ask(teacher, {"op": "class.run", "lab": "tcp-echo", "params": params})
    eq(acc.get("type"), "run.accepted", f"class.run {acc}")
    rid = acc["run"]
    await until_end(teacher, rid)
    got = await asyncio.gather(*(until_end(w, rid) for w in students))
    home.wait_run_status(rid)
    bundle = [json.loads(x) for x in bundle_bytes(home, rid).decode().splitlines()]
    check_stream(bundle)
    for i, msgs in enumerate(got):
        eq(events_of(msgs, rid), bundle, f"student {i}: every event of the class run in order")
    return rid


@test
def the_instructor_reclaims_through_another_replica_and_the_class_moves_there():
    n = Nats()
    a, b, c = replica(n), replica(n), replica(n)

    async def go():
        t1, opened = await open_class(a)
        code = opened["class"]
        for s in (b, c):
            wait_for(lambda: knows(s), 30, f"{s.base} to know the class")
        sa, sb, sc = (await join(a, code, "on-a"), await join(b, code, "on-b"),
                      await join(c, code, "on-c"))
        students = [sa, sb, sc]
        await until(t1, lambda m: m.get("type") == "class.members" and m["count"] == 3,
                    "three students counted")
        qid = await question(t1, students)
        r = await ask(sb, {"op": "class.quiz", "action": "answer", "id": qid, "answer": "b"})
        eq(r.get("type"), "class.quiz.answered", f"B's answer at A {r}")
        await tally(t1, 1)
        # A token that is not the class's is refused on another replica too.
        bad = await c.connect()
        r = await ask(bad, {"op": "class.reclaim", "class": code, "reclaim": "x" * 32})
        eq((r["type"], r["code"], r["param"]), ("error", "forbidden", "reclaim"),
           f"a wrong token on C: {r}")
        await bad.close()
        # The page reloads; the balancer sends it to B.
        await t1.close()
        for i, w in enumerate(students):
            m, _ = await until(w, is_type("class.instructor"), f"student {i}: instructor away")
            eq(m["state"], "reconnecting", f"student {i}: told the instructor is reconnecting")
        t2, rc = await reclaim(b, opened)
        eq(rc["reclaim"], opened["reclaim"], "the same token keeps working")
        for i, w in enumerate(students):
            m, _ = await until(w, is_type("class.instructor", state="back"),
                               f"student {i}: the instructor back")
        h = [classes(s) for s in (a, b)]
        eq((h[0]["moved_out"], h[1]["moved_in"]), (1, 1), "the home moved from A to B")
        # A follows the class now for its own student; everyone is counted at B.
        await until(t2, lambda m: m.get("type") == "class.members" and m["count"] == 3,
                    "B's instructor counts all three")
        eq(classes(a)["following"], 1, "A follows the class it held")
        # The answer given at A moved with the class; the others count at B.
        for w, ans in ((sa, "a"), (sc, "c")):
            r = await ask(w, {"op": "class.quiz", "action": "answer", "id": qid, "answer": ans})
            eq(r.get("type"), "class.quiz.answered", f"an answer after the move {r}")
        t = await tally(t2, 3)
        eq(t["counts"], {"a": 1, "b": 1, "c": 1}, "every answer counted once, the moved one too")
        # The instructor's step and a class run reach every replica.
        await send(t2, {"op": "class.view", "paused": True, "pos": 4, "speed": 0})
        for i, w in enumerate(students):
            await until(w, lambda m: m.get("type") == "class.view" and m.get("pos") == 4,
                        f"student {i}: the step from B")
        await send(t2, {"op": "class.view", "paused": False, "pos": None, "speed": 0})
        await class_run(t2, students, b, {"messages": 5, "interval_ms": 20})
        rv = await ask(t2, {"op": "class.quiz", "action": "reveal", "correct": "c"})
        eq(rv.get("type"), "class.quiz.done", f"reveal {rv}")
        for w, want in ((sa, "wrong"), (sb, "wrong"), (sc, "right")):
            res, _ = await until(w, is_type("class.quiz.result"), "a student's result")
            eq(res["verdict"]["result"], want, "each student's own verdict, from B")
        # Reclaiming again with the old page's way (A) moves it back only
        # with the token, and a second page on B is told it was taken over.
        t3, _ = await reclaim(a, opened)
        m, _ = await until(t2, is_type("class.ended"), "B's page told")
        check("taken over" in m["reason"], m["reason"])
        await ask(t3, {"op": "class.end"})
        for i, w in enumerate(students):
            e, _ = await until(w, is_type("class.ended"), f"student {i}: the end")
            eq(e["reason"], "ended by the instructor", f"student {i}: why")
        for w in (t2, t3, *students):
            await w.close()

    asyncio.run(go())
    for s in (c, b, a):
        done(s)
    n.stop()


@test
def a_class_survives_its_home_killed_and_goes_on_where_its_instructor_reclaims_it():
    n = Nats()
    a, b, c = replica(n), replica(n), replica(n)

    async def go():
        t1, opened = await open_class(a)
        code = opened["class"]
        for s in (b, c):
            wait_for(lambda: knows(s), 30, f"{s.base} to know the class")
        sb, sc = await join(b, code, "on-b"), await join(c, code, "on-c")
        students = [sb, sc]
        qid = await question(t1, students)
        r = await ask(sc, {"op": "class.quiz", "action": "answer", "id": qid, "answer": "a"})
        eq(r.get("type"), "class.quiz.answered", f"C's answer at A {r}")
        await tally(t1, 1)
        # A step puts the class's state, the answers with it, in the bucket
        # before it is published: once a student has it, the bucket holds C's
        # answer.
        await send(t1, {"op": "class.view", "paused": False, "pos": None, "speed": 2})
        for i, w in enumerate(students):
            await until(w, lambda m: m.get("type") == "class.view" and m.get("speed") == 2,
                        f"student {i}: the step")
        acc = await ask(t1, {"op": "class.run", "lab": "tcp-echo", "params": LONG})
        eq(acc.get("type"), "run.accepted", f"a long class run {acc}")
        rid = acc["run"]
        for i, w in enumerate(students):
            await until(w, lambda m: m.get("run") == rid and m.get("seq") == 3,
                        f"student {i}: the run's first events")
        a.proc.kill()
        a.proc.wait()
        a.stopped = True
        await t1.close()
        # Both come once A's heartbeat has expired, in either order.
        for i, w in enumerate(students):
            away, fate = await until_all(
                w, [is_type("class.instructor"),
                    lambda m: m.get("type") in ("watch.incomplete", "run.end")
                    and m.get("run") == rid],
                f"student {i}: the instructor away and the run's fate", 120)
            eq(away["state"], "reconnecting", f"student {i}: the instructor away")
            check("stopped" in (away.get("reason") or ""), f"student {i}: why: {away}")
            eq(fate["type"], "watch.incomplete", f"student {i}: an incomplete run, no made-up end")
        eq([classes(s)["following"] for s in (b, c)], [1, 1], "B and C still follow the class")
        t2, rc = await reclaim(c, opened)
        eq(rc["run"], rid, "the class run of the dead home")
        for i, w in enumerate(students):
            await until(w, is_type("class.instructor", state="back"), f"student {i}: back")
        eq(classes(c)["moved_in"], 1, "C is the class's home")
        # The question and C's answer survived; B's student answers now.
        try:
            r = await ask(sb, {"op": "class.quiz", "action": "answer", "id": qid, "answer": "b"},
                          timeout=60)
        except asyncio.TimeoutError:
            raise AssertionError(f"no reply to B's answer: B {classes(b)}, C {classes(c)}")
        eq(r.get("type"), "class.quiz.answered", f"B's answer at C {r}")
        t = await tally(t2, 2)
        eq((t["counts"], t["members"]), ({"a": 1, "b": 1}, 2), "both answers, counted once")
        await send(t2, {"op": "class.view", "paused": True, "pos": 2, "speed": 0})
        await until(sb, lambda m: m.get("type") == "class.view" and m.get("pos") == 2,
                    "B's student: the step from C")
        await send(t2, {"op": "class.view", "paused": False, "pos": None, "speed": 0})
        # The dead run is over for the class: the next one runs on C.
        await poll(lambda: not c.get_json("/api/health")["counters"].get("runs_active"), 60,
                   "C to have no run going")
        await class_run(t2, students, c, {"messages": 5, "interval_ms": 20})
        await ask(t2, {"op": "class.end"})
        for w in (t2, *students):
            await w.close()

    asyncio.run(go())
    done(c)
    done(b)
    a.cleanup()
    n.stop()


@test
def an_answer_and_a_reveal_in_flight_when_nats_dies_are_not_lost():
    n = Nats()
    a, b = replica(n), replica(n)

    async def go():
        t1, opened = await open_class(a)
        wait_for(lambda: knows(b), 30, "B to know the class")
        sb = await join(b, opened["class"], "Bo")
        await until(t1, lambda m: m.get("type") == "class.members" and m["count"] == 1,
                    "B's student counted")
        qid = await question(t1, [sb])
        # NATS freezes: B's answer goes into a connection nobody reads.
        freeze(n)
        await send(sb, {"op": "class.quiz", "action": "answer", "id": qid, "answer": "b",
                        "tag": "mine"})
        await poll(lambda: classes(b)["answers_resent"] >= 1, 60,
                   "B to send the unanswered answer again")
        n.proc.kill()
        n.proc.wait()
        n2 = Nats(port=n.port, store_dir=n.store)
        r, _ = await until(sb, lambda m: m.get("tag") == "mine", "the answer's reply", 120)
        eq((r["type"], r["answer"]), ("class.quiz.answered", "b"), f"counted: {r}")
        t = await tally(t1, 1)
        eq((t["counts"], t["who"]), ({"b": 1}, [{"name": "Bo", "answer": "b"}]),
           "counted exactly once at home")
        # The reveal goes out while NATS is frozen; its result comes later.
        await poll(lambda: classes(b)["state"] == "ok" and classes(a)["state"] == "ok", 60,
                   "both replicas back on NATS")
        freeze(n2)
        await send(t1, {"op": "class.view", "paused": True, "pos": 7, "speed": 0})
        rv = await ask(t1, {"op": "class.quiz", "action": "reveal", "correct": "b"})
        eq(rv.get("type"), "class.quiz.done", f"reveal {rv}")
        n2.proc.kill()
        n2.proc.wait()
        n3 = Nats(port=n.port, store_dir=n.store)
        # The step comes from the bucket, the result when B asks for the
        # reveal it has not had: in either order.
        res, view = await until_all(sb, [is_type("class.quiz.result"),
                                         lambda m: m.get("type") == "class.view"
                                         and m.get("pos") == 7],
                                    "B's result and the step made while NATS was frozen", 120)
        eq((res["id"], res["verdict"]["result"]), (qid, "right"), "the verdict")
        eq(view["paused"], True, "the step, from the bucket")
        for w in (t1, sb):
            await w.close()
        return n3

    n3 = asyncio.run(go())
    done(b)
    done(a)
    n3.stop()


def seats(n, code):
    """The history of the class's entry in SOCKLAB_CLASS_SEATS."""
    r = subprocess.run([READER, n.url, "KV_SOCKLAB_CLASS_SEATS",
                        f"$KV.SOCKLAB_CLASS_SEATS.{code}"], capture_output=True, timeout=60)
    return r.stdout.decode() + r.stderr.decode()


@test
def two_pages_reclaiming_at_once_on_two_replicas_one_wins():
    n = Nats()
    a, b, c = replica(n), replica(n), replica(n)

    async def go():
        t1, opened = await open_class(a)
        code = opened["class"]
        for s in (b, c):
            wait_for(lambda: knows(s), 30, f"{s.base} to know the class")
        sb = await join(b, code, "on-b")
        await t1.close()
        await until(sb, is_type("class.instructor", state="reconnecting"), "the instructor away")
        pages = [await s.connect() for s in (b, c)]
        replies = await asyncio.gather(*(ask(p, {"op": "class.reclaim", "class": code,
                                                 "reclaim": opened["reclaim"]})
                                         for p in pages))
        kinds = sorted(r["type"] for r in replies)
        eq(kinds, ["class.reclaimed", "error"], f"one page wins, the other is told: {replies}")
        lost = next(r for r in replies if r["type"] == "error")
        eq((lost["code"], lost["param"]), ("conflict", "class"), f"the loser: {lost}")
        check("took it back on another server first" in lost["message"], lost["message"])
        won = [s for s, r in zip((b, c), replies) if r["type"] == "class.reclaimed"][0]
        eq([classes(s)["moved_in"] for s in (b, c)].count(1), 1, "one replica is home")
        eq(classes(won)["moved_in"], 1, "the winner's replica is home")
        # A learns it from the bucket, when its watcher delivers the claim.
        await poll(lambda: classes(a)["moved_out"] == 1, 60, "A to hand the class over")
        await until(sb, is_type("class.instructor", state="back"), "the instructor back")
        for w in (sb, *pages):
            await w.close()

    asyncio.run(go())
    for s in (c, b, a):
        done(s)
    n.stop()


async def join_when_a_seat_frees(s, code, name, timeout=90):
    """Join code on s, asking again while the class is full: a poll whose
    deadline only catches a seat that never frees."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        ws = await s.connect()
        r = await ask(ws, {"op": "class.join", "class": code, "name": name})
        if r.get("type") == "class.joined":
            return ws
        await ws.close()
        eq((r.get("code"), r.get("param")), ("limit", "class"), f"only 'full' while waiting: {r}")
        check(loop.time() < end, f"{name}: no seat freed within {timeout}s")
        await asyncio.sleep(0.2)


@test
def max_class_viewers_counts_every_replica_and_a_dead_replica_holds_no_seat():
    n = Nats()
    a, b, c = (replica(n, "--max-class-viewers", "3") for _ in range(3))

    async def go():
        t1, opened = await open_class(a)
        code = opened["class"]
        for s in (b, c):
            wait_for(lambda: knows(s), 30, f"{s.base} to know the class")
        s1, s2, s3 = (await join(a, code, "a1"), await join(b, code, "b1"),
                      await join(b, code, "b2"))
        for s in (c, a):
            ws = await s.connect()
            r = await ask(ws, {"op": "class.join", "class": code, "name": "late"})
            eq((r.get("type"), r.get("code"), r.get("param")), ("error", "limit", "class"),
               f"a fourth student on {s.base}: {r}; seats {seats(n, code)}; "
               f"replicas {[(x.base, nats_health(x)['replica']) for x in (a, b, c)]}")
            eq(r["message"], "the class is full: at most 3 students on every server together "
               "(--max-class-viewers, 1 to 20000)", "the error names the limit")
            await ws.close()
        eq(classes(c)["following"], 0, "C follows no class for a student it refused")
        # A student of B leaves: the seat goes to C.
        await s3.close()
        s4 = await join_when_a_seat_frees(c, code, "c1")
        ws = await a.connect()
        r = await ask(ws, {"op": "class.join", "class": code, "name": "late"})
        eq(r.get("code"), "limit", f"full again: {r}")
        await ws.close()
        # B dies with its student: once its heartbeat has expired its seat is
        # taken by the next join, and the class is full again at three.
        b.proc.kill()
        b.proc.wait()
        b.stopped = True
        await s2.close()
        s5 = await join_when_a_seat_frees(a, code, "a2")
        ws = await c.connect()
        r = await ask(ws, {"op": "class.join", "class": code, "name": "late"})
        eq(r.get("code"), "limit", f"full again without B: {r}")
        await ws.close()
        m, _ = await until(t1, lambda m: m.get("type") == "class.members" and m["count"] == 3
                           and "a2" in m["names"], "the instructor counts a1, c1 and a2")
        eq(sorted(m["names"]), ["a1", "a2", "c1"], "the three students")
        for w in (t1, s1, s4, s5):
            await w.close()

    asyncio.run(go())
    done(c)
    b.cleanup()
    done(a)
    n.stop()


if __name__ == "__main__":
    run(timeout=300)
