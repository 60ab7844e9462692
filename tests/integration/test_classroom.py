"""test_classroom.py: classroom mode over real WebSockets: sign-in, classes, 50 students, roles, fan-out, stalls."""
import asyncio
import atexit
import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import websockets  # noqa: E402
from harness import Server, check_stream, send, wait_for
from harness import recv as harness_recv  # noqa: E402
from tap import check, eq, run, test  # noqa: E402

SECRET = "correct-horse-battery"
CODE_RE = re.compile(r"^[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{6}$")
STUDENTS = 50

_srv = None


def srv():
    global _srv
    if _srv is None:
        # Fifty students and an instructor connect from one address at once.
        # A class outlives its instructor's connection for --class-grace (1 s
        # here, so classes left by one test do not fill the server).
        # The sign-in lockout is an hour: the sixth attempt of the sign-in
        # test is refused however slowly this machine gets to it.
        _srv = Server("--instructor-secret", SECRET, "--max-runs-per-conn", "4",
                      "--class-grace", "1", "--signin-lockout", "3600")
        atexit.register(_srv.cleanup)
    return _srv


def arun(coro):
    return asyncio.run(coro)


async def recv(ws, timeout=30):
    """The next message; a JSON array (several class messages a lagging reader
    gets in one frame) is taken apart and its items come one by one."""
    flat = ws.__dict__.setdefault("socklab_flat", [])
    if not flat:
        m = await harness_recv(ws, timeout)
        flat.extend(m if isinstance(m, list) else [m])
    return flat.pop(0)


_tags = iter(range(1, 1 << 30))


async def ask(ws, obj, timeout=30):
    """Send one op with a fresh tag and return the reply carrying it; class
    notices and events that arrive first are held back for recv()."""
    tag = f"q{next(_tags)}"
    await send(ws, {**obj, "tag": tag})
    held = []
    try:
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            if isinstance(m, dict) and m.get("tag") == tag:
                return m
            held.append(m)
    finally:
        if not hasattr(ws, "socklab_pending"):
            ws.socklab_pending = []
        ws.socklab_pending.extend(held)


async def signin(ws, secret=SECRET):
    return await ask(ws, {"op": "signin", "secret": secret})


async def open_class(s):
    ws = await s.connect()
    eq((await signin(ws))["type"], "signin.accepted", "sign-in")
    opened = await ask(ws, {"op": "class.open"})
    eq(opened["type"], "class.opened", f"class.open reply {opened}")
    check(CODE_RE.match(opened["class"]), f"class code {opened['class']!r}")
    return ws, opened["class"]


async def join(s, code, name, **kw):
    ws = await s.connect(**kw)
    reply = await ask(ws, {"op": "class.join", "class": code, "name": name})
    eq(reply.get("type"), "class.joined", f"join reply {reply}")
    return ws


async def class_run(ws, params, lab="tcp-echo"):
    reply = await ask(ws, {"op": "class.run", "lab": lab, "params": params})
    eq(reply.get("type"), "run.accepted", f"class.run reply {reply}")
    return reply["run"]


async def collect_class_run(ws, run_id, timeout=60):
    """Everything a class member gets up to the run's run.end: notices and events."""
    got = []
    while True:
        m = await recv(ws, timeout)
        got.append(m)
        if m.get("run") == run_id and m.get("type") == "run.end" and "seq" in m:
            return got


def events_of(msgs, run_id):
    return [m for m in msgs if "seq" in m and m.get("run") == run_id]


def same_events(got, want, what):
    """got == want, reported by seq numbers (events are long)."""
    if got != want:
        gs = [m["seq"] for m in got]
        ws = [m["seq"] for m in want]
        raise AssertionError(f"{what}: got {len(gs)} events (seq {gs[:5]}...{gs[-5:]}, first "
                             f"difference at index "
                             f"{next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))}), "
                             f"want {len(ws)}")


