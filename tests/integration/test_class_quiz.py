"""test_class_quiz.py: class questions over real WebSockets: an instructor and 50 students, the live tally, close, a class run, the reveal graded against that run, CSV, limits."""
import asyncio
import atexit
import csv
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import websockets  # noqa: E402,F401
from harness import Server, send  # noqa: E402
from harness import recv as harness_recv  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

SECRET = "correct-horse-battery"


def arun(coro):
    return asyncio.run(coro)


async def recv(ws, timeout=30):
    """The next message; a JSON array (a lagging reader's batch) comes item by item."""
    flat = ws.__dict__.setdefault("socklab_flat", [])
    if not flat:
        m = await harness_recv(ws, timeout)
        flat.extend(m if isinstance(m, list) else [m])
    return flat.pop(0)


_tags = iter(range(1, 1 << 30))


async def ask(ws, obj, timeout=30):
    """Send one op with a fresh tag and return the reply carrying it; other
    messages that arrive first are held back for recv()."""
    tag = f"q{next(_tags)}"
    await send(ws, {**obj, "tag": tag})
    held = []
    try:
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            items = m if isinstance(m, list) else [m]
            mine = [x for x in items if isinstance(x, dict) and x.get("tag") == tag]
            held.extend(x for x in items if not (isinstance(x, dict) and x.get("tag") == tag))
            if mine:
                return mine[0]
    finally:
        ws.__dict__.setdefault("socklab_flat", []).extend(held)


async def open_class(s):
    ws = await s.connect()
    eq((await ask(ws, {"op": "signin", "secret": SECRET}))["type"], "signin.accepted", "sign-in")
    opened = await ask(ws, {"op": "class.open"})
    eq(opened["type"], "class.opened", f"class.open reply {opened}")
    return ws, opened["class"]


async def join(s, code, name):
    ws = await s.connect()
    reply = await ask(ws, {"op": "class.join", "class": code, "name": name})
    eq(reply.get("type"), "class.joined", f"join reply {reply}")
    return ws

STUDENTS = 50
_srv = None


def srv():
    global _srv
    if _srv is None:
        _srv = Server("--instructor-secret", SECRET, "--class-grace", "1", "--msg-rate", "200")
        atexit.register(_srv.cleanup)
    return _srv


async def until_msg(ws, pred, what, timeout=60):
    """Messages up to the first for which pred is true (that one returned)."""
    async def go():
        while True:
            m = await recv(ws, timeout)
            if pred(m):
                return m
    try:
        return await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}")


def close_count(events):
    """The close's segments read from the capture here: FINs and bare ACKs of a FIN."""
    s = [e for e in events if e["type"] == "segment"]
    fins = [x for x in s if "FIN" in x["flags"]]
    end = lambda f: (f["seq_raw"] + f["len"] + 1) % 2**32  # noqa: E731
    acks = [x for x in s if not {"FIN", "SYN", "RST"} & set(x["flags"]) and x["len"] == 0
            and any(f["from"] != x["from"] and f["seq"] < x["seq"] and x["ack_raw"] == end(f) for f in fins)]
    return len(fins) + len(acks)


