"""test_nats_class.py: --nats: a class across replicas, and every replica's admission queue.

Real socklab replicas and a real nats-server -js (no mocks): the instructor
on replica A, students on B and C (and A). A class run on A is followed by
every student with every event in order, identical to A's bundle; the
instructor's view reaches B; a question answered on B is counted once on A
and its result comes back; NATS stopped and started again mid-class: the
follower says degraded, then resyncs from the bucket (the view changed
meanwhile) and follows the next run whole. Every wait polls a real
condition.
"""
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from classlib import ask, events_of, recv, until, until_end  # noqa: E402
from harness import check_stream, send, wait_for  # noqa: E402
from tap import check, eq, run, test  # noqa: E402
from natslib import Nats, bundle_bytes, done, nats_health, server  # noqa: E402

SECRET = "correct-horse-battery"


def home(n, *extra):
    return server("--nats", n.url, "--instructor-secret", SECRET, *extra)


def replica(n, *extra):
    return server("--nats", n.url, *extra)


def classes(s):
    return nats_health(s)["classes"]


def knows(s, code):
    """s can let a student join code (its bucket watcher has it)."""
    return classes(s)["state"] == "ok" and classes(s)["classes_known"] >= 1


async def open_class(s):
    ws = await s.connect()
    eq((await ask(ws, {"op": "signin", "secret": SECRET}))["type"], "signin.accepted", "sign-in")
    opened = await ask(ws, {"op": "class.open", "name": "Dr. Wu"})
    eq(opened["type"], "class.opened", f"class.open {opened}")
    return ws, opened["class"]


async def join(s, code, name):
    ws = await s.connect()
    r = await ask(ws, {"op": "class.join", "class": code, "name": name})
    eq(r.get("type"), "class.joined", f"{name} joins on {s.base}: {r}")
    ws.socklab_member = r["member"]
    eq(r.get("instructor"), "Dr. Wu", f"{name}: the instructor's name")
    return ws


def bundle_events(s, rid):
    return [json.loads(x) for x in bundle_bytes(s, rid).decode().splitlines()]


async def class_run(teacher, students, a, messages=20):
    acc = await ask(teacher, {"op": "class.run", "lab": "tcp-echo",
                              "params": {"messages": messages, "interval_ms": 20}})
    eq(acc.get("type"), "run.accepted", f"class.run {acc}")
    rid = acc["run"]
    await until_end(teacher, rid)
    got = await asyncio.gather(*(until_end(w, rid) for w in students))
    a.wait_run_status(rid)
    bundle = bundle_events(a, rid)
    check_stream(bundle)
    for i, msgs in enumerate(got):
        notice = [k for k, m in enumerate(msgs) if m.get("type") == "class.run"]
        first = next(k for k, m in enumerate(msgs) if "seq" in m)
        check(notice and notice[0] < first, f"student {i}: class.run before the first event")
        evs = events_of(msgs, rid)
        eq([e["seq"] for e in evs], list(range(len(bundle))), f"student {i}: seq gap-free")
        eq(evs, bundle, f"student {i}: every event as in A's bundle")
    return rid, bundle