def bundle_events(s, run_id):
    r = s.get(f"/api/runs/{run_id}/events")
    eq(r.status, 200, "bundle status")
    return [json.loads(line) for line in r.body.decode().splitlines() if line.strip()]


# ---- sign-in and roles ----

@test
def signin_needs_the_secret_and_is_rate_limited():
    s = srv()

    async def go():
        async with s.connect() as ws:
            for i in range(5):
                r = await signin(ws, f"wrong-secret-{i}")
                eq((r["type"], r["code"], r["param"]), ("error", "forbidden", "secret"),
                   f"wrong secret {i}")
                check(SECRET not in json.dumps(r), "the reply does not contain the secret")
            # The connection has used its attempts: even the right secret is refused.
            r = await signin(ws)
            eq((r["type"], r["code"]), ("error", "limit"), "sixth attempt")
            r = await ask(ws, {"op": "class.open"})
            eq((r["type"], r["code"]), ("error", "forbidden"), "class.open unsigned")
        async with s.connect() as ws:
            eq((await signin(ws))["type"], "signin.accepted", "right secret")
    arun(go())
    h = s.get_json("/api/health")["counters"]
    check(h["signin_failures"] >= 6, f"signin_failures {h['signin_failures']}")
    check(SECRET not in s.stderr() and SECRET not in s.stdout(), "secret never logged")


@test
def join_validates_code_and_name():
    s = srv()

    async def go():
        teacher, code = await open_class(s)
        async with s.connect() as ws:
            cases = [
                ({"class": "12345", "name": "ann"}, "bad_request", "class"),
                ({"class": "ABCDE0", "name": "ann"}, "bad_request", "class"),
                ({"class": code, "name": ""}, "bad_param", "name"),
                ({"class": code, "name": "   "}, "bad_param", "name"),
                ({"class": code, "name": "a\u0007b"}, "bad_param", "name"),
                ({"class": code, "name": "x" * 33}, "bad_param", "name"),
                ({"class": code}, "bad_request", "name"),
            ]
            other = "22222" + ("3" if code != "222223" else "4")
            cases.append(({"class": other, "name": "ann"}, "unknown_class", "class"))
            for body, want_code, want_param in cases:
                r = await ask(ws, {"op": "class.join", **body})
                eq((r["type"], r.get("code"), r.get("param")), ("error", want_code, want_param),
                   f"join {body}")
            # Lower case, a dash and a 32-character name with CJK are fine.
            typed = code[:3].lower() + "-" + code[3:].lower()
            r = await ask(ws, {"op": "class.join", "class": typed, "name": " 张" * 16})
            eq(r["type"], "class.joined", f"join {typed}: {r}")
            eq(r["name"], ("张 " * 16).strip(), "name trimmed")
            eq(r["run"], None, "no class run yet")
        await teacher.close()
    arun(go())


@test
def the_instructor_may_give_a_name_the_students_see():
    s = srv()

    async def go():
        ws = await s.connect()
        eq((await signin(ws))["type"], "signin.accepted", "sign-in")
        # Checked like a student's name: the field and the range are named.
        for body, want_code, want_text in (
                ({"name": 7}, "bad_request", "a string of 1 to 32 characters, or left out"),
                ({"name": ""}, "bad_param", "1 to 32 characters (it is empty)"),
                ({"name": "x" * 33}, "bad_param", "1 to 32 characters (got 33)"),
                ({"name": "Dr\u0007Wu"}, "bad_param", "without control characters"),
                ({"name": "a\u202eb"}, "bad_param", "without control characters")):
            r = await ask(ws, {"op": "class.open", **body})
            eq((r["type"], r.get("code"), r.get("param")), ("error", want_code, "name"),
               f"class.open {body}")
            check(want_text in r["message"], f"message for {body}: {r['message']!r}")
        name = "  <b>Dr. Wu</b> & 张老师 "
        opened = await ask(ws, {"op": "class.open", "name": name})
        eq(opened["type"], "class.opened", f"class.open: {opened}")
        eq(opened["instructor"], name.strip(), "class.opened names the instructor (trimmed)")
        code = opened["class"]
        async with s.connect() as st:
            r = await ask(st, {"op": "class.join", "class": code, "name": "ann"})
            eq((r["type"], r["instructor"]), ("class.joined", name.strip()),
               "a student is told who teaches")
        await ws.close()
        # Without a name: null, and the class works as before.
        ws2 = await s.connect()
        eq((await signin(ws2))["type"], "signin.accepted", "sign-in")
        opened = await ask(ws2, {"op": "class.open"})
        eq((opened["type"], opened["instructor"]), ("class.opened", None), "no name given")
        async with s.connect() as st:
            r = await ask(st, {"op": "class.join", "class": opened["class"], "name": "bo"})
            eq((r["type"], r["instructor"]), ("class.joined", None), "joined, no name")
        await ws2.close()
    arun(go())