@test
def fifty_students_answer_a_bank_question_and_are_graded_against_the_class_run():
    s = srv()

    async def go():
        t, code = await open_class(s)
        students = [await join(s, code, f"student {i:02d}") for i in range(STUDENTS)]
        r = await ask(t, {"op": "class.quiz", "action": "open",
                          "question": {"lab": "handshake", "q": "close_segments"}})
        check(r.get("type") != "error", f"open: {r}")
        for st in students:
            m = await until_msg(st, lambda m: m.get("type") == "class.quiz", "class.quiz open")
            eq((m["state"], m["question"]["lab"], m["question"]["q"], m["question"]["kind"]),
               ("open", "handshake", "close_segments", "number"), "the question every student sees")
        qid = m["id"]
        # 20 say 3, 20 say 4, 10 say 7; then student 00 changes 3 -> 4.
        answers = [3] * 20 + [4] * 20 + [7] * 10
        for st, a in zip(students, answers):
            await send(st, {"op": "class.quiz", "action": "answer", "id": qid, "answer": a})
        for st, a in zip(students, answers):
            m = await until_msg(st, lambda m: m.get("type") in ("class.quiz.answered", "error"), "answered")
            eq((m["type"], m.get("answer")), ("class.quiz.answered", a), "answer acknowledged")
        r = await ask(students[0], {"op": "class.quiz", "action": "answer", "id": qid, "answer": "4"})
        eq(r["answer"], 4, "an answer may change until the vote closes")
        answers[0] = 4
        want = {"3": 19, "4": 21, "7": 10}
        tally = await until_msg(t, lambda m: m.get("type") == "class.quiz.tally" and m["counts"] == want,
                                "the instructor's tally to reach the final distribution")
        eq((tally["answered"], tally["members"]), (STUDENTS, STUDENTS), "answered / members")
        eq(sorted(w["name"] for w in tally["who"]), [f"student {i:02d}" for i in range(STUDENTS)], "who answered")
        # Close the vote: a late answer is refused.
        await ask(t, {"op": "class.quiz", "action": "close"})
        r = await ask(students[1], {"op": "class.quiz", "action": "answer", "id": qid, "answer": 4})
        eq((r["type"], r["code"]), ("error", "closed"), "an answer after the close")
        # Students may not reveal; revealing before a class run is refused.
        r = await ask(students[1], {"op": "class.quiz", "action": "reveal"})
        eq((r["type"], r["code"]), ("error", "forbidden"), "a student's reveal")
        r = await ask(t, {"op": "class.quiz", "action": "reveal"})
        eq(r["message"], "run the lab for the class first: the reveal grades against that run", "reveal before a run")
        # Run the lab for the class, then reveal.
        acc = await ask(t, {"op": "class.run", "lab": "handshake", "params": {"observe_ms": 200}})
        eq(acc["type"], "run.accepted", f"class.run {acc}")
        run_id = acc["run"]
        await until_msg(t, lambda m: m.get("run") == run_id and m.get("type") == "run.end" and "seq" in m,
                        "the class run's end", timeout=90)
        s.wait_run_status(run_id)
        events = [json.loads(x) for x in s.get(f"/api/runs/{run_id}/events").body.decode().splitlines() if x]
        truth = close_count(events)
        check(truth in (3, 4), f"the close took {truth} segments")
        await ask(t, {"op": "class.quiz", "action": "reveal"})
        rev = await until_msg(t, lambda m: m.get("type") == "class.quiz.revealed", "revealed")
        right = sum(1 for a in answers if a == truth)
        eq((rev["run"], rev["truth"]["truth"], rev["answered"], rev["right"], rev["wrong"]),
           (run_id, truth, STUDENTS, right, STUDENTS - right), "the instructor's summary")
        for st, a in zip(students, answers):
            m = await until_msg(st, lambda m: m.get("type") == "class.quiz.result", "my result")
            v = m["verdict"]
            eq((m["run"], v["answer"], v["truth"], v["result"]), (run_id, a, truth, "right" if a == truth else "wrong"),
               "a student's own answer graded against the class run")
            check(v["evidence"], "the verdict names its evidence")
            pub = await until_msg(st, lambda m: m.get("type") == "class.quiz.revealed", "the public reveal")
            check("answers" not in pub, "students never see the others' names and answers")
        c = await ask(t, {"op": "class.quiz", "action": "csv"})
        rows = list(csv.reader(io.StringIO(c["csv"])))
        eq(rows[0], ["name", "answer", "correct"], "CSV header")
        eq(len(rows), STUDENTS + 1, "one row per student")
        eq(sorted(rows[1:]), sorted([f"student {i:02d}", str(a), "yes" if a == truth else "no"]
                                    for i, a in enumerate(answers)), "CSV rows")
        for ws in students + [t]:
            await ws.close()
    arun(go())


