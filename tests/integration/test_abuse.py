"""test_abuse.py: `socklab serve` against clients that try to exhaust or misuse it.

Attackers connect from other loopback addresses (127.0.0.2 and up) so that the
per-address limits they run into never touch the legitimate client on
127.0.0.1. Every assertion is on an answer, a status, a close code or a
counter; waits poll a real condition against a deadline.
"""
import asyncio
import atexit
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import websockets  # noqa: E402
from harness import (Server, check_stream, events_until_end, recv, request, send,  # noqa: E402
                     start_run, wait_for)
from tap import check, eq, run, test  # noqa: E402

_servers = []


def server(*args, **kw):
    s = Server(*args, **kw)
    _servers.append(s)
    atexit.register(s.cleanup)
    return s


def done(s):
    s.stop()
    s.cleanup()


def counters(s):
    return s.get_json("/api/health")["counters"]


def raw_http(s, request_bytes, source="127.0.0.1", timeout=10, port=None):
    """Send request_bytes on a fresh connection; the whole answer (until close
    or the first complete response; just the head of a 101)."""
    c = socket.create_connection(("127.0.0.1", port or s.http_port), timeout=timeout,
                                 source_address=(source, 0))
    try:
        c.sendall(request_bytes)
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return data
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep and data.startswith(b"HTTP/1.1 101"):
                return data
            if sep:
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    return data
    finally:
        c.close()


def status_of(answer):
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else None


def body_json(answer):
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def header(answer, name):
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower().encode():
            return v.strip().decode()
    return None


def open_idle(port, source, n):
    """n TCP connections from source that send nothing."""
    socks = []
    for _ in range(n):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        c.bind((source, 0))
        c.settimeout(10)
        c.connect(("127.0.0.1", port))
        socks.append(c)
    return socks


def closed_by_server(c):
    """True once the server has closed c (EOF or reset), False while it is open."""
    c.setblocking(False)
    try:
        return c.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        c.setblocking(True)


# ---- HTTP ----

