"""test_server.py: `socklab serve` over real HTTP and WebSocket: API shapes, runs, errors, cancel."""
import asyncio
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
import websockets  # noqa: E402
from harness import (Server, check_stream, events_until_end, pid_alive, recv,  # noqa: E402
                     request, send, start_run, wait_for)
from tap import check, eq, run, test  # noqa: E402

LONG = {"messages": 1000, "interval_ms": 5000}  # a run that only ends when stopped

_srv = None


def srv():
    global _srv
    if _srv is None:
        _srv = Server()
        atexit.register(_srv.cleanup)
    return _srv


def arun(coro):
    return asyncio.run(coro)


def syscalls(events, who=None, call=None):
    return [e for e in events if e["type"] == "syscall"
            and (who is None or e["who"] == who) and (call is None or e["call"] == call)]


# ---- HTTP ----

@test
def serving_line_and_port_file():
    s = srv()
    out = s.stdout()
    want = (f"socklab serving http://127.0.0.1:{s.http_port}/ "
            f"(WebSocket ws://127.0.0.1:{s.http_port}/ws)")
    check(want in out, f"stdout {out!r} lacks {want!r}")
    eq((s.ws_port, s.ws_path), (s.http_port, "/ws"), "one port: the WebSocket at /ws")
    # The old layout on request: a WebSocket port of its own as well.
    s2 = Server("--ws-port", "0")
    try:
        want = (f"socklab serving http://127.0.0.1:{s2.http_port}/ "
                f"(WebSocket ws://127.0.0.1:{s2.ws_port}/ws)")
        check(want in s2.stdout(), f"stdout {s2.stdout()!r} lacks {want!r}")
        check(s2.http_port != s2.ws_port, "--ws-port: distinct ports")
        eq(s2.get_json("/api/config")["ws_same_port"], False, "--ws-port: ws_same_port")
        s2.stop()
    finally:
        s2.cleanup()