@test
def free_questions_and_limits():
    s = srv()

    async def go():
        t, code = await open_class(s)
        a = await join(s, code, "=cmd|' /C calc'!A0")
        b = await join(s, code, 'Bo, "the" tester')

        async def bad(ws, obj, code_, param, message):
            r = await ask(ws, {"op": "class.quiz", **obj})
            eq((r["type"], r["code"], r.get("param"), r["message"]), ("error", code_, param, message), f"{obj}")

        await bad(t, {"action": "open", "question": {"kind": "choice", "text": "x" * 301, "choices": ["a", "b"]}},
                  "bad_param", "text", "'text' must be the question, 1..300 bytes")
        await bad(t, {"action": "open", "question": {"kind": "choice", "text": "q", "choices": list("abcdefg")}},
                  "bad_param", "choices", "'choices' must be a list of 2..6 choices")
        await bad(t, {"action": "open", "question": {"kind": "choice", "text": "q", "choices": ["ok", "y" * 81]}},
                  "bad_param", "choices", "choice 2 must be text of 1..80 bytes")
        await bad(t, {"action": "open", "question": {"kind": "number", "text": "q", "min": 5, "max": 1}},
                  "bad_param", "min", "'min' and 'max' must be integers, min <= max, within -1000000000..1000000000")
        await bad(t, {"action": "open", "question": {"lab": "handshake", "q": "nope"}},
                  "bad_param", "question", "no question 'nope' in the bank of lab 'handshake'")
        await bad(t, {"action": "launch"}, "bad_request", "action", "'action' must be open, answer, close, reveal or csv")
        await bad(a, {"action": "open", "question": {"kind": "number", "text": "q", "min": 0, "max": 9}},
                  "forbidden", None, "only the class's instructor may do that")
        r = await ask(t, {"op": "class.quiz", "action": "open",
                          "question": {"kind": "number", "text": "How many bytes does a TCP header without options take?",
                                       "min": 0, "max": 100}})
        m = await until_msg(a, lambda m: m.get("type") == "class.quiz", "the free question")
        qid = m["id"]
        await bad(a, {"action": "answer", "id": qid, "answer": 101}, "bad_param", "answer",
                  "answer to 'question' must be an integer 0..100")
        await bad(a, {"action": "answer", "id": qid, "answer": "2" * 65}, "bad_param", "answer",
                  "answer to 'question' must be 1..64 bytes")
        await bad(a, {"action": "answer", "id": qid + 1, "answer": 20}, "bad_request", "id",
                  f"'id' must be the current question's, {qid}")
        await ask(a, {"op": "class.quiz", "action": "answer", "id": qid, "answer": 20})
        await ask(b, {"op": "class.quiz", "action": "answer", "id": qid, "answer": 32})
        await bad(t, {"action": "reveal"}, "bad_param", "correct", "answer to 'question' must be an integer 0..100")
        await ask(t, {"op": "class.quiz", "action": "reveal", "correct": 20})
        rev = await until_msg(t, lambda m: m.get("type") == "class.quiz.revealed", "revealed")
        eq((rev["right"], rev["wrong"]), (1, 1), "graded against the instructor's answer")
        ra = await until_msg(a, lambda m: m.get("type") == "class.quiz.result", "a's result")
        eq((ra["verdict"]["result"], ra["verdict"]["why"]["key"]), ("right", "quiz.why.instructor"), "a")
        c = await ask(t, {"op": "class.quiz", "action": "csv"})
        # Spreadsheet formulas are defused and quotes and commas kept whole.
        eq(list(csv.reader(io.StringIO(c["csv"])))[1:],
           [["'=cmd|' /C calc'!A0", "20", "yes"], ['Bo, "the" tester', "32", "no"]], "CSV escaping")
        # A free choice question: answers are the choice ids a, b, ...
        await ask(t, {"op": "class.quiz", "action": "open",
                      "question": {"kind": "choice", "text": "Who sends the first FIN?", "choices": ["client", "server"]}})
        m = await until_msg(b, lambda m: m.get("type") == "class.quiz" and m["id"] == qid + 1, "choice question")
        eq((m["question"]["choices"], m["question"]["labels"]), (["a", "b"], ["client", "server"]), "choices")
        await bad(b, {"action": "answer", "id": qid + 1, "answer": "c"}, "bad_param", "answer",
                  "answer to 'question' must be one of: a, b")
        # Opening questions is rate limited: a burst of 5, then one a second.
        codes = []
        for i in range(8):
            r = await ask(t, {"op": "class.quiz", "action": "open",
                              "question": {"kind": "number", "text": f"q{i}", "min": 0, "max": 1}})
            codes.append(r.get("code"))
        check("limit" in codes, f"opening 8 questions at once hits the limit: {codes}")
        for ws in (a, b, t):
            await ws.close()
    arun(go())