@test
def instructor_and_fifty_students_get_every_event_in_order():
    s = srv()

    async def go():
        teacher, code = await open_class(s)
        names = [f"student {i:02d}" for i in range(STUDENTS)]
        students = await asyncio.gather(*(join(s, code, n) for n in names))
        try:
            # The instructor hears about every student (coalesced updates).
            while True:
                m = await recv(teacher)
                if m["type"] == "class.members" and m["count"] == STUDENTS:
                    break
            eq(sorted(m["names"]), names, "member names")
            h = s.get_json("/api/health")["counters"]
            eq(h["class_viewers"], STUDENTS, "class_viewers")
            # Only this class (one an earlier test left ends within --class-grace).
            wait_for(lambda: s.get_json("/api/health")["counters"]["classes_open"] == 1, 20,
                     "classes_open to be 1")

            # A student may neither drive the class nor run in it, nor end it.
            st = students[0]
            for op in ({"op": "class.view", "paused": True, "pos": 1},
                       {"op": "class.run", "lab": "tcp-echo", "params": {}},
                       {"op": "class.end"}, {"op": "class.open"}):
                r = await ask(st, op)
                eq((r["type"], r["code"]), ("error", "forbidden"), f"student {op['op']}")
            r = await ask(st, {"op": "signin", "secret": "not-the-secret"})
            eq((r["type"], r["code"]), ("error", "forbidden"), "student sign-in")

            run_id = await class_run(teacher, {"messages": 20, "clients": 2})
            teacher_msgs = await collect_class_run(teacher, run_id)
            results = await asyncio.gather(*(collect_class_run(w, run_id) for w in students))
            bundle = bundle_events(s, run_id)
            check_stream(bundle)
            check(len(bundle) > 100, f"a real run has many events ({len(bundle)})")
            same_events(events_of(teacher_msgs, run_id), bundle, "instructor's events")
            for i, msgs in enumerate(results):
                notice = [m for m in msgs if m.get("type") == "class.run"]
                eq(len(notice), 1, f"student {i} class.run notices")
                eq((notice[0]["run"], notice[0]["lab"], notice[0]["params"]),
                   (run_id, "tcp-echo", {"messages": 20, "clients": 2}), "class.run notice")
                check(msgs.index(notice[0]) < msgs.index(events_of(msgs, run_id)[0]),
                      "notice before the first event")
                same_events(events_of(msgs, run_id), bundle, f"student {i}: every event, in order")
                check(not [m for m in msgs if m.get("type") == "class.resync"],
                      f"student {i} resynced")

            # Only the instructor drives the view; every student follows.
            await send(teacher, {"op": "class.view", "paused": True, "pos": 7, "speed": 2})
            ack = await recv(teacher)
            eq((ack["type"], ack["pos"]), ("class.view", 7), "the instructor's view")
            views = await asyncio.gather(*(recv(w) for w in students))
            for i, v in enumerate(views):
                eq((v["type"], v["paused"], v["pos"], v["speed"], v["run"]),
                   ("class.view", True, 7, 2.0, run_id), f"student {i} view")
            for bad, param in (({"pos": -1}, "pos"), ({"speed": "fast"}, "speed"),
                               ({"paused": 1}, "paused")):
                r = await ask(teacher, {"op": "class.view", **bad})
                eq((r["type"], r["code"], r["param"]), ("error", "bad_request", param),
                   f"view {bad}")

            # "Try it myself": a student's own run of the same lab and parameters.
            own = await ask(st, {"op": "run", "lab": "tcp-echo",
                                     "params": notice[0]["params"]})
            eq(own["type"], "run.accepted", f"own run {own}")
            mine = []
            while not mine or mine[-1]["type"] != "run.end":
                m = await recv(st)
                if m.get("run") == own["run"] and "seq" in m:
                    mine.append(m)
            check_stream(mine)
            eq(mine[0]["params"], bundle[0]["params"], "same parameters as the class run")
            # No other student got any of it: everything sent to them before
            # the own run ended is in their socket ahead of a pong asked for
            # now (one connection's messages are sent in order).
            for i, w in enumerate(students[1:], 1):
                pong = await ask(w, {"op": "ping"})
                eq(pong["type"], "pong", f"student {i} pong")
                flat = [x for m in w.socklab_pending for x in (m if isinstance(m, list) else [m])]
                seen = [m for m in flat if m.get("run") == own["run"]]
                eq(seen, [], f"student {i} got events of another student's own run")

            ended = await ask(teacher, {"op": "class.end"})
            eq(ended["type"], "class.ended", "end reply")
            for i, w in enumerate(students):
                m = await recv(w)
                while m.get("type") != "class.ended":
                    m = await recv(w)
                eq(m["class"], code, f"student {i} told the class ended")
        finally:
            await teacher.close()
            for w in students:
                await w.close()
    arun(go())
    wait_for(lambda: s.get_json("/api/health")["counters"]["class_viewers"] == 0, 10,
             "class_viewers back to 0")
    eq(s.get_json("/api/health")["counters"]["classes_open"], 0, "classes_open")


