"""test_server_byo.py: bring-your-own-client runs, port pool limits, time limits, crash repair, flags."""
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from harness import (Server, binary, check_stream, events_until_end, free_port_range,  # noqa: E402
                     request, send, start_run, wait_for)
from tap import check, eq, run, test  # noqa: E402


def arun(coro):
    return asyncio.run(coro)


def server_calls(events, call):
    return [e for e in events if e["type"] == "syscall" and e["who"] == "server"
            and e["call"] == call]


def read_until(sock, want, timeout=10):
    sock.settimeout(timeout)
    got = b""
    while not got.endswith(want):
        chunk = sock.recv(64)
        if not chunk:
            break
        got += chunk
    return got


@test
def byo_client_talks_to_a_server_run():
    lo, hi = free_port_range(4)
    s = Server("--byo-ports", f"{lo}-{hi}")
    try:
        async def go():
            async with s.connect() as ws:
                run_id = await start_run(ws, {"mode": "server"}, tag="byo")
                events = await events_until_end(ws, run_id,
                                                until=lambda e: e["type"] == "listening")
                port = events[-1]["port"]
                check(lo <= port <= hi, f"listening port {port} outside the pool {lo}-{hi}")
                eq(events[-1]["addr"], "127.0.0.1", "listening address (byo-bind)")

                # A second bring-your-own-client run on this connection is refused.
                reply = await request(ws, {"op": "run", "lab": "tcp-echo",
                                           "params": {"mode": "server"}})
                eq(reply.get("code"), "limit", f"second BYO run: {reply}")
                check("bring-your-own-client" in reply["message"], reply["message"])

                # Client 1: an ordinary exchange and an orderly close.
                c = socket.create_connection(("127.0.0.1", port), timeout=10)
                c.sendall(b"hi\n")
                eq(read_until(c, b"\n"), b"HI\n", "reply from the server run")
                c.close()
                events += await events_until_end(
                    ws, run_id, until=lambda e: e["type"] == "syscall" and e["call"] == "recv"
                    and e["who"] == "server" and e["ret"] == 0)

                # Client 2: sends, then closes with RST (SO_LINGER {1, 0}).
                c = socket.create_connection(("127.0.0.1", port), timeout=10)
                c.sendall(b"hi\n")
                eq(read_until(c, b"\n"), b"HI\n", "reply to client 2")
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()
                events += await events_until_end(
                    ws, run_id, until=lambda e: e["type"] == "syscall" and e["call"] == "recv"
                    and e.get("errno_name") == "ECONNRESET")

                await send(ws, {"op": "cancel", "run": run_id})
                events += await events_until_end(ws, run_id)
                return run_id, events

        run_id, events = arun(go())
        check_stream(events)
        accepts = [e for e in server_calls(events, "accept") if e["ret"] >= 0]
        eq(len(accepts), 2, "server accepted both clients")
        recvs1 = [e for e in server_calls(events, "recv") if e["conn"] == 1]
        sends1 = [e for e in server_calls(events, "send") if e["conn"] == 1]
        eq([e["ret"] for e in recvs1], [3, 0], "conn 1: recv 3 bytes, then 0 (EOF)")
        eq([e["bytes"] for e in sends1], [3], "conn 1: send 3 bytes")
        check(recvs1[-1].get("eof"), "recv returning 0 is marked eof")
        recvs2 = [e for e in server_calls(events, "recv") if e["conn"] == 2]
        eq(recvs2[-1]["errno_name"], "ECONNRESET", "conn 2 ends with ECONNRESET")
        eq(events[-1]["status"], "cancelled", "run.end status")
        meta = s.get_json(f"/api/runs/{run_id}")
        eq(meta["byo"], {"host": "127.0.0.1", "port": events[0]["params"]["port"]}, "meta byo")
        s.wait_no_children()

        # The port went back to the pool: a new run gets the first free one again.
        async def again():
            async with s.connect() as ws:
                rid = await start_run(ws, {"mode": "server"})
                ev = await events_until_end(ws, rid, until=lambda e: e["type"] == "listening")
                await send(ws, {"op": "cancel", "run": rid})
                await events_until_end(ws, rid)
                return ev[-1]["port"]

        eq(arun(again()), lo, "the pool's first port is free again")
        s.stop()
    finally:
        s.cleanup()