@test
def a_student_who_rejoins_is_one_row_with_the_latest_answer():
    s = srv()

    async def go():
        t, code = await open_class(s)
        a = await s.connect()
        joined = await ask(a, {"op": "class.join", "class": code, "name": "Ann"})
        member = joined["member"]
        check(isinstance(member, str) and len(member) == 24, f"an identity: {joined}")
        b = await join(s, code, "Bo")
        r = await ask(t, {"op": "class.quiz", "action": "open",
                          "question": {"kind": "choice", "text": "Who closes first?", "choices": ["client", "server"]}})
        check(r.get("type") != "error", f"open: {r}")
        m = await until_msg(a, lambda m: m.get("type") == "class.quiz", "the question")
        qid = m["id"]
        eq((await ask(a, {"op": "class.quiz", "action": "answer", "id": qid, "answer": "a"}))["answer"], "a", "Ann's first answer")
        eq((await ask(b, {"op": "class.quiz", "action": "answer", "id": qid, "answer": "b"}))["answer"], "b", "Bo's answer")
        # Ann's connection drops; her page joins again with the identity it kept.
        await a.close()
        a2 = await s.connect()
        r = await ask(a2, {"op": "class.join", "class": code, "name": "Ann", "member": "x" * 24})
        eq((r["type"], r["code"], r["param"]), ("error", "bad_param", "member"), "a made-up identity of the wrong alphabet")
        r = await ask(a2, {"op": "class.join", "class": code, "name": "Ann", "member": member})
        eq((r["type"], r["member"]), ("class.joined", member), "the same identity again")
        m = await until_msg(a2, lambda m: m.get("type") == "class.quiz", "the question shown again on rejoining")
        eq(m["id"], qid, "the open question")
        eq((await ask(a2, {"op": "class.quiz", "action": "answer", "id": qid, "answer": "b"}))["answer"], "b", "Ann changes her answer")
        tally = await until_msg(t, lambda m: m.get("type") == "class.quiz.tally" and m["counts"] == {"b": 2},
                                "the tally after Ann's change")
        eq((tally["answered"], sorted((w["name"], w["answer"]) for w in tally["who"])),
           (2, [("Ann", "b"), ("Bo", "b")]), "two students, Ann counted once")
        # Without the identity a page that joins is another member (two rows).
        c1 = await join(s, code, "Cy")
        eq((await ask(c1, {"op": "class.quiz", "action": "answer", "id": qid, "answer": "a"}))["answer"], "a", "Cy")
        await c1.close()
        c2 = await join(s, code, "Cy")
        eq((await ask(c2, {"op": "class.quiz", "action": "answer", "id": qid, "answer": "b"}))["answer"], "b", "Cy again")
        await ask(t, {"op": "class.quiz", "action": "close"})
        await ask(t, {"op": "class.quiz", "action": "reveal", "correct": "b"})
        res = await until_msg(a2, lambda m: m.get("type") == "class.quiz.result", "Ann's result on her new connection")
        eq((res["verdict"]["answer"], res["verdict"]["result"]), ("b", "right"), "graded on her latest answer")
        c = await ask(t, {"op": "class.quiz", "action": "csv"})
        rows = list(csv.reader(io.StringIO(c["csv"])))
        eq(sorted(rows[1:]), [["Ann", "b", "yes"], ["Bo", "b", "yes"], ["Cy", "a", "no"], ["Cy", "b", "yes"]],
           "one row per identity: Ann once with her latest answer")
        for ws in (a2, b, c2, t):
            await ws.close()
    arun(go())


@test
def no_sanitizer_reports():
    eq(srv().sanitizer_reports(), [], "sanitizer reports")


run(timeout=300)