@test
def a_class_on_one_replica_is_followed_live_from_the_others():
    n = Nats()
    a, b, c = home(n), replica(n), replica(n)

    async def go():
        teacher, code = await open_class(a)
        for s in (b, c):
            wait_for(lambda: knows(s, code), 30, f"{s.base} to know the class")
        students = [await join(a, code, "on-a"), await join(b, code, "b1"),
                    await join(b, code, "b2"), await join(c, code, "c1")]
        # The instructor counts students on every replica.
        m, _ = await until(teacher, lambda m: m.get("type") == "class.members" and m["count"] == 4,
                           "class.members counting all four")
        eq(sorted(m["names"]), ["b1", "b2", "c1", "on-a"], "every student's name")
        rid, bundle = await class_run(teacher, students, a)
        check(len(bundle) > 20, f"a real run ({len(bundle)} events)")
        # The instructor's step reaches every replica.
        await send(teacher, {"op": "class.view", "paused": True, "pos": 5, "speed": 0})
        for i, w in enumerate(students):
            v, _ = await until(w, lambda m: m.get("type") == "class.view" and m.get("pos") == 5,
                               f"student {i}: the instructor's step")
            eq((v["run"], v["paused"]), (rid, True), f"student {i}: the view")
        # Leaving elsewhere is counted at home.
        await students[3].close()
        await until(teacher, lambda m: m.get("type") == "class.members" and m["count"] == 3,
                    "C's student gone from the count")
        wait_for(lambda: classes(c)["following"] == 0, 30, "C to stop following the class")
        eq(classes(b)["following"], 1, "B still follows it")
        await ask(teacher, {"op": "class.end"})
        for i, w in enumerate(students[:3]):
            e, _ = await until(w, lambda m: m.get("type") == "class.ended", f"student {i}: ended")
            eq(e["reason"], "ended by the instructor", f"student {i}: why")
        for w in (teacher, *students[:3]):
            await w.close()

    asyncio.run(go())
    for s in (c, b, a):
        done(s)
    n.stop()


@test
def a_student_whose_replica_went_continues_on_another_after_its_last_event():
    """A student of follower B comes back on C (as through a balancer when B
    is gone) with "after": C continues right after the last event it had,
    from C's own ring of the class run; one that names a seq C has not had
    yet gets only what comes after it."""
    n = Nats()
    a, b, c = home(n), replica(n), replica(n)

    async def go():
        teacher, code = await open_class(a)
        for s in (b, c):
            wait_for(lambda: knows(s, code), 30, f"{s.base} to know the class")
        on_b = await join(b, code, "bo")
        on_c = await join(c, code, "cy")  # C follows the class from the start
        acc = await ask(teacher, {"op": "class.run", "lab": "tcp-echo",
                                  "params": {"messages": 40, "interval_ms": 20}})
        rid = acc["run"]
        had = []
        while not had or had[-1] < 10:
            m, _ = await until(on_b, lambda m: m.get("run") == rid and "seq" in m, "B's events")
            had.append(m["seq"])
        member = on_b.__dict__.get("socklab_member")
        await on_b.close()
        back = await c.connect()
        r = await ask(back, {"op": "class.join", "class": code, "name": "bo", "member": member,
                             "after": {"run": rid, "seq": had[-1]}})
        eq((r.get("type"), r.get("resumed"), r.get("replica")),
           ("class.joined", True, nats_health(c)["replica"]), f"bo back on C: {r}")
        ahead = await c.connect()
        r = await ask(ahead, {"op": "class.join", "class": code, "name": "al",
                              "after": {"run": rid, "seq": had[-1] + 30}})
        eq(r.get("resumed"), True, f"a seq C may not have had yet: {r}")
        got = []
        for ws in (back, ahead, on_c):
            msgs = await until_end(ws, rid)
            got.append([e["seq"] for e in events_of(msgs, rid)])
        a.wait_run_status(rid)
        want = [e["seq"] for e in bundle_events(a, rid)]
        eq(had + got[0], want, "bo: what it had on B and what C sent after it")
        eq(got[1], want[had[-1] + 31:], "al: only the events after its seq")
        for ws in (teacher, back, ahead, on_c):
            await ws.close()

    asyncio.run(go())
    for s in (c, b, a):
        done(s)
    n.stop()