@test
def instructor_leaving_ends_the_class_after_the_grace_period():
    s = srv()

    async def go():
        teacher, code = await open_class(s)
        async with s.connect() as ws:
            r = await ask(ws, {"op": "class.join", "class": code, "name": "bo"})
            eq(r["type"], "class.joined", "joined")
            await teacher.close()
            m = await recv(ws)
            eq((m["type"], m["state"]), ("class.instructor", "reconnecting"), "told at once")
            m = await recv(ws)
            eq((m["type"], m["reason"]),
               ("class.ended", "the instructor did not come back within 1 s"), "then ended")
            r = await ask(ws, {"op": "class.join", "class": code, "name": "bo"})
            eq(r.get("code"), "unknown_class", "the code is gone")
    arun(go())


def masked_text_frame(payload):
    """One client-to-server WebSocket text frame (RFC 6455 5.2: FIN, opcode
    1, masked; payloads under 126 bytes)."""
    key = os.urandom(4)
    return (bytes([0x81, 0x80 | len(payload)]) + key
            + bytes(b ^ key[i % 4] for i, b in enumerate(payload)))


def small_rcvbuf_socket(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


@test
def stalled_student_is_resynced_and_does_not_hold_back_the_others():
    stalled_student(None)


@test
def stalled_student_with_each_fanout_mode():
    # The same with each way class messages are written: a stalled reader is
    # where the fan-out sweep's sends come back partial or with nothing
    # written, and where lws takes over what is left.
    stalled_student("send")
    stalled_student("lws")


def stalled_student(fanout):
    # Built so that no outcome depends on how fast anything runs. The ring
    # keeps 2048 messages; run A (350 messages of 400 bytes: 1766 events,
    # exactly, with its class.run notice 1767 messages) fits in it whole, so
    # while it goes on no reader can fall behind the ring, however slowly it
    # reads. The healthy readers then read A to its end, so their position is
    # the ring's head before run B starts; B (1767 more) also fits in the
    # ring, so they cannot fall behind during B either, even if they did not
    # read at all. The stalled reader stopped within A (what its kernel
    # buffers took, some hundred messages at most): B pushes the ring's tail
    # past it (3534 messages in a ring of 2048), so it must be resynced.
    s = Server("--instructor-secret", SECRET, "--class-buffer", "2048",
               *(("--fanout", fanout) if fanout else ()))
    atexit.register(s.cleanup)
    params = {"messages": 350, "text": "x" * 400}
    if fanout:
        eq(s.get_json("/api/health")["class_fanout"], fanout, "the fan-out in use")

    async def go():
        teacher, code = await open_class(s)
        healthy = await asyncio.gather(*(join(s, code, f"ok{i}") for i in range(5)))
        # This one stops reading: a tiny receive buffer, and the client
        # library stops taking data off the socket after one message.
        stalled = await join(s, code, "stalled", sock=small_rcvbuf_socket(s.ws_port),
                             max_queue=1, read_limit=1024)
        readers = healthy + [teacher]
        run_a = await class_run(teacher, params)
        results = await asyncio.gather(*(collect_class_run(w, run_a, 120) for w in readers))
        bundle_a = bundle_events(s, run_a)
        check_stream(bundle_a)
        eq(len(bundle_a), 1766, "run A's events (the arithmetic above rests on it)")
        eq(s.get_json("/api/health")["counters"]["class_resyncs"], 0,
           "nobody resynced while run A fits in the ring")
        run_b = await class_run(teacher, params)
        results_b = await asyncio.gather(*(collect_class_run(w, run_b, 120) for w in readers))
        bundle_b = bundle_events(s, run_b)
        for i, (msgs, msgs_b) in enumerate(zip(results, results_b)):
            same_events(events_of(msgs, run_a), bundle_a, f"healthy reader {i}: run A whole")
            same_events(events_of(msgs_b, run_b), bundle_b, f"healthy reader {i}: run B whole")
            check(not [m for m in msgs + msgs_b if m.get("type") == "class.resync"],
                  f"healthy reader {i} was not resynced")
        # The stalled one fell behind the ring: counted when the ring passed
        # it (before the healthy readers got B's last event), not waited for.
        eq(s.get_json("/api/health")["counters"]["class_resyncs"], 1, "one counted resync")
        # Once it reads again it is told to resync (re-read the run from its
        # bundle): what it saw directly is a gap-free prefix of run A.
        got = []
        while not got or got[-1].get("type") != "class.resync":
            got.append(await recv(stalled, 60))
        eq(got[-1]["run"], run_b, "resync names the class's run")
        before = events_of(got, run_a)
        check(0 < len(before) < len(bundle_a),
              f"it stopped within run A ({len(before)} of {len(bundle_a)})")
        same_events(before, bundle_a[:len(before)], "events before the resync are a prefix")
        check(not events_of(got, run_b), "and nothing of run B came before the resync")
        # Then it follows live again: the next class run reaches it whole.
        run_c = await class_run(teacher, {"messages": 3})
        again = await collect_class_run(stalled, run_c, 60)
        same_events(events_of(again, run_c), bundle_events(s, run_c), "the next run, complete")
        for w in healthy + [stalled, teacher]:
            await w.close()
    try:
        arun(go())
        s.stop()
    finally:
        s.cleanup()


@test
def each_fanout_mode_says_so_and_writes_the_way_it_says():
    import subprocess
    from harness import binary
    # auto: io_uring where the kernel allows it (not in every container), else send.
    s = Server("--fanout", "auto")
    atexit.register(s.cleanup)
    auto = s.get_json("/api/health")["class_fanout"]
    check(auto in ("io_uring", "send"), f"auto chose {auto}")
    s.stop()
    s.cleanup()
    modes = ["send", "lws"]
    if auto == "io_uring":
        modes.append("io_uring")
    else:
        # Asked for by name where the kernel refuses it: no start, and why.
        p = subprocess.run([binary(), "serve", "--fanout", "io_uring", "--http-port", "0"],
                           capture_output=True, text=True, timeout=20)
        eq(p.returncode, 1, f"exit status ({p.stderr})")
        check("--fanout io_uring: the kernel refused io_uring" in p.stderr, p.stderr)
    for mode in modes:
        s = Server("--instructor-secret", SECRET, "--fanout", mode)
        atexit.register(s.cleanup)
        try:
            eq(s.get_json("/api/health")["class_fanout"], mode, "/api/health says which")

            async def go():
                teacher, code = await open_class(s)
                students = await asyncio.gather(*(join(s, code, f"s{i}") for i in range(10)))
                run_id = await class_run(teacher, {"messages": 10})
                results = await asyncio.gather(*(collect_class_run(w, run_id)
                                                 for w in students + [teacher]))
                bundle = bundle_events(s, run_id)
                check_stream(bundle)
                for i, msgs in enumerate(results):
                    same_events(events_of(msgs, run_id), bundle, f"{mode}: reader {i}")
                for w in students + [teacher]:
                    await w.close()
                return len(bundle)
            n = arun(go())
            c = s.get_json("/api/health")["counters"]
            if mode == "lws":
                eq(c["class_frames_direct"], 0, "lws: every frame from the callbacks")
            else:
                # Every event reached 11 readers; a frame may carry several.
                check(c["class_frames_direct"] > 0, f"{mode}: frames written by the sweep {c}")
                check(c["class_frames_direct"] <= 11 * (n + 2), f"{mode}: at most one per "
                      f"message per reader {c}")
            s.stop()
        finally:
            s.cleanup()


@test
def limits_classes_viewers_and_message_rate():
    s = Server("--instructor-secret", SECRET, "--max-classes", "1", "--max-class-viewers", "2",
               "--msg-rate", "5")
    atexit.register(s.cleanup)

    async def go():
        teacher, code = await open_class(s)
        if True:
            other = await s.connect()
            eq((await signin(other))["type"], "signin.accepted", "second instructor")
            r = await ask(other, {"op": "class.open"})
            eq((r["type"], r["code"]), ("error", "limit"), "second class")
            await other.close()
            a = await join(s, code, "a")
            b = await join(s, code, "b")
            c = await s.connect()
            r = await ask(c, {"op": "class.join", "class": code, "name": "c"})
            eq((r["type"], r["code"]), ("error", "limit"), "third viewer")
            # 5 per second with bursts of 10: a flood is dropped unread and
            # counted; the client is told once (not once per message), after
            # the pongs of the burst. The flood is 100 pings in one write, so
            # the server reads them at once; how many it answers is bounded
            # by the bucket and the time that really passed (the bucket holds
            # at most 10 and gains 5 a second), not by a guess at how fast
            # this machine is.
            base = s.get_json("/api/health")["counters"]["messages_rate_limited"]
            flood = b"".join(masked_text_frame(b'{"op":"ping"}') for _ in range(100))
            t0 = time.monotonic()
            c.transport.write(flood)
            replies = []
            while not replies or replies[-1].get("code") != "limit":
                replies.append(await recv(c))
            elapsed = time.monotonic() - t0
            pongs = sum(1 for m in replies if m["type"] == "pong")
            eq(pongs + 1, len(replies), f"pongs, then one limit error: {replies}")
            check(9 <= pongs <= 10 + 5 * elapsed,
                  f"{pongs} pings of the flood answered in {elapsed:.2f} s")
            check("dropped" in replies[-1]["message"], replies[-1]["message"])
            # The drop that brought the error was counted before it was sent.
            dropped = s.get_json("/api/health")["counters"]["messages_rate_limited"] - base
            check(1 <= dropped <= 100 - pongs, f"{dropped} dropped messages counted")
            for w in (a, b, c, teacher):
                await w.close()
    try:
        arun(go())
        s.stop()
    finally:
        s.cleanup()


@test
def generated_secret_is_printed_once_beyond_loopback():
    s = Server("--listen", "0.0.0.0", "--byo-bind", "127.0.0.1")
    atexit.register(s.cleanup)
    try:
        out = wait_for(lambda: "instructor secret" in s.stdout() and s.stdout(), 10,
                       "the secret line")
        lines = [ln for ln in out.splitlines() if "instructor secret" in ln]
        eq(len(lines), 1, "printed once")
        secret = lines[0].rsplit(" ", 1)[1]
        check(re.match(r"^[2-9A-Za-z]{24}$", secret), f"secret {secret!r}")
        check(secret not in s.stderr(), "not on stderr")
        eq(s.get_json("/api/config")["classroom"]["secret_required"], True, "config says so")

        async def go():
            async with s.connect() as ws:
                eq((await signin(ws, "x" * 24))["code"], "forbidden", "wrong")
                eq((await signin(ws, secret))["type"], "signin.accepted", "printed secret")
        arun(go())
        s.stop()
    finally:
        s.cleanup()


@test
def loopback_without_secret_needs_none():
    s = srv()
    eq(s.get_json("/api/config")["classroom"]["secret_required"], True, "with a secret")
    s2 = Server()
    atexit.register(s2.cleanup)
    try:
        check("instructor secret" not in s2.stdout(), "nothing printed on loopback")
        eq(s2.get_json("/api/config")["classroom"]["secret_required"], False, "config")

        async def go():
            async with s2.connect() as ws:
                eq((await signin(ws, ""))["type"], "signin.accepted", "no secret needed")
        arun(go())
        s2.stop()
    finally:
        s2.cleanup()


@test
def bad_secret_flag_is_refused_without_echo():
    import subprocess
    from harness import binary
    for bad in ("short", "has space in it", "x" * 129):
        p = subprocess.run([binary(), "serve", "--instructor-secret", bad, "--http-port", "0"],
                           capture_output=True, text=True, timeout=20)
        eq(p.returncode, 2, f"exit status for {bad!r}")
        check("--instructor-secret: must be 8 to 128 printable characters" in p.stderr,
              f"message {p.stderr!r}")
        check(bad not in p.stderr, "the value is not repeated")


@test
def runs_start_while_the_server_holds_many_connections():
    # A run's process may hold 256 descriptors; it must still start when the
    # server's own descriptors (one per viewer) go far beyond that.
    s = srv()
    socks = []
    try:
        # From 8 addresses: one address may hold at most --max-conns-per-addr
        # (64) connections that have not sent their first bytes.
        for i in range(400):
            socks.append(socket.create_connection(("127.0.0.1", s.ws_port), timeout=10,
                                                  source_address=(f"127.0.5.{i % 8 + 1}", 0)))

        def server_fds():
            return len(os.listdir(f"/proc/{s.pid}/fd"))
        wait_for(lambda: server_fds() > 400, 20, "the server to accept 400 connections")

        async def go():
            async with s.connect() as ws:
                r = await ask(ws, {"op": "run", "lab": "tcp-echo", "params": {"messages": 2}})
                eq(r["type"], "run.accepted", f"run: {r}")
                events = []
                while not events or events[-1]["type"] != "run.end":
                    m = await recv(ws)
                    if m.get("run") == r["run"] and "seq" in m:
                        events.append(m)
                check_stream(events)
                eq(events[-1]["status"], "ok", f"run status ({events[-2:]})")
        arun(go())
    finally:
        for c in socks:
            c.close()


@test
def shutdown_is_clean():
    s = srv()
    s.stop()


if __name__ == "__main__":
    run(timeout=180)