@test
def byo_pool_exhaustion_message():
    lo, _ = free_port_range(1)
    s = Server("--byo-ports", f"{lo}-{lo}", "--max-byo", "2", "--max-byo-per-conn", "2")
    try:
        async def go():
            async with s.connect() as ws:
                rid = await start_run(ws, {"mode": "server"})
                ev = await events_until_end(ws, rid, until=lambda e: e["type"] == "listening")
                eq(ev[-1]["port"], lo, "the one pool port")
                reply = await request(ws, {"op": "run", "lab": "tcp-echo",
                                           "params": {"mode": "server"}})
                eq(reply.get("code"), "limit", f"reply {reply}")
                eq(reply["message"],
                   f"all 1 bring-your-own-client ports are in use ({lo}-{lo})", "message")
                # Leave the run going: SIGTERM must end it cleanly.

        arun(go())
        s.stop()
    finally:
        s.cleanup()


@test
def run_timeout_ends_the_run():
    s = Server("--run-timeout", "1")
    try:
        async def go():
            async with s.connect() as ws:
                rid = await start_run(ws, {"messages": 1000, "interval_ms": 5000})
                return await events_until_end(ws, rid, timeout=30)

        events = arun(go())
        check_stream(events)
        eq(events[-1]["status"], "timeout", "run.end status")
        eq(events[0]["timeout_s"], 1, "the child got --timeout from --run-timeout")
        s.wait_no_children()
        s.stop()
    finally:
        s.cleanup()


@test
def crashed_server_bundles_are_repaired_at_start():
    tmp = tempfile.mkdtemp(prefix="socklab-it-data-")
    rid = "00112233445566aa"
    d = os.path.join(tmp, "runs", rid)
    os.makedirs(d)
    ev = [{"v": 1, "run": rid, "seq": 0, "t_us": 5, "lab": "tcp-echo", "type": "run.start"},
          {"v": 1, "run": rid, "seq": 1, "t_us": 90, "lab": "tcp-echo", "type": "note"}]
    with open(os.path.join(d, "events.jsonl"), "w") as f:
        f.write("".join(json.dumps(e) + "\n" for e in ev) + '{"v":1,"run":"0011')  # torn
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"id": rid, "lab": "tcp-echo", "status": "running", "events": 0}, f)
    s = Server(data=tmp)
    try:
        meta = s.get_json(f"/api/runs/{rid}")
        eq((meta["status"], meta["recovered"], meta["events"]), ("error", True, 4), "meta")
        lines = s.get(f"/api/runs/{rid}/events").body.decode().splitlines()
        events = [json.loads(line) for line in lines]
        check_stream(events)
        eq(events[:2], ev, "the complete events are kept")
        eq((events[2]["type"], events[2]["code"]), ("error", "server_restart"), "error event")
        eq(events[3]["status"], "error", "run.end status")
        check("1 run(s) were in progress" in s.stderr(), f"stderr: {s.stderr()!r}")
        s.stop()
    finally:
        s.cleanup()