@test
def health_config_labs_shapes():
    s = srv()
    h = s.get_json("/api/health")
    eq(h["status"], "ok", "health status")
    check(isinstance(h["version"], str) and h["version"], "health version")
    check(isinstance(h["runs_active"], int) and h["runs_active"] >= 0, "runs_active")
    check(isinstance(h["uptime_s"], int), "uptime_s")
    c = s.get_json("/api/config")
    eq(c["ws_port"], s.http_port, "config ws_port")
    eq(c["ws_path"], "/ws", "ws_path")
    eq(c["ws_same_port"], True, "ws_same_port")
    eq(c["ws_protocol"], "socklab.v1", "ws_protocol")
    eq(c["ws_url"], None, "ws_url without --public-ws-url")
    eq(c["byo_host"], "127.0.0.1", "byo_host")
    lim = c["limits"]
    # --max-runs by default: 8 per core, at most one per 64 MiB, within 4..1024.
    cores = os.sysconf("SC_NPROCESSORS_ONLN")
    mib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") >> 20
    for key, want in (("max_runs", max(4, min(1024, cores * 8, mib // 64))),
                      ("queue_max", 1000), ("queue_wait_s", 300),
                      ("max_runs_per_conn", 3), ("max_byo_per_conn", 1),
                      ("run_timeout_s", 120), ("max_message_bytes", 65536),
                      ("byo_ports", [9000, 9019])):
        eq(lim[key], want, f"limits.{key}")
    labs = s.get_json("/api/labs")
    cli = subprocess.run([s.bin, "labs", "--json"], capture_output=True, text=True, timeout=60)
    eq(cli.returncode, 0, "socklab labs --json exit")
    eq(labs, json.loads(cli.stdout), "/api/labs equals socklab labs --json")
    check(any(lab["name"] == "tcp-echo" for lab in labs), "tcp-echo listed")


@test
def security_headers_and_assets():
    s = srv()
    for path in ("/", "/api/health", "/no/such/file.js"):
        r = s.get(path)
        csp = r.headers.get("Content-Security-Policy", "")
        for part in ("default-src 'self'", f"connect-src 'self' ws://127.0.0.1:{s.ws_port}",
                     "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"):
            check(part in csp, f"{path}: CSP {csp!r} lacks {part!r}")
        eq(r.headers.get("X-Content-Type-Options"), "nosniff", f"{path}: nosniff")
        eq(r.headers.get("Referrer-Policy"), "no-referrer", f"{path}: Referrer-Policy")
    r = s.get("/")
    eq(r.status, 200, "GET / status")
    check(r.headers["Content-Type"].startswith("text/html"), "index is text/html")
    eq(r.headers.get("Cache-Control"), "no-cache", "Cache-Control")
    eq(r.body, s.get("/index.html").body, "/ serves index.html")
    r = s.request("/", method="HEAD")
    eq(r.status, 200, "HEAD /")
    eq(r.body, b"", "HEAD has no body")


@test
def http_error_bodies():
    s = srv()
    e = s.get_json("/api/nope", status=404)
    eq(e["error"]["code"], "not_found", "unknown API")
    e = s.get_json("/nope.js", status=404)
    eq(e["error"]["code"], "not_found", "unknown asset")
    for bad in ("XYZ", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0",
                "../../../etc/passwd"):
        e = s.get_json(f"/api/runs/{bad}", status=400)
        eq(e, {"error": {"code": "bad_run_id",
                         "message": "run id must be 16 lowercase hex digits"}}, f"id {bad}")
    e = s.get_json("/api/runs/0123456789abcdef", status=404)
    eq(e["error"]["code"], "not_found", "unknown run")
    e = s.get_json("/api/runs/0123456789abcdef/events", status=404)
    eq(e["error"]["code"], "not_found", "unknown run events")
    r = s.request("/api/health", method="POST", data=b"{}")
    eq(r.status, 405, "POST status")
    eq(r.headers.get("Allow"), "GET, HEAD", "Allow header")
    eq(r.json()["error"]["code"], "method_not_allowed", "405 body")
    e = s.get_json("/" + "a" * 600, status=414)
    eq(e["error"]["code"], "uri_too_long", "414 body")


# ---- WebSocket: a whole run ----

@test
def run_tcp_echo_over_websocket():
    s = srv()

    async def go():
        async with s.connect() as ws:
            await send(ws, {"op": "run", "lab": "tcp-echo",
                            "params": {"messages": 3, "size": 16}, "tag": "t-1"})
            acc = await recv(ws)
            eq(acc["type"], "run.accepted", f"reply {acc}")
            eq(acc["tag"], "t-1", "tag echoed")
            eq(acc["lab"], "tcp-echo", "lab echoed")
            return acc["run"], await events_until_end(ws, acc["run"])

    run_id, events = arun(go())
    check_stream(events)
    eq(events[-1]["status"], "ok", f"run.end status ({events[-1]})")
    eq({e["who"] for e in syscalls(events)}, {"client", "server"}, "syscalls from both sides")
    echoes = [e for e in events if e["type"] == "echo"]
    eq(len(echoes), 3, "echo events")
    for e in echoes:
        eq(e["reply"], e["sent"].upper(), f"echo {e['index']} upper-cased")
        eq(e["bytes"], 16, "echo bytes")
    sent = sum(e["bytes"] for e in syscalls(events, "client", "send"))
    got = sum(e["bytes"] for e in syscalls(events, "server", "recv") if e["ret"] > 0)
    eq(sent, 3 * 16, "client sent bytes")
    eq(got, 3 * 16, "server received bytes")
    check(any(e["call"] == "recv" and e["ret"] == 0 for e in syscalls(events, "server")),
          "server saw the client's FIN (recv returned 0)")

    # The bundle holds exactly what was streamed.
    r = s.get(f"/api/runs/{run_id}/events")
    eq(r.status, 200, "events status")
    check(r.headers["Content-Type"].startswith("application/x-ndjson"), "ndjson type")
    eq([json.loads(line) for line in r.body.decode().splitlines()], events, "bundle == stream")
    meta = s.get_json(f"/api/runs/{run_id}")
    eq((meta["id"], meta["lab"], meta["status"], meta["events"], meta["tag"]),
       (run_id, "tcp-echo", "ok", len(events), "t-1"), "meta.json")
    eq(meta["params"]["messages"], 3, "meta params")
    check(meta["created"].endswith("Z"), "created is UTC ISO time")
    runs = s.get_json("/api/runs")
    eq(runs[0]["id"], run_id, "newest run listed first")
    e = s.get_json(f"/api/runs/{run_id}/capture.pcap", status=404)
    eq(e["error"]["code"], "no_capture", "no capture yet")
    s.wait_no_children()


# ---- WebSocket: bad input ----

@test
def bad_requests_are_answered_not_fatal():
    s = srv()
    cases = [
        ({"op": "run", "lab": "nope"}, "unknown_lab", "lab", "unknown lab 'nope'"),
        ({"op": "run", "lab": "tcp-echo", "params": {"bogus": 1}}, "bad_param", "bogus",
         "unknown parameter 'bogus'"),
        ({"op": "run", "lab": "tcp-echo", "params": {"messages": 0}}, "bad_param", "messages",
         "from 1 to 1000"),
        ({"op": "run", "lab": "tcp-echo", "params": {"messages": "3"}}, "bad_param",
         "messages", "must be a JSON integer"),
        ({"op": "run", "lab": "tcp-echo", "params": {"transform": "lower"}}, "bad_param",
         "transform", "upper or echo"),
        ({"op": "run", "lab": "tcp-echo", "params": {"port": 9000}}, "bad_param", "port",
         "parameter 'port' is assigned by the server"),
        ({"op": "run", "lab": "tcp-echo", "params": {"bind": "0.0.0.0"}}, "bad_param", "bind",
         "parameter 'bind' is assigned by the server"),
        # The own lab reads the program files it is given: a browser may not
        # name a file on the server.
        ({"op": "run", "lab": "own", "params": {"server": "/etc/shadow"}}, "bad_param",
         "server", "parameter 'server' is assigned by the server"),
        ({"op": "run", "lab": "tcp-echo", "params": [1]}, "bad_request", "params",
         "must be a JSON object"),
        ({"op": "run", "lab": 5}, "bad_request", "lab", "'lab' must be a string"),
        ({"op": "run", "lab": "tcp-echo", "tag": "x" * 65}, "bad_request", "tag",
         "at most 64 bytes"),
        ({"op": "fly"}, "bad_request", "op", "unknown op 'fly'; expected run, cancel, watch"),
        ({"lab": "tcp-echo"}, "bad_request", "op", "'op' is missing"),
        ({"op": "cancel", "run": "zz"}, "bad_request", "run", "16 lowercase hex"),
        ({"op": "cancel", "run": "0123456789abcdef"}, "unknown_run", "run", "no run"),
        ({"op": "watch", "run": "0123456789abcdef"}, "unknown_run", "run", "no such run"),
        ("this is not json", "bad_request", None, "not valid JSON"),
        ("[1, 2]", "bad_request", None, "must be a JSON object"),
    ]

    async def go():
        async with s.connect() as ws:
            for msg, code, param, text in cases:
                if isinstance(msg, dict):
                    msg = dict(msg, tag=msg.get("tag", "bad"))
                reply = await request(ws, msg)
                what = f"{msg!r} -> {reply}"
                eq(reply.get("type"), "error", what)
                eq(reply.get("code"), code, what)
                eq(reply.get("param"), param, what)
                check(text in reply.get("message", ""), f"{what}: message lacks {text!r}")
            # Still usable after all that.
            eq(await request(ws, {"op": "ping", "tag": "p"}), {"type": "pong", "tag": "p"},
               "ping")

    arun(go())
    eq(s.children(), [], "no run was started by a bad request")


@test
def oversized_message_is_refused_and_closed():
    s = srv()

    async def go():
        async with s.connect() as ws:
            await send(ws, json.dumps({"op": "ping", "pad": "x" * 70000}))
            reply = await recv(ws)
            eq(reply["type"], "error", f"reply {reply}")
            check("too large" in reply["message"], reply["message"])
            try:
                await recv(ws, 10)
                raise AssertionError("connection stayed open")
            except websockets.exceptions.ConnectionClosed as e:
                eq(e.code, 1009, "close code (message too big)")

    arun(go())


@test
def handshake_checks_origin_and_subprotocol():
    s = srv()

    async def refused(**kw):
        try:
            async with s.connect(**kw) as ws:
                await request(ws, {"op": "ping"}, timeout=5)
        except (websockets.exceptions.InvalidHandshake, websockets.exceptions.ConnectionClosed,
                OSError, EOFError, asyncio.TimeoutError):
            return True
        return False

    async def accepted(**kw):
        async with s.connect(**kw) as ws:
            return await request(ws, {"op": "ping"}) == {"type": "pong", "tag": None}

    async def go():
        check(await refused(origin="http://evil.example"), "evil origin accepted")
        check(await refused(origin=f"http://127.0.0.1:{s.http_port + 1}"),
              "another port as origin accepted")
        check(await refused(subprotocols=()), "client without subprotocol accepted")
        check(await refused(subprotocols=("chat",)), "client with another subprotocol accepted")
        check(await accepted(origin=f"http://127.0.0.1:{s.http_port}"), "own origin refused")
        check(await accepted(origin=f"http://localhost:{s.http_port}"), "localhost refused")
        check(await accepted(), "client without Origin refused")

    arun(go())


# ---- WebSocket: stopping runs ----

@test
def cancel_stops_the_run_and_its_process():
    s = srv()

    async def go():
        async with s.connect() as ws:
            run_id = await start_run(ws, LONG, tag="c")
            first = await events_until_end(ws, run_id, until=lambda e: e["type"] == "echo")
            kids = s.children()
            eq(len(kids), 1, "one run process")
            await send(ws, {"op": "cancel", "run": run_id, "tag": "c2"})
            rest = await events_until_end(ws, run_id, timeout=30)
            return run_id, kids, first, rest

    run_id, kids, first, rest = arun(go())
    events = first + rest
    check_stream(events)
    eq(events[-1]["status"], "cancelled", "run.end status")
    wait_for(lambda: not any(pid_alive(p) for p in kids), 20, "the run process to exit")
    eq(s.wait_run_status(run_id)["status"], "cancelled", "meta status")


@test
def cancel_reply_and_foreign_cancel():
    s = srv()

    async def go():
        async with s.connect() as a, s.connect() as b:
            run_id = await start_run(a, LONG)
            await events_until_end(a, run_id, until=lambda e: e["type"] == "run.start")
            reply = await request(b, {"op": "cancel", "run": run_id})
            eq(reply["code"], "not_owner", f"foreign cancel: {reply}")
            eq(reply["run"], run_id, "error names the run")
            reply = await request(a, {"op": "cancel", "run": run_id, "tag": "k"})
            eq(reply, {"type": "cancel.accepted", "run": run_id, "tag": "k"}, "cancel reply")
            await events_until_end(a, run_id)
            reply = await request(a, {"op": "cancel", "run": run_id})
            eq(reply["code"], "not_running", f"cancel after the end: {reply}")

    arun(go())
    s.wait_no_children()


@test
def disconnect_mid_run_kills_the_child():
    s = srv()

    async def go():
        async with s.connect() as ws:
            run_id = await start_run(ws, LONG)
            await events_until_end(ws, run_id, until=lambda e: e["type"] == "echo")
            return run_id, s.children()

    run_id, kids = arun(go())  # leaving the block closes the connection
    eq(len(kids), 1, "one run process while connected")
    wait_for(lambda: not any(pid_alive(p) for p in kids), 20, "the run process to exit")
    eq(s.wait_run_status(run_id)["status"], "cancelled", "meta status")
    lines = s.get(f"/api/runs/{run_id}/events").body.decode().splitlines()
    events = [json.loads(line) for line in lines]
    check_stream(events)
    eq(events[-1]["status"], "cancelled", "bundle ends with run.end cancelled")


@test
def per_connection_run_limit():
    s = srv()

    async def go():
        async with s.connect() as ws:
            ids = [await start_run(ws, LONG) for _ in range(3)]
            reply = await request(ws, {"op": "run", "lab": "tcp-echo", "params": LONG,
                                       "tag": "4th"})
            eq(reply["type"], "error", f"4th run: {reply}")
            eq(reply["code"], "limit", "code")
            eq(reply["tag"], "4th", "tag")
            check("limit is 3" in reply["message"], reply["message"])
            h = s.get_json("/api/health")
            eq(h["runs_active"], 3, "health runs_active")
            for run_id in ids:
                await send(ws, {"op": "cancel", "run": run_id})
            ended = set()
            while len(ended) < 3:
                m = await recv(ws)
                if m.get("type") == "run.end":
                    eq(m["status"], "cancelled", "status")
                    ended.add(m["run"])
            eq(ended, set(ids), "all three ended")

    arun(go())
    s.wait_no_children()
    wait_for(lambda: s.get_json("/api/health")["runs_active"] == 0, 10, "runs_active 0")


# ---- WebSocket: watching ----

@test
def watch_replays_a_finished_run():
    s = srv()

    async def go():
        async with s.connect() as a:
            run_id = await start_run(a, {"messages": 2})
            events = await events_until_end(a, run_id)
        async with s.connect() as b:
            reply = await request(b, {"op": "watch", "run": run_id, "tag": "w"})
            eq(reply, {"type": "watch.accepted", "run": run_id, "tag": "w", "live": False},
               "watch reply")
            eq(await events_until_end(b, run_id), events, "replay == original stream")

    arun(go())


@test
def watch_follows_a_live_run():
    s = srv()

    async def go():
        async with s.connect() as a, s.connect() as b:
            run_id = await start_run(a, {"messages": 1000, "interval_ms": 20})
            await events_until_end(a, run_id, until=lambda e: e["type"] == "echo")
            reply = await request(b, {"op": "watch", "run": run_id})
            eq(reply["live"], True, f"watch reply {reply}")
            seen = await events_until_end(b, run_id, until=lambda e: e["type"] == "echo"
                                          and e["index"] >= 5)
            await send(a, {"op": "cancel", "run": run_id})
            seen += await events_until_end(b, run_id)
            return run_id, seen

    run_id, seen = arun(go())
    check_stream(seen)
    eq(seen[-1]["status"], "cancelled", "watcher saw the end")
    lines = s.get(f"/api/runs/{run_id}/events").body.decode().splitlines()
    eq(seen, [json.loads(line) for line in lines], "watcher saw exactly the bundle")
    s.wait_no_children()


# ---- a client that does not read ----

@test
def slow_reader_is_disconnected_with_counted_drops():
    # A watcher that stops reading is closed at its queue bound (the run's
    # owner is waited for instead: test_abuse.py).
    s = srv()
    before = s.get_json("/api/health")["counters"]

    def small_rcvbuf():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", s.ws_port))
        return sock

    async def go():
        async with s.connect(sock=small_rcvbuf(), max_queue=1, read_limit=4096) as owner:
            run_id = await start_run(owner, {"clients": 4, "messages": 1000, "size": 1000})
            # The owner does not read yet: the run waits for it, and a
            # watcher reads the replay up to there (so it is live), then stops.
            wait_for(lambda: s.get_json("/api/health")["counters"]["runs_throttled"] >= 1, 60,
                     "the run to wait for its owner")
            held = len(s.get(f"/api/runs/{run_id}/events").body.splitlines())
            async with s.connect(sock=small_rcvbuf(), max_queue=1, read_limit=4096) as ws:
                eq((await request(ws, {"op": "watch", "run": run_id}))["type"], "watch.accepted",
                   "watch")
                while (await recv(ws)).get("seq", -1) < held - 1:
                    pass
                events = await events_until_end(owner, run_id, timeout=120)
                eq(events[-1]["status"], "ok", "the owner's run")
                wait_for(lambda: s.get_json("/api/health")["counters"]["ws_queue_overflows"]
                         > before["ws_queue_overflows"], 60, "a queue overflow")
                try:
                    while True:
                        await recv(ws, 30)
                except websockets.exceptions.ConnectionClosed as e:
                    eq(e.code, 1008, "close code (policy violation)")
                    check("reads too slowly" in e.reason, f"close reason {e.reason!r}")

    arun(go())
    after = s.get_json("/api/health")["counters"]
    check(after["ws_messages_dropped"] > before["ws_messages_dropped"], "drops counted")
    s.wait_no_children()


# ---- shutdown (last: it stops the shared server) ----

@test
def sigterm_cancels_runs_and_exits_zero():
    s = srv()

    async def go():
        async with s.connect() as ws:
            run_id = await start_run(ws, LONG)
            await events_until_end(ws, run_id, until=lambda e: e["type"] == "echo")
            kids = s.children()
            s.stop()  # SIGTERM; asserts exit 0 and no sanitizer report
            # The connection still got the run's end before the server closed it.
            end = (await events_until_end(ws, run_id, timeout=10))[-1]
            eq((end["type"], end["status"]), ("run.end", "cancelled"), "last event received")
            return run_id, kids

    run_id, kids = arun(go())
    eq(len(kids), 1, "one run process before SIGTERM")
    check(not any(pid_alive(p) for p in kids), "run process outlived the server")
    with open(os.path.join(s.data, "runs", run_id, "meta.json")) as f:
        eq(json.load(f)["status"], "cancelled", "bundle finished as cancelled")
    with open(os.path.join(s.data, "runs", run_id, "events.jsonl")) as f:
        events = [json.loads(line) for line in f]
    check_stream(events)



@test
def old_bundles_are_pruned_to_keep_runs():
    # Finished runs left by earlier sessions, oldest first. The server
    # indexes the bundles it finds at start-up (it does not rescan later).
    tmp = tempfile.mkdtemp(prefix="socklab-keep-")
    runs_dir = os.path.join(tmp, "data", "runs")
    old = []
    for i in range(14):
        rid = f"{i:016x}"
        d = os.path.join(runs_dir, rid)
        os.makedirs(d)
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump({"id": rid, "lab": "tcp-echo", "status": "ok"}, f)
        with open(os.path.join(d, "events.jsonl"), "w") as f:
            f.write("{}\n")
        os.utime(d, (1_000_000 + i, 1_000_000 + i))
        old.append(rid)
    s = Server("--keep-runs", "10", data=os.path.join(tmp, "data"))
    try:
        async def go():
            async with s.connect() as ws:
                rid = await start_run(ws, {"messages": 1})
                return rid, await events_until_end(ws, rid)

        new_id, events = arun(go())
        eq(events[-1]["status"], "ok", "run status")
        # run.end reaches us before the server has reaped the child; pruning
        # follows the reap.
        wait_for(lambda: len(os.listdir(runs_dir)) <= 10, 20, "pruning after the run")
        left = sorted(os.listdir(runs_dir))
        eq(len(left), 10, "bundles kept")
        check(new_id in left, "the new run is kept")
        eq(sorted(set(old) - set(left)), old[:5], "the five oldest were removed")
        eq(s.get_json(f"/api/runs/{new_id}")["status"], "ok", "new run readable")
    finally:
        s.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run(timeout=120)