@test
def a_question_answered_on_another_replica_is_counted_once_at_home():
    n = Nats()
    a, b = home(n), replica(n)

    async def go():
        teacher, code = await open_class(a)
        wait_for(lambda: knows(b, code), 30, "B to know the class")
        st = await join(b, code, "Bo")
        q = await ask(teacher, {"op": "class.quiz", "action": "open",
                                "question": {"kind": "choice", "text": "Which?",
                                             "choices": ["one", "two"]}})
        eq(q.get("type"), "class.quiz.done", f"open {q}")
        shown, _ = await until(st, lambda m: m.get("type") == "class.quiz", "the question on B")
        eq((shown["id"], shown["state"], shown["question"]["text"]), (q["id"], "open", "Which?"),
           "B's student sees it")
        r = await ask(st, {"op": "class.quiz", "action": "answer", "id": q["id"], "answer": "a"})
        eq((r.get("type"), r.get("answer")), ("class.quiz.answered", "a"), f"answer {r}")
        t, _ = await until(teacher, lambda m: m.get("type") == "class.quiz.tally" and m["answered"] == 1,
                           "the tally at home")
        eq((t["counts"], t["who"], t["members"]), ({"a": 1}, [{"name": "Bo", "answer": "a"}], 1),
           "counted at home")
        r = await ask(st, {"op": "class.quiz", "action": "answer", "id": q["id"], "answer": "b"})
        eq(r.get("type"), "class.quiz.answered", f"second answer {r}")
        t, _ = await until(teacher, lambda m: m.get("type") == "class.quiz.tally" and "b" in m["counts"],
                           "the changed answer")
        eq((t["answered"], t["counts"]), (1, {"b": 1}), "one student, counted once")
        r = await ask(st, {"op": "class.quiz", "action": "answer", "id": q["id"] + 7, "answer": "b"})
        eq((r.get("type"), r.get("param")), ("error", "id"), f"a wrong id is refused at home: {r}")
        r = await ask(st, {"op": "class.quiz", "action": "close"})
        eq((r.get("type"), r.get("code")), ("error", "forbidden"), "a student may not close")
        rv = await ask(teacher, {"op": "class.quiz", "action": "reveal", "correct": "b"})
        eq(rv.get("type"), "class.quiz.done", f"reveal {rv}")
        res, _ = await until(st, lambda m: m.get("type") == "class.quiz.result", "B's result")
        eq((res["id"], res["verdict"]["result"]), (q["id"], "right"), "B's verdict")
        pub, _ = await until(st, lambda m: m.get("type") == "class.quiz.revealed", "the reveal on B")
        eq((pub["answered"], pub["right"], "answers" in pub), (1, 1, False),
           "students see the counts, never the names")
        await teacher.close()
        await st.close()

    asyncio.run(go())
    done(b)
    done(a)
    n.stop()


@test
def a_replica_whose_class_slots_are_taken_says_so_naming_the_flag():
    n = Nats()
    a, b = home(n), replica(n, "--max-classes", "1")

    async def go():
        t1, code1 = await open_class(a)
        t2, code2 = await open_class(a)
        wait_for(lambda: classes(b)["classes_known"] >= 2, 30, "B to know both classes")
        s1 = await join(b, code1, "one")
        s2 = await b.connect()
        r = await ask(s2, {"op": "class.join", "class": code2, "name": "two"})
        eq((r.get("type"), r.get("code"), r.get("param")), ("error", "limit", "class"),
           f"a second class to follow on B: {r}")
        check("--max-classes" in r["message"], r["message"])
        r = await ask(s2, {"op": "class.join", "class": "ZZZ-ZZZ", "name": "two"})
        eq(r.get("code"), "unknown_class", "a code no replica holds is still unknown")
        await s1.close()
        wait_for(lambda: classes(b)["following"] == 0, 30, "B to stop following the first")
        r = await ask(s2, {"op": "class.join", "class": code2, "name": "two"})
        eq(r.get("type"), "class.joined", f"then the second is followed: {r}")
        for w in (t1, t2, s2):
            await w.close()

    asyncio.run(go())
    done(b)
    done(a)
    n.stop()