@test
def a_server_without_byo_runs_names_the_page_that_has_them():
    """--max-byo 0 with --byo-url (the balanced replicas of docker/k8s): the
    config gives the page the URL, and a request for such a run is refused
    with a message that names it; nothing is started."""
    url = "https://byo.lab.example.org/"
    s = Server("--max-byo", "0", "--byo-url", url)
    try:
        c = s.get_json("/api/config")
        eq(c["byo_url"], url, "byo_url in /api/config")
        eq(c["limits"]["max_byo"], 0, "max_byo in /api/config")

        async def go():
            async with s.connect() as ws:
                for lab in ("tcp-echo", "udp-ping"):
                    reply = await request(ws, {"op": "run", "lab": lab,
                                               "params": {"mode": "server"}})
                    eq(reply.get("code"), "limit", f"{lab}: reply {reply}")
                    eq(reply["message"], "bring-your-own-client runs are disabled on this "
                       f"server; open {url} to run them", f"{lab}: message")
                # A run of the lab's own client is not affected.
                rid = await start_run(ws, {"messages": 1})
                ev = await events_until_end(ws, rid)
                eq(ev[-1]["status"], "ok", "tcp-echo with its own client")

        arun(go())
        # run.end reaches the client before the run's process is reaped: the
        # one run the refusals allowed leaves (the deadline only catches a hang).
        wait_for(lambda: s.get_json("/api/health")["runs_active"] == 0, 30,
                 "no run left going (runs_active 0)")
        s.stop()
    finally:
        s.cleanup()
    # Without --byo-url the config has none and the message names no page.
    s = Server("--max-byo", "0")
    try:
        eq(s.get_json("/api/config").get("byo_url"), None, "byo_url without --byo-url")
        s.stop()
    finally:
        s.cleanup()


@test
def serve_flag_errors_exit_2():
    for args, want in ((["--http-port", "70000"], "--http-port: must be an integer from 0 to 65535"),
                       (["--max-runs", "0"], "--max-runs: must be an integer from 1 to 1024"),
                       (["--byo-ports", "9-1"], "--byo-ports: must be LO-HI"),
                       (["--max-byo", "0", "--byo-url", "ftp://x/"],
                        "--byo-url: must be an http:// or https:// URL such as "
                        "https://byo.lab.example.org/ (at most 255 bytes; got \"ftp://x/\")"),
                       (["--max-byo", "0", "--byo-url", "https://a b/"],
                        "--byo-url: must be an http:// or https:// URL"),
                       (["--max-byo", "0", "--byo-url", "https://x/" + "a" * 300],
                        "--byo-url: must be an http:// or https:// URL"),
                       (["--byo-url", "https://byo.example/"],
                        "--byo-url: only with --max-byo 0 (this server runs up to 8 "
                        "bring-your-own-client runs itself)"),
                       (["--nope"], "unknown option '--nope'")):
        r = subprocess.run([binary(), "serve", *args], capture_output=True, text=True,
                           timeout=30)
        eq(r.returncode, 2, f"exit status of serve {args}")
        check(want in r.stderr, f"serve {args}: stderr {r.stderr!r} lacks {want!r}")
    r = subprocess.run([binary(), "serve"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, SOCKLAB_WS_PORT="x"))
    eq(r.returncode, 2, "bad SOCKLAB_WS_PORT")
    check("SOCKLAB_WS_PORT" in r.stderr, r.stderr)
    r = subprocess.run([binary(), "serve", "--help"], capture_output=True, text=True, timeout=30)
    eq(r.returncode, 0, "--help exit status")
    check("--byo-ports" in r.stdout and "SOCKLAB_ORIGINS" in r.stdout, "usage text")


@test
def env_configures_the_server():
    s = Server(env={"SOCKLAB_MAX_RUNS": "5", "SOCKLAB_PUBLIC_WS_URL": "wss://lab.example/ws",
                    "SOCKLAB_ORIGINS": "https://lab.example"})
    try:
        c = s.get_json("/api/config")
        eq(c["limits"]["max_runs"], 5, "max_runs from SOCKLAB_MAX_RUNS")
        eq(c["ws_url"], "wss://lab.example/ws", "ws_url")
        csp = s.get("/").headers["Content-Security-Policy"]
        check("connect-src 'self' wss://lab.example/ws;" in csp, csp)

        async def go():
            async with s.connect(origin="https://lab.example") as ws:
                eq(await request(ws, {"op": "ping"}), {"type": "pong", "tag": None}, "ping")

        arun(go())
        s.stop()
    finally:
        s.cleanup()


if __name__ == "__main__":
    run(timeout=120)