@test
def http_idle_connections_from_one_address_do_not_block_others():
    # 300 idle connections from one address (more than the old server's 256
    # connection limit): the per-address limit closes all but 8 of them,
    # and the dashboard, API and liveness probe answer everyone else.
    s = server("--max-conns-per-addr", "8")
    idle = open_idle(s.http_port, "127.0.0.2", 300)
    try:
        wait_for(lambda: sum(closed_by_server(c) for c in idle) >= 292, 20,
                 "the server to close the connections over the per-address limit")
        eq(sum(not closed_by_server(c) for c in idle), 8, "connections kept from 127.0.0.2")
        for path in ("/api/health", "/api/config", "/"):
            a = raw_http(s, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            eq(status_of(a), 200, f"GET {path} from 127.0.0.1 while 127.0.0.2 holds connections")
    finally:
        for c in idle:
            c.close()
    done(s)


@test
def http_slowloris_gets_408_at_the_request_deadline():
    # One byte at a time never completes the request: whatever the pace, the
    # connection is answered 408 and closed once --header-timeout has passed
    # since it opened (the old server's idle timer restarted at every byte).
    s = server("--header-timeout", "2")
    c = socket.create_connection(("127.0.0.1", s.http_port), timeout=10,
                                 source_address=("127.0.0.3", 0))
    request_bytes = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000
    answer = b""
    try:
        c.sendall(request_bytes[:1])
        sent = 1
        while sent < len(request_bytes):
            # A byte every 0.2 s, until the server answers (or gives up).
            c.settimeout(0.2)
            try:
                chunk = c.recv(4096)
            except socket.timeout:
                c.sendall(request_bytes[sent:sent + 1])
                sent += 1
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        check(sent < len(request_bytes), "the server let the whole trickled request through")
    except BrokenPipeError:
        pass
    finally:
        c.close()
    eq(status_of(answer), 408, f"answer to a trickled request: {answer[:200]!r}")
    eq(body_json(answer)["error"]["code"], "request_timeout", "error code")
    check(counters(s)["http_header_timeouts"] >= 1, "http_header_timeouts counted")
    a = raw_http(s, b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    eq(status_of(a), 200, "a normal request afterwards")
    done(s)


@test
def http_too_many_query_arguments_get_400_at_once():
    s = server()
    for n, want in ((100, 200), (500, 400), (2000, 400)):
        q = "&".join(f"a{i}=1" for i in range(n))
        a = raw_http(s, f"GET /api/health?{q} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        eq(status_of(a), want, f"status with {n} query arguments")
        if want == 400:
            err = body_json(a)["error"]
            eq(err["code"], "too_many_arguments", "error code")
            check("at most 100" in err["message"], err["message"])
    eq(counters(s)["http_too_many_args"], 2, "http_too_many_args")
    done(s)


@test
def http_host_header_is_checked_against_dns_rebinding():
    s = server()
    for host in ("evil.example", f"evil.example:{s.http_port}", "10.1.2.3", "localhost.evil"):
        a = raw_http(s, f"GET /api/runs HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        eq(status_of(a), 421, f"GET /api/runs with Host: {host}")
        eq(body_json(a)["error"]["code"], "bad_host", "error code")
        csp = header(a, "Content-Security-Policy")
        check(csp and "evil" not in csp and "10.1.2.3" not in csp, f"CSP names a foreign host: {csp}")
    for host in (f"127.0.0.1:{s.http_port}", f"localhost:{s.http_port}", "[::1]", "127.0.0.1"):
        a = raw_http(s, f"GET /api/runs HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        eq(status_of(a), 200, f"GET /api/runs with Host: {host}")
    eq(counters(s)["http_bad_host"], 4, "http_bad_host")
    done(s)

    # Names an operator gave (a reverse proxy's public name) are accepted.
    s = server("--origin", "https://lab.example.edu")
    a = raw_http(s, b"GET /api/health HTTP/1.1\r\nHost: lab.example.edu\r\n\r\n")
    eq(status_of(a), 200, "Host named by --origin")
    check(f"ws://lab.example.edu:{s.ws_port}" in header(a, "Content-Security-Policy"),
          "CSP names the allowed host")
    a = raw_http(s, b"GET /api/health HTTP/1.1\r\nHost: other.example.edu\r\n\r\n")
    eq(status_of(a), 421, "Host not named")
    done(s)


# ---- WebSocket ----

def raw_upgrade(s, source="127.0.0.1", origin=None, host=None):
    """A WebSocket upgrade request by hand: the server's whole answer."""
    req = (f"GET {s.ws_path} HTTP/1.1\r\nHost: {host or f'127.0.0.1:{s.ws_port}'}\r\n"
           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: socklab.v1\r\n"
           + (f"Origin: {origin}\r\n" if origin else "") + "\r\n")
    return raw_http(s, req.encode(), source=source, port=s.ws_port)


def ws_from(s, source, **kw):
    return s.connect(local_addr=(source, 0), **kw)


@test
def ws_refusals_are_http_answers_with_a_reason():
    s = server("--max-conns", "16", "--max-conns-per-addr", "4")

    async def go():
        a = raw_upgrade(s, origin="http://evil.example")
        eq(status_of(a), 403, f"foreign Origin: {a[:100]!r}")
        eq(body_json(a)["error"]["code"], "bad_origin", "foreign Origin: code")
        a = raw_upgrade(s, host="evil.example")
        eq(status_of(a), 403, "foreign Host")
        eq(body_json(a)["error"]["code"], "bad_host", "foreign Host: code")
        eq(status_of(raw_upgrade(s)), 101, "a good upgrade")
        check(a.startswith(b"HTTP/1.1 "), f"status line {a[:20]!r}")
        try:
            async with s.connect(origin="http://evil.example"):
                pass
            check(False, "a WebSocket client from a foreign Origin got in")
        except websockets.exceptions.InvalidStatusCode as e:
            eq(e.status_code, 403, "status a WebSocket client sees for a foreign Origin")

        # One address: 4 sessions, then 503 with the reason.
        held = [await ws_from(s, "127.0.0.2") for _ in range(4)]
        a = raw_upgrade(s, source="127.0.0.2")
        eq(status_of(a), 503, "5th connection from 127.0.0.2")
        err = body_json(a)["error"]
        eq(err["code"], "too_many_connections", "code")
        check("at most 4" in err["message"], err["message"])
        # Everyone else is unaffected.
        async with ws_from(s, "127.0.0.1") as ws:
            eq(await request(ws, {"op": "ping"}), {"type": "pong", "tag": None}, "ping")

        # The whole server: 16 sessions, then 503 before the upgrade, never a
        # 101 followed by a close without a reason.
        for i in range(12):
            held.append(await ws_from(s, f"127.0.1.{i + 1}"))
        a = raw_upgrade(s, source="127.0.2.1")
        eq(status_of(a), 503, "17th connection")
        eq(body_json(a)["error"]["code"], "server_full", "code")
        for ws in held:
            await ws.close()
        wait_for(lambda: counters(s)["ws_sessions"] == 0, 20, "the sessions to close")
        eq(status_of(raw_upgrade(s, source="127.0.0.2")), 101, "room again")
        check(counters(s)["ws_refused"] >= 4, "ws_refused counted")

    asyncio.run(go())
    done(s)


def ws_raw_session(s):
    """A WebSocket session by hand (so frames can break the rules): the socket
    after the 101."""
    c = socket.create_connection(("127.0.0.1", s.ws_port), timeout=10)
    c.sendall((f"GET {s.ws_path} HTTP/1.1\r\nHost: 127.0.0.1:{s.ws_port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: socklab.v1\r\n\r\n")
              .encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(1)
    eq(status_of(head), 101, "handshake")
    return c


def client_frame(payload, masked=True, opcode=1):
    key = os.urandom(4) if masked else b""
    n = len(payload)
    hdr = bytes([0x80 | opcode])
    mbit = 0x80 if masked else 0
    if n < 126:
        hdr += bytes([mbit | n])
    else:
        hdr += bytes([mbit | 126]) + n.to_bytes(2, "big")
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if masked else payload
    return hdr + key + body


def server_frame(c):
    """(opcode, payload) of the next frame from the server (never masked)."""
    def exactly(n):
        b = b""
        while len(b) < n:
            chunk = c.recv(n - len(b))
            if not chunk:
                raise ConnectionError("closed")
            b += chunk
        return b
    b0, b1 = exactly(2)
    n = b1 & 0x7f
    if n == 126:
        n = int.from_bytes(exactly(2), "big")
    elif n == 127:
        n = int.from_bytes(exactly(8), "big")
    return b0 & 0x0f, exactly(n)


@test
def unmasked_client_frames_are_refused_with_1002():
    s = server()
    c = ws_raw_session(s)
    c.sendall(client_frame(b'{"op":"ping","tag":"m"}'))
    op, payload = server_frame(c)
    eq((op, json.loads(payload)), (1, {"type": "pong", "tag": "m"}), "a masked ping")
    c.sendall(client_frame(b'{"op":"ping","tag":"u"}', masked=False))
    op, payload = server_frame(c)
    eq(op, 8, f"a close frame, not {payload!r}")
    eq(int.from_bytes(payload[:2], "big"), 1002, "close code")
    check(b"RFC 6455" in payload, f"close reason {payload[2:]!r}")
    c.close()
    # Sent right behind the upgrade request, in one write.
    c = socket.create_connection(("127.0.0.1", s.ws_port), timeout=10)
    c.sendall((f"GET {s.ws_path} HTTP/1.1\r\nHost: 127.0.0.1:{s.ws_port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: socklab.v1\r\n\r\n")
              .encode() + client_frame(b'{"op":"ping"}', masked=False))
    head = b""
    while b"\r\n\r\n" not in head:
        head += c.recv(1)
    op, payload = server_frame(c)
    eq((op, int.from_bytes(payload[:2], "big")), (8, 1002), "pipelined unmasked frame")
    c.close()
    done(s)


SECRET = "correct-horse-battery"


@test
def wrong_secrets_from_one_address_do_not_lock_out_the_instructor():
    s = server("--instructor-secret", SECRET)

    async def go():
        answers = []
        attackers = [await ws_from(s, "127.0.0.2") for _ in range(4)]
        for _ in range(5):
            for ws in attackers:
                r = await request(ws, {"op": "signin", "secret": "wrong guess"})
                answers.append(r.get("code"))
        # The attacker's address is limited (10 attempts at once, 1 a second)...
        eq(answers.count("forbidden") <= 12, True, f"wrong secrets checked: {answers}")
        check("limit" in answers, f"the attacker was never limited: {answers}")
        async with ws_from(s, "127.0.0.2") as ws:
            r = await request(ws, {"op": "signin", "secret": SECRET})
            eq(r.get("code"), "limit", "even the right secret from the limited address")
        # ...and the instructor, elsewhere, signs in at once.
        async with ws_from(s, "127.0.0.1") as ws:
            r = await request(ws, {"op": "signin", "secret": SECRET})
            eq(r.get("type"), "signin.accepted", f"instructor: {r}")
        for ws in attackers:
            await ws.close()

    asyncio.run(go())
    done(s)


async def until_counter(s, name, at_least, timeout=60):
    """Poll a /api/health counter without blocking the event loop (the
    client still has bytes to send meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        v = (await asyncio.to_thread(counters, s))[name]
        if v >= at_least:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} is {v} after {timeout}s, want at least {at_least}")
        await asyncio.sleep(0.05)


@test
def every_message_is_rate_limited_before_it_is_parsed():
    # One message a second (bursts of 2): however long the sending takes,
    # nearly all of a flood is over the limit.
    s = server("--msg-rate", "1")

    async def go():
        async with ws_from(s, "127.0.0.2") as ws:
            # Not JSON, not an object, a bad tag: all of them count.
            for i in range(300):
                await ws.send(["x", "[1,2]", '{"op":"ping","tag":5}'][i % 3])
            await until_counter(s, "messages_rate_limited", 200)
            replies = []
            while True:
                r = json.loads(await asyncio.wait_for(ws.recv(), 20))
                replies.append(r)
                if r.get("code") == "limit":
                    break
                check(len(replies) < 50, "no 'limit' error among the first 50 replies")
            check("at most 1 per second" in replies[-1]["message"], replies[-1]["message"])
            # 64 KB arrays: parsed only within the rate; the rest is skipped unread.
            before = counters(s)["messages_rate_limited"]
            big = "[" + ",".join(["1"] * 30000) + "]"
            for _ in range(100):
                await ws.send(big)
            await until_counter(s, "messages_rate_limited", before + 50)
        async with ws_from(s, "127.0.0.1") as ws:
            eq(await request(ws, {"op": "ping"}), {"type": "pong", "tag": None}, "others unaffected")

    asyncio.run(go())
    done(s)


def small_rcvbuf_socket(port, source="127.0.0.1"):
    """A connected TCP socket whose receive buffer is small, so the server
    sees a slow reader as soon as the client stops reading."""
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.bind((source, 0))
    c.connect(("127.0.0.1", port))
    return c


BIG = {"clients": 4, "messages": 1000}  # about 20,000 events, 5 MB


@test
def a_fast_run_is_slowed_for_its_lagging_owner_not_cut_off():
    s = server()

    async def go():
        sock = small_rcvbuf_socket(s.ws_port)
        async with s.connect(sock=sock, max_queue=1) as ws:
            rid = await start_run(ws, BIG)
            # Not reading: the server pauses the run's output (the child
            # blocks) instead of closing the connection.
            wait_for(lambda: counters(s)["runs_throttled"] >= 1, 60, "the run to be throttled")
            events = await events_until_end(ws, rid, timeout=120)
        check_stream(events)
        eq(events[-1]["status"], "ok", "run.end status")
        check(len(events) > 10000, f"{len(events)} events")
        c = counters(s)
        eq(c["ws_queue_overflows"], 0, "queue overflows")
        check(c["run_pauses"] >= 1, "run_pauses counted")
        eq(c["runs_throttled"], 0, "no run throttled after the end")

    asyncio.run(go())
    done(s)


@test
def watchers_that_never_read_are_closed_at_the_memory_cap():
    s = server("--queue-total", "2")

    async def go():
        sock = small_rcvbuf_socket(s.ws_port)
        async with s.connect(sock=sock, max_queue=1) as owner:
            rid = await start_run(owner, BIG)
            # The owner does not read yet: the run is held while the
            # watchers join, so they are live for most of its events.
            wait_for(lambda: counters(s)["runs_throttled"] >= 1, 60, "the run to be throttled")
            # The run is held: its bundle has every event so far. The
            # watchers read the replay up to there (then they are live) and
            # stop reading.
            held = len(s.get(f"/api/runs/{rid}/events").body.splitlines())
            watchers = []
            for i in range(3):
                ws = await s.connect(sock=small_rcvbuf_socket(s.ws_port, f"127.0.3.{i + 1}"),
                                     max_queue=1)
                r = await request(ws, {"op": "watch", "run": rid})
                eq(r["type"], "watch.accepted", f"watch: {r}")
                while (await recv(ws)).get("seq", -1) < held - 1:
                    pass
                watchers.append(ws)
            events = await events_until_end(owner, rid, timeout=120)
            eq(events[-1]["status"], "ok", "the owner's run ends well")
            check(counters(s)["ws_memory_closes"] >= 1, "ws_memory_closes counted")
            # Each slow watcher is closed with 1008 and a reason: the first
            # by the server-wide cap (it held the most), others possibly by
            # their own queue's limit once fewer share the cap.
            reasons = []
            for ws in watchers:
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 30)
                except websockets.exceptions.ConnectionClosed as e:
                    reasons.append((e.code, e.reason))
                except asyncio.TimeoutError:
                    reasons.append(("still open", ""))
                await ws.close()
            check(any(c == 1008 and "outgoing memory is full" in r for c, r in reasons),
                  f"no watcher was closed for the memory cap: {reasons}")
        wait_for(lambda: counters(s)["ws_queued_bytes"] == 0, 20, "queues to empty")

    asyncio.run(go())
    done(s)


if __name__ == "__main__":
    run(timeout=120)