@test
def nats_restarted_mid_class_the_follower_degrades_then_resyncs_from_the_bucket():
    n = Nats()
    a, b = home(n), replica(n)

    async def go():
        teacher, code = await open_class(a)
        wait_for(lambda: knows(b, code), 30, "B to know the class")
        st = await join(b, code, "Bo")
        await class_run(teacher, [st], a, messages=5)
        n.stop()
        m, _ = await until(st, lambda m: m.get("type") == "cluster", "B's page told", timeout=60)
        eq(m["state"], "degraded", "degraded")
        check("NATS is not reachable" in m["reason"], m["reason"])
        eq(classes(b)["state"], "degraded", "B's health")
        eq(b.get_json("/api/health")["status"], "ok", "B still serves")
        # The class goes on at home meanwhile; B's own runs too.
        await send(teacher, {"op": "class.view", "paused": True, "pos": 3, "speed": 0})
        async with b.connect() as own:
            hello = await recv(own)
            eq((hello["type"], hello["state"]), ("cluster", "degraded"),
               "a page connecting now is told at once")
            acc = await ask(own, {"op": "run", "lab": "tcp-echo", "params": {"messages": 2}})
            eq(acc["type"], "run.accepted", f"B's own run {acc}")
            rid = acc["run"]
            evs = events_of(await until_end(own, rid), rid)
            eq(evs[-1]["status"], "ok", "B serves its own run with NATS away")
        n2 = Nats(port=n.port, store_dir=n.store)
        # Resynced from the bucket (the view is sent as the state is read,
        # "ok" once the whole bucket is in): both arrive, in either order.
        m, before = await until(st, lambda m: m.get("type") == "cluster", "B's page told again",
                                timeout=90)
        eq(m["state"], "ok", "back")
        views = [x for x in before if x.get("type") == "class.view" and x.get("pos") == 3]
        if views:
            v = views[0]
        else:
            v, _ = await until(st, lambda m: m.get("type") == "class.view" and m.get("pos") == 3,
                               "the step made while NATS was away", timeout=90)
        eq(v["paused"], True, "resynced from the bucket")
        # The next class run is followed whole.
        await send(teacher, {"op": "class.view", "paused": False, "pos": None, "speed": 0})
        await class_run(teacher, [st], a, messages=5)
        await teacher.close()
        await st.close()
        return n2

    n2 = asyncio.run(go())
    done(b)
    done(a)
    n2.stop()


@test
def every_replicas_admission_queue_is_visible_and_a_full_one_refuses_nobody_elsewhere():
    n = Nats()
    a, b = replica(n, "--max-runs", "1"), replica(n, "--max-runs", "1")

    async def go():
        async with a.connect() as w1, a.connect() as w2, b.connect() as w3:
            await send(w1, {"op": "run", "lab": "tcp-echo",
                            "params": {"messages": 100, "interval_ms": 50}, "tag": "long"})
            acc, _ = await until(w1, lambda m: m.get("tag") == "long", "the long run")
            eq(acc["type"], "run.accepted", "A's one slot")
            await send(w2, {"op": "run", "lab": "tcp-echo", "params": {"messages": 1}, "tag": "q"})
            qd, _ = await until(w2, lambda m: m.get("tag") == "q", "the second run on A")
            eq((qd["type"], qd["position"]), ("run.queued", 1), "A queues it")
            rep_a = nats_health(a)["replica"]

            def a_seen_full():
                rows = [r for r in classes(b)["queues"] if r["replica"] == rep_a]
                return rows and rows[0]["running"] == 1 and rows[0]["waiting"] == 1 and rows[0]
            row = wait_for(a_seen_full, 30, "B to see A's queue")
            eq((row["max_runs"], row["self"]), (1, False), "A's row on B")
            eq(classes(b)["queues"][0]["self"], True, "B's own row first")
            await send(w3, {"op": "run", "lab": "tcp-echo", "params": {"messages": 1}, "tag": "b"})
            acc, _ = await until(w3, lambda m: m.get("tag") == "b", "the run on B")
            eq(acc["type"], "run.accepted", "B starts it at once: A being full refuses no one here")

    asyncio.run(go())
    done(b)
    done(a)
    n.stop()


if __name__ == "__main__":
    run(timeout=300)
